package registry

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/enroll"
	"github.com/pam-totp/pam-totp/pkg/enroll/enrolltest"
	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/mail"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// mailbox records notices.
type mailbox struct {
	mu   sync.Mutex
	msgs []mail.Message
}

func (m *mailbox) Send(msg mail.Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return true
}

func (m *mailbox) take() []mail.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.msgs
	m.msgs = nil
	return out
}

type enrollEnv struct {
	*env
	clock *fakeClock
	box   *mailbox
	cred  string // node n1, scope alpha
	other string // node n2, scope beta
}

func newEnrollEnv(t *testing.T, cfg func(*Config)) *enrollEnv {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	box := &mailbox{}
	e := newEnv(t, envOptions{cfg: cfg, opts: func(o *Options) { o.Now, o.Notifier = clock.now, box }})
	e.mustAdmin(201, "POST", "/v1/admin/users", map[string]any{"name": "ann", "mail": "ann@example.org", "scopes": []string{"alpha"}}, nil)
	ee := &enrollEnv{env: e, clock: clock, box: box}
	ee.cred = e.addNode("n1", "alpha")
	ee.other = e.addNode("n2", "beta")
	return ee
}

// post makes a node request and returns the status and the decoded answer.
func (e *enrollEnv) post(cred, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var out map[string]any
	st := e.do("POST", path, cred, body, &out)
	return st, out
}

// code is the code of secret (base32) at the clock's time plus d steps.
func (e *enrollEnv) code(secret string, d int) string {
	e.t.Helper()
	b, err := totp.DecodeSecret(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	return totp.Code(b, totp.DefaultParams, uint64(int64(totp.Step(e.clock.now(), 30))+int64(d)))
}

// enroll runs begin and finish; it returns the token id, its secret and the finish answer.
func (e *enrollEnv) enroll(proof string) (id, secret string, fin map[string]any) {
	e.t.Helper()
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "phone", "proof": proof})
	if st != 200 {
		e.t.Fatalf("begin = %d %v, want 200", st, b)
	}
	id, secret = b["id"].(string), b["secret"].(string)
	st, fin = e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": e.code(secret, 0)})
	if st != 200 || fin["status"] != "active" {
		e.t.Fatalf("finish = %d %v, want active", st, fin)
	}
	e.clock.add(30 * time.Second) // the next proof is a later step
	return id, secret, fin
}

func TestEnrollFirstToken(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	rev0 := e.store.Rev()
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "phone"})
	if st != 200 {
		t.Fatalf("begin = %d %v", st, b)
	}
	id, secret, uri := b["id"].(string), b["secret"].(string), b["uri"].(string)
	if !strings.HasPrefix(uri, "otpauth://totp/pam-totp:ann?") || !strings.Contains(uri, "secret="+secret) {
		t.Errorf("begin uri = %q, want an otpauth URI with issuer pam-totp and the secret", uri)
	}
	if raw, _ := totp.DecodeSecret(secret); len(raw) != 20 {
		t.Errorf("secret of %d bytes, want 20", len(raw))
	}
	// Pending tokens are not records: a node's snapshot has nothing of ann.
	if _, recs, _ := e.snapshot(e.cred); len(recs) != 0 {
		t.Errorf("snapshot has %d records while the token is pending, want 0", len(recs))
	}
	steps := []struct {
		name       string
		code       string
		wantStatus string
		wantSkew   float64
		advance    time.Duration // clock moves on before this step
	}{
		{name: "wrong code", code: "000000", wantStatus: "wrong_code"},
		{name: "not a code", code: "abc", wantStatus: "wrong_code"},
		{name: "phone 3 minutes ahead", code: e.code(secret, 6), wantStatus: "clock_skew", wantSkew: 180},
		{name: "phone 2 minutes behind", code: e.code(secret, -4), wantStatus: "clock_skew", wantSkew: -120},
		// The skewed codes burned their steps (up to now+6): the device's clock is fixed 8 steps on.
		{name: "right code", code: "now-1", wantStatus: "active", advance: 8 * 30 * time.Second},
		{name: "finish again answers active", code: "000000", wantStatus: "active"},
	}
	for _, s := range steps {
		e.clock.add(s.advance)
		if s.code == "now-1" {
			s.code = e.code(secret, -1)
		}
		st, fin := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": s.code})
		if st != 200 || fin["status"] != s.wantStatus || (s.wantSkew != 0 && fin["skew_s"] != s.wantSkew) {
			t.Errorf("%s: finish = %d %v, want status %s skew %v", s.name, st, fin, s.wantStatus, s.wantSkew)
		}
		if s.name == "right code" {
			codes, _ := fin["backup_codes"].([]any)
			if len(codes) != 10 {
				t.Errorf("first token: %d backup codes, want 10", len(codes))
			}
		}
	}
	_, recs, _ := e.snapshot(e.cred)
	var tok token.Token
	if err := json.Unmarshal(recs[syncframe.TokenKey("ann", id)], &tok); err != nil || tok.State != token.Active {
		t.Errorf("node record of token %s: %+v (%v), want active", id, tok, err)
	}
	if got := len(tokenRecords(recs)); got != 11 {
		t.Errorf("node has %d records of ann, want 1 token + 10 backup codes", got)
	}
	msgs := e.box.take()
	if len(msgs) != 1 || msgs[0].To != "ann@example.org" || !strings.Contains(msgs[0].Body, "node n1") ||
		!strings.Contains(msgs[0].Body, "contact your site's helpdesk") {
		t.Fatalf("notices = %+v, want exactly one to ann naming node n1 and the contact", msgs)
	}
	if strings.Contains(msgs[0].Body, secret) || strings.Contains(msgs[0].Body, "otpauth") {
		t.Errorf("notice holds the secret or URI: %q", msgs[0].Body)
	}
	if e.store.Rev() <= rev0 {
		t.Error("no revision written")
	}
}

// TestEnrollSkewCodeBurned: a code for now+2 steps gets the clock hint, counts as a failed proof,
// and is refused again when its time comes (its step was burned).
func TestEnrollSkewCodeBurned(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	_, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "phone"})
	id, secret := b["id"].(string), b["secret"].(string)
	early := e.code(secret, 2)
	st, fin := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": early})
	if st != 200 || fin["status"] != "clock_skew" || fin["skew_s"] != float64(60) {
		t.Fatalf("finish(now+2 steps) = %d %v, want clock_skew 60", st, fin)
	}
	var f token.SharedFailures
	e.store.View(context.Background(), func(_ int64, tx kv.Txn) error {
		var err error
		f, err = (&txn{Txn: tx, s: e.srv}).sharedFailures("ann")
		return err
	})
	if f.Count != 1 {
		t.Errorf("failures after a skewed code = %d, want 1", f.Count)
	}
	e.clock.add(60 * time.Second)
	st, fin = e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": early})
	if st != 200 || fin["status"] != "wrong_code" {
		t.Errorf("finish(the same code in its step) = %d %v, want wrong_code", st, fin)
	}
	st, fin = e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": e.code(secret, 1)})
	if st != 200 || fin["status"] != "active" {
		t.Errorf("finish(a later code) = %d %v, want active", st, fin)
	}
}

func TestEnrollPendingExpires(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	_, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann"})
	id, secret := b["id"].(string), b["secret"].(string)
	e.clock.add(enroll.PendingTTL + time.Second)
	st, fin := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": e.code(secret, 0)})
	if st != 200 || fin["status"] != "expired" {
		t.Errorf("finish after 10 min = %d %v, want expired", st, fin)
	}
	if st, _ := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": id, "code": e.code(secret, 0)}); st != 404 {
		t.Errorf("finish of a removed pending token = %d, want 404", st)
	}
	// The ticker's sweep: one revision when something expired, none otherwise.
	e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann"})
	e.clock.add(enroll.PendingTTL)
	rev := e.store.Rev()
	if n, err := e.srv.sweepPending(t.Context(), ""); n != 1 || err != nil || e.store.Rev() != rev+1 {
		t.Errorf("sweepPending = %d, %v, revisions %d -> %d; want 1 removed in one revision", n, err, rev, e.store.Rev())
	}
	if n, _ := e.srv.sweepPending(t.Context(), ""); n != 0 || e.store.Rev() != rev+1 {
		t.Errorf("second sweepPending = %d, revision %d; want nothing, no revision", n, e.store.Rev())
	}
	if len(e.box.take()) != 0 {
		t.Error("a notice for a token that never became active")
	}
}

func TestEnrollProofs(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	_, secret, fin := e.enroll("")
	backup := fin["backup_codes"].([]any)[0].(string)
	e.box.take()

	begin := func(proof string) (int, map[string]any) {
		return e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": proof})
	}
	used := e.code(secret, 0)
	tests := []struct {
		name    string
		proof   func() string
		want    int
		wantErr string
	}{
		{name: "no proof", proof: func() string { return "" }, want: 403, wantErr: "a proof is required"},
		{name: "wrong code", proof: func() string { return "123456" }, want: 403, wantErr: "not accepted"},
		{name: "current code", proof: func() string { return used }, want: 200},
		{name: "same code again", proof: func() string { return used }, want: 403, wantErr: "already used"},
		{name: "backup code", proof: func() string { return strings.ToUpper(backup) }, want: 200},
		{name: "backup code again", proof: func() string { return backup }, want: 403, wantErr: "not accepted"},
	}
	for _, tt := range tests {
		st, b := begin(tt.proof())
		if st != tt.want || (tt.wantErr != "" && !strings.Contains(b["error"].(string), tt.wantErr)) {
			t.Errorf("%s: begin = %d %v, want %d %q", tt.name, st, b, tt.want, tt.wantErr)
		}
	}
	// The consumed backup code is gone for the nodes too.
	if _, recs, _ := e.snapshot(e.cred); len(tokenRecords(recs)) != 1+9 {
		t.Errorf("node has %d records, want 1 token + 9 backup codes", len(tokenRecords(recs)))
	}
	// max_tokens (5): 1 active + 2 pending now; 2 more fit, the 6th does not.
	for i := range 3 {
		e.clock.add(30 * time.Second)
		st, b := begin(e.code(secret, 0))
		if want := []int{200, 200, 409}[i]; st != want {
			t.Errorf("begin #%d = %d %v, want %d", i+4, st, b, want)
		}
	}
	if got := e.box.take(); len(got) != 0 {
		t.Errorf("notices for pending tokens: %+v", got)
	}
}

// TestEnrollLockout: failed proofs follow the login rule (token.Limits): free failures, then a
// back-off, and at max_failures a lock that waiting does not end (before, 5 failures gave a
// 15-minute wait and a fresh count, ~480 guesses a day for ever); an admin unlock ends it.
func TestEnrollLockout(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	_, secret, _ := e.enroll("")
	max := e.srv.cfg.Enroll.MaxFailures
	wrong := func(i int) {
		t.Helper()
		st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": "000000"})
		if st != 403 {
			t.Fatalf("wrong proof #%d = %d %v, want 403", i, st, b)
		}
	}
	for i := 1; i <= proofFreeFailures; i++ {
		wrong(i)
	}
	wrong(proofFreeFailures + 1) // starts the first back-off
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": e.code(secret, 0)})
	if st != 429 || !strings.Contains(b["error"].(string), "too many failed proofs; try again") {
		t.Errorf("right proof during the back-off = %d %v, want 429", st, b)
	}
	for i := proofFreeFailures + 2; i <= max; i++ {
		e.clock.add(e.srv.cfg.Enroll.Lockout + time.Second) // past any back-off
		wrong(i)
	}
	e.clock.add(24 * time.Hour)
	st, b = e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": e.code(secret, 0)})
	if st != 429 || !strings.Contains(b["error"].(string), "ask your administrators to unlock you") {
		t.Errorf("right proof a day after %d failures = %d %v, want 429 until an unlock", max, st, b)
	}
	var un registryapi.Unlocked
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/unlock", nil, &un)
	if un.Failures != max {
		t.Errorf("unlock cleared %d failures, want %d", un.Failures, max)
	}
	if st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": e.code(secret, 0)}); st != 200 {
		t.Errorf("right proof after the unlock = %d %v, want 200", st, b)
	}
	var audit []AuditRecord
	e.mustAdmin(200, "GET", "/v1/admin/audit?limit=1000", nil, &audit)
	failed, unlocked := 0, 0
	for _, a := range audit {
		switch a.Action {
		case "enroll.proof_failed":
			failed++
		case "user.unlock":
			unlocked++
		}
	}
	if failed != max || unlocked != 1 {
		t.Errorf("%d enroll.proof_failed and %d user.unlock audit records, want %d and 1", failed, unlocked, max)
	}
}

func TestEnrollScopeAndAuth(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	tests := []struct {
		name string
		cred string
		path string
		body any
		want int
	}{
		{name: "node of another scope", cred: e.other, path: "/v1/enroll/begin", body: map[string]string{"user": "ann"}, want: 403},
		{name: "unknown user", cred: e.cred, path: "/v1/enroll/begin", body: map[string]string{"user": "zed"}, want: 403},
		{name: "no credential", path: "/v1/enroll/begin", body: map[string]string{"user": "ann"}, want: 401},
		{name: "admin token is not a node", cred: testAdminToken, path: "/v1/enroll/begin", body: map[string]string{"user": "ann"}, want: 401},
		{name: "unknown field", cred: e.cred, path: "/v1/enroll/begin", body: `{"user":"ann","secret":"x"}`, want: 400},
		{name: "bad user", cred: e.cred, path: "/v1/enroll/finish", body: map[string]string{"user": "a/b", "id": "x", "code": "1"}, want: 400},
		{name: "bootstrap off", cred: e.cred, path: "/v1/enroll/bootstrap", body: map[string]string{"user": "ann"}, want: 409},
		{name: "backup codes without a token", cred: e.cred, path: "/v1/enroll/backup-codes", body: map[string]string{"user": "ann", "proof": "123456"}, want: 403},
	}
	for _, tt := range tests {
		if st, b := e.post(tt.cred, tt.path, tt.body); st != tt.want {
			t.Errorf("%s: POST %s = %d %v, want %d", tt.name, tt.path, st, b, tt.want)
		}
	}
}

func TestEnrollRenameRemoveBackupCodes(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	id, secret, _ := e.enroll("")
	id2, secret2, _ := e.enroll(e.code(secret, 0))
	e.box.take()
	tests := []struct {
		name, path string
		body       map[string]string
		want       int
		notice     string
	}{
		{name: "rename", path: "/v1/enroll/rename", body: map[string]string{"user": "ann", "id": id, "name": "old phone"}, want: 200, notice: "renamed"},
		{name: "rename unknown", path: "/v1/enroll/rename", body: map[string]string{"user": "ann", "id": "nope", "name": "x"}, want: 404},
		{name: "remove without proof", path: "/v1/enroll/remove", body: map[string]string{"user": "ann", "id": id}, want: 403},
		{name: "remove with a code of the other token", path: "/v1/enroll/remove", body: map[string]string{"user": "ann", "id": id, "proof": e.code(secret2, 0)}, want: 200, notice: "removed"},
		{name: "backup codes without proof", path: "/v1/enroll/backup-codes", body: map[string]string{"user": "ann"}, want: 403},
		{name: "backup codes with a stale code", path: "/v1/enroll/backup-codes", body: map[string]string{"user": "ann", "proof": e.code(secret2, -5)}, want: 403},
	}
	for _, tt := range tests {
		st, b := e.post(e.cred, tt.path, tt.body)
		if st != tt.want {
			t.Errorf("%s: %d %v, want %d", tt.name, st, b, tt.want)
		}
		msgs := e.box.take()
		if (tt.notice == "") != (len(msgs) == 0) || (tt.notice != "" && (len(msgs) != 1 || !strings.Contains(msgs[0].Subject, tt.notice))) {
			t.Errorf("%s: notices %+v, want one about %q", tt.name, msgs, tt.notice)
		}
	}
	e.clock.add(30 * time.Second)
	st, b := e.post(e.cred, "/v1/enroll/backup-codes", map[string]string{"user": "ann", "proof": e.code(secret2, 0)})
	codes, _ := b["codes"].([]any)
	if st != 200 || len(codes) != 10 {
		t.Fatalf("backup-codes = %d %v, want 10 codes", st, b)
	}
	msgs := e.box.take()
	if len(msgs) != 1 {
		t.Fatalf("%d notices for new backup codes, want 1", len(msgs))
	}
	for _, c := range codes {
		if strings.Contains(msgs[0].Body, c.(string)) {
			t.Errorf("the notice holds backup code %s", c)
		}
	}
	_, recs, _ := e.snapshot(e.cred)
	if _, ok := recs[syncframe.TokenKey("ann", id)]; ok || len(tokenRecords(recs)) != 11 {
		t.Errorf("node has %d records (removed token %s there: %v), want token %s + 10 codes", len(tokenRecords(recs)), id, ok, id2)
	}
}

func TestEnrollBootstrapMail(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, func(c *Config) { c.Enroll.Bootstrap, c.Mail.Host = BootstrapMail, "127.0.0.1:1" })
	if st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann"}); st != 403 || !strings.Contains(b["error"].(string), "bootstrap") {
		t.Errorf("first begin without a bootstrap code = %d %v, want 403", st, b)
	}
	if st, b := e.post(e.cred, "/v1/enroll/bootstrap", map[string]string{"user": "ann"}); st != 200 {
		t.Fatalf("bootstrap = %d %v", st, b)
	}
	if st, _ := e.post(e.cred, "/v1/enroll/bootstrap", map[string]string{"user": "ann"}); st != 429 {
		t.Errorf("second bootstrap within a minute = %d, want 429", st)
	}
	msgs := e.box.take()
	if len(msgs) != 1 {
		t.Fatalf("%d bootstrap mails, want 1", len(msgs))
	}
	var code string
	for _, l := range strings.Split(msgs[0].Body, "\n") {
		if strings.HasPrefix(l, "    ") {
			code = strings.TrimSpace(l)
		}
	}
	if st, _ := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": "0000-0000-0000-0000"}); st != 403 {
		t.Errorf("begin with a wrong bootstrap code = %d, want 403", st)
	}
	if st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": code}); st != 200 {
		t.Errorf("begin with the bootstrap code = %d %v, want 200", st, b)
	}
	if st, _ := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "proof": code}); st != 403 {
		t.Errorf("begin with the used bootstrap code = %d, want 403", st)
	}
}

func TestAdminChangesNotify(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	ti := e.addToken("ann")
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/backup-codes", nil, nil)
	e.mustAdmin(200, "DELETE", "/v1/admin/users/ann/tokens/"+ti.ID, nil, nil)
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/reset", nil, nil)
	msgs := e.box.take()
	want := []string{"new token added", "new backup codes", "token removed", "second factor reset"}
	if len(msgs) != len(want) {
		t.Fatalf("notices = %+v, want %v", msgs, want)
	}
	for i, m := range msgs {
		if !strings.Contains(m.Subject, want[i]) || !strings.Contains(m.Body, "administrator alice-admin") ||
			strings.Contains(m.Body, ti.Secret) {
			t.Errorf("notice %d = %+v, want %q by alice-admin without the secret", i, m, want[i])
		}
	}
}

// TestEnrollPendingFirstTokens: pending tokens begun without a proof (first tokens) cannot add a
// second token without one: a new first enrollment replaces an older one, and one that finishes
// after another token became active is refused (before, each could be finished later).
func TestEnrollPendingFirstTokens(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	_, a := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "a"})
	_, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "b"})
	idA, secretA := a["id"].(string), a["secret"].(string)
	idB, secretB := b["id"].(string), b["secret"].(string)
	if st, fin := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": idA, "code": e.code(secretA, 0)}); st != 404 {
		t.Errorf("finish of a replaced first enrollment = %d %v, want 404", st, fin)
	}
	// An administrator adds an active token while the user's first enrollment is pending.
	e.mustAdmin(201, "POST", "/v1/admin/users/ann/tokens", map[string]any{"name": "desk", "state": "active"}, nil)
	st, fin := e.post(e.cred, "/v1/enroll/finish", map[string]string{"user": "ann", "id": idB, "code": e.code(secretB, 0)})
	if st != 409 || !strings.Contains(fin["error"].(string), "begin again, with a code from that token or a backup code") {
		t.Errorf("finish of a first enrollment after another token became active = %d %v, want 409", st, fin)
	}
	var toks []token.Info
	e.mustAdmin(200, "GET", "/v1/admin/users/ann/tokens", nil, &toks)
	if len(toks) != 1 || toks[0].Name != "desk" {
		t.Errorf("tokens of ann = %+v, want only the administrator's", toks)
	}
}

// TestEnrollDisabledNoFirstToken: a user whose only token an administrator disabled cannot begin
// a new first token without a proof (before, "no active token" made it a first enrollment).
func TestEnrollDisabledNoFirstToken(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	id, _, _ := e.enroll("")
	e.mustAdmin(200, "PATCH", "/v1/admin/users/ann/tokens/"+id, map[string]any{"state": "disabled"}, nil)
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "new"})
	if st != 409 || !strings.Contains(b["error"].(string), "your token is disabled") {
		t.Errorf("begin with only a disabled token = %d %v, want 409", st, b)
	}
}

// TestEnrollRemovedLastTokenNeedsReset: removing a user's last token marks them enrolled, and
// the nodes receive the mark; a new first token then needs an administrator's reset, which
// removes the mark (nodes too). An active token clears it.
func TestEnrollRemovedLastTokenNeedsReset(t *testing.T) {
	t.Parallel()
	e := newEnrollEnv(t, nil)
	mark := func() bool {
		_, recs, _ := e.snapshot(e.cred)
		return recs[syncframe.EnrolledKey("ann")] != nil
	}
	id, secret, _ := e.enroll("")
	if mark() {
		t.Fatal("nodes have an enrolled mark of ann while she has a token")
	}
	if st, b := e.post(e.cred, "/v1/enroll/remove", map[string]string{"user": "ann", "id": id, "proof": e.code(secret, 0)}); st != 200 {
		t.Fatalf("remove = %d %v, want 200", st, b)
	}
	if !mark() {
		t.Error("nodes have no enrolled mark of ann after her last token was removed")
	}
	st, b := e.post(e.cred, "/v1/enroll/begin", map[string]string{"user": "ann", "name": "new"})
	if st != 409 || !strings.Contains(b["error"].(string), "reset your second factor") {
		t.Fatalf("begin after removing the last token = %d %v, want 409", st, b)
	}
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/reset", nil, nil)
	if _, recs, _ := e.snapshot(e.cred); len(recs) != 0 {
		t.Errorf("nodes have %d records of ann after the reset, want none", len(recs))
	}
	id, _, _ = e.enroll("")
	// An administrator's delete of the last token marks her too; a new active token clears it.
	e.mustAdmin(200, "DELETE", "/v1/admin/users/ann/tokens/"+id, nil, nil)
	if !mark() {
		t.Error("no enrolled mark after an administrator deleted the last token")
	}
	e.addToken("ann")
	if mark() {
		t.Error("the enrolled mark stayed with a new active token")
	}
}

// TestRules runs the enrollment rules' table on the registry's kv store.
func TestRules(t *testing.T) {
	enrolltest.Run(t, func(t *testing.T) enrolltest.Env {
		e := newEnrollEnv(t, nil)
		return enrolltest.Env{Service: e.srv.service(nodeRecord{Name: "n1", Scope: "alpha"}), User: "ann",
			Advance: e.clock.add, Reset: func() { e.mustAdmin(200, "POST", "/v1/admin/users/ann/reset", nil, nil) }}
	})
}

// tokenRecords are the token and backup code records of a snapshot, without the users' marks and
// failure records.
func tokenRecords(recs map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range recs {
		if k[0] == syncframe.KindToken || k[0] == syncframe.KindBackup {
			out[k] = v
		}
	}
	return out
}
