//go:build linux

package pamtest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// Success is PAM_SUCCESS as a pam.Error, so that tables can hold every outcome in one type.
const Success pam.Error = 0

// DefaultTimeout is how long Run waits for one pam_authenticate when TxSpec.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// TxSpec is one libpam transaction: pam_start_confdir, items, pam_authenticate, pam_end.
// It is plain data, so a test can hand it to a child process as JSON.
type TxSpec struct {
	Service string
	User    string
	ConfDir string
	Answers []string // replies to prompts, in order; a prompt beyond them fails the conversation
	RHost   string
	Env     []string      // NAME=value entries for pam_putenv
	Timeout time.Duration // for each pam_authenticate; 0 means DefaultTimeout
	// Attempts calls pam_authenticate this many times in the one transaction (as login(1) does
	// after a failure); 0 means once.
	Attempts int
	// AskUser starts the transaction without a user, so the module asks for it (login(1)).
	AskUser bool
	// Respond, when set, answers the prompts after Answers run out, seeing what was shown so
	// far (to answer with a code computed from a key shown in an info message). Not JSON.
	Respond func(prompt string, shown Result) (string, error) `json:"-"`
}

// Result is what the application saw of one transaction.
type Result struct {
	Code    pam.Error   // pam_authenticate's (last) result; 0 is PAM_SUCCESS
	Earlier []pam.Error // results of the attempts before the last
	Prompts []string
	Infos   []string
	Errors  []string
	Fatal   string        // the transaction did not run to its end (start failed, hung)
	Elapsed time.Duration // from pam_start_confdir to pam_end, or to giving up
}

var names = map[pam.Error]string{
	Success:                "PAM_SUCCESS",
	pam.ErrAuth:            "PAM_AUTH_ERR",
	pam.ErrUserUnknown:     "PAM_USER_UNKNOWN",
	pam.ErrMaxtries:        "PAM_MAXTRIES",
	pam.ErrAuthinfoUnavail: "PAM_AUTHINFO_UNAVAIL",
	pam.ErrSystem:          "PAM_SYSTEM_ERR",
	pam.ErrConv:            "PAM_CONV_ERR",
	pam.ErrPermDenied:      "PAM_PERM_DENIED",
	pam.ErrIgnore:          "PAM_IGNORE",
	pam.ErrAbort:           "PAM_ABORT",
}

// Name returns the C name of a PAM result ("PAM_AUTH_ERR"), for test messages.
func Name(e pam.Error) string {
	if n, ok := names[e]; ok {
		return n
	}
	return fmt.Sprintf("PAM error %d", int(e))
}

// Run runs one transaction in this process. It gives up on a pam_authenticate that does not
// return within the timeout and reports that in Fatal, leaving the transaction behind.
func Run(s TxSpec) Result {
	var (
		mu   sync.Mutex
		r    Result
		next int
	)
	conv := pam.ConversationFunc(func(style pam.Style, msg string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		switch style {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			r.Prompts = append(r.Prompts, msg)
			if next >= len(s.Answers) {
				if s.Respond != nil {
					return s.Respond(msg, r)
				}
				return "", errors.New("no answer left")
			}
			next++
			return s.Answers[next-1], nil
		case pam.TextInfo:
			r.Infos = append(r.Infos, msg)
		case pam.ErrorMsg:
			r.Errors = append(r.Errors, msg)
		}
		return "", nil
	})
	snapshot := func() Result {
		mu.Lock()
		defer mu.Unlock()
		c := r
		c.Prompts = append([]string(nil), r.Prompts...)
		c.Infos = append([]string(nil), r.Infos...)
		c.Errors = append([]string(nil), r.Errors...)
		return c
	}
	user := s.User
	if s.AskUser {
		user = ""
	}
	start := time.Now()
	tx, err := pam.StartConfDir(s.Service, user, conv, s.ConfDir)
	if err != nil {
		r.Fatal = "pam_start_confdir: " + err.Error()
		return r
	}
	if s.RHost != "" {
		if err := tx.SetItem(pam.Rhost, s.RHost); err != nil {
			r.Fatal = "pam_set_item(PAM_RHOST): " + err.Error()
			return r
		}
	}
	for _, e := range s.Env {
		if err := tx.PutEnv(e); err != nil {
			r.Fatal = "pam_putenv: " + err.Error()
			return r
		}
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var codes []pam.Error
	for range max(s.Attempts, 1) {
		done := make(chan error, 1)
		go func() { done <- tx.Authenticate(0) }()
		select {
		case err = <-done:
		case <-time.After(timeout):
			// The transaction is left behind: ending it while pam_authenticate runs would be worse.
			c := snapshot()
			c.Fatal = fmt.Sprintf("pam_authenticate did not return within %v", timeout)
			c.Elapsed = time.Since(start)
			return c
		}
		var pe pam.Error
		switch {
		case err == nil:
			codes = append(codes, Success)
		case errors.As(err, &pe):
			codes = append(codes, pe)
		default:
			c := snapshot()
			c.Fatal = "pam_authenticate: " + err.Error()
			tx.End()
			c.Elapsed = time.Since(start)
			return c
		}
	}
	c := snapshot()
	c.Code, c.Earlier = codes[len(codes)-1], codes[:len(codes)-1]
	if err := tx.End(); err != nil && c.Fatal == "" && c.Code == Success {
		c.Fatal = "pam_end: " + err.Error()
	}
	c.Elapsed = time.Since(start)
	return c
}

// Want checks a transaction's PAM result and the number of prompts it showed (-1: any).
// A transaction that did not run to its end stops the test.
func (r Result) Want(t testing.TB, what string, code pam.Error, prompts int) {
	t.Helper()
	if r.Fatal != "" {
		t.Fatalf("Authenticate(%s): %s (prompts %q, errors %q)", what, r.Fatal, r.Prompts, r.Errors)
	}
	if r.Code != code {
		t.Errorf("Authenticate(%s) = %s, want %s (prompts %q, info %q, errors %q)",
			what, Name(r.Code), Name(code), r.Prompts, r.Infos, r.Errors)
	}
	if prompts >= 0 && len(r.Prompts) != prompts {
		t.Errorf("Authenticate(%s) prompted %d times (%q), want %d", what, len(r.Prompts), r.Prompts, prompts)
	}
}

// WantError checks that some PAM_ERROR_MSG contained sub.
func (r Result) WantError(t testing.TB, what, sub string) {
	t.Helper()
	if !AnyContains(r.Errors, sub) {
		t.Errorf("Authenticate(%s) error messages %q, want one containing %q", what, r.Errors, sub)
	}
}

// WantNoError checks that no PAM_ERROR_MSG contained sub.
func (r Result) WantNoError(t testing.TB, what, sub string) {
	t.Helper()
	if AnyContains(r.Errors, sub) {
		t.Errorf("Authenticate(%s) error messages %q, want none containing %q", what, r.Errors, sub)
	}
}

// WantInfo checks that some PAM_TEXT_INFO contained sub.
func (r Result) WantInfo(t testing.TB, what, sub string) {
	t.Helper()
	if !AnyContains(r.Infos, sub) {
		t.Errorf("Authenticate(%s) info messages %q, want one containing %q", what, r.Infos, sub)
	}
}

// AnyContains reports whether some string of list contains sub.
func AnyContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
