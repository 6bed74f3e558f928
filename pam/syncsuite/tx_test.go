//go:build linux

package syncsuite

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
)

// pamSuccess is PAM_SUCCESS as a pam.Error, so that tables can hold every outcome in one type.
const pamSuccess pam.Error = 0

// txResult is what the application saw of one libpam transaction.
type txResult struct {
	Code    pam.Error // pam_authenticate's result; 0 is PAM_SUCCESS
	Prompts []string
	Infos   []string
	Errors  []string
	Fatal   string // the transaction did not run to its end (start failed, hung)
	Elapsed time.Duration
}

var pamNames = map[pam.Error]string{
	pamSuccess:             "PAM_SUCCESS",
	pam.ErrAuth:            "PAM_AUTH_ERR",
	pam.ErrUserUnknown:     "PAM_USER_UNKNOWN",
	pam.ErrMaxtries:        "PAM_MAXTRIES",
	pam.ErrAuthinfoUnavail: "PAM_AUTHINFO_UNAVAIL",
	pam.ErrSystem:          "PAM_SYSTEM_ERR",
	pam.ErrConv:            "PAM_CONV_ERR",
	pam.ErrPermDenied:      "PAM_PERM_DENIED",
	pam.ErrIgnore:          "PAM_IGNORE",
}

func pamName(e pam.Error) string {
	if n, ok := pamNames[e]; ok {
		return n
	}
	return fmt.Sprintf("PAM error %d", int(e))
}

// runTx runs pam_start_confdir, pam_authenticate and pam_end for service and user in confDir,
// answering prompts with answers in order; it gives up (and reports Fatal) after timeout.
func runTx(service, user, confDir string, timeout time.Duration, answers ...string) txResult {
	var (
		mu   sync.Mutex
		r    txResult
		next int
	)
	conv := pam.ConversationFunc(func(style pam.Style, msg string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		switch style {
		case pam.PromptEchoOff, pam.PromptEchoOn:
			r.Prompts = append(r.Prompts, msg)
			if next >= len(answers) {
				return "", errors.New("no answer left")
			}
			next++
			return answers[next-1], nil
		case pam.TextInfo:
			r.Infos = append(r.Infos, msg)
		case pam.ErrorMsg:
			r.Errors = append(r.Errors, msg)
		}
		return "", nil
	})
	snapshot := func() txResult {
		mu.Lock()
		defer mu.Unlock()
		c := r
		c.Prompts = append([]string(nil), r.Prompts...)
		c.Infos = append([]string(nil), r.Infos...)
		c.Errors = append([]string(nil), r.Errors...)
		return c
	}
	start := time.Now()
	tx, err := pam.StartConfDir(service, user, conv, confDir)
	if err != nil {
		r.Fatal = "pam_start_confdir: " + err.Error()
		return r
	}
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
	c := snapshot()
	var pe pam.Error
	switch {
	case err == nil:
		c.Code = pamSuccess
	case errors.As(err, &pe):
		c.Code = pe
	default:
		c.Fatal = "pam_authenticate: " + err.Error()
	}
	if err := tx.End(); err != nil && c.Fatal == "" && c.Code == pamSuccess {
		c.Fatal = "pam_end: " + err.Error()
	}
	c.Elapsed = time.Since(start)
	return c
}

// want checks a transaction's PAM result.
func (r txResult) want(t *testing.T, what string, code pam.Error) {
	t.Helper()
	if r.Fatal != "" {
		t.Fatalf("Authenticate(%s): %s (prompts %q, errors %q)", what, r.Fatal, r.Prompts, r.Errors)
	}
	if r.Code != code {
		t.Errorf("Authenticate(%s) = %s, want %s (prompts %q, info %q, errors %q)",
			what, pamName(r.Code), pamName(code), r.Prompts, r.Infos, r.Errors)
	}
}
