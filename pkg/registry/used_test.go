package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// postUsed sends POST /v1/sync/used as a node and returns the status and the answer.
func (e *env) postUsed(cred, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.ts.URL+"/v1/sync/used", strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func usedJSON(keys ...string) string {
	type entry struct {
		Key string `json:"key"`
		At  string `json:"at"`
	}
	q := struct {
		Used []entry `json:"used"`
	}{Used: []entry{}}
	for _, k := range keys {
		q.Used = append(q.Used, entry{k, "2024-05-01T12:00:00Z"})
	}
	b, _ := json.Marshal(q)
	return string(b)
}

// backupKeys returns a user's backup code keys and passcode keys in a snapshot.
func backupKeys(t *testing.T, recs map[string][]byte, user string) (codes, passcodes []string) {
	t.Helper()
	for k, v := range recs {
		kind, u, _, _ := syncframe.ParseKey(k)
		if kind != syncframe.KindBackup || u != user {
			continue
		}
		var c token.BackupCode
		if err := json.Unmarshal(v, &c); err != nil {
			t.Fatal(err)
		}
		if c.Expires.IsZero() {
			codes = append(codes, k)
		} else {
			passcodes = append(passcodes, k)
		}
	}
	sort.Strings(codes)
	return codes, passcodes
}

// TestUsedDeletes: a node's used report deletes the codes in one revision with an audit record
// each, the deletes reach a watching node of the same scope, a repeat changes nothing, and a
// report with a key of another scope or of another kind is refused whole.
func TestUsedDeletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.addUser("ann", "alpha")
	e.addUser("bob", "beta")
	e.addToken("ann")
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/backup-codes", nil, nil)
	e.mustAdmin(200, "POST", "/v1/admin/users/ann/passcode", map[string]any{"ttl": "1h"}, nil)
	e.mustAdmin(200, "POST", "/v1/admin/users/bob/backup-codes", nil, nil)
	n1 := e.addNode("n1", "alpha")
	n3 := e.addNode("n3", "beta")
	watcher := e.follow(e.addNode("n2", "alpha"))
	_, recs, _ := e.snapshot(n1)
	codes, passcodes := backupKeys(t, recs, "ann")
	_, bobRecs, _ := e.snapshot(n3)
	bobCodes, _ := backupKeys(t, bobRecs, "bob")
	if len(codes) < 3 || len(passcodes) != 1 || len(bobCodes) == 0 {
		t.Fatalf("ann has %d codes and %d passcodes, bob %d codes; want several, 1, several", len(codes), len(passcodes), len(bobCodes))
	}
	var before []AuditRecord
	e.mustAdmin(200, "GET", "/v1/admin/audit?limit=10000", nil, &before)

	rev := e.store.Rev()
	status, out := e.postUsed(n1, usedJSON(codes[0], passcodes[0], "b/ann/unknown", codes[0]))
	if status != 200 || out["deleted"] != 2.0 {
		t.Fatalf("POST used = %d %v, want 200 with 2 deleted", status, out)
	}
	if got := e.store.Rev(); got != rev+1 {
		t.Errorf("revision after a used report = %d, want %d (one revision)", got, rev+1)
	}
	b := watcher.nextBatch()
	var gone []string
	for _, f := range b.Frames {
		if f.Type != syncframe.Delete {
			t.Errorf("watch frame %s %s, want deletes only", f.Type, f.Key)
		}
		gone = append(gone, f.Key)
	}
	sort.Strings(gone)
	want := []string{codes[0], passcodes[0]}
	sort.Strings(want)
	if b.Rev != rev+1 || fmt.Sprint(gone) != fmt.Sprint(want) {
		t.Errorf("watching node got revision %d deleting %v, want %d deleting %v", b.Rev, gone, rev+1, want)
	}

	var after []AuditRecord
	e.mustAdmin(200, "GET", fmt.Sprintf("/v1/admin/audit?after=%d", len(before)), nil, &after)
	actions := map[string]int{}
	for _, r := range after {
		if r.Actor != "node:n1" || r.Target != "user/ann" {
			t.Errorf("audit record %+v, want actor node:n1 and target user/ann", r)
		}
		actions[r.Action]++
	}
	if len(after) != 2 || actions["backup_code_used"] != 1 || actions["passcode_used"] != 1 {
		t.Errorf("audit records after the report = %+v, want one backup_code_used and one passcode_used", after)
	}
	var v registryapi.AuditCheck
	e.mustAdmin(200, "GET", "/v1/admin/audit/verify", nil, &v)
	if !v.OK {
		t.Errorf("audit chain after used reports: %+v", v)
	}

	tests := []struct {
		name string
		cred string
		body string
		want int
	}{
		{"repeat is a no-op", n1, usedJSON(codes[0], passcodes[0]), 200},
		{"other scope's key", n3, usedJSON(codes[1]), 400},
		{"one key of another scope refuses all", n1, usedJSON(codes[1], bobCodes[0]), 400},
		{"token key", n1, usedJSON("t/ann/x"), 400},
		{"malformed key", n1, usedJSON("b/ann"), 400},
		{"no entries", n1, usedJSON(), 400},
		{"no time", n1, `{"used":[{"key":"` + codes[1] + `"}]}`, 400},
		{"unknown field", n1, `{"used":[],"x":1}`, 400},
		{"not json", n1, "used=" + codes[1], 400},
		{"too many", n1, usedJSON(func() []string {
			k := make([]string, maxUsedEntries+1)
			for i := range k {
				k[i] = fmt.Sprintf("b/ann/x%d", i)
			}
			return k
		}()...), 400},
		{"too large", n1, `{"used":[{"key":"` + strings.Repeat("x", maxUsedBody) + `"}]}`, 413},
		{"no credential", "", usedJSON(codes[1]), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rev := e.store.Rev()
			if got, out := e.postUsed(tt.cred, tt.body); got != tt.want || (got == 200 && out["deleted"] != 0.0) {
				t.Errorf("POST used = %d %v, want %d (nothing deleted)", got, out, tt.want)
			}
			if got := e.store.Rev(); got != rev {
				t.Errorf("revision %d -> %d, want no change", rev, got)
			}
		})
	}
	_, recs, _ = e.snapshot(n1)
	if _, ok := recs[codes[1]]; !ok {
		t.Errorf("%s deleted by a refused report", codes[1])
	}
}

func FuzzUsedRequest(f *testing.F) {
	for _, s := range []string{usedJSON("b/ann/1", "b/ann/2"), usedJSON("t/ann/1"), `{"used":[{"key":"b/a/b"}]}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseUsed(b)
		if err != nil {
			return
		}
		if len(entries) == 0 || len(entries) > maxUsedEntries {
			t.Errorf("parseUsed(%q) accepted %d entries", b, len(entries))
		}
		for _, u := range entries {
			if kind, _, _, err := syncframe.ParseKey(u.Key); err != nil || kind != syncframe.KindBackup || u.At.IsZero() {
				t.Errorf("parseUsed(%q) accepted %+v", b, u)
			}
		}
	})
}
