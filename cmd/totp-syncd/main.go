// Command totp-syncd keeps a login node's tokens.db equal to the registry's view of the node's
// users (docs/sync-protocol.md), so logins never wait on the network. On a standalone node (no
// [sync] registry) it is the local enrollment authority instead (pkg/localenroll): the same
// self-service over D-Bus, written to the node's own tokens.db.
//
//	totp-syncd [--config FILE] [--debug] [--bus ADDRESS]   run the daemon (totp-syncd.service)
//	totp-syncd status [--config FILE] [--json] [--verify]
//	totp-syncd --check-config [--config FILE]
//	totp-syncd --version
//
// The daemon also serves io.github.pamtotp.Sync1 on the system bus (package busapi), or on
// --bus ADDRESS or [sync] bus; without a bus it logs that once and syncs all the same.
//
// It is a thin main: the command line (cobra, package cmdline) and output here, the work in
// packages nodesync and busapi.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/authlog"
	"github.com/pam-totp/pam-totp/pkg/busapi"
	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/localenroll"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/syncbus"
	"github.com/pam-totp/pam-totp/pkg/verify"
	"github.com/pam-totp/pam-totp/pkg/verifyd"
	"github.com/pam-totp/pam-totp/pkg/version"
)

// exitConfig (EX_CONFIG) means "fix the configuration"; the unit does not restart on it.
const exitConfig = 78

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	cmdline.Setup(root, stdout, stderr)
	return cmdline.Run(root, args, func(s string) string { return s }, func(err error) int {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	})
}

// exit turns a status into what a cobra run returns.
func exit(code int) error {
	if code == 0 {
		return nil
	}
	return cmdline.ExitCode(code)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "totp-syncd [--config FILE] [--debug] [--bus ADDRESS]",
		Short: "Keep this login node's tokens in step with the registry",
		Long: "totp-syncd keeps this login node's tokens.db equal to the registry's view of its users and serves\n" +
			syncbus.Name + " on the system bus; on a standalone node (no [sync] registry) it is the\n" +
			"local enrollment authority instead. Config errors exit with 78 (EX_CONFIG).",
		Version: version.Version,
		Args:    cmdline.NoArgs,
	}
	path := root.PersistentFlags().String("config", paths.NodeConfig(), "config `FILE`")
	check := root.Flags().Bool("check-config", false, "validate the config and the sync files, then exit")
	debug := root.Flags().Bool("debug", false, "log every batch and reconnect")
	bus := root.Flags().String("bus", "", "D-Bus `ADDRESS` to serve "+syncbus.Name+" on (default: [sync] bus, else the system bus)")
	root.RunE = func(*cobra.Command, []string) error { return exit(serve(*path, *check, *debug, *bus, stdout, stderr)) }
	status := &cobra.Command{Use: "status", Short: "Show the node's sync status from tokens.db", Args: cmdline.NoArgs}
	asJSON := status.Flags().Bool("json", false, "print JSON")
	verify := status.Flags().Bool("verify", false, "recompute the digest from every record and compare it with meta")
	status.RunE = func(*cobra.Command, []string) error { return exit(showStatus(*path, *asJSON, *verify, stdout, stderr)) }
	root.AddCommand(status)
	return root
}

// serve runs the daemon, or with check only checks its config; it returns the exit status.
func serve(path string, check, debug bool, bus string, stdout, stderr io.Writer) int {
	load := loadConfig
	if check {
		load = checkConfig
	}
	cfg, code := load(path, stderr)
	if cfg == nil {
		return code
	}
	if check && len(cfg.Sync.Registry) == 0 {
		fmt.Fprintf(stdout, "%s: OK (standalone: no [sync] registry; totp-syncd is the local enrollment authority)\n", path)
		return 0
	}
	if check {
		if err := nodesync.CheckFiles(cfg.Sync); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: OK (registry %s)\n", path, cfg.Sync.Registry)
		return 0
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	busAddr := bus
	if busAddr == "" {
		busAddr = cfg.Sync.Bus
	}
	if len(cfg.Sync.Registry) == 0 {
		return standalone(ctx, cfg, busAddr, log)
	}
	return daemon(ctx, cfg, busAddr, log)
}

// standalone serves the D-Bus service with this node as its own enrollment authority
// (pkg/localenroll) and the resident verifier until ctx ends, and sweeps expired pending tokens
// every minute. With neither the bus nor the verifier it has nothing to do, so that is an error
// (systemd restarts the unit).
func standalone(ctx context.Context, cfg *config.Config, busAddr string, log *slog.Logger) int {
	auth, err := localenroll.New(localenroll.Options{Config: cfg, Log: log})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitConfig
	}
	if err := auth.Init(); err != nil {
		log.Error("token store unusable", "dir", cfg.Store.Dir, "err", err)
		return 1
	}
	var busDone <-chan struct{} // nil without the bus: never ready
	svc, busErr := busapi.Open(ctx, busAddr, busapi.Options{Config: cfg, Enroll: auth, Log: log})
	if busErr == nil {
		defer svc.Close()
		busDone = svc.Done()
		if err := svc.ServeSocket(ctx, cfg.SocketPath()); err != nil {
			log.Warn("no root socket: enrollment at login is unavailable", "err", err)
		}
	}
	verifying := serveVerifier(ctx, cfg, log, nil, nil)
	switch {
	case busErr != nil && !verifying:
		log.Error("no D-Bus service and no resident verifier: a standalone totp-syncd has nothing else to do", "err", busErr)
		return 1
	case busErr != nil:
		log.Warn("no D-Bus service (totp enroll and enrollment at login are unavailable); serving the resident verifier", "err", busErr)
	}
	log.Info("totp-syncd starting standalone: local enrollment authority (no [sync] registry)",
		"version", version.Version, "store", cfg.Store.Dir, "name", syncbus.Name)
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	for {
		if _, err := auth.Sweep(""); err != nil {
			log.Warn("sweep of expired pending tokens failed", "err", err)
		}
		select {
		case <-ctx.Done():
			log.Info("totp-syncd stopped")
			return 0
		case <-busDone:
			log.Error("lost the D-Bus connection; exiting to be restarted")
			return 1
		case <-sweep.C:
		}
	}
}

// serveVerifier serves the resident verifier ([sync] verify_socket) until ctx ends, counting
// logins in observe (nil: no metrics) and claiming codes through claims (nil standalone), and
// says whether it does; SIGHUP makes it read the
// configs logins name again. Without it logins use the helper, so a failure to listen is a
// warning.
func serveVerifier(ctx context.Context, cfg *config.Config, log *slog.Logger, observe func(string, time.Duration), claims verify.Claimer) bool {
	path := cfg.VerifySocketPath()
	if path == "" {
		log.Info("resident verifier off ([sync] verify_socket = \"none\"): every login execs the helper")
		return false
	}
	ln, err := rootsock.Listen(path)
	if err != nil {
		log.Warn("no resident verifier: every login execs the helper", "err", err)
		return false
	}
	configs := &config.Cache{}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				configs.Clear()
				log.Info("SIGHUP: the resident verifier reads the login configs again")
			case <-ctx.Done():
				return
			}
		}
	}()
	auth, authDebug := authLogs()
	// tokens.db and state.db stay open between logins (store.Resident: a flock per transaction,
	// so helpers and totp-admin share state.db as before; reopened when another process wrote).
	stores := store.NewResident()
	ex := verify.Exchange{Config: configs.Load, Stores: stores, Log: func(debug bool) *slog.Logger {
		if debug {
			return authDebug
		}
		return auth
	}, Claims: claims}
	go func() {
		defer stores.Close()
		if err := verifyd.Serve(ctx, ln, ex, log, observe); err != nil {
			log.Error("resident verifier stopped: logins exec the helper", "err", err)
		}
	}()
	log.Info("resident verifier", "socket", path)
	return true
}

// authLogs are the auth log (syslog authpriv, tagged pam-totp as the helper's lines) at info and
// at debug level; they live as long as the daemon.
func authLogs() (info, debug *slog.Logger) {
	info, _ = authlog.New("", "pam-totp", false)
	debug, _ = authlog.New("", "pam-totp", true)
	return info, debug
}

// loadConfig loads the config; code is the exit status on failure.
func loadConfig(path string, stderr io.Writer) (*config.Config, int) {
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return nil, exitConfig
	}
	return cfg, 0
}

// checkConfig is loadConfig for --check-config: an unknown key is an error too.
func checkConfig(path string, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Check(path)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return nil, exitConfig
	}
	return cfg, 0
}

// daemon syncs until ctx ends; busAddr "" is the system bus.
func daemon(ctx context.Context, cfg *config.Config, busAddr string, log *slog.Logger) int {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := securefile.MkdirAll(cfg.Store.Dir, securefile.SecretDir); err != nil {
		log.Error("store directory unusable", "dir", cfg.Store.Dir, "err", err)
		return 1
	}
	metrics := nodesync.NewMetrics(time.Now, version.Version)
	s, err := nodesync.New(nodesync.Options{
		Sync:    cfg.Sync,
		Store:   store.Options{Dir: cfg.Store.Dir, Timeout: cfg.Store.OpenTimeout},
		Log:     log,
		Metrics: metrics,
		Version: version.Version,
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitConfig
	}
	done := make(chan error, 1)
	if cfg.Sync.MetricsListen != "" {
		ln, err := nodesync.ListenMetrics(cfg.Sync.MetricsListen)
		if err != nil {
			log.Error("cannot serve metrics", "err", err)
			return 1
		}
		go func() { done <- nodesync.ServeMetrics(ctx, ln, metrics, log) }()
		log.Info("metrics", "listen", ln.Addr().String())
	}
	svc, err := busapi.Open(ctx, busAddr, busapi.Options{Config: cfg, Metrics: metrics, Kick: s.Kick, Log: log,
		Enroll: s.EnrollClient()}) // enrollment calls go to the replica the syncer follows
	switch {
	case errors.Is(err, busapi.ErrNameTaken):
		log.Error("no D-Bus service; syncing without it", "err", err)
	case err != nil:
		log.Warn("no D-Bus service (totp enroll, list and status are unavailable); syncing without it", "err", err)
	default:
		defer svc.Close()
		log.Info("D-Bus service", "name", syncbus.Name)
		if err := svc.ServeSocket(ctx, cfg.SocketPath()); err != nil {
			log.Warn("no root socket: enrollment at login is unavailable", "err", err)
		}
		go func() {
			select {
			case <-svc.Done():
				if ctx.Err() == nil {
					log.Warn("lost the D-Bus connection; syncing without it until restarted")
				}
			case <-ctx.Done():
			}
		}()
	}
	_ = serveVerifier(ctx, cfg, log, metrics.ObserveLogin, s.Claims()) // logins use the helper without it
	log.Info("totp-syncd starting", "version", version.Version, "registry", cfg.Sync.Registry, "store", cfg.Store.Dir)
	err = s.Run(ctx)
	stop()
	if cfg.Sync.MetricsListen != "" {
		if merr := <-done; merr != nil {
			log.Warn("metrics server", "err", merr)
		}
	}
	if err != nil {
		log.Error("totp-syncd stopped", "err", err)
		if errors.Is(err, store.ErrWriterBusy) {
			return exitConfig
		}
		return 1
	}
	log.Info("totp-syncd stopped")
	return 0
}

// showStatus prints the node's sync status; it returns the exit status.
func showStatus(path string, asJSON, verify bool, stdout, stderr io.Writer) int {
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	now := time.Now()
	st, err := nodesync.ReadStatus(cfg, verify, now)
	if err != nil {
		if errors.Is(err, store.ErrNoStore) {
			err = fmt.Errorf("%w (never synced: is totp-syncd running?)", err)
		}
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	} else {
		printStatus(stdout, st, cfg, now)
	}
	if st.Verified && !st.VerifyOK {
		if !asJSON {
			fmt.Fprintln(stderr, "error: the records do not match meta's count and digest; restart totp-syncd to resync")
		}
		return 1
	}
	return 0
}

func printStatus(w io.Writer, st nodesync.Status, cfg *config.Config, now time.Time) {
	reg := st.Registry
	if reg == "" {
		reg = "(none: standalone)"
	}
	fmt.Fprintf(w, "registry:          %s\n", reg)
	switch {
	case st.Source == "" || st.Source == "standalone":
		fmt.Fprintf(w, "tokens.db source:  %s\n", st.Source)
	case st.SourceSince.IsZero():
		fmt.Fprintf(w, "following:         %s\n", st.Source)
	default:
		fmt.Fprintf(w, "following:         %s since %s (%s ago)\n", st.Source, st.SourceSince.Local().Format(time.RFC3339),
			now.Sub(st.SourceSince).Round(time.Second))
	}
	if st.Epoch != "" {
		fmt.Fprintf(w, "store epoch:       %s\n", st.Epoch)
	}
	fmt.Fprintf(w, "applied revision:  %d\n", st.Revision)
	if st.LastContact.IsZero() {
		fmt.Fprintf(w, "last contact:      never\n")
	} else {
		fmt.Fprintf(w, "last contact:      %s (%s ago)\n", st.LastContact.Local().Format(time.RFC3339),
			now.Sub(st.LastContact).Round(time.Second))
	}
	switch {
	case len(cfg.Sync.Registry) == 0:
		fmt.Fprintf(w, "stale:             no (standalone: no registry to hear from)\n")
	case cfg.Sync.MaxOffline <= 0:
		fmt.Fprintf(w, "stale:             no limit (max_offline 0)\n")
	case st.Stale:
		fmt.Fprintf(w, "stale:             YES: beyond max_offline %s; logins %s\n", cfg.Sync.MaxOffline,
			map[string]string{config.OfflineServe: "are served from this copy", config.OfflineDeny: "of TOTP users are denied"}[cfg.Sync.Offline])
	default:
		fmt.Fprintf(w, "stale:             no (max_offline %s)\n", cfg.Sync.MaxOffline)
	}
	if len(cfg.Sync.Registry) == 0 {
		fmt.Fprintf(w, "records:           not kept in meta (standalone: no synced set; --verify counts them)\n")
	} else {
		fmt.Fprintf(w, "records:           %d\n", st.Count)
		fmt.Fprintf(w, "digest:            %s\n", st.Digest)
	}
	if len(cfg.Sync.Registry) > 0 {
		fmt.Fprintf(w, "claims:            each accepted code claimed at the registry within %s; without an answer: %s\n",
			cfg.Sync.ClaimTimeout, map[string]string{config.OfflineLocal: "accepted on this node's record (offline_claims local)",
				config.OfflineDeny: "refused (offline_claims deny)"}[cfg.Sync.OfflineClaims])
		switch {
		case st.Unreported < 0:
			fmt.Fprintf(w, "unreported logins: unknown (state.db unreadable)\n")
		default:
			fmt.Fprintf(w, "unreported logins: %d (claims made offline and wrong codes, for the registry)\n", st.Unreported)
		}
	}
	if st.Verified {
		fmt.Fprintf(w, "verify:            %s\n", verdict(st))
	}
}

// verdict is the verify line: the records against meta's synced set, or on a standalone node
// (no synced set to compare with) what was read back.
func verdict(st nodesync.Status) string {
	switch {
	case !st.Compared:
		return fmt.Sprintf("OK, every record read back: %d (standalone: no registry's set to compare with)", st.VerifiedCount)
	case st.VerifyOK:
		return "OK, matches meta"
	default:
		return fmt.Sprintf("MISMATCH: the records give %d, %s", st.VerifiedCount, st.VerifiedDigest)
	}
}
