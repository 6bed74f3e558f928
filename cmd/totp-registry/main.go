// Command totp-registry is the central registry of users, tokens and login nodes: it serves each
// node its records over the sync protocol (docs/sync-protocol.md) and takes changes from
// totp-admin --registry over its admin API.
//
// It is a thin main: the command line (cobra, package cmdline), logging and signals here,
// everything else in package registry.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/confkey"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/registry"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	cmdline.Setup(root, stdout, stderr)
	return cmdline.Run(root, args, func(s string) string { return s }, func(err error) int {
		fmt.Fprintf(stderr, "totp-registry: %v\n", err)
		return 1
	})
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "totp-registry [--config FILE] [--check-config]",
		Short: "Serve the central registry of users, tokens and login nodes",
		Long: "totp-registry serves the login nodes their records over the sync protocol and takes changes\n" +
			"from totp-admin --registry over its admin API. SIGHUP (or a change of the file) reloads\n" +
			"admin_tokens_file; a file that does not load keeps the tokens in force.",
		Version: version.Version,
		Args:    cmdline.NoArgs,
	}
	cfgPath := root.PersistentFlags().String("config", paths.RegistryConfig(), "config `FILE`")
	check := root.Flags().Bool("check-config", false, "load and validate the config and the files it names, then exit")
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	load := func() (*registry.Config, error) {
		cfg, warnings, err := registry.LoadConfig(*cfgPath)
		if err == nil && *check {
			// --check-config: an unknown key is an error too.
			warnings, err = confkey.Strict(warnings, cfg.Unknown)
		}
		for _, w := range warnings {
			log.Warn("config", "file", *cfgPath, "warning", w)
		}
		return cfg, err
	}
	root.RunE = func(*cobra.Command, []string) error {
		cfg, err := load()
		if err != nil {
			return err
		}
		if *check {
			if err := checkFiles(cfg, log); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: OK\n", *cfgPath)
			return nil
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := registry.Run(ctx, cfg, log, nil); err != nil {
			log.Error("totp-registry stopped", "err", err)
			return cmdline.ExitCode(1)
		}
		return nil
	}
	root.AddCommand(&cobra.Command{
		Use:   "rotate-key",
		Short: "Append a new key to key_file and re-seal every record under it (stop the service first)",
		Args:  cmdline.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := load()
			if err == nil {
				err = rotateKey(cfg, stdout)
			}
			if err != nil {
				return fmt.Errorf("rotate-key: %w", err)
			}
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "authenticate-store",
		Short: "Add a MAC to every record of a store written before records were authenticated, and key its audit chain (stop every registry first; once)",
		Args:  cmdline.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := load()
			if err == nil {
				err = authenticateStore(cfg, stdout, log)
			}
			if err != nil {
				return fmt.Errorf("authenticate-store: %w", err)
			}
			return nil
		},
	})
	migrate := &cobra.Command{
		Use:   "migrate --config FROM.conf --to TO.conf",
		Short: "Copy every key of a stopped registry's store into an empty one (bbolt to etcd, or back), under a new epoch",
		Long: "migrate copies every key of the store that --config names into the empty store that --to names,\n" +
			"as they are (records, nodes, the audit chain), and gives the target a new epoch, so every node\n" +
			"resyncs once from it. Stop every registry on the source first; both configs must name the same\n" +
			"key_file keyring.",
		Args: cmdline.NoArgs,
	}
	to := migrate.Flags().String("to", "", "config `FILE` of the target registry (its store must be empty)")
	migrate.RunE = func(*cobra.Command, []string) error {
		if *to == "" {
			return cmdline.Usagef("migrate: --to FILE is required")
		}
		from, err := load()
		if err != nil {
			return err
		}
		target, warnings, err := registry.LoadConfig(*to)
		for _, w := range warnings {
			log.Warn("config", "file", *to, "warning", w)
		}
		if err == nil {
			err = migrateStore(from, target, stdout)
		}
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return nil
	}
	root.AddCommand(migrate)
	return root
}

// authenticateStore authenticates a legacy store's records with the keyring.
func authenticateStore(cfg *registry.Config, stdout io.Writer, log *slog.Logger) error {
	st, err := registry.OpenStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := seal.LoadKeyring(cfg.KeyFile)
	if err != nil {
		return err
	}
	did, err := registry.AuthenticateStore(context.Background(), st, keys, time.Now, log)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, did)
	return nil
}

// migrateStore copies from's store into target's (registry.Migrate) and prints what it copied.
func migrateStore(from, target *registry.Config, stdout io.Writer) error {
	fk, err := seal.LoadKeyring(from.KeyFile)
	if err != nil {
		return fmt.Errorf("key_file: %w", err)
	}
	tk, err := seal.LoadKeyring(target.KeyFile)
	if err != nil {
		return fmt.Errorf("--to key_file: %w", err)
	}
	if fk.PrimaryID() != tk.PrimaryID() {
		return fmt.Errorf("the target's key_file %s has primary key %s, the source's %s: the records are copied sealed, so both need the same keyring",
			target.KeyFile, tk.PrimaryID(), fk.PrimaryID())
	}
	if from.Store.String() == target.Store.String() {
		return fmt.Errorf("source and target are the same store (%s)", from.Store)
	}
	src, err := registry.OpenStore(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := registry.OpenStore(target)
	if err != nil {
		return err
	}
	defer dst.Close()
	start := time.Now()
	rep, err := registry.Migrate(context.Background(), src, dst, rand.Reader)
	if err != nil {
		return err
	}
	kinds := slices.Sorted(maps.Keys(rep.ByKind))
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, rep.ByKind[k])
	}
	fmt.Fprintf(stdout, "copied %d keys (%s) from %s to %s in %d revisions, %s\n", rep.Keys, strings.Join(parts, ", "),
		from.Store, target.Store, rep.Revisions, time.Since(start).Round(time.Millisecond))
	was := rep.FromEpoch
	if was == "" {
		was = "none"
	}
	fmt.Fprintf(stdout, "new store epoch %s (the source's: %s): every node resyncs once from the new store\n", rep.Epoch, was)
	return nil
}

// checkFiles loads what the config names: the keyring, the admin tokens (warning of expired
// ones) and the TLS material.
func checkFiles(cfg *registry.Config, log *slog.Logger) error {
	if _, err := seal.LoadKeyring(cfg.KeyFile); err != nil {
		return fmt.Errorf("key_file: %w", err)
	}
	admins, err := registry.LoadAdminTokens(cfg.AdminTokens)
	if err != nil {
		return err
	}
	for _, a := range admins {
		if !a.Expires.IsZero() && !time.Now().Before(a.Expires) {
			log.Warn("admin token expired", "file", cfg.AdminTokens, "admin", a.Name, "expired", a.Expires.UTC().Format(time.RFC3339))
		}
	}
	_, err = cfg.TLSConfig()
	return err
}

// rotateKey appends a key to key_file, then re-seals every record under it.
func rotateKey(cfg *registry.Config, stdout io.Writer) error {
	st, err := registry.OpenStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	id, err := seal.AppendKey(cfg.KeyFile, rand.Reader)
	if err != nil {
		return err
	}
	keys, err := seal.LoadKeyring(cfg.KeyFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new primary key %s appended to %s\n", id, cfg.KeyFile)
	rep, err := registry.Reseal(context.Background(), st, keys, "root (rotate-key)", time.Now)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d records, %d re-sealed under key %s in %d revisions\n", rep.Records, rep.Resealed, id, rep.Revisions)
	if rep.Refused > 0 {
		fmt.Fprintf(stdout, "%d records fail authentication (see the log): left as they are, still refused\n", rep.Refused)
	}
	fmt.Fprintf(stdout, "once no record needs them, older keys can be removed from %s\n", cfg.KeyFile)
	return nil
}
