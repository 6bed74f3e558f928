package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/pam-totp/pam-totp/pkg/securefile"
)

// A resident process (totp-syncd's verifier) answers many logins; opening tokens.db and state.db
// for each of them (securefile checks, flock, mmap, reading the meta pages and, for a writer, the
// freelist) is most of what a socket login costs. Resident keeps them open, without giving up
// what "nobody keeps a database open between transactions" protects:
//
//   - Other processes still use the files. The exec'd helper (the fallback) and totp-admin write
//     state.db; totp-syncd's syncer writes tokens.db in place (Apply) or renames a new file over
//     it (a full resync); totp-admin writes tokens.db on a standalone node. So a kept handle holds
//     no flock between transactions: bbolt's lock, taken at open, is released at once, and every
//     transaction takes it again on the kept descriptor the way store.lock does for a fresh
//     open: shared for a read, exclusive for a write, within Options.Timeout. A helper's write and
//     a daemon's login are therefore as serialised as two helpers' are today, and replay records
//     and failure counts stay exact whichever way a login came.
//   - bbolt caches what it read at open (for a writer also the freelist), and a file written or
//     replaced by another process makes that stale. So every transaction, under its flock, first
//     checks that the directory is still safe (securefile.CheckDir), that the path still names
//     the open file (device and inode: a rename over tokens.db, a removed state.db) with root
//     0600, and that the file's last committed transaction id is the one this handle last saw
//     (another process's commit raises it). If any of that changed, the handle is closed and the
//     file opened again, as a per-transaction open would; only then does the transaction run.
//     Reading the id begins a read transaction, which reads only the two meta pages (checksummed),
//     so it is safe on a stale mapping.
//   - Within the process, transactions on one file are ordered by a sync.RWMutex: reads run
//     together (the first takes the shared flock, the last releases it), a write runs alone. Any
//     error, and any panic of bbolt on a damaged page, closes the handle: the next transaction
//     starts from a fresh open.
//
// Writes of concurrent logins are grouped into one bbolt transaction (group commit, see update);
// each login's write is committed, with its fdatasyncs, before its verdict is sent.

// Resident hands out tokens.db and state.db of each store directory with their handles kept open
// between transactions. A nil *Resident hands out per-transaction ones (NewTokens, NewState): the
// helper's way.
type Resident struct {
	mu     sync.Mutex
	stores map[Options]*residentStore
	closed bool
}

type residentStore struct {
	tokens *Tokens
	state  *State
}

// NewResident returns an empty Resident; Close it when the process stops serving logins.
func NewResident() *Resident { return &Resident{stores: map[Options]*residentStore{}} }

func (r *Resident) get(o Options) *residentStore {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	s := r.stores[o]
	if s == nil {
		s = &residentStore{
			tokens: &Tokens{opts: o, h: &handle{dir: o.Dir, name: TokensFile, readOnly: true, timeout: o.timeout()}},
			state:  &State{opts: o, h: &handle{dir: o.Dir, name: StateFile, timeout: o.timeout()}},
		}
		r.stores[o] = s
	}
	return s
}

// Tokens returns o's tokens.db: reads (View, ReadUser, Meta) go through the kept read-only
// handle, writes open the file per transaction as NewTokens's do.
func (r *Resident) Tokens(o Options) *Tokens {
	if s := r.get(o); s != nil {
		return s.tokens
	}
	return NewTokens(o)
}

// State returns o's state.db with its handle kept open.
func (r *Resident) State(o Options) *State {
	if s := r.get(o); s != nil {
		return s.state
	}
	return NewState(o)
}

// Close closes every kept handle; later calls hand out per-transaction stores.
func (r *Resident) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for _, s := range r.stores {
		errs = append(errs, s.tokens.h.close(), s.state.h.close())
	}
	r.stores = nil
	return errors.Join(errs...)
}

// handle is one database file kept open between transactions.
type handle struct {
	dir, name string
	readOnly  bool
	timeout   time.Duration

	mu       sync.RWMutex // reads shared, writes and (re)opening exclusive
	db       *bolt.DB     // nil: not open
	file     *os.File     // db's file, for the flock
	dev, ino uint64       // of db's file
	txid     atomic.Int64 // the last committed transaction db has seen; -1 after a panic

	lockMu  sync.Mutex // readers and the shared flock on db's descriptor
	readers int

	qmu     sync.Mutex // the writes waiting to be committed
	queue   []*write
	leading bool         // a goroutine is committing; it takes the queue when done
	grouped atomic.Int64 // writes committed together with another (for tests)
}

func (h *handle) path() string { return filepath.Join(h.dir, h.name) }

// errStale: the kept handle no longer describes the file; it is opened again.
var errStale = errors.New("stale handle")

// reopens bounds how often one transaction opens the file again before it gives up: another
// process that commits faster than we can open is not waited out forever.
const reopens = 3

// view runs fn in a read transaction. missing is returned (without fn) when the file does not
// exist.
func (h *handle) view(missing error, fn func(*bolt.Tx) error) (err error) {
	for range reopens {
		h.mu.RLock()
		err = h.viewOnce(missing, fn)
		h.mu.RUnlock()
		if !errors.Is(err, errStale) {
			return err
		}
		if err := h.reopen(missing); err != nil {
			return err
		}
	}
	return fmt.Errorf("read %s: changed by another process %d times in a row", h.path(), reopens)
}

func (h *handle) viewOnce(missing error, fn func(*bolt.Tx) error) (err error) {
	if h.db == nil {
		return errStale
	}
	if err := h.rlock(); err != nil {
		return err
	}
	defer h.runlock()
	if err := h.current(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return missing
		}
		return err
	}
	defer h.guard(&err)
	tx, err := h.db.Begin(false)
	if err != nil {
		return fmt.Errorf("read %s: %w", h.path(), err)
	}
	defer tx.Rollback()
	if int64(tx.ID()) != h.txid.Load() {
		return errStale // another process committed since; this mapping may not cover its pages
	}
	return fn(tx)
}

// update runs fn in a write transaction under the exclusive flock; prepare (ensure) runs first.
// Writes that arrive while another is being committed are grouped: the next commit runs all of
// them, in arrival order, in one bbolt transaction (one pair of fdatasyncs). A lone write waits
// for nobody. update returns only once its write is committed (or failed): a caller never sends
// a verdict for a step that is not on disk. Writes in one group see each other's changes, as
// consecutive transactions would (two logins with one code: the second is a replay).
func (h *handle) update(prepare func() error, fn func(*bolt.Tx) error) error {
	if err := prepare(); err != nil {
		return err
	}
	w := &write{fn: fn, prepare: prepare, done: make(chan error, 1)}
	h.qmu.Lock()
	h.queue = append(h.queue, w)
	lead := !h.leading
	h.leading = true
	h.qmu.Unlock()
	if lead {
		h.lead()
	}
	return <-w.done
}

// write is one caller's write transaction waiting in the queue.
type write struct {
	fn      func(*bolt.Tx) error
	prepare func() error
	done    chan error
}

// lead commits the queued writes as one group, then hands the lead to a new goroutine if more
// arrived meanwhile, so that the leader's own login is not held up by later ones.
func (h *handle) lead() {
	h.qmu.Lock()
	group := h.queue
	h.queue = nil
	h.qmu.Unlock()
	h.commitGroup(group)
	h.qmu.Lock()
	defer h.qmu.Unlock()
	if len(h.queue) == 0 {
		h.leading = false
		return
	}
	go h.lead()
}

// groupError is the error of the i-th write of a group, which rolled the whole group back.
type groupError struct {
	i   int
	err error
}

func (e *groupError) Error() string { return e.err.Error() }
func (e *groupError) Unwrap() error { return e.err }

// commitGroup runs the writes in one transaction. If one of them fails, the transaction is
// rolled back and each write runs again in a transaction of its own, so one login's error is
// not another's.
func (h *handle) commitGroup(group []*write) {
	if len(group) > 1 {
		h.grouped.Add(int64(len(group)))
	}
	err := h.updateRetry(group[0].prepare, func(tx *bolt.Tx) error {
		for i, w := range group {
			if err := w.fn(tx); err != nil {
				return &groupError{i: i, err: err}
			}
		}
		return nil
	})
	var ge *groupError
	if errors.As(err, &ge) && len(group) > 1 {
		for _, w := range group {
			w.done <- h.updateRetry(w.prepare, w.fn)
		}
		return
	}
	if ge != nil {
		err = ge.err
	}
	for _, w := range group {
		w.done <- err
	}
}

// updateRetry runs fn in one write transaction, opening the file again when it is stale.
func (h *handle) updateRetry(prepare func() error, fn func(*bolt.Tx) error) (err error) {
	for range reopens {
		h.mu.Lock()
		err = h.updateOnce(fn)
		h.mu.Unlock()
		if !errors.Is(err, errStale) {
			return err
		}
		if err := prepare(); err != nil {
			return err
		}
		if err := h.reopen(nil); err != nil {
			return err
		}
	}
	return fmt.Errorf("write %s: changed by another process %d times in a row", h.path(), reopens)
}

func (h *handle) updateOnce(fn func(*bolt.Tx) error) (err error) {
	if h.db == nil {
		return errStale
	}
	fd := int(h.file.Fd())
	if err := lock(h.file, true, h.timeout); err != nil {
		return fmt.Errorf("lock %s: %w", h.path(), err)
	}
	err = h.commit(fn)
	_ = unix.Flock(fd, unix.LOCK_UN) // before any close: the descriptor's number may be reused
	if err != nil && !errors.Is(err, errStale) {
		h.closeLocked() // whatever bbolt holds in memory after a failed commit is not trusted
	}
	return err
}

// commit runs fn in one bbolt write transaction on a handle that is still current.
func (h *handle) commit(fn func(*bolt.Tx) error) (err error) {
	if err := h.current(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errStale
		}
		return err
	}
	defer h.guard(&err)
	tx, err := h.db.Begin(false)
	if err != nil {
		return fmt.Errorf("read %s: %w", h.path(), err)
	}
	id := tx.ID()
	_ = tx.Rollback()
	if int64(id) != h.txid.Load() {
		return errStale
	}
	return h.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		h.txid.Store(int64(tx.ID()))
		return nil
	})
}

// current checks, under the flock, that the directory is safe and the path still names the open
// file, root 0600. fs.ErrNotExist when the file is gone; errStale when it was replaced.
func (h *handle) current() error {
	if err := securefile.CheckDir(h.dir, securefile.SecretDir); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(h.path(), &st); err != nil {
		if err == unix.ENOENT {
			return fs.ErrNotExist
		}
		return &fs.PathError{Op: "lstat", Path: h.path(), Err: err}
	}
	if uint64(st.Dev) != h.dev || st.Ino != h.ino {
		return errStale
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(os.Geteuid()) || st.Mode&0o077 != 0 {
		return fmt.Errorf("%s %s: not a regular file of ours with mode 0600 (mode %04o, uid %d): %w",
			h.name, h.path(), st.Mode&0o7777, st.Uid, securefile.ErrUnsafe)
	}
	return nil
}

// reopen opens the file again for view (taking the exclusive in-process lock).
func (h *handle) reopen(missing error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reopenLocked(missing)
}

// reopenLocked closes the handle and opens the file again, the way a per-transaction open does
// (securefile, flock within the timeout), then gives the flock back. h.mu is held exclusively.
// A missing file is missing when that is not nil.
func (h *handle) reopenLocked(missing error) (err error) {
	h.closeLocked()
	db, file, err := openFile(h.dir, h.name, h.readOnly, false, h.timeout)
	if err != nil {
		if missing != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNoStore)) {
			return missing
		}
		return err
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(int(file.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", h.path(), err)
	}
	defer guard(h.path(), &err)
	tx, err := db.Begin(false)
	if err != nil {
		return fmt.Errorf("read %s: %w", h.path(), err)
	}
	txid := tx.ID()
	_ = tx.Rollback()
	if err := unix.Flock(int(file.Fd()), unix.LOCK_UN); err != nil {
		return fmt.Errorf("unlock %s: %w", h.path(), err)
	}
	h.db, h.file, h.dev, h.ino = db, file, uint64(st.Dev), st.Ino
	h.txid.Store(int64(txid))
	return nil
}

// guard is store.guard for a kept handle: a panic in bbolt is an error, and the handle is
// closed. h.mu is held (shared or exclusive); closing under a shared hold is deferred to the
// next transaction, which finds the handle stale.
func (h *handle) guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("read %s: corrupt database: %v", h.path(), r)
		h.txid.Store(-1) // the next transaction reopens
	}
}

func (h *handle) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closeLocked()
}

func (h *handle) closeLocked() error {
	if h.db == nil {
		return nil
	}
	err := h.db.Close()
	h.db, h.file = nil, nil
	return err
}

// rlock takes the shared flock for the first reader of the process; runlock gives it back with
// the last. The flock belongs to the open descriptor, so readers of one handle share one.
func (h *handle) rlock() error {
	h.lockMu.Lock()
	defer h.lockMu.Unlock()
	if h.readers == 0 {
		if err := lock(h.file, false, h.timeout); err != nil {
			return fmt.Errorf("lock %s: %w", h.path(), err)
		}
	}
	h.readers++
	return nil
}

func (h *handle) runlock() {
	h.lockMu.Lock()
	defer h.lockMu.Unlock()
	h.readers--
	if h.readers == 0 {
		h.unlock()
	}
}

func (h *handle) unlock() { _ = unix.Flock(int(h.file.Fd()), unix.LOCK_UN) }
