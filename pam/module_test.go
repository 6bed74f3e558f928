//go:build linux

// Package pamtest drives real libpam transactions against build/pam_totp.so.
//
// Every test writes a PAM service into a private confdir (pam_start_confdir)
// whose auth line loads the module with helper= pointing at a fake helper
// (testdata/fakehelper). The fake helper's behaviour is chosen by the module
// argument fake=MODE, which reaches it as an arg= request entry, and it
// reports what it saw into the directory given by out=. The tests need root:
// the module refuses helpers and configs that are not root-owned, and some
// tests change ownership, groups and credentials.
package pamtest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/pkg/protocol"
)

const service = "pam-totp-test"

var (
	skipReason string // set when the tests cannot run here
	repoRoot   string
	modulePath string // build/pam_totp.so
	fakeHelper string // root-owned, in a root-owned 0700 directory
	fakeConfig string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "needs root: the module only runs root-owned helpers, and the tests chown, groupadd and setresuid"
	case !pam.CheckPamHasStartConfdir():
		skipReason = "libpam lacks pam_start_confdir (needs Linux-PAM >= 1.4)"
	}
	if skipReason != "" {
		return m.Run()
	}
	var err error
	if repoRoot, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	modulePath = filepath.Join(repoRoot, "build", "pam_totp.so")
	// make rebuilds the module when it is missing or older than pam_totp.c.
	if out, err := exec.Command("make", "-C", repoRoot, "build/pam_totp.so").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "make build/pam_totp.so: %v\n%s", err, out)
		return 1
	}
	dir, err := os.MkdirTemp("", "pam-totp-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	fakeHelper = filepath.Join(dir, "fakehelper")
	build := exec.Command("go", "build", "-o", fakeHelper, "./testdata/fakehelper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fake helper: %v\n%s", err, out)
		return 1
	}
	fakeConfig = filepath.Join(dir, "pam_totp.conf")
	if err := os.WriteFile(fakeConfig, []byte("# read by no one: the fake helper has no config\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// Report mirrors the fake helper's report.
type Report struct {
	Pid       int
	Args      []string
	Env       []string
	FDs       []string // "fd target"
	StdioNull bool
	FD3Socket bool
	Status    []string
	Cwd       string
	Limits    map[string][2]uint64
	Request   [][2]string
	Answers   [][]byte
	NoAnswers int
}

func (r *Report) status(key string) string {
	for _, l := range r.Status {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// stack is one PAM service in a private confdir.
type stack struct {
	t       *testing.T
	confdir string
	out     string // where the fake helper reports
}

// noSocket is where the test defaults look for a resident verifier: nowhere, so the helper
// decides (through the module's "no socket" path) even on a host where totp-syncd serves the
// default socket.
const noSocket = "socket=/nonexistent/pam-totp-test.sock"

// newStack loads the module for auth with the test defaults followed by
// args; a later helper=, config=, timeout= or socket= wins over the default.
func newStack(t *testing.T, args ...string) *stack {
	t.Helper()
	s := &stack{t: t, confdir: t.TempDir(), out: t.TempDir()}
	all := append([]string{"helper=" + fakeHelper, "config=" + fakeConfig, "timeout=2", "out=" + s.out, noSocket}, args...)
	s.write("auth required " + modulePath + " " + strings.Join(all, " "))
	return s
}

func (s *stack) write(lines ...string) {
	s.t.Helper()
	text := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(s.confdir, service), []byte(text), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) start(user string, c *conv) *pam.Transaction {
	s.t.Helper()
	tx, err := pam.StartConfDir(service, user, c, s.confdir)
	if err != nil {
		s.t.Fatalf("StartConfDir(%q) = %v", user, err)
	}
	s.t.Cleanup(func() { tx.End() })
	return tx
}

// auth runs one authentication as user with a conversation that answers
// every prompt with answer.
func (s *stack) auth(user, answer string) error {
	s.t.Helper()
	return s.start(user, &conv{answer: fixed(answer)}).Authenticate(0)
}

// report returns what the fake helper saw, or nil when it never ran.
func (s *stack) report() *Report {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.out, "report.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		s.t.Fatalf("decode report: %v", err)
	}
	return &r
}

func (s *stack) mustReport() *Report {
	s.t.Helper()
	r := s.report()
	if r == nil {
		s.t.Fatal("the helper did not run (no report)")
	}
	return r
}

type message struct {
	Style pam.Style
	Text  string
}

// conv records every message and answers prompts through answer.
type conv struct {
	answer func(pam.Style, string) (string, error)
	msgs   []message
}

func (c *conv) RespondPAM(s pam.Style, msg string) (string, error) {
	c.msgs = append(c.msgs, message{s, msg})
	if s != pam.PromptEchoOff && s != pam.PromptEchoOn {
		return "", nil
	}
	if c.answer == nil {
		return "", errors.New("no answer")
	}
	return c.answer(s, msg)
}

func fixed(answer string) func(pam.Style, string) (string, error) {
	return func(pam.Style, string) (string, error) { return answer, nil }
}

func TestVerdicts(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		verdict string
		want    error
	}{
		{"success", nil},
		{"auth_err", pam.ErrAuth},
		{"user_unknown", pam.ErrUserUnknown},
		{"maxtries", pam.ErrMaxtries},
		{"authinfo_unavail", pam.ErrAuthinfoUnavail},
		{"system_err", pam.ErrSystem},
		{"SUCCESS", pam.ErrAuth},
		{"bogus", pam.ErrAuth},
		{"", pam.ErrAuth},
	}
	for _, tt := range tests {
		t.Run("verdict="+tt.verdict, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake=verdict", "verdict="+tt.verdict)
			if err := s.auth("root", ""); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(verdict %q) = %v, want %v", tt.verdict, err, tt.want)
			}
		})
	}
}

func TestPrompt(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		mode   string
		answer string
		style  pam.Style
		want   error
	}{
		{"prompt", "123456", pam.PromptEchoOff, nil},
		{"prompt", "000000", pam.PromptEchoOff, pam.ErrAuth},
		{"echo", "123456", pam.PromptEchoOn, nil},
		{"echo", "12345", pam.PromptEchoOn, pam.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.answer, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake="+tt.mode)
			c := &conv{answer: fixed(tt.answer)}
			if err := s.start("root", c).Authenticate(0); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(%q) = %v, want %v", tt.answer, err, tt.want)
			}
			want := []message{{tt.style, "Verification code: "}}
			if !slices.Equal(c.msgs, want) {
				t.Errorf("conversation = %v, want %v", c.msgs, want)
			}
			if got := s.mustReport().Answers; len(got) != 1 || string(got[0]) != tt.answer {
				t.Errorf("helper got answers %q, want [%q]", got, tt.answer)
			}
		})
	}
}

func TestTwoPrompts(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newStack(t, "fake=prompts")
	n := 0
	c := &conv{answer: func(pam.Style, string) (string, error) { n++; return "answer" + strconv.Itoa(n), nil }}
	if err := s.start("root", c).Authenticate(0); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	got := s.mustReport().Answers
	if len(got) != 2 || string(got[0]) != "answer1" || string(got[1]) != "answer2" {
		t.Errorf("helper got answers %q, want [answer1 answer2]", got)
	}
}

func TestUserFromConversation(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newStack(t, "fake=verdict")
	c := &conv{answer: fixed("root")}
	if err := s.start("", c).Authenticate(0); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	if len(c.msgs) != 1 || c.msgs[0].Style != pam.PromptEchoOn {
		t.Errorf("conversation = %v, want one echo-on prompt for the user name", c.msgs)
	}
	if got := request(s.mustReport(), "user"); !slices.Equal(got, []string{"root"}) {
		t.Errorf("request user = %q, want [root]", got)
	}
}

func TestMessages(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		name  string
		flags pam.Flags
		want  []message
	}{
		{"shown", 0, []message{{pam.TextInfo, "info from helper"}, {pam.ErrorMsg, "error from helper"}}},
		{"silent", pam.Silent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake=messages")
			c := &conv{}
			if err := s.start("root", c).Authenticate(tt.flags); err != nil {
				t.Fatalf("Authenticate(%v) = %v, want success", tt.flags, err)
			}
			if !slices.Equal(c.msgs, tt.want) {
				t.Errorf("conversation = %v, want %v", c.msgs, tt.want)
			}
		})
	}
}

// TestAuthtok reads PAM_AUTHTOK through pam_exec's expose_authtok: libpam
// does not hand it to the application.
func TestAuthtok(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newStack(t, "fake=authtok")
	script, got := filepath.Join(s.out, "authtok.sh"), filepath.Join(s.out, "authtok")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > "+got+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.confdir, service))
	if err != nil {
		t.Fatal(err)
	}
	s.write(strings.TrimSpace(string(b)), "auth required pam_exec.so expose_authtok "+script)
	if err := s.start("root", &conv{}).Authenticate(0); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	// Some versions of pam_exec write the token with its NUL.
	if b, err := os.ReadFile(got); err != nil || strings.TrimSuffix(string(b), "\x00") != "hunter2" {
		t.Errorf("PAM_AUTHTOK seen by the next module = %q, %v; want %q", b, err, "hunter2")
	}
}

func TestAnswers(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	long := strings.Repeat("7", 1<<20)
	tests := []struct {
		name   string
		answer string
		want   string // what the helper receives: at most 1025 bytes, up to a NUL
	}{
		{"empty", "", ""},
		{"digits", "1234567", "1234567"},
		{"non-ASCII", "cödé 🙂 パス\xff\xfe", "cödé 🙂 パス\xff\xfe"},
		{"NUL", "12\x0034", "12"},
		{"1024", long[:1024], long[:1024]},
		{"1025", long[:1025], long[:1025]},
		{"1026", long[:1026], long[:1025]},
		{"1MiB", long, long[:1025]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake=prompt")
			if err := s.auth("root", tt.answer); !errors.Is(err, pam.ErrAuth) {
				t.Errorf("Authenticate(%.20q) = %v, want %v", tt.answer, err, pam.ErrAuth)
			}
			if got := s.mustReport().Answers; len(got) != 1 || string(got[0]) != tt.want {
				t.Errorf("helper got %d answers, first of %d bytes; want one of %d bytes", len(got), len(first(got)), len(tt.want))
			}
		})
	}

	t.Run("conversation error", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, "fake=prompt")
		c := &conv{answer: func(pam.Style, string) (string, error) { return "", errors.New("client went away") }}
		if err := s.start("root", c).Authenticate(0); !errors.Is(err, pam.ErrAuth) {
			t.Errorf("Authenticate() = %v, want %v", err, pam.ErrAuth)
		}
		if r := s.mustReport(); r.NoAnswers != 1 || len(r.Answers) != 0 {
			t.Errorf("helper got %d N frames and %d answers, want 1 and 0", r.NoAnswers, len(r.Answers))
		}
	})
}

func first(b [][]byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[0]
}

// request returns every value of key in the request, in order.
func request(r *Report, key string) []string {
	var v []string
	for _, kv := range r.Request {
		if kv[0] == key {
			v = append(v, kv[1])
		}
	}
	return v
}

// testUser creates a user with a supplementary group that exists only for
// this test, and removes both afterwards.
func testUser(t *testing.T) (*user.User, string) {
	t.Helper()
	u, groups := testUserGroups(t, "", 1)
	return u, groups[0]
}

// testUserGroups creates a user (name ptusr<tag><pid>) in n supplementary groups that exist
// only for this test, and removes them all afterwards.
func testUserGroups(t *testing.T, tag string, n int) (*user.User, []string) {
	t.Helper()
	suffix := tag + strconv.Itoa(os.Getpid()%100000)
	name := "ptusr" + suffix
	var groups []string
	for i := range n {
		g := "ptgrp" + suffix
		if i > 0 {
			g += "-" + strconv.Itoa(i)
		}
		groups = append(groups, g)
	}
	run := func(args ...string) {
		t.Helper()
		var out []byte
		var err error
		for range 20 { // shadow's tools fail while another one holds the lock
			if out, err = exec.Command(args[0], args[1:]...).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, tool := range []string{"groupadd", "useradd", "userdel", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	exec.Command("userdel", name).Run() // left over from a killed run
	for _, group := range groups {
		exec.Command("groupdel", group).Run()
		run("groupadd", group)
		t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	}
	run("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-G", strings.Join(groups, ","), name)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u, groups
}

// TestRequestManyGroups: a user in more groups than the module's first getgrouplist call takes
// (FEW_GROUPS, 256) still has every one of them in the request.
func TestRequestManyGroups(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	u, groups := testUserGroups(t, "m", 260)
	s := newStack(t, "fake=verdict")
	if err := s.start(u.Username, &conv{}).Authenticate(0); err != nil {
		t.Fatalf("Authenticate(%s) = %v, want success", u.Username, err)
	}
	got := request(s.mustReport(), "group")
	for _, g := range groups {
		if !slices.Contains(got, g) {
			t.Errorf("request of a user in %d groups lacks group %s (has %d)", len(groups), g, len(got))
		}
	}
	if len(got) != len(groups)+1 { // and the primary group
		t.Errorf("request has %d groups %q, want %d", len(got), got, len(groups)+1)
	}
}

func TestRequest(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	u, group := testUser(t)
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, gid := range gids {
		g, err := user.LookupGroupId(gid)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g.Name)
	}
	if !slices.Contains(groups, group) {
		t.Fatalf("os/user groups of %s = %v, want %s among them", u.Username, groups, group)
	}
	sessionID := ""
	if b, err := os.ReadFile("/proc/self/sessionid"); err == nil {
		sessionID = strings.TrimSpace(string(b))
	}
	sid, _, _ := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	const authInfo = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0\nkeyboard-interactive\n"

	tests := []struct {
		name       string
		user       string
		wantUser   []string // user, user_known, uid
		wantGroups []string // compared as a set
	}{
		{"known", u.Username, []string{u.Username, "1", u.Uid}, groups},
		{"unknown", "no-such-user-pamtotp", []string{"no-such-user-pamtotp", "0", ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake=verdict", "policy=hpc", "debug", "site=x=y")
			tx := s.start(tt.user, &conv{})
			for item, v := range map[pam.Item]string{pam.Rhost: "192.0.2.7", pam.Tty: "ssh", pam.Ruser: "alice"} {
				if err := tx.SetItem(item, v); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.PutEnv("SSH_AUTH_INFO_0=" + authInfo); err != nil {
				t.Fatal(err)
			}
			if err := tx.Authenticate(0); err != nil {
				t.Fatalf("Authenticate(%s) = %v, want success", tt.user, err)
			}
			r := s.mustReport()
			var gotGroups []string
			want := [][2]string{
				{"version", "1"},
				{"user", tt.wantUser[0]},
				{"user_known", tt.wantUser[1]},
				{"uid", tt.wantUser[2]},
				{"service", service},
				{"rhost", "192.0.2.7"},
				{"tty", "ssh"},
				{"ruser", "alice"},
				{"ssh_auth_info", authInfo},
				{"audit_session", sessionID},
				{"sid", strconv.Itoa(int(sid))},
				{"config", fakeConfig},
				{"policy", "hpc"},
				{"debug", "1"},
			}
			for _, a := range []string{"helper=" + fakeHelper, "config=" + fakeConfig, "timeout=2", "out=" + s.out,
				noSocket, "fake=verdict", "policy=hpc", "debug", "site=x=y"} {
				want = append(want, [2]string{"arg", a})
			}
			var got [][2]string
			for _, e := range r.Request {
				if e[0] == "group" { // one entry per group, compared as a set below
					gotGroups = append(gotGroups, e[1])
					continue
				}
				got = append(got, e)
			}
			if !slices.Equal(got, want) {
				t.Errorf("request =\n%q\nwant\n%q", got, want)
			}
			slices.Sort(gotGroups)
			wantGroups := slices.Sorted(slices.Values(tt.wantGroups))
			if !slices.Equal(slices.Compact(gotGroups), slices.Compact(wantGroups)) {
				t.Errorf("request groups = %q, want %q", gotGroups, wantGroups)
			}
		})
	}
}

// TestGroupNameWithComma: a group whose name holds a comma reaches the helper as one group.
// Before, the module joined names with "," and a member of "proj,pamtotp-exempt" looked like a
// member of "pamtotp-exempt". groupadd refuses such a name; NSS (and LDAP) serve it, so the test
// renames its group in /etc/group, under the lock the shadow tools take. Not parallel: it edits
// /etc/group while no other test of this package runs.
func TestGroupNameWithComma(t *testing.T) {
	requireRoot(t)
	u, group := testUser(t)
	renamed := group + ",pamtotp-exempt"
	renameGroup(t, group, renamed)
	t.Cleanup(func() { renameGroup(t, renamed, group) })

	s := newStack(t, "fake=verdict")
	tx := s.start(u.Username, &conv{})
	if err := tx.Authenticate(0); err != nil {
		t.Fatalf("Authenticate(%s) = %v, want success", u.Username, err)
	}
	var groups []string
	for _, e := range s.mustReport().Request {
		if e[0] == "group" {
			groups = append(groups, e[1])
		}
	}
	if !slices.Contains(groups, renamed) || slices.Contains(groups, "pamtotp-exempt") {
		t.Errorf("request groups = %q, want %q as one group and no %q", groups, renamed, "pamtotp-exempt")
	}
}

// renameGroup renames a group in /etc/group, holding lckpwdf's lock (/etc/.pwd.lock).
func renameGroup(t *testing.T, from, to string) {
	t.Helper()
	lock, err := os.OpenFile("/etc/.pwd.lock", os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	fl := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(lock.Fd(), syscall.F_SETLKW, &fl); err != nil {
		t.Fatalf("lock /etc/.pwd.lock: %v", err)
	}
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, from+":") {
			lines[i], found = to+l[len(from):], true
		}
	}
	if !found {
		t.Fatalf("no group %q in /etc/group", from)
	}
	tmp := "/etc/group.pamtotp-test"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, "/etc/group"); err != nil {
		t.Fatal(err)
	}
}

// TestChildLimits: the helper starts in / with limits of its own, whatever the caller had (under
// sudo, the user's working directory and ulimits). Not parallel: it lowers this process's soft
// limits for the length of one transaction (the hard ones stay: raising them back needs
// CAP_SYS_RESOURCE, which a container's root may lack; the module raises soft limits to them).
func TestChildLimits(t *testing.T) {
	requireRoot(t)
	hard := map[string]uint64{}
	lower := func(name string, r int, cur uint64) func() {
		var old syscall.Rlimit
		if err := syscall.Getrlimit(r, &old); err != nil {
			t.Fatal(err)
		}
		hard[name] = old.Max
		if err := syscall.Setrlimit(r, &syscall.Rlimit{Cur: min(cur, old.Max), Max: old.Max}); err != nil {
			t.Fatalf("setrlimit %s: %v", name, err)
		}
		return func() {
			if err := syscall.Setrlimit(r, &old); err != nil {
				t.Errorf("restore rlimit %s: %v", name, err)
			}
		}
	}
	s := newStack(t, "fake=verdict")
	tx := s.start("root", &conv{})
	restore := []func(){
		lower("core", syscall.RLIMIT_CORE, ^uint64(0)),
		lower("nofile", syscall.RLIMIT_NOFILE, 64),
		lower("fsize", syscall.RLIMIT_FSIZE, 1<<20),
		lower("as", syscall.RLIMIT_AS, 1<<40),
	}
	err := tx.Authenticate(0)
	for _, f := range restore {
		f()
	}
	if err != nil {
		t.Fatalf("Authenticate = %v, want success", err)
	}
	r := s.mustReport()
	if r.Cwd != "/" {
		t.Errorf("helper cwd = %q, want /", r.Cwd)
	}
	tests := []struct {
		name string
		ok   func(soft uint64) bool
		want string
	}{
		{"core", func(soft uint64) bool { return soft == 0 }, "0"},
		{"nofile", func(soft uint64) bool { return soft >= min(1024, hard["nofile"]) }, ">= 1024 (or the hard limit)"},
		{"fsize", func(soft uint64) bool { return soft == hard["fsize"] }, "the hard limit"},
		{"as", func(soft uint64) bool { return soft == hard["as"] }, "the hard limit"},
	}
	for _, tt := range tests {
		if l, found := r.Limits[tt.name]; !found || !tt.ok(l[0]) {
			t.Errorf("helper rlimit %s = %v (found %v), want soft %s", tt.name, l, found, tt.want)
		}
	}
}

// TestHelperEnvironment runs alone: it puts things into the process (an
// environment variable, an inheritable descriptor, an ignored and a blocked
// signal) that must not reach the helper.
func TestHelperEnvironment(t *testing.T) {
	requireRoot(t)
	t.Setenv("PAM_TOTP_LEAK", "1")
	leak, err := syscall.Dup(2) // dup'd descriptors lack close-on-exec
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(leak)

	// The fork happens on this thread, so its mask is the one the child inherits.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	restore := setSignal(t, syscall.SIGHUP, sigIgn)
	defer restore()
	usr2 := uint64(1) << (syscall.SIGUSR2 - 1)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&usr2)), 0, 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	defer syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 1 /* SIG_UNBLOCK */, uintptr(unsafe.Pointer(&usr2)), 0, 8, 0, 0)

	s := newStack(t, "fake=verdict")
	if err := s.auth("root", ""); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	r := s.mustReport()
	resolved, err := filepath.EvalSymlinks(fakeHelper)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"argv", r.Args, []string{resolved, "--pam"}},
		{"environment", r.Env, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
		{"open descriptors", fds(r.FDs), []int{0, 1, 2, 3}},
		{"fds 0-2 are /dev/null", r.StdioNull, true},
		{"fd 3 is a socket", r.FD3Socket, true},
		{"uids", r.status("Uid"), "0 0 0 0"},
		{"gids", r.status("Gid"), "0 0 0 0"},
		{"ignored signals", appSignals(t, r.status("SigIgn")), "0000000000000000"},
		{"blocked signals", r.status("SigBlk"), "0000000000000000"},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("helper %s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

// appSignals drops signals 32 and 33 from a /proc signal mask: glibc reserves them for itself and
// its sigaction refuses to touch them, so a host (or a CI runner above it) that ignores them
// passes that on through any exec; no portable module can reset them.
func appSignals(t *testing.T, hex string) string {
	t.Helper()
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("signal mask %q: %v", hex, err)
	}
	return fmt.Sprintf("%016x", v&^(uint64(3)<<31))
}

// fds returns the numbers of the helper's descriptors, leaving out the cgroup
// files the Go runtime (1.25+) opens at start to size GOMAXPROCS.
func fds(list []string) []int {
	var n []int
	for _, f := range list {
		num, target, _ := strings.Cut(f, " ")
		if !strings.HasPrefix(target, "/sys/fs/cgroup/") {
			i, _ := strconv.Atoi(num)
			n = append(n, i)
		}
	}
	return n
}

// TestSudoCredentials runs alone: it gives the whole process sudo's
// credentials (real ids of a user, effective root, supplementary groups of
// the user); the helper must still run with all ids 0 and no groups.
func TestSudoCredentials(t *testing.T) {
	requireRoot(t)
	groups, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups([]int{65534, 100}); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setgroups(groups)
	if err := syscall.Setresgid(65534, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setresgid(0, 0, 0)
	if err := syscall.Setresuid(65534, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setresuid(0, 0, 0)

	s := newStack(t, "fake=verdict")
	if err := s.auth("root", ""); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	r := s.mustReport()
	for key, want := range map[string]string{"Uid": "0 0 0 0", "Gid": "0 0 0 0", "Groups": ""} {
		if got := r.status(key); got != want {
			t.Errorf("helper %s = %q, want %q", key, got, want)
		}
	}
}

func TestUnsafePaths(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	// Each case gets a copy of the helper in DIR/bin and a config in DIR/etc.
	chown := func(p string) error { return os.Chown(p, 65534, 65534) }
	tests := []struct {
		name    string
		prepare func(helper, config string) error
		helper  string // overrides DIR/bin/helper when set (relative to DIR)
		want    error
	}{
		{"fine", nil, "", nil},
		{"helper missing", nil, "bin/nope", pam.ErrSystem},
		{"helper a directory", nil, "bin", pam.ErrSystem},
		{"helper not root-owned", func(h, c string) error { return chown(h) }, "", pam.ErrSystem},
		{"helper group-writable", func(h, c string) error { return os.Chmod(h, 0o775) }, "", pam.ErrSystem},
		{"helper world-writable", func(h, c string) error { return os.Chmod(h, 0o757) }, "", pam.ErrSystem},
		{"helper not executable", func(h, c string) error { return os.Chmod(h, 0o644) }, "", pam.ErrSystem},
		{"helper dir world-writable", func(h, c string) error { return os.Chmod(filepath.Dir(h), 0o777) }, "", pam.ErrSystem},
		{"helper dir group-writable", func(h, c string) error { return os.Chmod(filepath.Dir(h), 0o775) }, "", pam.ErrSystem},
		{"helper dir not root-owned", func(h, c string) error { return chown(filepath.Dir(h)) }, "", pam.ErrSystem},
		{"helper dir sticky world-writable", func(h, c string) error { return os.Chmod(filepath.Dir(h), os.ModeSticky|0o777) }, "", nil},
		{"helper via symlink", func(h, c string) error { return os.Symlink(h, filepath.Join(filepath.Dir(h), "link")) }, "bin/link", nil},
		{"helper via symlink into unsafe dir", func(h, c string) error {
			// A root-owned helper in a world-writable directory, linked from a safe one.
			unsafe := filepath.Join(filepath.Dir(filepath.Dir(h)), "unsafe")
			copyFile(t, fakeHelper, filepath.Join(unsafe, "real"), 0o755)
			if err := os.Chmod(unsafe, 0o777); err != nil {
				return err
			}
			return os.Symlink(filepath.Join(unsafe, "real"), h+"2")
		}, "bin/helper2", pam.ErrSystem},
		{"config missing", func(h, c string) error { return os.Remove(c) }, "", pam.ErrSystem},
		{"config not root-owned", func(h, c string) error { return chown(c) }, "", pam.ErrSystem},
		{"config group-writable", func(h, c string) error { return os.Chmod(c, 0o664) }, "", pam.ErrSystem},
		{"config world-writable", func(h, c string) error { return os.Chmod(c, 0o646) }, "", pam.ErrSystem},
		{"config dir world-writable", func(h, c string) error { return os.Chmod(filepath.Dir(c), 0o777) }, "", pam.ErrSystem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			helper, config := filepath.Join(dir, "bin", "helper"), filepath.Join(dir, "etc", "pam_totp.conf")
			copyFile(t, fakeHelper, helper, 0o755)
			copyFile(t, fakeConfig, config, 0o644)
			if tt.prepare != nil {
				if err := tt.prepare(helper, config); err != nil {
					t.Fatal(err)
				}
			}
			if tt.helper != "" {
				helper = filepath.Join(dir, tt.helper)
			}
			s := newStack(t, "fake=verdict", "helper="+helper, "config="+config)
			if err := s.auth("root", ""); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if ran := s.report() != nil; ran != (tt.want == nil) {
				t.Errorf("helper ran = %v, want %v", ran, tt.want == nil)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestArguments(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		arg  string
		want error
	}{
		{"timeout=1", nil},
		{"timeout=120", nil},
		{"timeout=0", pam.ErrService},
		{"timeout=121", pam.ErrService},
		{"timeout=-1", pam.ErrService},
		{"timeout=10s", pam.ErrService},
		{"timeout=", pam.ErrService},
		{"timeout=99999999999999999999", pam.ErrService},
		{"connect_ms=1", nil},
		{"connect_ms=5000", nil},
		{"connect_ms=0", pam.ErrService},
		{"connect_ms=5001", pam.ErrService},
		{"connect_ms=99999", pam.ErrService},
		{"connect_ms=-1", pam.ErrService},
		{"connect_ms=x", pam.ErrService},
		{"connect_ms=", pam.ErrService},
		{"socket=none", nil},
		{"socket=/nonexistent/" + strings.Repeat("s", 94), nil}, // 107 bytes: fits in sun_path
		{"socket=/nonexistent/" + strings.Repeat("s", 95), pam.ErrService},
		{"socket=run/verify.sock", pam.ErrService},
		{"socket=", pam.ErrService},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake=verdict", tt.arg)
			if err := s.auth("root", ""); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.arg, err, tt.want)
			}
		})
	}
}

// TestProtocol covers helpers that crash or break the protocol: all deny,
// except the limits themselves.
func TestProtocol(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		mode string
		want error
	}{
		{"exit1", pam.ErrSystem},
		{"segv", pam.ErrSystem},
		{"no-read", pam.ErrSystem},
		{"exit1-after-done", pam.ErrSystem},
		{"segv-after-done", pam.ErrSystem},
		{"data-after-done", pam.ErrSystem},
		{"oversized", pam.ErrSystem},
		{"unknown-frame", pam.ErrSystem},
		{"truncated-header", pam.ErrSystem},
		{"truncated-payload", pam.ErrSystem},
		{"nul-text", pam.ErrSystem},
		{"frames count=65", pam.ErrSystem},
		{"frames count=64", nil},
		{"frames count=1", nil},
		{"max-payload", nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, append([]string{"fake=" + strings.Fields(tt.mode)[0]}, strings.Fields(tt.mode)[1:]...)...)
			if err := s.auth("root", ""); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.mode, err, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	for _, mode := range []string{"hang", "hang-after-done", "close-after-done"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, "fake="+mode, "timeout=1")
			start := time.Now()
			err := s.auth("root", "")
			took := time.Since(start)
			if !errors.Is(err, pam.ErrSystem) {
				t.Errorf("Authenticate(%s) = %v, want %v", mode, err, pam.ErrSystem)
			}
			if took < 900*time.Millisecond || took > 3*time.Second {
				t.Errorf("Authenticate(%s) took %v, want about 1s (timeout=1)", mode, took)
			}
			// Reaped, not just killed: a zombie still has its /proc entry.
			pid := s.mustReport().Pid
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("helper pid %d still exists after Authenticate (%v)", pid, err)
			}
		})
	}
}

func TestConversationPausesClock(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	s := newStack(t, "fake=prompts", "timeout=1")
	slow := func(pam.Style, string) (string, error) { time.Sleep(700 * time.Millisecond); return "x", nil }
	if err := s.start("root", &conv{answer: slow}).Authenticate(0); err != nil {
		t.Errorf("Authenticate() with 1.4s of typing and timeout=1 = %v, want success", err)
	}
}

// TestNoZombies runs alone, so any child of this process is a leak.
func TestNoZombies(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"exit1", "segv", "hang", "oversized", "verdict", "segv-after-done"} {
		if err := newStack(t, "fake="+mode, "timeout=1").auth("root", ""); err == nil && mode != "verdict" {
			t.Errorf("Authenticate(%s) = nil, want an error", mode)
		}
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("children left after Authenticate: %v", kids)
	}
}

// children lists "pid state" of every child of this process.
func children(t *testing.T) []string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, filepath.Base(filepath.Dir(p))+" "+f[0])
		}
	}
	return kids
}

const sigIgn = 1 // SIG_IGN

// sigaction is the kernel's struct sigaction on amd64 and arm64.
type sigaction struct {
	Handler, Flags, Restorer uintptr
	Mask                     uint64
}

func getSignal(t *testing.T, sig syscall.Signal) sigaction {
	t.Helper()
	var sa sigaction
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&sa)), 8, 0, 0); e != 0 {
		t.Fatalf("rt_sigaction(%v): %v", sig, e)
	}
	return sa
}

// setSignal sets the disposition of sig behind the Go runtime's back and
// returns a function that puts the old one back.
func setSignal(t *testing.T, sig syscall.Signal, handler uintptr) func() {
	t.Helper()
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skipf("struct sigaction layout not known for %s", runtime.GOARCH)
	}
	old := getSignal(t, sig)
	sa := sigaction{Handler: handler}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0); e != 0 {
		t.Fatalf("rt_sigaction(%v): %v", sig, e)
	}
	return func() {
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	}
}

// TestSIGCHLD runs alone: it changes the process's SIGCHLD disposition.
func TestSIGCHLD(t *testing.T) {
	requireRoot(t)
	before := getSignal(t, syscall.SIGCHLD)
	if err := newStack(t, "fake=verdict").auth("root", ""); err != nil {
		t.Fatalf("Authenticate() = %v, want success", err)
	}
	if after := getSignal(t, syscall.SIGCHLD); after != before {
		t.Errorf("SIGCHLD action after Authenticate = %+v, want %+v", after, before)
	}

	// A host that ignores SIGCHLD: the kernel would reap the helper before
	// the module reads its exit status, unless the module sets SIG_DFL.
	restore := setSignal(t, syscall.SIGCHLD, sigIgn)
	defer restore()
	tests := []struct {
		mode string
		want error
	}{
		{"verdict", nil},
		{"exit1-after-done", pam.ErrSystem},
	}
	for _, tt := range tests {
		if err := newStack(t, "fake="+tt.mode).auth("root", ""); !errors.Is(err, tt.want) {
			t.Errorf("Authenticate(%s) with SIGCHLD ignored = %v, want %v", tt.mode, err, tt.want)
		}
		if got := getSignal(t, syscall.SIGCHLD).Handler; got != sigIgn {
			t.Errorf("SIGCHLD handler after Authenticate = %#x, want SIG_IGN", got)
		}
	}
}

// TestOtherEntryPoints checks that only authentication starts the helper
// (helper= points nowhere, which would fail). The control values tell
// PAM_IGNORE from PAM_SUCCESS: with [ignore=ignore default=bad] followed by
// pam_permit only PAM_IGNORE passes; with [success=ok default=bad] only
// PAM_SUCCESS does.
func TestOtherEntryPoints(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	mod := modulePath + " helper=/nonexistent config=/nonexistent"
	const ignore, success = "[ignore=ignore default=bad] ", "[success=ok default=bad] "
	s := &stack{t: t, confdir: t.TempDir()}
	s.write(
		"auth "+success+mod,
		"account "+ignore+mod,
		"account required pam_permit.so",
		"session "+ignore+mod,
		"session required pam_permit.so",
		"password "+ignore+mod,
		"password required pam_permit.so",
	)
	tx := s.start("root", &conv{})
	calls := []struct {
		name string
		call func(pam.Flags) error
	}{
		{"SetCred", tx.SetCred},
		{"AcctMgmt", tx.AcctMgmt},
		{"OpenSession", tx.OpenSession},
		{"CloseSession", tx.CloseSession},
		{"ChangeAuthTok", tx.ChangeAuthTok},
	}
	for _, c := range calls {
		if err := c.call(0); err != nil {
			t.Errorf("%s() = %v, want success", c.name, err)
		}
	}
	if err := tx.Authenticate(0); !errors.Is(err, pam.ErrSystem) {
		t.Errorf("Authenticate() with a missing helper = %v, want %v", err, pam.ErrSystem)
	}
}

func TestELF(t *testing.T) {
	requireRoot(t) // TestMain built the module only then
	t.Parallel()
	f, err := elf.Open(modulePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_BIND(s.Info) != elf.STB_LOCAL {
			exported = append(exported, s.Name)
		}
	}
	slices.Sort(exported)
	want := []string{"pam_sm_acct_mgmt", "pam_sm_authenticate", "pam_sm_chauthtok",
		"pam_sm_close_session", "pam_sm_open_session", "pam_sm_setcred"}
	if !slices.Equal(exported, want) {
		t.Errorf("exported symbols = %v, want %v", exported, want)
	}

	flags, _ := f.DynValue(elf.DT_FLAGS)
	flags1, _ := f.DynValue(elf.DT_FLAGS_1)
	bindNow := slices.ContainsFunc(flags, func(v uint64) bool { return v&uint64(elf.DF_BIND_NOW) != 0 }) ||
		slices.ContainsFunc(flags1, func(v uint64) bool { return v&uint64(elf.DF_1_NOW) != 0 })
	if !bindNow {
		t.Errorf("DT_FLAGS = %v, DT_FLAGS_1 = %v: want BIND_NOW (-z now)", flags, flags1)
	}
	var relro, execStack bool
	for _, p := range f.Progs {
		relro = relro || p.Type == elf.PT_GNU_RELRO
		execStack = execStack || (p.Type == elf.PT_GNU_STACK && p.Flags&elf.PF_X != 0)
	}
	if !relro {
		t.Error("no PT_GNU_RELRO segment: want -z relro")
	}
	if execStack {
		t.Error("PT_GNU_STACK is executable: want -z noexecstack")
	}
}

// verifier is a fake resident verifier: a root-owned socket (0600) in a root-owned 0700
// directory, speaking the frames through pkg/protocol as totp-syncd will. serve runs once per
// connection; done is closed when the test ends, for modes that hang.
type verifier struct {
	t    *testing.T
	dir  string
	path string
	done chan struct{}

	mu       sync.Mutex
	conns    int
	requests []*protocol.Request
	answers  []string
}

// verifierModes: what the fake resident verifier does with one connection.
var verifierModes = map[string]func(v *verifier, c *protocol.Conn, nc net.Conn){
	"success":  func(v *verifier, c *protocol.Conn, _ net.Conn) { c.Done(protocol.Success) },
	"auth_err": func(v *verifier, c *protocol.Conn, _ net.Conn) { c.Done(protocol.AuthErr) },
	"prompt": func(v *verifier, c *protocol.Conn, _ net.Conn) {
		ans, err := c.Prompt("Socket code: ", false)
		v.record(ans, err)
		if err == nil && ans == "654321" {
			c.Done(protocol.Success)
		} else {
			c.Done(protocol.AuthErr)
		}
	},
	"messages": func(v *verifier, c *protocol.Conn, _ net.Conn) {
		c.Info("info from socket")
		c.Error("error from socket")
		c.Done(protocol.Success)
	},
	"hang":         func(v *verifier, c *protocol.Conn, _ net.Conn) { <-v.done },
	"close":        func(v *verifier, c *protocol.Conn, _ net.Conn) {},
	"prompt-close": func(v *verifier, c *protocol.Conn, _ net.Conn) { v.record(c.Prompt("Socket code: ", false)) },
	"prompt-hang":  func(v *verifier, c *protocol.Conn, _ net.Conn) { v.record(c.Prompt("Socket code: ", false)); <-v.done },
	"data-after-done": func(v *verifier, c *protocol.Conn, nc net.Conn) {
		c.Done(protocol.Success)
		b, _ := protocol.AppendFrame(nil, protocol.TypeInfo, []byte("more"))
		nc.Write(b)
	},
	"garbage": func(v *verifier, c *protocol.Conn, nc net.Conn) { nc.Write([]byte("garbage, not frames")) },
	"prompt-garbage": func(v *verifier, c *protocol.Conn, nc net.Conn) {
		v.record(c.Prompt("Socket code: ", false))
		nc.Write([]byte("garbage, not frames"))
	},
}

// newVerifier serves mode on DIR/v.sock, DIR a short root-owned 0700 directory (sun_path holds
// 107 bytes, and t.TempDir's names can be long).
func newVerifier(t *testing.T, mode string) *verifier {
	t.Helper()
	serve, ok := verifierModes[mode]
	if !ok {
		t.Fatalf("no verifier mode %q", mode)
	}
	dir, err := os.MkdirTemp("", "ptv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	v := &verifier{t: t, dir: dir, path: filepath.Join(dir, "v.sock"), done: make(chan struct{})}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: v.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(v.path, 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				v.mu.Lock()
				v.conns++
				v.mu.Unlock()
				c := protocol.NewConn(nc)
				req, err := c.ReadRequest()
				if err != nil {
					return
				}
				v.mu.Lock()
				v.requests = append(v.requests, req)
				v.mu.Unlock()
				serve(v, c, nc)
			}()
		}
	}()
	t.Cleanup(func() {
		close(v.done)
		ln.Close()
		wg.Wait()
	})
	return v
}

func (v *verifier) record(ans string, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		ans = "<" + err.Error() + ">"
	}
	v.answers = append(v.answers, ans)
}

// served says how many connections the verifier accepted and how many requests it read.
func (v *verifier) served() (conns, requests int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.conns, len(v.requests)
}

// TestSocket: a resident verifier on a good socket decides; the helper (which would answer
// otherwise) never runs.
func TestSocket(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		name   string
		mode   string
		helper string // the fake helper's verdict, were it run
		answer string
		want   error
		msgs   []message
	}{
		{"success", "success", "auth_err", "", nil, nil},
		{"auth_err", "auth_err", "success", "", pam.ErrAuth, nil},
		{"prompt right", "prompt", "auth_err", "654321", nil, []message{{pam.PromptEchoOff, "Socket code: "}}},
		{"prompt wrong", "prompt", "success", "123456", pam.ErrAuth, []message{{pam.PromptEchoOff, "Socket code: "}}},
		{"messages", "messages", "auth_err", "", nil,
			[]message{{pam.TextInfo, "info from socket"}, {pam.ErrorMsg, "error from socket"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.mode)
			s := newStack(t, "fake=verdict", "verdict="+tt.helper, "socket="+v.path, "debug")
			c := &conv{answer: fixed(tt.answer)}
			if err := s.start("root", c).Authenticate(0); !errors.Is(err, tt.want) {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if !slices.Equal(c.msgs, tt.msgs) {
				t.Errorf("conversation = %v, want %v", c.msgs, tt.msgs)
			}
			if s.report() != nil {
				t.Error("the helper ran, want the socket to decide")
			}
			v.mu.Lock()
			defer v.mu.Unlock()
			if len(v.requests) != 1 || v.requests[0].User != "root" || !v.requests[0].Debug {
				t.Errorf("verifier requests = %+v, want one for root with debug", v.requests)
			}
			if tt.answer != "" && !slices.Equal(v.answers, []string{tt.answer}) {
				t.Errorf("verifier answers = %q, want [%q]", v.answers, tt.answer)
			}
		})
	}
}

// TestSocketFallback: an absent, unsafe, refusing, silent or departing resident verifier leaves
// the decision to the helper, as long as nothing reached the user.
func TestSocketFallback(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		name    string
		mode    string                                 // of the verifier
		prepare func(t *testing.T, v *verifier) string // returns the socket= value; nil: the verifier's
		args    []string
		served  bool // the verifier reads the request before the helper runs
	}{
		{"absent", "success", func(t *testing.T, v *verifier) string { return filepath.Join(v.dir, "absent.sock") }, nil, false},
		{"absent dir", "success", func(t *testing.T, v *verifier) string { return "/nonexistent/v.sock" }, nil, false},
		{"socket=none", "success", nil, []string{"socket=none"}, false},
		{"not root-owned", "success", func(t *testing.T, v *verifier) string { return chownTo(t, v.path, v.path) }, nil, false},
		{"mode 0666", "success", func(t *testing.T, v *verifier) string { return chmodTo(t, v.path, 0o666, v.path) }, nil, false},
		{"mode 0620", "success", func(t *testing.T, v *verifier) string { return chmodTo(t, v.path, 0o620, v.path) }, nil, false},
		{"dir group-writable", "success", func(t *testing.T, v *verifier) string { return chmodTo(t, v.dir, 0o770, v.path) }, nil, false},
		{"dir world-writable", "success", func(t *testing.T, v *verifier) string { return chmodTo(t, v.dir, 0o707, v.path) }, nil, false},
		{"dir sticky world-writable", "success", func(t *testing.T, v *verifier) string {
			return chmodTo(t, v.dir, os.ModeSticky|0o777, v.path)
		}, nil, false},
		{"dir not root-owned", "success", func(t *testing.T, v *verifier) string { return chownTo(t, v.dir, v.path) }, nil, false},
		{"symlink", "success", func(t *testing.T, v *verifier) string {
			link := filepath.Join(v.dir, "link.sock")
			if err := os.Symlink(v.path, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, nil, false},
		{"dir a symlink", "success", func(t *testing.T, v *verifier) string {
			link := v.dir + "l"
			if err := os.Symlink(v.dir, link); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(link) })
			return filepath.Join(link, "v.sock")
		}, nil, false},
		{"regular file", "success", func(t *testing.T, v *verifier) string {
			f := filepath.Join(v.dir, "file.sock")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, nil, false},
		{"nobody listening", "success", func(t *testing.T, v *verifier) string {
			stale := filepath.Join(v.dir, "stale.sock")
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
			return chmodTo(t, stale, 0o600, stale)
		}, nil, false},
		{"listener not root", "success", listenAsNobody, nil, false},
		{"never answers", "hang", nil, []string{"connect_ms=100"}, true},
		{"closes after the request", "close", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.mode)
			path := v.path
			if tt.prepare != nil {
				path = tt.prepare(t, v)
			}
			args := append([]string{"fake=prompt", "socket=" + path, "debug"}, tt.args...)
			s := newStack(t, args...)
			c := &conv{answer: fixed("123456")}
			if err := s.start("root", c).Authenticate(0); err != nil {
				t.Errorf("Authenticate(%s) = %v, want success from the helper", tt.name, err)
			}
			if want := []message{{pam.PromptEchoOff, "Verification code: "}}; !slices.Equal(c.msgs, want) {
				t.Errorf("conversation = %v, want only the helper's %v", c.msgs, want)
			}
			if r := s.report(); r == nil || len(r.Answers) != 1 {
				t.Errorf("helper report = %+v, want the helper to have decided", r)
			}
			if _, requests := v.served(); (requests > 0) != tt.served {
				t.Errorf("verifier read %d requests, want served = %v", requests, tt.served)
			}
		})
	}
}

// listenAsNobody makes a socket that passes the module's file checks (root 0600 in a root 0700
// directory) although uid 65534 listens on it: the module must ask SO_PEERCRED and not use it.
func listenAsNobody(t *testing.T, v *verifier) string {
	t.Helper()
	dir := filepath.Join(v.dir, "nb")
	path := filepath.Join(dir, "v.sock")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	chmodTo(t, dir, 0o777, "")
	chmodTo(t, v.dir, 0o711, "")
	// It answers every request with a success verdict, which only the SO_PEERCRED check keeps
	// the module from taking.
	script := "import socket,sys\ns=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\nprint('ready', flush=True)\n" +
		"while True:\n c,_=s.accept(); c.recv(65536); c.sendall(b'D\\x00\\x00\\x00\\x07success'); c.close()"
	cmd := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-c", script, path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("setpriv python3 (util-linux, python3): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("listener as uid 65534: %q, %v", line, err)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	chmodTo(t, path, 0o600, "")
	return chmodTo(t, dir, 0o700, path)
}

func chownTo(t *testing.T, path, ret string) string {
	t.Helper()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return ret
}

func chmodTo(t *testing.T, path string, mode os.FileMode, ret string) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return ret
}

// TestSocketNoFallback: once the resident verifier said anything, or when it breaks the
// protocol, a failure denies (PAM_SYSTEM_ERR) and the helper does not run: the verifier may have
// consumed the user's code already.
func TestSocketNoFallback(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	tests := []struct {
		mode string
		args []string
	}{
		{"prompt-close", nil},
		{"prompt-hang", []string{"timeout=1"}},
		{"prompt-garbage", nil},
		{"data-after-done", nil},
		{"garbage", nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tt.mode)
			s := newStack(t, append([]string{"fake=verdict", "verdict=success", "socket=" + v.path}, tt.args...)...)
			if err := s.auth("root", "654321"); !errors.Is(err, pam.ErrSystem) {
				t.Errorf("Authenticate(%s) = %v, want %v", tt.mode, err, pam.ErrSystem)
			}
			if s.report() != nil {
				t.Error("the helper ran after the resident verifier failed, want no fallback")
			}
			if _, requests := v.served(); requests != 1 {
				t.Errorf("verifier read %d requests, want 1", requests)
			}
		})
	}
}
