package registry

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/refusal"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Cluster-wide single use and one failure budget (docs/sync-protocol.md, "Claims and the failure
// budget"). A node claims each code its logins accept before it accepts it: the claim of a token
// is the last step granted for it (enroll/step/USER/ID, token.Claim), the same record a proof or a
// finishing code at the registry writes, so a code is used once whether at a login on any node or
// in a self-service change. Wrong codes go to the user's token.SharedFailures, a record
// (u/USER/failures) every node of the user's scopes receives through the watch; failed proofs of
// self-service changes count in it too.

// maxLoginsBody bounds a POST /v1/sync/logins body (MaxLoginEvents of the longest events fit).
const maxLoginsBody = 512 << 10

// parseLogins decodes and checks a login report: 1 to MaxLoginEvents events of a known kind, each
// with a valid user name, a time, and for a claim a token id and a step.
func parseLogins(body []byte) ([]token.LoginEvent, error) {
	var q registryapi.LoginReport
	if err := decodeStrict(body, &q); err != nil {
		return nil, err
	}
	if len(q.Events) == 0 || len(q.Events) > registryapi.MaxLoginEvents {
		return nil, badRequest("logins: want 1 to %d events", registryapi.MaxLoginEvents)
	}
	for i, e := range q.Events {
		if !validName(e.User, maxNameLen) {
			return nil, badRequest("logins: event %d: user name %q is not valid", i, clip(e.User))
		}
		if e.At.IsZero() {
			return nil, badRequest("logins: event %d has no time (at)", i)
		}
		switch e.Kind {
		case token.EventClaim:
			if !validName(e.Token, maxClaimID) || e.Step == 0 {
				return nil, badRequest("logins: claim %d wants a token id and a step", i)
			}
		case token.EventFailure:
			if e.Token != "" || e.Step != 0 {
				return nil, badRequest("logins: failure %d names a token or a step", i)
			}
		default:
			return nil, badRequest("logins: event %d: unknown kind %q", i, clip(e.Kind))
		}
	}
	return q.Events, nil
}

// maxClaimID bounds a claimed token id ("backup:" and a backup code id at most).
const maxClaimID = 128

// handleLogins answers POST /v1/sync/logins: in one revision, it grants or refuses each claim and
// counts each failure, and answers one result per event. Users unknown here or outside the node's
// scope are answered Unknown and change nothing. An offline claim refused (the step was granted
// to another node first) is a code accepted twice: it is logged and audited as a possible replay.
func (s *Server) handleLogins(w http.ResponseWriter, r *http.Request) {
	n, scope, body, ok := s.nodePost(w, r, maxLoginsBody)
	if !ok {
		return
	}
	events, err := parseLogins(body)
	if err != nil {
		if re, ok := refusal.As(err); ok {
			writeRefusal(w, re)
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	node := "node:" + n.Name
	now := s.now()
	limits := s.cfg.Enroll.proofLimits()
	var results []registryapi.LoginResult
	var replays []string
	_, err = s.store.Update(r.Context(), func(t kv.Txn) error {
		results, replays = make([]registryapi.LoginResult, len(events)), replays[:0]
		x := &txn{Txn: t, s: s}
		users := map[string]*User{}
		shared := map[string]*token.SharedFailures{}
		dirty := map[string]bool{}
		for i, e := range events {
			u, ok := users[e.User]
			if !ok {
				got, err := x.user(e.User)
				switch {
				case err == nil && visible(got.Scopes, scope):
					u = &got
				case err == nil || isNotFound(err):
				default:
					return err
				}
				users[e.User] = u
			}
			if u == nil {
				results[i].Unknown = true
				continue
			}
			f, ok := shared[e.User]
			if !ok {
				got, err := x.sharedFailures(e.User)
				if err != nil {
					return err
				}
				f, shared[e.User] = &got, &got
			}
			switch e.Kind {
			case token.EventClaim:
				c, err := x.claim(e.User, e.Token)
				if err != nil {
					return err
				}
				if !c.Claimable(e.Step, node) {
					results[i] = registryapi.LoginResult{By: c.Node, At: c.At}
					if e.Offline {
						replays = append(replays, fmt.Sprintf("user %s token %s step %d accepted offline on %s at %s, granted to %s at %s",
							e.User, e.Token, e.Step, n.Name, e.At.UTC().Format(time.RFC3339), c.Node, c.At.UTC().Format(time.RFC3339)))
						if err := x.audit(now, node, "login.possible_replay", "user/"+e.User, replays[len(replays)-1]); err != nil {
							return err
						}
					}
					continue
				}
				if err := x.setClaim(e.User, e.Token, token.Claim{Step: e.Step, Node: node, At: e.At.UTC()}); err != nil {
					return err
				}
				results[i].Claimed = true
				if f.Count > 0 { // with none to clear nothing is written: a login is not a sync change
					f.Clear(e.At.UTC())
					dirty[e.User] = true
				}
			case token.EventFailure:
				if f.Fail(e.At.UTC(), limits) {
					dirty[e.User] = true
				}
				results[i].Failures = f.Count
			}
		}
		for name := range dirty {
			if err := x.putSharedFailures(*users[name], *shared[name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if re, ok := refusal.As(err); ok {
			writeRefusal(w, re)
			return
		}
		s.storeFailed(w, "login report", err, "node", n.Name)
		return
	}
	for _, msg := range replays {
		s.log.Error("possible replay: a code accepted offline was accepted elsewhere first", "node", n.Name, "detail", msg)
	}
	writeJSON(w, http.StatusOK, registryapi.LoginAnswer{Results: results})
}

// claimKey is where the claim of a token lives: the last step granted for it.
func claimKey(user, id string) string { return prefixStep + user + "/" + id }

// claim reads the claim of a user's token (zero when none).
func (x *txn) claim(user, id string) (token.Claim, error) {
	var c token.Claim
	return c, ignoreNotFound(x.getJSON(claimKey(user, id), &c))
}

func (x *txn) setClaim(user, id string, c token.Claim) error {
	return x.putJSON(claimKey(user, id), c)
}

// sharedFailures reads a user's failure record; failures counted before the record was synced
// (enroll/fail/USER) are read when it is missing.
func (x *txn) sharedFailures(user string) (token.SharedFailures, error) {
	f := token.SharedFailures{User: user}
	raw, err := x.Get(prefixRec + syncframe.FailuresKey(user))
	if errors.Is(err, kv.ErrNotFound) {
		return f, ignoreNotFound(x.getJSON(prefixFail+user, &f.Failures))
	}
	if err != nil {
		return f, err
	}
	_, value, err := x.s.openValue(syncframe.FailuresKey(user), raw.Value)
	if err != nil {
		return f, err
	}
	if err := decodeStrict(value, &f); err != nil {
		return f, fmt.Errorf("decode %s: %w", syncframe.FailuresKey(user), err)
	}
	return f, nil
}

// putSharedFailures writes a user's failure record, and drops the older key.
func (x *txn) putSharedFailures(u User, f token.SharedFailures) error {
	f.User = u.Name
	if err := ignoreNotFound(x.Delete(prefixFail + u.Name)); err != nil {
		return err
	}
	return x.putRecord(u, syncframe.FailuresKey(u.Name), f)
}

// clearFailures records a success at now in u's failure record (unlock: an administrator's
// unlock), when there is one to clear: nodes drop the failures they counted before it. It
// returns the failures there were.
func (x *txn) clearFailures(u User, now time.Time, unlock bool) (token.Failures, error) {
	f, err := x.sharedFailures(u.Name)
	if err != nil || f == (token.SharedFailures{User: u.Name}) {
		return f.Failures, err
	}
	before := f.Failures
	if unlock {
		f.Unlock(now.UTC())
	} else {
		f.Clear(now.UTC())
	}
	return before, x.putSharedFailures(u, f)
}
