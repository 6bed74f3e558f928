//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// claimTotp is the socket row with the cluster-wide claim on (docs/sync-protocol.md, "Claims and
// the failure budget"): its totp-syncd follows a real totp-registry on loopback (TLS, bbolt), so
// the resident verifier claims every code it accepts there before it answers, and reports every
// wrong code. The registry holds the pool's users, imported once; the row runs at the first size
// only (the node's tokens.db is the registry's set: the pool, no synthetic users).
type claimTotp struct {
	root, confDir, so, helper string
	window                    int
	syncd, registry           string // binaries
	reg                       *benchRegistry
	daemon                    *exec.Cmd
	ids                       map[string]string // pool user -> token id at the registry
	maxStep                   uint64            // the highest step a row accepted
	metrics                   string            // the daemon's metrics URL
	granted                   float64           // claims the registry granted, at the last row's end
}

func (m *claimTotp) Name() string    { return "pam_totp (socket, claims)" }
func (m *claimTotp) Service() string { return "bench-totp-claim" }

func (m *claimTotp) dir() string      { return filepath.Join(m.root, m.Service()) }
func (m *claimTotp) storeDir() string { return filepath.Join(m.dir(), "store") }
func (m *claimTotp) socket() string   { return filepath.Join(m.dir(), "run", "verify.sock") }

// process is the row's totp-syncd (nil before Prepare).
func (m *claimTotp) process() *os.Process {
	if m.daemon == nil {
		return nil
	}
	return m.daemon.Process
}

// Prepare starts the registry with the pool's tokens and a node's totp-syncd that syncs them; a
// second call (a later size) does nothing.
func (m *claimTotp) Prepare(ds *dataset) error {
	if m.reg != nil {
		return nil
	}
	ctx := context.Background()
	regDir := filepath.Join(m.dir(), "registry")
	for _, d := range []string{m.dir(), regDir, m.storeDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	reg, err := startBenchRegistry(ctx, syncOptions{Registry: m.registry}, "bbolt", regDir)
	if err != nil {
		return err
	}
	m.reg = reg
	var csv strings.Builder
	for _, a := range ds.Pool {
		fmt.Fprintf(&csv, "%s,%s,bench\n", a.Name, b32(a.Secret))
	}
	if _, err := reg.admin.ImportCSV(ctx, strings.NewReader(csv.String()), adminclient.ImportOptions{Scope: "bench"}); err != nil {
		return fmt.Errorf("import the pool at the registry: %w", err)
	}
	nn, err := reg.admin.AddNode(ctx, "bench-claims", "bench")
	if err != nil {
		return err
	}
	cred := filepath.Join(m.dir(), "node.credential")
	if err := writeExact(cred, nn.Credential+"\n", 0o600); err != nil {
		return err
	}
	// One config for the module, its helper and the daemon: the verifier claims when the
	// config the login names has a registry.
	conf := filepath.Join(m.dir(), "pam_totp.conf")
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	m.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	text := (&pamTotp{window: m.window}).configText(m.storeDir(), config.ModeEnforce) +
		fmt.Sprintf("[sync]\nregistry = %q\nca_file = %q\ncredential_file = %q\nmetrics_listen = \"127.0.0.1:%d\"\nverify_socket = %q\nbus = %q\n",
			reg.url, reg.caFile, cred, port, m.socket(), "unix:path="+filepath.Join(m.root, "no-bus"))
	if _, warnings, err := config.Parse([]byte(text)); err != nil || len(warnings) > 0 {
		return fmt.Errorf("bench config for the claims row: %v %v", err, warnings)
	}
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	m.daemon = exec.Command(m.syncd, "--config", conf)
	if err := m.daemon.Start(); err != nil {
		return fmt.Errorf("start totp-syncd: %w", err)
	}
	st, err := reg.status(ctx)
	if err != nil {
		return err
	}
	tokens := store.NewTokens(store.Options{Dir: m.storeDir(), Timeout: 10 * time.Second})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		meta, err := tokens.Meta()
		fi, serr := os.Stat(m.socket())
		if err == nil && int64(meta.Revision) >= st.Revision && serr == nil && fi.Mode().Type() == os.ModeSocket {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("totp-syncd did not sync revision %d and serve %s within a minute", st.Revision, m.socket())
		}
	}
	waitIdle(m.daemon.Process.Pid, time.Minute)
	m.ids = map[string]string{}
	if err := tokens.View(func(x *store.TokensTx) error {
		for _, a := range ds.Pool {
			toks, err := x.UserTokens(a.Name)
			if err != nil || len(toks) != 1 {
				return fmt.Errorf("%s has %d tokens on the node (%v), want 1", a.Name, len(toks), err)
			}
			m.ids[a.Name] = toks[0].ID
		}
		return nil
	}); err != nil {
		return err
	}
	return writeService(m.confDir, m.Service(),
		fmt.Sprintf("%s helper=%s config=%s socket=%s", m.so, m.helper, conf, m.socket()))
}

// Reset gives the pool fresh state on the node, and waits until every step the last row claimed
// at the registry is below the window: claims, unlike state.db, are not reset, and a step at or
// below a user's claim is refused as a replay from elsewhere.
func (m *claimTotp) Reset(ds *dataset) error {
	for m.maxStep > 0 && totp.Step(time.Now(), 30) < m.maxStep+2 {
		time.Sleep(100 * time.Millisecond)
	}
	err := os.Remove(filepath.Join(m.storeDir(), store.StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Lost counts the pool users whose last accepted step state.db does not hold. It fails when the
// registry granted fewer claims in the row than users logged in: then logins were accepted
// without the claim, and the row would measure something else.
func (m *claimTotp) Lost(ds *dataset, last map[string]lastLogin) (int, error) {
	lost := 0
	err := store.NewState(store.Options{Dir: m.storeDir()}).View(func(x *store.StateTx) error {
		for u, l := range last {
			m.maxStep = max(m.maxStep, l.Step)
			if x.LastStep(u, m.ids[u]) != l.Step {
				lost++
			}
		}
		return nil
	})
	if err != nil {
		return lost, err
	}
	granted, err := metricValue(m.metrics, `pam_totp_sync_claims_total{result="granted"}`)
	if err != nil {
		return lost, err
	}
	if granted-m.granted < float64(len(last)) {
		return lost, fmt.Errorf("the registry granted %v claims in the row, fewer than the %d users who logged in", granted-m.granted, len(last))
	}
	m.granted = granted
	return lost, nil
}

// metricValue reads one sample of a Prometheus text endpoint.
func metricValue(url, sample string) (float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no sample %s", url, sample)
}

// Close stops the row's totp-syncd and registry.
func (m *claimTotp) Close() error {
	var err error
	if m.daemon != nil {
		err = m.daemon.Process.Kill()
		_ = m.daemon.Wait()
		m.daemon = nil
	}
	if m.reg != nil {
		m.reg.stop()
		m.reg = nil
	}
	return err
}
