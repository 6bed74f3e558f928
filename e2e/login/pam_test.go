//go:build linux

package login

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const prompt = "Verification code: "

// TestAuthenticate runs libpam transactions through the built module and checks the PAM result
// of each documented case (docs/protocol.md, pkg/verify's order of decisions), once through the
// helper and once through a totp-syncd's resident verifier, which must answer every one.
func TestAuthenticate(t *testing.T) {
	needRoot(t)
	exempt := pamtest.AddGroup(t, groupPrefix)
	user := pamtest.AddUser(t, userPrefix)
	member := pamtest.AddUser(t, userPrefix, exempt)
	pwUser := pamtest.AddUser(t, userPrefix)
	// A password that ends in digits: the split must take only the code's digits.
	password := "hunter2-" + pamtest.RandName(6) + "-42"
	pamtest.SetPassword(t, pwUser, password)

	tests := []struct {
		name string
		user string // default: user
		conf conf
		// movesClock: the case moves its clock (NextStep), so through the resident verifier it
		// gets a totp-syncd of its own; the others share one, and its clock.
		movesClock bool
		run        func(t *testing.T, f *fixture)
	}{
		{name: "good code", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			r := f.auth(code(tok, f.nowStep(tok)))
			r.Want(t, "good code", pamtest.Success, 1)
			if len(r.Prompts) == 1 && r.Prompts[0] != prompt {
				t.Errorf("prompt = %q, want %q", r.Prompts[0], prompt)
			}
			if len(r.Errors) != 0 {
				t.Errorf("Authenticate(good code) error messages %q, want none", r.Errors)
			}
		}},
		{name: "wrong code", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			r := f.auth(wrongCode(tok))
			r.Want(t, "wrong code", pam.ErrAuth, 1)
			r.WantError(t, "wrong code", "Verification failed")
		}},
		{name: "replay of a used code", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			c := code(tok, f.nowStep(tok))
			f.auth(c).Want(t, "code", pamtest.Success, 1)
			r := f.auth(c)
			r.Want(t, "same code again", pam.ErrAuth, 1)
			r.WantError(t, "same code again", "already been used")
		}},
		{name: "backup code", run: func(t *testing.T, f *fixture) {
			f.token()
			codes := f.backupCodes(3)
			r := f.auth(codes[0])
			r.Want(t, "backup code", pamtest.Success, 1)
			r.WantInfo(t, "backup code", "Backup code accepted; 2 left")
			r = f.auth(codes[0])
			r.Want(t, "used backup code", pam.ErrAuth, 1)
			// Typing is forgiving: upper case, no dashes.
			typed := strings.ToUpper(strings.ReplaceAll(codes[1], "-", ""))
			f.auth(typed).Want(t, "backup code typed without dashes", pamtest.Success, 1)
		}},
		{name: "backup code without any token", run: func(t *testing.T, f *fixture) {
			codes := f.backupCodes(1)
			f.auth(codes[0]).Want(t, "backup code, no token", pamtest.Success, 1)
		}},
		{
			name: "lockout after free failures",
			conf: conf{Rate: "free_failures = 2\ninitial_backoff = \"10m\"\nmax_backoff = \"20m\"\nlockout_after = 10"},
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				for i := 1; i <= 3; i++ {
					what := fmt.Sprintf("wrong code %d", i)
					r := f.auth(wrongCode(tok))
					r.Want(t, what, pam.ErrAuth, 1)
					if i < 3 {
						r.WantNoError(t, what, "try again")
					} else {
						r.WantError(t, what, "try again in 10 minutes")
					}
				}
				r := f.auth(code(tok, f.nowStep(tok)))
				r.Want(t, "good code during back-off", pam.ErrMaxtries, 0)
				r.WantError(t, "good code during back-off", "try again in")
				// The count is per user across services (sshd and sudo share it).
				f.addService("other-service", "")
				r = f.authWith(pamtest.TxSpec{Service: "other-service", Answers: []string{code(tok, f.nowStep(tok))}})
				r.Want(t, "good code via another service during back-off", pam.ErrMaxtries, 0)
			},
		},
		{
			name: "hard lockout",
			conf: conf{
				Top:  `contact = "hpc-support@example.org"`,
				Rate: "free_failures = 0\ninitial_backoff = \"1s\"\nmax_backoff = \"1s\"\nlockout_after = 1",
			},
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				r := f.auth(wrongCode(tok))
				r.Want(t, "wrong code", pam.ErrAuth, 1)
				r.WantError(t, "wrong code", "locked for your account")
				r.WantError(t, "wrong code", "Contact hpc-support@example.org.")
				r = f.auth(code(tok, f.nowStep(tok)))
				r.Want(t, "good code when locked", pam.ErrMaxtries, 0)
				r.WantError(t, "good code when locked", "locked for your account")
			},
		},
		{
			name: "second attempt in one transaction",
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				r := f.authWith(pamtest.TxSpec{Attempts: 2, Answers: []string{wrongCode(tok), code(tok, f.nowStep(tok))}})
				r.Want(t, "wrong, then good code in one transaction", pamtest.Success, 2)
				if len(r.Earlier) != 1 || r.Earlier[0] != pam.ErrAuth {
					t.Errorf("first Authenticate in the transaction = %v, want PAM_AUTH_ERR", r.Earlier)
				}
			},
		},
		{
			name: "user asked by the module",
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				r := f.authWith(pamtest.TxSpec{AskUser: true, Answers: []string{f.user, code(tok, f.nowStep(tok))}})
				r.Want(t, "user name, then code", pamtest.Success, 2)
			},
		},
		{
			name:       "success resets failures and never counts",
			conf:       conf{Rate: "free_failures = 1\ninitial_backoff = \"10m\"\nmax_backoff = \"20m\"\nlockout_after = 10"},
			movesClock: true,
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				s := f.clock.NextStep(t, 30)
				steps := []struct {
					what   string
					answer string
					want   pam.Error
				}{
					{"wrong 1", wrongCode(tok), pam.ErrAuth},
					{"code of step-1", code(tok, s-1), pamtest.Success},
					{"wrong 2", wrongCode(tok), pam.ErrAuth},
					{"code of step", code(tok, s), pamtest.Success},
					{"code of step+1", code(tok, s+1), pamtest.Success},
				}
				for _, st := range steps {
					r := f.auth(st.answer)
					r.Want(t, st.what, st.want, 1)
					r.WantNoError(t, st.what, "try again")
				}
				// Three successes, then one failure: still within free_failures = 1.
				r := f.auth(wrongCode(tok))
				r.Want(t, "wrong 3", pam.ErrAuth, 1)
				r.WantNoError(t, "wrong 3", "try again")
				// The count does work: a second failure in a row starts the back-off.
				r = f.auth(wrongCode(tok))
				r.Want(t, "wrong 4", pam.ErrAuth, 1)
				r.WantError(t, "wrong 4", "try again in 10 minutes")
			},
		},
		{
			name: "exempt network",
			conf: conf{Top: `exempt_networks = ["10.0.0.0/8"]`},
			run: func(t *testing.T, f *fixture) {
				f.token()
				f.authWith(pamtest.TxSpec{RHost: "10.1.2.3"}).Want(t, "rhost 10.1.2.3", pamtest.Success, 0)
				f.authWith(pamtest.TxSpec{RHost: "::ffff:10.9.8.7"}).Want(t, "rhost ::ffff:10.9.8.7", pamtest.Success, 0)
				f.authWith(pamtest.TxSpec{RHost: "192.0.2.1"}).Want(t, "rhost 192.0.2.1, no answer", pam.ErrAuth, 1)
				f.authWith(pamtest.TxSpec{RHost: "10.example.org"}).Want(t, "rhost name, no answer", pam.ErrAuth, 1)
			},
		},
		{
			name: "exempt group",
			user: member,
			conf: conf{Top: fmt.Sprintf("exempt_groups = [%q]", exempt)},
			run: func(t *testing.T, f *fixture) {
				// No token at all: only the exemption lets the member in.
				f.auth().Want(t, "member of exempt group", pamtest.Success, 0)
				f.authWith(pamtest.TxSpec{User: user}).Want(t, "non-member without token", pam.ErrAuth, 0)
			},
		},
		{
			name: "exempt primary group",
			conf: conf{Top: fmt.Sprintf("exempt_groups = [%q]", user)}, // useradd made a group named like the user
			run: func(t *testing.T, f *fixture) {
				f.auth().Want(t, "user of exempt primary group", pamtest.Success, 0)
			},
		},
		{
			name: "exempt user",
			conf: conf{Top: fmt.Sprintf("exempt_users = [%q]", user)},
			run: func(t *testing.T, f *fixture) {
				f.auth().Want(t, "exempt user", pamtest.Success, 0)
				f.authWith(pamtest.TxSpec{User: member}).Want(t, "other user without token", pam.ErrAuth, 0)
			},
		},
		{
			name: "mode off",
			conf: conf{Top: `mode = "off"`},
			run: func(t *testing.T, f *fixture) {
				f.auth().Want(t, "mode off", pamtest.Success, 0)
			},
		},
		{
			name: "enrollment grace",
			conf: conf{Top: "mode = \"grace\"\ngrace_until = 2099-01-01T00:00:00Z"},
			run: func(t *testing.T, f *fixture) {
				r := f.auth()
				r.Want(t, "no token in grace", pamtest.Success, 0)
				r.WantInfo(t, "no token in grace", "becomes mandatory on 2099-01-01")
				// A pending token does not end grace, and the user hears about it.
				pending := newToken(f.user, "new-phone", totp.SHA1, 6)
				pending.State = token.Pending
				f.put(pending)
				r = f.auth()
				r.Want(t, "pending token in grace", pamtest.Success, 0)
				r.WantError(t, "pending token in grace", "not activated")
				// A user with an active token is asked for it during grace.
				tok := f.token()
				f.auth(wrongCode(tok)).Want(t, "token in grace, wrong code", pam.ErrAuth, 1)
			},
		},
		{
			name: "enrollment grace passed",
			conf: conf{Top: "mode = \"grace\"\ngrace_until = 2001-01-01T00:00:00Z"},
			run: func(t *testing.T, f *fixture) {
				r := f.auth()
				r.Want(t, "no token after grace", pam.ErrAuth, 0)
				r.WantError(t, "no token after grace", "No two-factor token")
			},
		},
		{name: "no token under enforce", run: func(t *testing.T, f *fixture) {
			r := f.auth()
			r.Want(t, "no token", pam.ErrAuth, 0)
			r.WantError(t, "no token", "No two-factor token")
		}},
		{name: "pending token only", run: func(t *testing.T, f *fixture) {
			tok := newToken(f.user, "new-phone", totp.SHA1, 6)
			tok.State = token.Pending
			f.put(tok)
			r := f.auth(code(tok, f.nowStep(tok)))
			r.Want(t, "pending token", pam.ErrAuth, 0)
			r.WantError(t, "pending token", "not activated")
		}},
		{name: "disabled token only", run: func(t *testing.T, f *fixture) {
			tok := newToken(f.user, "lost-phone", totp.SHA1, 6)
			tok.State = token.Disabled
			f.put(tok)
			r := f.auth(code(tok, f.nowStep(tok)))
			r.Want(t, "disabled token", pam.ErrAuth, 0)
			r.WantError(t, "disabled token", "Your two-factor token is disabled.")
		}},
		{
			// A disabled token keeps its user out during enrollment grace too (before, "no active
			// token" meant grace, and any answer logged in).
			name: "disabled token in grace",
			conf: conf{Top: "mode = \"grace\"\ngrace_until = 2099-01-01T00:00:00Z"},
			run: func(t *testing.T, f *fixture) {
				tok := newToken(f.user, "lost-phone", totp.SHA1, 6)
				tok.State = token.Disabled
				f.put(tok)
				r := f.auth("000000")
				r.Want(t, "disabled token in grace", pam.ErrAuth, 0)
				r.WantError(t, "disabled token in grace", "Your two-factor token is disabled.")
			}},
		{
			name:       "password and code",
			user:       pwUser,
			conf:       conf{Sections: "[policy.pwcode]\npassword_and_code = true\n"},
			movesClock: true,
			run: func(t *testing.T, f *fixture) {
				// pam_unix checks the password pam_totp hands on as PAM_AUTHTOK (applications
				// cannot read PAM_AUTHTOK themselves: pam_get_item refuses it outside modules).
				f.addService("pwcode", "policy=pwcode", "auth required pam_unix.so use_first_pass")
				tok := f.token()
				s := f.clock.NextStep(t, 30)
				r := f.authWith(pamtest.TxSpec{Service: "pwcode", Answers: []string{password + code(tok, s)}})
				r.Want(t, "password+code", pamtest.Success, 1)
				if len(r.Prompts) == 1 && r.Prompts[0] != "Password and verification code: " {
					t.Errorf("prompt = %q, want %q", r.Prompts[0], "Password and verification code: ")
				}
				r = f.authWith(pamtest.TxSpec{Service: "pwcode", Answers: []string{"not-" + password + code(tok, s+1)}})
				r.Want(t, "wrong password+good code", pam.ErrAuth, 1)
				r = f.authWith(pamtest.TxSpec{Service: "pwcode", Answers: []string{password + wrongCode(tok)}})
				r.Want(t, "password+wrong code", pam.ErrAuth, 1)
				// Without the policy the same answer is no code.
				r = f.auth(password + code(tok, s))
				r.Want(t, "password+code at a code-only prompt", pam.ErrAuth, 1)
			},
		},
		{name: "store missing", run: func(t *testing.T, f *fixture) {
			if err := os.Remove(filepath.Join(f.store, store.TokensFile)); err != nil {
				t.Fatal(err)
			}
			r := f.auth("123456")
			r.Want(t, "no tokens.db", pam.ErrAuthinfoUnavail, 0)
			r.WantError(t, "no tokens.db", "unavailable")
		}},
		{name: "store corrupt", run: func(t *testing.T, f *fixture) {
			garbage := make([]byte, 64<<10)
			for i := range garbage {
				garbage[i] = byte(i*7 + i>>8)
			}
			writeFile(t, filepath.Join(f.store, store.TokensFile), garbage, 0o600)
			f.auth("123456").Want(t, "garbage tokens.db", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "store truncated", run: func(t *testing.T, f *fixture) {
			f.token()
			path := filepath.Join(f.store, store.TokensFile)
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
			f.auth("123456").Want(t, "truncated tokens.db", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "store without schema", run: func(t *testing.T, f *fixture) {
			if err := os.Remove(filepath.Join(f.store, store.TokensFile)); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(filepath.Join(f.store, store.TokensFile), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("tokens"))
				return err
			})
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			f.auth("123456").Want(t, "tokens.db without meta", pam.ErrAuthinfoUnavail, 0)
		}},
		{
			name: "store locked past the timeout",
			conf: conf{OpenTimeout: "500ms"},
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				// A writer (totp-syncd) holding tokens.db: bbolt's exclusive flock.
				db, err := bolt.Open(filepath.Join(f.store, store.TokensFile), 0o600, &bolt.Options{Timeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				r := f.auth(code(tok, f.nowStep(tok)))
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				r.Want(t, "tokens.db locked", pam.ErrAuthinfoUnavail, 0)
				// bbolt gives up one 50 ms retry before the timeout.
				if r.Elapsed < 400*time.Millisecond || r.Elapsed > 8*time.Second {
					t.Errorf("Authenticate(tokens.db locked) took %v, want about store.open_timeout = 500ms", r.Elapsed)
				}
				// Released: the same code now works.
				f.auth(code(tok, f.nowStep(tok))).Want(t, "tokens.db unlocked", pamtest.Success, 1)
			},
		},
		{name: "store dir world-readable", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			if err := os.Chmod(f.store, 0o755); err != nil {
				t.Fatal(err)
			}
			f.auth(code(tok, f.nowStep(tok))).Want(t, "store dir 0755", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "tokens.db group-readable", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			if err := os.Chmod(filepath.Join(f.store, store.TokensFile), 0o640); err != nil {
				t.Fatal(err)
			}
			f.auth(code(tok, f.nowStep(tok))).Want(t, "tokens.db 0640", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "tokens.db owned by a user", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			uid, gid := lookupIDs(t, member)
			if err := os.Chown(filepath.Join(f.store, store.TokensFile), uid, gid); err != nil {
				t.Fatal(err)
			}
			f.auth(code(tok, f.nowStep(tok))).Want(t, "tokens.db not root's", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "tokens.db symlink", run: func(t *testing.T, f *fixture) {
			// A valid store elsewhere, linked in: still refused.
			other := &fixture{t: t, user: f.user, store: filepath.Join(f.dir, "elsewhere")}
			if err := os.Mkdir(other.store, 0o700); err != nil {
				t.Fatal(err)
			}
			tok := other.token()
			if err := os.Remove(filepath.Join(f.store, store.TokensFile)); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(other.store, store.TokensFile), filepath.Join(f.store, store.TokensFile)); err != nil {
				t.Fatal(err)
			}
			f.auth(code(tok, f.nowStep(tok))).Want(t, "tokens.db symlink", pam.ErrAuthinfoUnavail, 0)
		}},
		{name: "unknown NSS user", run: func(t *testing.T, f *fixture) {
			nobody := "ptt-nosuch-" + pamtest.RandName(8)
			r := f.authWith(pamtest.TxSpec{User: nobody, Answers: []string{"123456"}})
			// Prompted like anyone else, so the exchange does not tell who exists.
			r.Want(t, "unknown user", pam.ErrUserUnknown, 1)
		}},
		{
			name: "unknown config key is a warning",
			conf: conf{Top: "frobnicate = 1"},
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				f.auth(code(tok, f.nowStep(tok))).Want(t, "config with an unknown key", pamtest.Success, 1)
			},
		},
		{
			name: "invalid config value",
			conf: conf{Top: "window = 9"},
			run: func(t *testing.T, f *fixture) {
				tok := f.token()
				r := f.auth(code(tok, f.nowStep(tok)))
				r.Want(t, "window = 9", pam.ErrSystem, 0)
				r.WantError(t, "window = 9", "misconfigured")
			},
		},
		{name: "unknown policy section", run: func(t *testing.T, f *fixture) {
			tok := f.token()
			f.addService("nosuch", "policy=nosuch")
			r := f.authWith(pamtest.TxSpec{Service: "nosuch", Answers: []string{code(tok, f.nowStep(tok))}})
			r.Want(t, "policy=nosuch", pam.ErrSystem, 0)
			r.WantError(t, "policy=nosuch", "misconfigured")
		}},
		{
			name: "policy section by service name",
			conf: conf{Sections: "[policy.relaxed]\nmode = \"off\"\n"},
			run: func(t *testing.T, f *fixture) {
				f.addService("relaxed", "")
				f.authWith(pamtest.TxSpec{Service: "relaxed"}).Want(t, "service relaxed", pamtest.Success, 0)
				f.auth().Want(t, "default service", pam.ErrAuth, 0)
			},
		},
		{name: "clock skew", movesClock: true, run: func(t *testing.T, f *fixture) {
			tok := f.token()
			s := f.clock.NextStep(t, 30)
			r := f.auth(code(tok, s-5))
			r.Want(t, "code of 5 steps ago", pam.ErrAuth, 1)
			r.WantError(t, "code of 5 steps ago", "seems about 150 seconds behind")
			r = f.auth(code(tok, s+4))
			r.Want(t, "code of 4 steps ahead", pam.ErrAuth, 1)
			r.WantError(t, "code of 4 steps ahead", "seems about 120 seconds ahead")
			r = f.auth(code(tok, s-15))
			r.Want(t, "code of 15 steps ago", pam.ErrAuth, 1)
			r.WantNoError(t, "code of 15 steps ago", "seems about")
		}},
		{name: "SHA256 8 digits", run: func(t *testing.T, f *fixture) {
			tok := newToken(f.user, "hw", totp.SHA256, 8)
			f.put(tok)
			c := code(tok, f.nowStep(tok))
			f.auth(c[2:]).Want(t, "last 6 digits of an 8-digit code", pam.ErrAuth, 1)
			f.auth(c).Want(t, "SHA256/8 code", pamtest.Success, 1)
		}},
		{name: "SHA512 8 digits", run: func(t *testing.T, f *fixture) {
			tok := newToken(f.user, "hw512", totp.SHA512, 8)
			f.put(tok)
			f.auth(code(tok, f.nowStep(tok))).Want(t, "SHA512/8 code", pamtest.Success, 1)
		}},
		{name: "two tokens", run: func(t *testing.T, f *fixture) {
			phone := newToken(f.user, "phone", totp.SHA1, 6)
			laptop := newToken(f.user, "laptop", totp.SHA256, 8)
			f.put(phone, laptop)
			f.auth(code(laptop, f.nowStep(laptop))).Want(t, "second token's code", pamtest.Success, 1)
			f.auth(code(phone, f.nowStep(phone))).Want(t, "first token's code", pamtest.Success, 1)
		}},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			shared := sharedVerifier(t, w.verifier)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					u := tt.user
					if u == "" {
						u = user
					}
					c := tt.conf
					if tt.movesClock {
						c.Verifier = w.verifier
					} else {
						c.Via = shared
					}
					f := newFixture(t, u, c)
					f.wantAnswered(t)
					tt.run(t, f)
				})
			}
		})
	}
}

// sharedVerifier is, for tests run through the resident verifier (verifier true), a fixture
// whose totp-syncd serves the logins of the test's cases (conf.Via), else nil. It must have
// answered some.
func sharedVerifier(t *testing.T, verifier bool) *fixture {
	t.Helper()
	if !verifier {
		return nil
	}
	shared := newFixture(t, "ptt-shared-verifier", conf{Verifier: true}) // the user never logs in
	shared.wantAnswered(t)
	return shared
}

// TestAnswers feeds odd answers through the real conversation: each is denied or accepted as
// totp.ParseCode documents (ASCII digits only; spaces and tabs ignored anywhere), and nothing
// crashes (a crash would be PAM_SYSTEM_ERR); through the helper and the resident verifier.
func TestAnswers(t *testing.T) {
	needRoot(t)
	user := pamtest.AddUser(t, userPrefix)
	arabic := strings.NewReplacer("0", "٠", "1", "١", "2", "٢", "3", "٣", "4", "٤", "5", "٥", "6", "٦", "7", "٧", "8", "٨", "9", "٩")
	fullwidth := strings.NewReplacer("0", "０", "1", "１", "2", "２", "3", "３", "4", "４", "5", "５", "6", "６", "7", "７", "8", "８", "9", "９")
	tests := []struct {
		name   string
		answer func(c string) string
		want   pam.Error
		errMsg string
	}{
		{"empty", func(string) string { return "" }, pam.ErrAuth, "Verification failed"},
		{"spaces only", func(string) string { return "   " }, pam.ErrAuth, "Verification failed"},
		{"1 MiB", func(c string) string { return strings.Repeat(c, (1<<20)/len(c)) }, pam.ErrAuth, "too long"},
		{"1025 bytes", func(c string) string { return c + strings.Repeat(" ", 1019) }, pam.ErrAuth, "too long"},
		{"1024 bytes with spaces", func(c string) string { return c + strings.Repeat(" ", 1018) }, pam.ErrAuth, ""},
		{"NUL inside", func(c string) string { return c[:3] + "\x00" + c[3:] }, pam.ErrAuth, ""},
		{"Arabic-Indic digits", func(string) string { return "١٢٣٤٥٦" }, pam.ErrAuth, ""},
		{"Arabic-Indic digits of the code", arabic.Replace, pam.ErrAuth, ""},
		{"fullwidth digits of the code", fullwidth.Replace, pam.ErrAuth, ""},
		{"newline inside", func(c string) string { return c[:3] + "\n" + c[3:] }, pam.ErrAuth, ""},
		{"seven digits", func(c string) string { return c + "7" }, pam.ErrAuth, ""},
		{"five digits", func(c string) string { return c[:5] }, pam.ErrAuth, ""},
		{"format string", func(string) string { return "%s%s%n%n" }, pam.ErrAuth, ""},
		{"inner spaces", func(c string) string { return c[:2] + " " + c[2:4] + " " + c[4:] }, pamtest.Success, ""},
		{"surrounding space and tab", func(c string) string { return " " + c + "\t" }, pamtest.Success, ""},
		{"code then NUL then junk", func(c string) string { return c + "\x00junk" }, pamtest.Success, ""},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			shared := sharedVerifier(t, w.verifier)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					f := newFixture(t, user, conf{Via: shared})
					f.wantAnswered(t)
					tok := f.token()
					answer := tt.answer(code(tok, f.nowStep(tok)))
					r := f.auth(answer)
					what := fmt.Sprintf("%.40q", answer)
					r.Want(t, what, tt.want, 1)
					if tt.errMsg != "" {
						r.WantError(t, what, tt.errMsg)
					}
				})
			}
		})
	}
}

// TestSSHGraceAtPAM: after a verified code, the same user from the same address with the same
// SSH key (SSH_AUTH_INFO_0) gets in without a prompt; anything else is asked again. Through the
// helper and the resident verifier.
func TestSSHGraceAtPAM(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testSSHGraceAtPAM(t, w.verifier) })
	}
}

func testSSHGraceAtPAM(t *testing.T, verifier bool) {
	needRoot(t)
	t.Parallel()
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Top: `ssh_grace = "1h"`, Verifier: verifier})
	f.wantAnswered(t)
	tok := f.token()
	keyA := "SSH_AUTH_INFO_0=publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyAkeyA\n"
	keyB := "SSH_AUTH_INFO_0=publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyBkeyBkeyBkeyBkeyBkeyBkeyBkeyBkeyBkeyB\n"
	s := f.nowStep(tok)
	steps := []struct {
		what    string
		spec    pamtest.TxSpec
		want    pam.Error
		prompts int
	}{
		{"key A, first login", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyA}, Answers: []string{code(tok, s)}}, pamtest.Success, 1},
		{"key A again", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyA}}, pamtest.Success, 0},
		{"key B", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyB}}, pam.ErrAuth, 1},
		{"key A from another address", pamtest.TxSpec{RHost: "127.0.0.2", Env: []string{keyA}}, pam.ErrAuth, 1},
		{"no SSH key (password login)", pamtest.TxSpec{RHost: "127.0.0.1"}, pam.ErrAuth, 1},
		{"key B with a code", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyB}, Answers: []string{code(tok, s+1)}}, pamtest.Success, 1},
		{"key B again", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyB}}, pamtest.Success, 0},
		{"key A still", pamtest.TxSpec{RHost: "127.0.0.1", Env: []string{keyA}}, pamtest.Success, 0},
	}
	for _, st := range steps {
		f.authWith(st.spec).Want(t, st.what, st.want, st.prompts)
	}
}

// TestSudoFreshnessAtPAM: a code verified in one login session spares the next prompt of the
// same service in that session only. Each session is a child process that leads its own
// session (setsid), as a login shell does. Through the helper and the resident verifier (which
// reads the session leader's start time in /proc as the helper does).
func TestSudoFreshnessAtPAM(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testSudoFreshnessAtPAM(t, w.verifier) })
	}
}

func testSudoFreshnessAtPAM(t *testing.T, verifier bool) {
	needRoot(t)
	needNewSessions(t)
	t.Parallel()
	f := newFixture(t, pamtest.AddUser(t, userPrefix), conf{Top: `sudo_freshness = "5m"`, Verifier: verifier})
	f.wantAnswered(t)
	tok := f.token()
	s := f.nowStep(tok)
	spec := func(answers ...string) pamtest.TxSpec {
		return pamtest.TxSpec{Service: f.service, User: f.user, ConfDir: f.pamDir, Answers: answers}
	}
	first := runTxChild(t, txChildSpec{NewAuditSession: true, Txs: []pamtest.TxSpec{spec(code(tok, s)), spec()}})
	if len(first) != 2 {
		t.Fatalf("child ran %d transactions, want 2", len(first))
	}
	first[0].Want(t, "session 1, code", pamtest.Success, 1)
	first[1].Want(t, "session 1, again", pamtest.Success, 0)

	second := runTxChild(t, txChildSpec{NewAuditSession: true, Txs: []pamtest.TxSpec{spec(), spec(code(tok, s+1)), spec()}})
	if len(second) != 3 {
		t.Fatalf("child ran %d transactions, want 3", len(second))
	}
	second[0].Want(t, "session 2, no answer", pam.ErrAuth, 1)
	second[1].Want(t, "session 2, code", pamtest.Success, 1)
	second[2].Want(t, "session 2, again", pamtest.Success, 0)

	// This test process is no fresh session either (and another service never is).
	f.auth().Want(t, "test process, no answer", pam.ErrAuth, 1)
}

// wrongCode is a code of the right length that is none of the token's codes near now (±25
// steps: a fixture's clock is at most a few steps ahead).
func wrongCode(tok token.Token) string {
	s := totp.Step(time.Now(), tok.Period)
	near := map[string]bool{}
	for d := uint64(0); d <= 25; d++ {
		near[code(tok, s+d)] = true
		near[code(tok, s-d)] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%0*d", tok.Digits, (123456+i*7919)%1000000)
		if !near[c] {
			return c
		}
	}
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
