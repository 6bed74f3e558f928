package nodesync

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/pam-totp/pam-totp/pkg/promtext"
)

// Resync reasons, the values of pam_totp_sync_resyncs_total's reason label.
const (
	ReasonNoStore        = "no_store"        // tokens.db missing
	ReasonSchema         = "schema"          // tokens.db of an unknown schema
	ReasonNoRevision     = "no_revision"     // never synced (standalone file, revision 0)
	ReasonSource         = "source"          // tokens.db came from another registry (written before epochs)
	ReasonEpoch          = "epoch"           // the registry serves another store epoch than tokens.db's
	ReasonStoreCheck     = "store_check"     // tokens.db failed its checks (unsafe, corrupt, bad meta)
	ReasonCompacted      = "compacted"       // 410 Gone, or a compacted error frame
	ReasonDigestMismatch = "digest_mismatch" // a bookmark disagreed with meta
)

// Verdicts of the resident verifier, the values of pam_totp_verifier_logins_total's label.
var verdicts = []string{"success", "auth_err", "user_unknown", "maxtries", "authinfo_unavail", "system_err"}

// Metrics is what totp-syncd exposes. Safe for concurrent use.
type Metrics struct {
	mu          sync.Mutex
	now         func() time.Time
	version     string
	appliedRev  int64
	registryRev int64
	lastContact time.Time
	tokens      int64
	connected   bool
	resyncs     map[string]uint64
	mismatches  uint64
	apply       promtext.Histogram
	usedCodes   uint64
	logins      map[string]uint64 // by verdict, answered by the resident verifier
	exchange    promtext.Histogram
	claims      map[string]uint64 // by result (ClaimGranted, ...)
	replays     uint64
	reported    uint64
	replica     string    // the registry replica followed
	since       time.Time // since when
	failovers   uint64
}

// NewMetrics returns empty metrics; now gives the staleness.
func NewMetrics(now func() time.Time, version string) *Metrics {
	if now == nil {
		now = time.Now
	}
	return &Metrics{now: now, version: version, resyncs: map[string]uint64{}, apply: promtext.NewHistogram(),
		logins: map[string]uint64{}, exchange: promtext.NewHistogram(), claims: map[string]uint64{}}
}

func (m *Metrics) setStore(rev, tokens int64, lastContact time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appliedRev, m.tokens = rev, tokens
	if lastContact.After(m.lastContact) {
		m.lastContact = lastContact
	}
}

func (m *Metrics) setReplica(url string, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replica, m.since = url, since
}

func (m *Metrics) failover() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failovers++
}

// Replica returns the registry replica followed, and since when.
func (m *Metrics) Replica() (string, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replica, m.since
}

// Failovers counts the moves to another replica.
func (m *Metrics) Failovers() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failovers
}

func (m *Metrics) seenRevision(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registryRev = max(m.registryRev, rev)
}

func (m *Metrics) setConnected(c bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.connected = c
}

func (m *Metrics) resync(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resyncs[reason]++
	if reason == ReasonDigestMismatch {
		m.mismatches++
	}
}

func (m *Metrics) observeApply(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apply.Observe(d)
}

// ObserveLogin counts a login the resident verifier answered, with its verdict and how long the
// exchange took (the user's typing included).
func (m *Metrics) ObserveLogin(verdict string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logins[verdict]++
	m.exchange.Observe(d)
}

func (m *Metrics) claimed(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims[result]++
}

// Claims returns how many claims the resident verifier made with a result.
func (m *Metrics) Claims(result string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.claims[result]
}

func (m *Metrics) possibleReplay() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replays++
}

// PossibleReplays returns how many offline claims the registry had granted elsewhere first.
func (m *Metrics) PossibleReplays() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replays
}

func (m *Metrics) loginEventsReported(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reported += uint64(n)
}

func (m *Metrics) usedReported(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.usedCodes += uint64(n)
}

// UsedReported returns how many used backup codes and passcodes the registry took.
func (m *Metrics) UsedReported() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usedCodes
}

// Resyncs returns the count of resyncs for a reason.
func (m *Metrics) Resyncs(reason string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resyncs[reason]
}

// Connected reports whether a watch stream is open.
func (m *Metrics) Connected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connected
}

// WriteTo writes the metrics in the Prometheus text exposition format (version 0.0.4).
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pw := promtext.NewWriter(w)
	metric, value := pw.Metric, pw.Value
	metric("pam_totp_sync_build_info", "gauge", "The running totp-syncd's version.")
	value("pam_totp_sync_build_info", `{version="`+promtext.Label(m.version)+`"}`, 1)
	metric("pam_totp_sync_applied_revision", "gauge", "Registry revision applied to tokens.db.")
	value("pam_totp_sync_applied_revision", "", float64(m.appliedRev))
	metric("pam_totp_sync_registry_revision", "gauge", "Highest registry revision seen in a stream.")
	value("pam_totp_sync_registry_revision", "", float64(m.registryRev))
	metric("pam_totp_sync_last_contact_timestamp_seconds", "gauge", "When tokens.db last recorded contact with the registry (Unix time; 0 never).")
	staleness := math.Inf(1)
	if !m.lastContact.IsZero() {
		value("pam_totp_sync_last_contact_timestamp_seconds", "", float64(m.lastContact.UnixNano())/1e9)
		staleness = max(0, m.now().Sub(m.lastContact).Seconds())
	} else {
		value("pam_totp_sync_last_contact_timestamp_seconds", "", 0)
	}
	metric("pam_totp_sync_staleness_seconds", "gauge", "Seconds since tokens.db last recorded contact with the registry (+Inf never); what max_offline is checked against.")
	value("pam_totp_sync_staleness_seconds", "", staleness)
	metric("pam_totp_sync_tokens", "gauge", "Records (tokens and backup codes) in tokens.db.")
	value("pam_totp_sync_tokens", "", float64(m.tokens))
	metric("pam_totp_sync_connected", "gauge", "1 while a watch stream to the registry is open.")
	value("pam_totp_sync_connected", "", promtext.Bool(m.connected))
	metric("pam_totp_sync_resyncs_total", "counter", "Full resyncs from a snapshot, by reason.")
	for _, r := range []string{ReasonNoStore, ReasonSchema, ReasonNoRevision, ReasonSource, ReasonEpoch, ReasonStoreCheck, ReasonCompacted, ReasonDigestMismatch} {
		value("pam_totp_sync_resyncs_total", `{reason="`+r+`"}`, float64(m.resyncs[r]))
	}
	metric("pam_totp_sync_replica_info", "gauge", "The registry replica this node follows (1, labelled with its URL).")
	if m.replica != "" {
		value("pam_totp_sync_replica_info", `{url="`+promtext.Label(m.replica)+`"}`, 1)
	}
	metric("pam_totp_sync_replica_since_timestamp_seconds", "gauge", "Since when the node follows that replica (Unix time).")
	value("pam_totp_sync_replica_since_timestamp_seconds", "", float64(m.since.UnixNano())/1e9)
	metric("pam_totp_sync_failovers_total", "counter", "Moves to another registry replica after a failure (no connection, 503, a stalled stream).")
	value("pam_totp_sync_failovers_total", "", float64(m.failovers))
	metric("pam_totp_sync_digest_mismatches_total", "counter", "Bookmarks whose count or digest disagreed with tokens.db.")
	value("pam_totp_sync_digest_mismatches_total", "", float64(m.mismatches))
	metric("pam_totp_sync_used_reported_total", "counter", "Used backup codes and passcodes reported to the registry, which deletes them on every node.")
	value("pam_totp_sync_used_reported_total", "", float64(m.usedCodes))
	metric("pam_totp_sync_claims_total", "counter", "Codes the resident verifier asked the registry to claim before accepting them, by result (offline: no answer, decided by offline_claims).")
	for _, r := range []string{ClaimGranted, ClaimRefused, ClaimOffline} {
		value("pam_totp_sync_claims_total", `{result="`+r+`"}`, float64(m.claims[r]))
	}
	metric("pam_totp_sync_login_events_reported_total", "counter", "Login events (claims made offline, wrong codes) reported to the registry from state.db's outbox.")
	value("pam_totp_sync_login_events_reported_total", "", float64(m.reported))
	metric("pam_totp_sync_possible_replays_total", "counter", "Codes accepted here without the registry that the registry had granted elsewhere first.")
	value("pam_totp_sync_possible_replays_total", "", float64(m.replays))
	metric("pam_totp_sync_apply_seconds", "histogram", "Time to apply one watch batch to tokens.db.")
	m.apply.Write(pw, "pam_totp_sync_apply_seconds", "")
	metric("pam_totp_verifier_logins_total", "counter", "Logins answered by the resident verifier, by verdict (logins that pam_totp.so sent to the helper are not counted here).")
	for _, v := range verdicts {
		value("pam_totp_verifier_logins_total", `{verdict="`+v+`"}`, float64(m.logins[v]))
	}
	metric("pam_totp_verifier_exchange_seconds", "histogram", "Time from a login's connection to its verdict at the resident verifier, the user's typing included.")
	m.exchange.Write(pw, "pam_totp_verifier_exchange_seconds", "")
	return pw.Flush()
}

// Handler serves GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return promtext.Handler(func(w io.Writer) { m.WriteTo(w) })
}

// ListenMetrics binds addr (so that a taken port fails at start, not later).
func ListenMetrics(addr string) (net.Listener, error) { return promtext.Listen("metrics_listen", addr) }

// ServeMetrics serves m on ln until ctx ends.
func ServeMetrics(ctx context.Context, ln net.Listener, m *Metrics, log *slog.Logger) error {
	return promtext.Serve(ctx, ln, m.Handler(), log)
}
