package store

import (
	"slices"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/pkg/token"
)

// TestOutbox: events come back oldest first, deleted ones are gone, a state.db made before the
// outbox reads as an empty one and takes events, and an unreadable event comes back kindless.
func TestOutbox(t *testing.T) {
	t.Parallel()
	o := tempStore(t)
	s := NewState(o)
	// A state.db as written before the outbox existed.
	if err := s.Update(func(x *StateTx) error { return x.SetLastStep("ann", "t1", 5) }); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(x *StateTx) error {
		if n := x.OutboxLen(); n != 0 || len(x.Outbox(10)) != 0 {
			t.Errorf("a state.db without an outbox: %d events", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	err := s.Update(func(x *StateTx) error {
		for i := range 5 {
			if err := x.AddEvent(token.LoginEvent{Kind: token.EventFailure, User: "ann", At: at.Add(time.Duration(i) * time.Second)}); err != nil {
				return err
			}
		}
		return x.tx.Bucket(bucketOutbox).Put([]byte("\x00\x00\x00\x00\x00\x00\x00\x09"), []byte("not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []OutboxEvent
	_ = s.View(func(x *StateTx) error { got = x.Outbox(3); return nil })
	if len(got) != 3 || got[0].Seq != 1 || !got[2].Event.At.Equal(at.Add(2*time.Second)) {
		t.Fatalf("Outbox(3) = %+v, want the 3 oldest", got)
	}
	if err := s.Update(func(x *StateTx) error { return x.DeleteEvents([]uint64{1, 2, 3}) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(x *StateTx) error { got = x.Outbox(10); return nil })
	if len(got) != 3 || got[0].Seq != 4 || got[2].Seq != 9 || got[2].Event.Kind != "" {
		t.Errorf("after deleting 3: %+v, want seqs 4, 5 and the unreadable 9 without a kind", got)
	}
}

// TestPendingUsers: each user with a pending token once, no one whose tokens are all active,
// disabled or only named like the pending state.
func TestPendingUsers(t *testing.T) {
	t.Parallel()
	tokens := NewTokens(tempStore(t))
	err := tokens.Update(func(x *TokensTx) error {
		for _, tk := range []token.Token{
			withState(tok("ann", "t1"), token.Pending), withState(tok("ann", "t2"), token.Pending),
			withState(tok("bob", "t1"), token.Active), withState(tok("cid", "t1"), token.Disabled),
			withState(tok("dan", "t1"), token.Pending),
		} {
			if err := x.PutToken(tk); err != nil {
				return err
			}
		}
		named := withState(tok("eve", "t1"), token.Active)
		named.Name = `"state":"pending"`
		return x.PutToken(named)
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := tokens.View(func(x *TokensTx) error {
		var err error
		got, err = x.PendingUsers()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"ann", "dan"}) {
		t.Errorf("PendingUsers = %v, want [ann dan]", got)
	}
}

func withState(t token.Token, s token.State) token.Token { t.State = s; return t }
