package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncframe"
)

// Backup codes and passcodes are single use across the cluster: a login marks a code used in
// the node's state.db, and the used loop reports each mark whose record is still in tokens.db
// to the registry (POST /v1/sync/used), which deletes the record; the delete then reaches every
// node through the watch. Reporting is best effort: a failed report is retried on the next round,
// and a mark whose record is gone from tokens.db is not reported any more.

// Used-report tuning.
const (
	usedEvery      = 500 * time.Millisecond // a round while connected
	usedForceEvery = 2 * time.Second        // a full read even when neither file changed
	usedMaxEntries = 1000                   // the registry's bound per request
)

// fileStamp tells whether a file may have changed: inode, size and modification time.
type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

func stampOf(path string) fileStamp {
	fi, err := os.Lstat(path)
	if err != nil {
		return fileStamp{}
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = int64(sys.Ino)
	}
	return st
}

// usedReporter is the used loop's state; only its goroutine touches it.
type usedReporter struct {
	s        *Syncer
	state    *store.State
	reported map[string]bool // keys the registry took in this process
	stamps   [2]fileStamp    // state.db and tokens.db at the last complete round
	lastFull time.Time       // when the last complete round was
	pending  bool            // the last round left marks unreported
	lastErr  string          // the last failure, logged at warning level once
}

// kickUsed asks the used loop for a round soon (after a batch or a bookmark).
func (s *Syncer) kickUsed() {
	select {
	case s.usedKick <- struct{}{}:
	default:
	}
}

// usedLoop reports used marks after each kick, and every usedEvery while a watch is open.
func (s *Syncer) usedLoop(ctx context.Context) {
	u := &usedReporter{s: s, state: store.NewState(s.o.Store), reported: map[string]bool{}}
	t := time.NewTicker(s.o.UsedEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.usedKick:
		case <-t.C:
			if !s.m.Connected() {
				continue
			}
		}
		u.round(ctx)
	}
}

// round reads the marks not yet reported whose record is still in tokens.db and posts them.
func (u *usedReporter) round(ctx context.Context) {
	stamps := [2]fileStamp{stampOf(u.state.Path()), stampOf(filepath.Join(u.s.o.Store.Dir, store.TokensFile))}
	if !u.pending && stamps == u.stamps && time.Since(u.lastFull) < usedForceEvery {
		return // nothing changed since a round that left nothing behind
	}
	marks, err := u.unreported()
	if err != nil {
		u.pending = true
		u.failed("reading used backup codes failed; retrying", 0, err)
		return
	}
	u.stamps, u.lastFull, u.pending = stamps, time.Now(), false
	for len(marks) > 0 {
		n := min(len(marks), usedMaxEntries)
		if err := u.post(ctx, marks[:n]); err != nil {
			u.pending = true
			if ctx.Err() == nil {
				u.failed("reporting used backup codes failed; retrying", len(marks), err)
			}
			return
		}
		marks = marks[n:]
	}
	u.lastErr = ""
}

// failed logs a failed round: at warning level when the error is new, else at debug level.
func (u *usedReporter) failed(msg string, codes int, err error) {
	level := slog.LevelDebug
	if err.Error() != u.lastErr {
		level, u.lastErr = slog.LevelWarn, err.Error()
	}
	u.s.log.Log(context.Background(), level, msg, "codes", codes, "err", err)
}

// unreported returns the used marks of state.db that were not reported in this process and
// whose record tokens.db still holds.
func (u *usedReporter) unreported() ([]registryapi.UsedMark, error) {
	var marks []registryapi.UsedMark
	now := u.s.o.Now().UTC()
	err := u.state.View(func(x *store.StateTx) error {
		return x.ForEachBackupUsed(func(user, id string, at time.Time) error {
			key := syncframe.BackupKey(user, id)
			if _, _, _, err := syncframe.ParseKey(key); err != nil || u.reported[key] {
				return nil
			}
			if at.IsZero() {
				at = now
			}
			marks = append(marks, registryapi.UsedMark{Key: key, At: at.UTC()})
			return nil
		})
	})
	if err != nil || len(marks) == 0 {
		return nil, err
	}
	live := marks[:0]
	err = u.s.tokens.View(func(x *store.TokensTx) error {
		for _, m := range marks {
			_, user, id, _ := syncframe.ParseKey(m.Key)
			if x.HasBackupCode(user, id) {
				live = append(live, m)
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrNoStore) || errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return live, err
}

// post sends one report with a short deadline; on success its keys count as reported.
func (u *usedReporter) post(ctx context.Context, marks []registryapi.UsedMark) error {
	body, err := json.Marshal(registryapi.UsedReport{Used: marks})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, max(u.s.o.RequestTimeout/5, time.Second))
	defer cancel()
	resp, err := u.s.client.do(pctx, http.MethodPost, "/v1/sync/used", nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError("POST", "/v1/sync/used", resp)
	}
	var out struct {
		Deleted int64 `json:"deleted"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil {
		return fmt.Errorf("POST /v1/sync/used: answer: %w", err)
	}
	ids := make([]string, len(marks))
	for i, m := range marks {
		u.reported[m.Key] = true
		ids[i] = m.Key
	}
	u.s.m.usedReported(len(marks))
	u.s.log.Info("reported used backup codes", "codes", len(marks), "deleted", out.Deleted, "keys", ids)
	return nil
}
