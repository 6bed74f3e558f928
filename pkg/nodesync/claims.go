package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Claims and the failure budget (docs/sync-protocol.md): the resident verifier claims each code
// it would accept through Claims.Claim, one POST /v1/sync/logins over the syncer's connection;
// the outbox loop reports what logins left in state.db's outbox (claims made without the
// registry, wrong codes), in batches, after each Kick and every UsedEvery while connected.

// ErrNoContact: no watch stream is open, so a claim is not tried (it would wait for nothing).
var ErrNoContact = errors.New("no stream to the registry")

// Claim results, the values of pam_totp_sync_claims_total's label.
const (
	ClaimGranted = "granted"
	ClaimRefused = "refused"
	ClaimOffline = "offline"
)

// Claims is the syncer as the resident verifier's way to the registry (verify.Claimer).
type Claims struct{ s *Syncer }

// Claims returns the syncer's Claims.
func (s *Syncer) Claims() *Claims { return &Claims{s: s} }

// ErrUnknownUser: the registry does not know the user (in this node's scope).
var ErrUnknownUser = errors.New("the registry does not know the user in this node's scope")

// Claim posts one claim and returns the registry's word (verify.Claimer); ctx bounds it.
func (c *Claims) Claim(ctx context.Context, e token.LoginEvent) (bool, token.Claim, error) {
	s := c.s
	if !s.m.Connected() {
		s.m.claimed(ClaimOffline)
		return false, token.Claim{}, ErrNoContact
	}
	rs, err := s.postLogins(ctx, []token.LoginEvent{e})
	switch {
	case err != nil:
		s.m.claimed(ClaimOffline)
		return false, token.Claim{}, err
	case rs[0].Unknown:
		s.m.claimed(ClaimOffline)
		return false, token.Claim{}, ErrUnknownUser
	case rs[0].Claimed:
		s.m.claimed(ClaimGranted)
		return true, token.Claim{}, nil
	}
	s.m.claimed(ClaimRefused)
	return false, token.Claim{Step: e.Step, Node: rs[0].By, At: rs[0].At}, nil
}

// Kick asks the outbox loop for a round soon.
func (c *Claims) Kick() {
	select {
	case c.s.outboxKick <- struct{}{}:
	default:
	}
}

// postLogins sends a login report and returns one result per event.
func (s *Syncer) postLogins(ctx context.Context, events []token.LoginEvent) ([]registryapi.LoginResult, error) {
	body, err := json.Marshal(registryapi.LoginReport{Events: events})
	if err != nil {
		return nil, err
	}
	resp, err := s.client.doMoving(ctx, http.MethodPost, registryapi.PathSyncLogins, nil, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError("POST", registryapi.PathSyncLogins, resp)
	}
	var a registryapi.LoginAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil {
		return nil, fmt.Errorf("POST %s: answer: %w", registryapi.PathSyncLogins, err)
	}
	if len(a.Results) != len(events) {
		return nil, fmt.Errorf("POST %s: %d results for %d events", registryapi.PathSyncLogins, len(a.Results), len(events))
	}
	return a.Results, nil
}

// outboxLoop reports the outbox after each kick, and every UsedEvery while a watch is open (the
// helper's logins write to it without kicking).
func (s *Syncer) outboxLoop(ctx context.Context) {
	state := store.NewState(s.o.Store)
	t := time.NewTicker(s.o.UsedEvery)
	defer t.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.outboxKick:
		case <-t.C:
		}
		if !s.m.Connected() {
			continue
		}
		if err := s.reportOutbox(ctx, state); err != nil && ctx.Err() == nil {
			level := slog.LevelDebug
			if err.Error() != lastErr {
				level, lastErr = slog.LevelWarn, err.Error()
			}
			s.log.Log(ctx, level, "reporting logins to the registry failed; retrying", "err", err)
			continue
		}
		lastErr = ""
	}
}

// reportOutbox sends the outbox in batches until it is empty, and deletes what the registry
// took. A claim the registry had granted to another node is logged as a possible replay.
func (s *Syncer) reportOutbox(ctx context.Context, state *store.State) error {
	for {
		var batch []store.OutboxEvent
		if err := state.View(func(x *store.StateTx) error {
			batch = x.Outbox(registryapi.MaxLoginEvents)
			return nil
		}); err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		var events []token.LoginEvent
		var seqs []uint64
		for _, b := range batch {
			seqs = append(seqs, b.Seq)
			if b.Event.Kind == "" {
				s.log.Warn("dropping an unreadable login event from state.db's outbox", "seq", b.Seq)
				continue
			}
			events = append(events, b.Event)
		}
		if len(events) > 0 {
			pctx, cancel := context.WithTimeout(ctx, max(s.o.RequestTimeout/5, time.Second))
			rs, err := s.postLogins(pctx, events)
			cancel()
			var se *statusErr
			if errors.As(err, &se) && se.status == http.StatusBadRequest {
				// The registry will never take this batch: drop it rather than block the rest.
				s.log.Error("the registry refused a login report; dropping it", "events", len(events), "err", err)
			} else if err != nil {
				return err
			} else {
				s.noteReported(events, rs)
			}
		}
		if err := state.Update(func(x *store.StateTx) error { return x.DeleteEvents(seqs) }); err != nil {
			return err
		}
	}
}

// noteReported logs and counts what the registry said of reported events.
func (s *Syncer) noteReported(events []token.LoginEvent, rs []registryapi.LoginResult) {
	claims, failures := 0, 0
	for i, r := range rs {
		e := events[i]
		switch {
		case e.Kind == token.EventClaim && !r.Claimed && !r.Unknown:
			s.m.possibleReplay()
			s.log.Error("possible replay: a code this node accepted without the registry had been accepted elsewhere first",
				"user", e.User, "token", e.Token, "step", e.Step, "accepted_at", e.At.UTC().Format(time.RFC3339),
				"first_by", r.By, "first_at", r.At.UTC().Format(time.RFC3339))
		case e.Kind == token.EventClaim:
			claims++
		case e.Kind == token.EventFailure && !r.Unknown:
			failures++
		}
	}
	s.m.loginEventsReported(len(events))
	s.log.Info("reported logins to the registry", "claims", claims, "failures", failures, "events", len(events))
}
