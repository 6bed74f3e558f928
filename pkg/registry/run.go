package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/pam-totp/pam-totp/pkg/kv"
	"github.com/pam-totp/pam-totp/pkg/promtext"
	"github.com/pam-totp/pam-totp/pkg/seal"
)

// openTimeout bounds the wait for the store's file lock (another registry on the same file).
const openTimeout = 3 * time.Second

// OpenStore opens the config's kv store: bbolt with its history limit, or etcd (whose history
// etcd's compaction bounds).
func OpenStore(cfg *Config) (kv.Store, error) {
	sc := cfg.Store
	if sc.Backend == BackendEtcd {
		tc, err := sc.TLSConfig()
		if err != nil {
			return nil, err
		}
		st, err := kv.OpenEtcd(kv.EtcdOptions{Endpoints: sc.Endpoints, Prefix: sc.Prefix, TLS: tc,
			DialTimeout: sc.DialTimeout, RequestTimeout: sc.RequestTimeout})
		if err != nil {
			return nil, fmt.Errorf("open store (%s): %w", sc, err)
		}
		return st, nil
	}
	st, err := kv.OpenBolt(sc.Path, kv.BoltOptions{Timeout: openTimeout, HistoryLimit: cfg.HistoryKeep})
	if err != nil {
		return nil, fmt.Errorf("open store %s (is another totp-registry running on it?): %w", sc.Path, err)
	}
	return st, nil
}

// Run serves until ctx ends, then ends every stream with shutting_down and stops gracefully.
// ready, if set, is called with the listening address.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, ready func(addr net.Addr)) error {
	keys, err := seal.LoadKeyring(cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("load key_file: %w", err)
	}
	admins, err := LoadAdminTokens(cfg.AdminTokens)
	if err != nil {
		return err
	}
	if len(admins) == 0 {
		log.Warn("no admin tokens: the admin API refuses every request", "file", cfg.AdminTokens)
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return err
	}
	st, err := OpenStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("store opened", "store", cfg.Store.String(), "backend", cfg.Store.Backend, "revision", st.Rev())
	srv, err := New(ctx, Options{Config: *cfg, Store: st, Sealer: keys, Admins: admins, Logger: log})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go srv.watchAdmins(wctx, cfg.AdminTokens, hup)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsListen != "" {
		mln, err := promtext.Listen("metrics_listen", cfg.MetricsListen)
		if err != nil {
			ln.Close()
			srv.Shutdown()
			return err
		}
		go func() {
			if err := promtext.Serve(wctx, mln, srv.MetricsHandler(), log); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		log.Info("metrics served", "listen", mln.Addr().String())
	}
	ln = netutil.LimitListener(ln, cfg.HTTP.MaxConns)
	hs := newHTTPServer(cfg.HTTP, srv.Handler(), tc, log)
	errc := make(chan error, 1)
	go func() {
		if tc != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			log.Warn("insecure_http: serving plain HTTP", "listen", ln.Addr().String())
			errc <- hs.Serve(ln)
		}
	}()
	log.Info("totp-registry serving", "listen", ln.Addr().String(), "revision", st.Rev(), "key", keys.PrimaryID(),
		"mtls", cfg.ClientCA != "", "version", versionString())
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err = <-errc:
		srv.Shutdown()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	srv.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown cut short", "err", err)
		hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
