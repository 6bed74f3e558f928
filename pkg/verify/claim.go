package verify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/protocol"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Claims (docs/sync-protocol.md, "Claims and the failure budget"): on a node that syncs from a
// registry, a login that would accept a code asks the registry to claim (token, step) for it
// first, over totp-syncd's connection, within [sync] claim_timeout. Granted: accepted. Refused:
// another node (or a proof at the registry) had the code first, so it is a replay. No answer:
// [sync] offline_claims decides, and an accepted code's claim waits in state.db's outbox until
// totp-syncd reports it. Wrong codes go to the outbox too, for the user's one failure budget.

// Claimer is totp-syncd's way to the registry.
type Claimer interface {
	// Claim sends one claim and returns whether the registry granted it, or else the claim
	// that holds the step (who had the code first, and when). It fails at once when there is no
	// stream to the registry, and fails when the registry does not know the user.
	Claim(ctx context.Context, e token.LoginEvent) (granted bool, holder token.Claim, err error)
	// Kick asks for the outbox to be reported soon.
	Kick()
}

// claimOutcome is what the registry said of a claim made before the write transaction.
type claimOutcome struct {
	id      string // the claimed token ("" when nothing was claimed)
	step    uint64
	granted bool
	by      string    // refused: who holds the step
	at      time.Time // and since when
	why     string    // neither granted nor refused: why not (the offline case)
}

func (c claimOutcome) offline() bool { return c.id != "" && !c.granted && c.by == "" }

// claims says whether this node's logins claim at a registry.
func (a *attempt) claims() bool { return len(a.v.Config.Sync.Registry) > 0 }

// failures is the user's failure record as a login judges it: this node's, joined with the
// registry's (token.Failures.Merge).
func (a *attempt) failures(x *store.StateTx, data *store.UserData) store.Failures {
	return x.Failures(a.req.User).Merge(data.Shared, a.limits())
}

// claimFirst looks at the answer in a read-only transaction and, when it would be accepted on a
// node that claims, asks the registry for the claim.
func (a *attempt) claimFirst(state *store.State, data *store.UserData, codes map[int]string, backupNorm string, isBackup bool) (claimOutcome, error) {
	if !a.claims() {
		return claimOutcome{}, nil
	}
	var j judgement
	if err := state.View(func(x *store.StateTx) error {
		j = a.judge(x, data, codes, backupNorm, isBackup)
		return nil
	}); err != nil {
		return claimOutcome{}, err
	}
	id, step, ok := j.claimID(data.Tokens)
	if !ok {
		return claimOutcome{}, nil
	}
	c := claimOutcome{id: id, step: step}
	if a.v.Claims == nil {
		c.why = "decided by the helper, without totp-syncd's connection to the registry"
		return c, nil
	}
	timeout := a.v.Config.Sync.ClaimTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	granted, holder, err := a.v.Claims.Claim(ctx, token.LoginEvent{Kind: token.EventClaim, User: a.req.User,
		Token: id, Step: step, At: a.now.UTC()})
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		c.why = fmt.Sprintf("the registry did not answer the claim within claim_timeout %s", timeout)
	case err != nil:
		c.why = "the claim could not be made: " + err.Error()
	case granted:
		c.granted = true
	default:
		c.by, c.at = holder.Node, holder.At
		if c.by == "" {
			c.by = "an unnamed claimant"
		}
	}
	return c, nil
}

// settle turns an accepting judgement into its verdict by the claim made for it. accept says the
// acceptance stands (granted, or offline under offline_claims = "local"); otherwise the verdict
// returned is final, nothing is counted, and a refused step is burned here too.
func (a *attempt) settle(x *store.StateTx, c claimOutcome, id string, step uint64, j *judgement, tokens []token.Token) (
	v protocol.Verdict, outcome, reason, msg string, accept bool, err error) {
	user := a.req.User
	switch {
	case c.id != id || c.step != step:
		// A concurrent login on this node changed the picture between the look and now: the
		// claim made is not this acceptance's. Refused, not counted; the next code will do.
		return protocol.AuthErr, "replay", "the code's step changed while claiming (a concurrent login)", msgReplay, false, nil
	case c.granted:
		return protocol.Success, "success", "code verified and claimed at the registry", "", true, nil
	case c.by != "":
		if j.m.Status == token.OK {
			err = x.SetLastStep(user, tokens[j.i].ID, step)
		} else if j.backup != nil {
			err = x.UseBackup(user, j.backup.ID, a.now)
		}
		return protocol.AuthErr, "replay", fmt.Sprintf("code already accepted by %s at %s (registry claim)",
			c.by, c.at.UTC().Format(time.RFC3339)), msgReplay, false, err
	case a.v.Config.Sync.OfflineClaims == config.OfflineDeny:
		a.v.Log.Error("registry claim not made; refusing the code (offline_claims = \"deny\")",
			"user", user, "service", a.req.Service, "reason", c.why)
		return protocol.AuthErr, "claim_unavailable", c.why + "; offline_claims = deny", msgNoClaim, false, nil
	}
	a.v.Log.Error("registry claim not made; deciding on this node's record alone (offline_claims = \"local\"), the claim is reported later",
		"user", user, "service", a.req.Service, "reason", c.why)
	return protocol.Success, "success", "", "", true, nil
}
