// Command totp-registry is the central registry of users, tokens and login nodes: it serves each
// node its records over the sync protocol (docs/sync-protocol.md) and takes changes from
// totp-admin --registry over its admin API.
//
// It is a thin main: flags, logging and signals here, everything else in package registry.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pam-totp/pam-totp/pkg/registry"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/version"
)

const usage = `usage: totp-registry [--config FILE]             serve
       totp-registry [--config FILE] --check-config
       totp-registry [--config FILE] rotate-key    append a new key to key_file and re-seal every
                                                   record under it (stop the service first)
       totp-registry --version

--config defaults to ` + registry.DefaultConfigPath + `.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("totp-registry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", registry.DefaultConfigPath, "config file")
	check := fs.Bool("check-config", false, "load and validate the config, then exit")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "totp-registry", version.Version)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, warnings, err := registry.LoadConfig(*cfgPath)
	for _, w := range warnings {
		log.Warn("config", "file", *cfgPath, "warning", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "totp-registry: %v\n", err)
		return 1
	}
	rest := fs.Args()
	switch {
	case *check:
		if len(rest) > 0 {
			fmt.Fprint(stderr, "totp-registry: --check-config takes no command\n", usage)
			return 2
		}
		if err := checkFiles(cfg); err != nil {
			fmt.Fprintf(stderr, "totp-registry: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: OK\n", *cfgPath)
		return 0
	case len(rest) == 1 && rest[0] == "rotate-key":
		if err := rotateKey(cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "totp-registry: rotate-key: %v\n", err)
			return 1
		}
		return 0
	case len(rest) > 0:
		fmt.Fprintf(stderr, "totp-registry: unknown command %q\n%s", rest[0], usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := registry.Run(ctx, cfg, log, nil); err != nil {
		log.Error("totp-registry stopped", "err", err)
		return 1
	}
	return 0
}

// checkFiles loads what the config names: the keyring, the admin tokens and the TLS material.
func checkFiles(cfg *registry.Config) error {
	if _, err := seal.LoadKeyring(cfg.KeyFile); err != nil {
		return fmt.Errorf("key_file: %w", err)
	}
	if _, err := registry.LoadAdminTokens(cfg.AdminTokens); err != nil {
		return err
	}
	_, err := cfg.TLSConfig()
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
	fmt.Fprintf(stdout, "once no record needs them, older keys can be removed from %s\n", cfg.KeyFile)
	return nil
}
