package registry

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/promtext"
)

// storeProbeTimeout bounds the store check a scrape makes.
const storeProbeTimeout = 2 * time.Second

// metrics counts what totp-registry exposes on metrics_listen (docs/registry-admin.md lists the
// metrics). Safe for concurrent use.
type metrics struct {
	mu        sync.Mutex
	requests  map[requestKey]uint64
	store     map[string]*promtext.Histogram // by operation: update, view
	storeErrs map[[2]string]uint64           // by operation and kind: unavailable, conflict
	lastErr   time.Time                      // of the last unavailable store
}

// requestKey is an endpoint (the route's pattern) and a status class ("2xx").
type requestKey struct{ endpoint, class string }

// Store operations and error kinds, the values of their labels.
var (
	storeOps      = []string{"update", "view"}
	storeErrKinds = []string{"unavailable", "conflict"}
)

func newMetrics() *metrics {
	m := &metrics{requests: map[requestKey]uint64{}, store: map[string]*promtext.Histogram{},
		storeErrs: map[[2]string]uint64{}}
	for _, op := range storeOps {
		h := promtext.NewHistogram()
		m.store[op] = &h
	}
	return m
}

func (m *metrics) observeStore(op string, d time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store[op].Observe(d)
	switch {
	case errors.Is(err, kv.ErrUnavailable):
		m.storeErrs[[2]string{op, "unavailable"}]++
		m.lastErr = time.Now()
	case errors.Is(err, kv.ErrConflict):
		m.storeErrs[[2]string{op, "conflict"}]++
	}
}

// timedStore is the server's store, with the latency and failures of Update and View counted.
type timedStore struct {
	kv.Store
	m *metrics
}

func (t timedStore) Update(ctx context.Context, fn func(kv.Txn) error) (int64, error) {
	start := time.Now()
	rev, err := t.Store.Update(ctx, fn)
	t.m.observeStore("update", time.Since(start), err)
	return rev, err
}

func (t timedStore) View(ctx context.Context, fn func(int64, kv.Txn) error) error {
	start := time.Now()
	err := t.Store.View(ctx, fn)
	t.m.observeStore("view", time.Since(start), err)
	return err
}

// statusRecorder keeps the status a handler answered; Unwrap lets http.ResponseController reach
// the connection (flushes and deadlines of the sync streams).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// counted counts every request by its route and status class once it is answered.
func (m *metrics) counted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		endpoint := r.Pattern // set by the ServeMux on this request
		if endpoint == "" {
			endpoint = "other"
		}
		class := "2xx"
		switch {
		case rec.status == 0 && r.Context().Err() != nil:
			class = "cancelled" // the client went away before an answer
		case rec.status >= 100:
			class = string(rune('0'+rec.status/100)) + "xx"
		}
		m.mu.Lock()
		m.requests[requestKey{endpoint, class}]++
		m.mu.Unlock()
	})
}

// MetricsHandler serves GET /metrics, for metrics_listen.
func (s *Server) MetricsHandler() http.Handler {
	return promtext.Handler(s.writeMetrics)
}

// writeMetrics writes the registry's metrics; it checks the store first (a View of at most
// storeProbeTimeout) for pam_totp_registry_store_up.
func (s *Server) writeMetrics(out io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), storeProbeTimeout)
	probe := s.store.View(ctx, func(int64, kv.Txn) error { return nil })
	cancel()

	w := promtext.NewWriter(out)
	defer w.Flush()
	w.Metric("pam_totp_registry_build_info", "gauge", "The running totp-registry's version.")
	w.Value("pam_totp_registry_build_info", `{version="`+promtext.Label(versionString())+`"}`, 1)
	w.Metric("pam_totp_registry_revision", "gauge", "The store's current revision.")
	w.Value("pam_totp_registry_revision", "", float64(s.store.Rev()))
	w.Metric("pam_totp_registry_compacted_revision", "gauge", "The revision up to which the store's history is compacted.")
	w.Value("pam_totp_registry_compacted_revision", "", float64(s.store.CompactedRev()))
	w.Metric("pam_totp_registry_store_up", "gauge", "1 if the store answered a read at this scrape (etcd reachable with quorum), else 0.")
	w.Value("pam_totp_registry_store_up", "", promtext.Bool(probe == nil))

	m := s.metrics
	m.mu.Lock()
	w.Metric("pam_totp_registry_store_last_unavailable_timestamp_seconds", "gauge", "When a store operation last failed as unavailable (Unix time; 0 never).")
	last := 0.0
	if !m.lastErr.IsZero() {
		last = float64(m.lastErr.UnixNano()) / 1e9
	}
	w.Value("pam_totp_registry_store_last_unavailable_timestamp_seconds", "", last)
	w.Metric("pam_totp_registry_store_errors_total", "counter", "Store operations that failed, by operation and kind (unavailable: etcd unreachable or without quorum; conflict: concurrent writers outlasted the retries).")
	for _, op := range storeOps {
		for _, k := range storeErrKinds {
			w.Value("pam_totp_registry_store_errors_total", `{op="`+op+`",kind="`+k+`"}`, float64(m.storeErrs[[2]string{op, k}]))
		}
	}
	w.Metric("pam_totp_registry_store_seconds", "histogram", "Duration of store transactions, by operation (update: one write transaction; view: one read at a pinned revision).")
	for _, op := range storeOps {
		m.store[op].Write(w, "pam_totp_registry_store_seconds", `op="`+op+`"`)
	}
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		return cmp.Or(cmp.Compare(a.endpoint, b.endpoint), cmp.Compare(a.class, b.class))
	})
	w.Metric("pam_totp_registry_requests_total", "counter", "Requests answered, by endpoint (the route) and status class (2xx, 4xx, 5xx; cancelled: the client left first).")
	for _, k := range keys {
		w.Value("pam_totp_registry_requests_total", `{endpoint="`+promtext.Label(k.endpoint)+`",class="`+k.class+`"}`, float64(m.requests[k]))
	}
	m.mu.Unlock()

	rev := s.idx.revision()
	now := s.now()
	s.mu.Lock()
	streams := 0
	for _, st := range s.streams {
		streams += len(st)
	}
	nodes := make([]string, 0, len(s.acks))
	for n := range s.acks {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	acks := make([]ack, len(nodes))
	for i, n := range nodes {
		acks[i] = s.acks[n]
	}
	s.mu.Unlock()
	w.Metric("pam_totp_registry_watch_streams", "gauge", "Open node watch streams on this replica.")
	w.Value("pam_totp_registry_watch_streams", "", float64(streams))
	w.Metric("pam_totp_registry_node_behind_revisions", "gauge", "Revisions a node's last ack to this replica trails the registry's (0: caught up).")
	for i, n := range nodes {
		w.Value("pam_totp_registry_node_behind_revisions", `{node="`+promtext.Label(n)+`"}`, float64(max(0, rev-acks[i].Rev)))
	}
	w.Metric("pam_totp_registry_node_lag_seconds", "gauge", "The lag a node reported in its last ack (a change's commit to its application there).")
	for i, n := range nodes {
		w.Value("pam_totp_registry_node_lag_seconds", `{node="`+promtext.Label(n)+`"}`, float64(acks[i].LagMS)/1000)
	}
	w.Metric("pam_totp_registry_node_last_ack_age_seconds", "gauge", "Seconds since a node's last ack to this replica.")
	for i, n := range nodes {
		w.Value("pam_totp_registry_node_last_ack_age_seconds", `{node="`+promtext.Label(n)+`"}`, max(0, now.Sub(acks[i].At).Seconds()))
	}
}
