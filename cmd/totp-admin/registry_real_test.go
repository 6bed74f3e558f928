package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// registryBinary returns build/totp-registry, or builds cmd/totp-registry when only its source is
// there; it skips the test when neither exists.
func registryBinary(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs("../../build/totp-registry"); err == nil {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	if _, err := os.Stat("../totp-registry/main.go"); err != nil {
		t.Skip("no totp-registry: neither build/totp-registry nor cmd/totp-registry exists yet (make build)")
	}
	out := filepath.Join(t.TempDir(), "totp-registry")
	build := exec.Command("go", "build", "-o", out, "../totp-registry")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cmd/totp-registry: %v\n%s", err, msg)
	}
	return out
}

// realRegistry is a totp-registry process on 127.0.0.1 with a throwaway CA, keyring, store and
// admin token, all in a temporary directory.
type realRegistry struct {
	url, ca, tokFile string
	mu               sync.Mutex
	log              strings.Builder
}

func startRegistry(t *testing.T) *realRegistry {
	t.Helper()
	bin := registryBinary(t)
	dir := t.TempDir()
	for _, d := range []string{"etc", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ca := newTestCA(t, filepath.Join(dir, "etc"))
	r := &realRegistry{ca: ca.caFile, tokFile: filepath.Join(dir, "admin-token")}
	write := func(path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	write(filepath.Join(dir, "etc", "registry.keyring"), "test "+base64.StdEncoding.EncodeToString(key)+"\n", 0o600)
	sum := sha256.Sum256([]byte(adminToken))
	write(filepath.Join(dir, "etc", "registry-admins"), "admin "+hex.EncodeToString(sum[:])+"\n", 0o600)
	write(r.tokFile, adminToken+"\n", 0o600)
	conf := filepath.Join(dir, "etc", "registry.conf")
	write(conf, fmt.Sprintf(`listen = "127.0.0.1:0"
tls_cert = %q
tls_key = %q
store = %q
key_file = %q
admin_tokens_file = %q
issuer = "Example HPC"
`, ca.certFile, ca.keyFile, filepath.Join(dir, "data", "registry.db"), filepath.Join(dir, "etc", "registry.keyring"),
		filepath.Join(dir, "etc", "registry-admins")), 0o644)

	cmd := exec.Command(bin, "--config", conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start totp-registry: %v", err)
	}
	done := make(chan struct{})
	listen := make(chan string, 1)
	go func() {
		defer close(done)
		re := regexp.MustCompile(`msg="totp-registry serving" listen=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.log.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case listen <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cmd.Wait()
		if strings.Contains(r.logText(), adminToken) {
			t.Errorf("the registry's log holds the admin token")
		}
		if t.Failed() {
			t.Logf("totp-registry log:\n%s", r.logText())
		}
	})
	select {
	case addr := <-listen:
		r.url = "https://" + addr
	case <-done:
		t.Fatalf("totp-registry exited before serving:\n%s", r.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("totp-registry did not start within 30s:\n%s", r.logText())
	}
	return r
}

func (r *realRegistry) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// admin runs totp-admin with the registry in the environment and checks the exit code.
func (r *realRegistry) admin(t *testing.T, wantCode int, stdin string, args ...string) result {
	t.Helper()
	res := runWith(t, []string{"TOTP_REGISTRY=" + r.url, "TOTP_ADMIN_TOKEN_FILE=" + r.tokFile, "TOTP_CA_FILE=" + r.ca}, stdin, args...)
	if res.code != wantCode {
		t.Fatalf("totp-admin %v: exit %d, want %d\n%s", args, res.code, wantCode, res)
	}
	if strings.Contains(res.stdout+res.stderr, adminToken) {
		t.Fatalf("totp-admin %v printed the admin token", args)
	}
	return res
}

func contains(t *testing.T, r result, what ...string) {
	t.Helper()
	for _, w := range what {
		if !strings.Contains(r.stdout+r.stderr, w) {
			t.Errorf("output lacks %q\n%s", w, r)
		}
	}
}

const laptopSecret = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"

// TestRealRegistry runs every registry command of totp-admin against a real totp-registry.
func TestRealRegistry(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()

	r := reg.admin(t, 0, "", "user", "add", "alice", "--mail", "alice@example.org", "--scope", "c1", "--reason", "ticket 1")
	contains(t, r, "User alice added (scopes c1, mail alice@example.org).")
	r = reg.admin(t, 1, "", "user", "add", "alice")
	contains(t, r, `totp-admin: user "alice" exists`)
	r = reg.admin(t, 1, "", "user", "add", "bad", "--scope", "a b")
	contains(t, r, "totp-admin: scope ")
	r = reg.admin(t, 0, "", "user", "list")
	contains(t, r, "NAME   MAIL               SCOPES  TOKENS  BACKUP CODES  CREATED\n", "alice  alice@example.org  c1      0       0")

	// A token whose secret the registry makes: the enrollment screen, once.
	r = reg.admin(t, 0, "", "token", "add", "alice", "--name", "phone", "--no-qr")
	contains(t, r, `("phone") for alice, active.`, "otpauth URI:     otpauth://totp/Example%20HPC:alice?secret=",
		"secret (base32): ", "This is the only time the secret is shown.")
	phone := regexp.MustCompile(`New token ([0-9a-f]{8}) `).FindStringSubmatch(r.stdout)
	if phone == nil {
		t.Fatalf("no token id in\n%s", r)
	}
	r = reg.admin(t, 0, laptopSecret+"\n", "token", "add", "alice", "--name", "laptop", "--secret-file", "-", "--digits", "8")
	contains(t, r, `("laptop") of alice added, active.`)
	if strings.Contains(r.stdout, laptopSecret) {
		t.Errorf("a secret the admin gave was printed back")
	}
	r = reg.admin(t, 1, laptopSecret+"\n", "token", "add", "alice", "--secret-file", "-")
	contains(t, r, "totp-admin: user \"alice\" already has a token with this secret\n")
	r = reg.admin(t, 0, "", "token", "list", "alice")
	contains(t, r, "phone ", "laptop", "SHA1       8       30      active")
	if strings.Contains(r.stdout, "secret") || strings.Contains(r.stdout, laptopSecret) {
		t.Errorf("token list shows a secret:\n%s", r)
	}
	r = reg.admin(t, 0, "", "token", "disable", "alice", phone[1], "--reason", "lost phone")
	contains(t, r, fmt.Sprintf("Token %s (\"phone\") of alice disabled.\n", phone[1]))
	r = reg.admin(t, 0, "", "token", "enable", "alice", phone[1])
	contains(t, r, "enabled.")
	r = reg.admin(t, 0, "", "token", "remove", "alice", phone[1])
	contains(t, r, "removed.")
	r = reg.admin(t, 1, "", "token", "remove", "alice", phone[1])
	contains(t, r, fmt.Sprintf("totp-admin: token %s of alice: no such token\n", phone[1]))

	r = reg.admin(t, 0, "", "backup-codes", "alice")
	if n := len(regexp.MustCompile(`(?m)^ +\d+\. \S+$`).FindAllString(r.stdout, -1)); n != 10 {
		t.Errorf("backup-codes printed %d codes, want 10\n%s", n, r)
	}
	r = reg.admin(t, 0, "", "passcode", "alice", "--ttl", "30m")
	contains(t, r, "One-time passcode for alice:", "It works once")
	r = reg.admin(t, 0, "", "user", "show", "alice")
	contains(t, r, "user:         alice\n", "scopes:       c1\n", "tokens:       1\n", "backup codes: 11\n", "laptop")

	// Nodes.
	r = reg.admin(t, 0, "", "node", "add", "login1", "--scope", "c1", "--reason", "new node")
	contains(t, r, "Node login1 added to scope c1", "    ptn1.login1.", "/etc/pam-totp/node.credential, owned by root, mode 0600")
	r = reg.admin(t, 0, "", "node", "add", "login1", "--scope", "c1")
	contains(t, r, "Node login1 unchanged: exists in scope c1. Its credential is not shown again")
	r = reg.admin(t, 1, "", "node", "add", "login1", "--scope", "c2")
	contains(t, r, `totp-admin: node "login1" exists in scope "c1", not "c2"`)
	r = reg.admin(t, 0, "", "node", "list")
	contains(t, r, "NAME    SCOPE  APPLIED  BEHIND  DIGEST  STREAMS  LAST CONTACT\n", "login1  c1     -        -       -       0        never\n")

	// Every read answers JSON with --json.
	for _, read := range []struct {
		args []string
		want string // a field of the answer (of its first element, for a list)
	}{
		{[]string{"token", "list", "alice"}, "state"},
		{[]string{"user", "list"}, "backup_codes"},
		{[]string{"user", "show", "alice"}, "token_list"},
		{[]string{"node", "list"}, "applied_rev"},
		{[]string{"node", "show", "login1"}, "behind"},
		{[]string{"audit", "--limit", "2"}, "hash"},
		{[]string{"audit", "verify"}, "records"},
		{[]string{"whoami"}, "expires"},
	} {
		r := reg.admin(t, 0, "", append(read.args, "--json")...)
		var v any
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Errorf("totp-admin %v --json: not JSON: %v\n%s", read.args, err, r)
			continue
		}
		if l, ok := v.([]any); ok && len(l) > 0 {
			v = l[0]
		}
		m, _ := v.(map[string]any)
		if _, has := m[read.want]; !has {
			t.Errorf("totp-admin %v --json = %s, want a %q field", read.args, r.stdout, read.want)
		}
	}

	// Imports.
	csvPath := filepath.Join(dir, "tokens.csv")
	os.WriteFile(csvPath, []byte("bob,JBSWY3DPEHPK3PXP,phone\ncarol,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"), 0o600)
	r = reg.admin(t, 0, "", "import", "csv", csvPath, "--scope", "c2")
	contains(t, r, "Imported 2 tokens (active) in ", "; 2 new users in scope c2.")
	r = reg.admin(t, 0, "bob,JBSWY3DPEHPK3PXP,phone\n", "import", "csv", "-")
	contains(t, r, "Imported 0 tokens (active)", "; 1 already present, skipped.")
	badPath := filepath.Join(dir, "bad.csv")
	os.WriteFile(badPath, []byte("dave,JBSWY3DPEHPK3PXP\nerin,not-base32!\n"), 0o600)
	r = reg.admin(t, 1, "", "import", "csv", badPath)
	contains(t, r, "totp-admin: "+badPath+": line 2: ", "nothing was imported")
	gaPath := filepath.Join(dir, "google_authenticator")
	os.WriteFile(gaPath, []byte(gaSample), 0o400)
	r = reg.admin(t, 0, "", "import", "google-authenticator", "alice", gaPath)
	contains(t, r, `("google-authenticator") for alice, active, 30-second steps.`, "Imported 2 scratch codes as backup codes",
		"RATE_LIMIT", "remove "+gaPath)
	r = reg.admin(t, 0, "", "import", "google-authenticator", "alice", gaPath)
	contains(t, r, "alice already has this token")

	r = reg.admin(t, 0, "", "user", "set", "alice", "--scope", "c1", "--scope", "c2", "--mail", "")
	contains(t, r, "User alice changed: scopes c1,c2, mail -.")
	r = reg.admin(t, 0, "", "reset", "alice", "--reason", "lost device")
	contains(t, r, "alice reset: 2 tokens and ")
	r = reg.admin(t, 1, "", "user", "show", "nobody")
	contains(t, r, `totp-admin: no user "nobody"`)

	// Audit, compaction, removals.
	r = reg.admin(t, 0, "", "audit", "--limit", "3")
	contains(t, r, "SEQ  TIME", "admin  user.create", "ticket 1", "(more may follow: --after 3)")
	r = reg.admin(t, 0, "", "audit", "--after", "3", "--json")
	contains(t, r, `"hash": "`, `"reason": "lost phone"`)
	r = reg.admin(t, 0, "", "audit", "verify")
	contains(t, r, "Audit log OK: ", "the hash chain is intact.")
	r = reg.admin(t, 0, "", "compact", "--keep", "0", "--reason", "test")
	contains(t, r, "History compacted up to revision ")
	r = reg.admin(t, 0, "", "node", "remove", "login1")
	contains(t, r, "Node login1 removed")
	r = reg.admin(t, 1, "", "node", "remove", "login1")
	contains(t, r, `totp-admin: no node "login1"`)
	r = reg.admin(t, 0, "", "user", "remove", "alice")
	contains(t, r, "User alice removed, with 0 tokens and ")

	// The wrong admin token, and a registry not signed by the pinned CA.
	wrong := filepath.Join(dir, "wrong-token")
	os.WriteFile(wrong, []byte("not-the-token\n"), 0o600)
	r = runWith(t, nil, "", "user", "list", "--registry", reg.url, "--admin-token-file", wrong, "--ca-file", reg.ca)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "totp-admin: the registry refused the admin token") {
		t.Errorf("wrong admin token: %s", r)
	}
	other := newTestCA(t, t.TempDir())
	r = runWith(t, nil, "", "user", "list", "--registry", reg.url, "--admin-token-file", reg.tokFile, "--ca-file", other.caFile)
	if r.code != 1 || !strings.Contains(r.stderr, "not signed by a trusted CA") {
		t.Errorf("another CA: %s", r)
	}
}

// TestRealRegistryTwice runs every verb that changes state twice in a row against a real
// totp-registry, as configuration management does: the second run exits 0 and says
// "unchanged", and its --json answer says "changed": false.
func TestRealRegistryTwice(t *testing.T) {
	reg := startRegistry(t)
	changed := func(t *testing.T, r result, want bool) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, r)
		}
		if m["changed"] != want {
			t.Errorf("changed = %v, want %v\n%s", m["changed"], want, r)
		}
		return m
	}
	steps := []struct {
		name        string
		args        []string
		first, then string
	}{
		{"user add", []string{"user", "add", "alice", "--scope", "c1", "--mail", "alice@example.org"},
			"User alice added", "User alice unchanged: exists with scopes c1, mail alice@example.org.\n"},
		{"user set", []string{"user", "set", "alice", "--scope", "c1", "--scope", "c2"},
			"User alice changed: scopes c1,c2", "User alice unchanged: scopes c1,c2, mail alice@example.org.\n"},
		{"node add", []string{"node", "add", "login1", "--scope", "c1"},
			"Its credential, shown only this once", "Node login1 unchanged: exists in scope c1."},
		{"unlock", []string{"unlock", "alice"},
			"alice unchanged at the registry: no failed codes or proofs, nothing to unlock.", "alice unchanged at the registry"},
		{"node remove --if-exists", []string{"node", "remove", "login1", "--if-exists"},
			"Node login1 removed", "Node login1 unchanged: absent.\n"},
	}
	for _, st := range steps {
		r := reg.admin(t, 0, "", st.args...)
		contains(t, r, st.first)
		r = reg.admin(t, 0, "", st.args...)
		if !strings.HasPrefix(r.stdout, st.then) {
			t.Errorf("%s again: %s\nwant it to begin %q", st.name, r, st.then)
		}
		changed(t, reg.admin(t, 0, "", append(st.args, "--json")...), false)
	}
	r := reg.admin(t, 0, "", "user", "add", "bob", "--json")
	if m := changed(t, r, true); m["name"] != "bob" {
		t.Errorf("user add --json = %v, want bob", m)
	}

	r = reg.admin(t, 0, laptopSecret+"\n", "token", "add", "alice", "--name", "laptop", "--secret-file", "-")
	id := regexp.MustCompile(`Token ([0-9a-f]{8}) `).FindStringSubmatch(r.stdout)
	if id == nil {
		t.Fatalf("no token id in\n%s", r)
	}
	for _, verb := range []string{"disable", "enable"} {
		past := verb + "d"
		r = reg.admin(t, 0, "", "token", verb, "alice", id[1])
		contains(t, r, fmt.Sprintf("Token %s (\"laptop\") of alice %s.\n", id[1], past))
		r = reg.admin(t, 0, "", "token", verb, "alice", id[1])
		contains(t, r, fmt.Sprintf("Token %s (\"laptop\") of alice unchanged: already %s.\n", id[1], past))
		if m := changed(t, reg.admin(t, 0, "", "token", verb, "alice", id[1], "--json"), false); m["id"] != id[1] {
			t.Errorf("token %s --json = %v, want id %s", verb, m, id[1])
		}
	}
	r = reg.admin(t, 0, "", "token", "remove", "alice", id[1], "--json")
	changed(t, r, true)
	r = reg.admin(t, 1, "", "token", "remove", "alice", id[1])
	contains(t, r, "no such token")
	r = reg.admin(t, 0, "", "token", "remove", "alice", id[1], "--if-exists")
	contains(t, r, fmt.Sprintf("Token %s of alice unchanged: absent.\n", id[1]))
	changed(t, reg.admin(t, 0, "", "token", "remove", "alice", id[1], "--if-exists", "--json"), false)

	// A user who exists otherwise is refused, with what differs.
	r = reg.admin(t, 1, "", "user", "add", "alice", "--scope", "c3")
	contains(t, r, `totp-admin: user "alice" exists with other attributes (mail alice@example.org, not none; scopes c1,c2, not c3); change them with user set`)
	r = reg.admin(t, 0, "", "user", "remove", "alice", "--if-exists")
	contains(t, r, "User alice removed")
	r = reg.admin(t, 0, "", "user", "remove", "alice", "--if-exists")
	contains(t, r, "User alice unchanged: absent.\n")
	r = reg.admin(t, 1, "", "user", "remove", "alice")
	contains(t, r, `totp-admin: no user "alice"`)

	// Nothing the second runs did is in the audit log: only the changes are.
	r = reg.admin(t, 0, "", "audit", "--json", "--limit", "1000")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, rec := range recs {
		actions = append(actions, rec["action"].(string))
	}
	want := "user.create user.update node.create node.delete user.create token.create token.update token.update token.delete user.delete"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions = %s\nwant %s", got, want)
	}
}
