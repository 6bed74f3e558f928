# pam-totp: the Makefile is the interface. Every knob is a variable below.
#
#   make              build pam_totp.so, pam-totp-helper, totp-admin, totp, totp-registry and totp-syncd
#                     into build/
#   make build-testclock  build/testclock/: the binaries that link pkg/clock, built with -tags
#                     testclock so that the end-to-end suites set their clock; never install these
#   make test         install test dependencies (apt-get, Go modules), run `make lint` and every test
#   make lint         gofmt, go vet and golangci-lint (.golangci.yml: staticcheck, unused, dupl, ...)
#   make etcd         build/tools/etcd: the etcd server the tests start as a 3-member cluster
#                     (pkg/kv/etcdtest), built from tools/etcd at the version pinned there
#   make bench        benchmarks against pam_google_authenticator and pam_oath (docs/benchmarks.md)
#   make demo         throwaway sshd on 127.0.0.1 with pam_totp; DEMO_AUTO=1 runs it unattended
#   make man          build/man/man{1,5,8}: every man page (the command trees' and docs/man/*.md)
#   make install      install into DESTDIR under the directories below, with bash completions and
#                     man pages; the defaults give the layout the packages ship
#   make deb          build/pam-totp_VERSION_ARCH.deb (packaging/debian)
#   make deps         apt-get the build and test dependencies (Debian 12) and download Go modules
#
# Variables (every path a binary, unit, config or page names comes from these; `make install`
# with the defaults gives the layout of the Debian package)
#   DESTDIR       staging root for install (default: empty)
#   PREFIX        /usr
#   BINDIR        $(PREFIX)/bin                  totp-admin, totp
#   SBINDIR       $(PREFIX)/sbin                 totp-registry, totp-syncd
#   LIBEXECDIR    $(PREFIX)/libexec              pam-totp/pam-totp-helper goes below it
#   DATADIR       $(PREFIX)/share
#   MANDIR        $(DATADIR)/man                 man1, man5, man8 (plain roff, not gzip'd; MANGZ=1 gzips)
#   COMPLETIONDIR $(DATADIR)/bash-completion/completions
#   DBUSPOLICYDIR $(DATADIR)/dbus-1/system.d     io.github.pamtotp.Sync1.conf (the bus reads
#                                                /usr/share/dbus-1/system.d and /etc/dbus-1/system.d)
#   PAMDIR        /lib/x86_64-linux-gnu/security (Debian multiarch; /usr/lib64/security on RHEL)
#   SYSCONFDIR    /etc                           pam-totp/pam_totp.conf, pam-totp/registry.conf
#   LOCALSTATEDIR /var                           lib/pam-totp (node store), lib/pam-totp-registry
#   RUNDIR        /run                           pam-totp/verify.sock: the resident verifier's socket that
#                                                pam_totp.so tries first (module argument socket=)
#   UNITDIR       /lib/systemd/system            totp-syncd.service, totp-registry.service
#   MANGZ         0; 1 installs the man pages gzip'd (gzip -9n)
#   BUILD         build                          where everything is built (a relative or absolute path)
#   GO            go
#   CC            cc
#   VERSION       from `git describe`
#   GOTESTFLAGS   extra flags for `go test` (e.g. -run TestSSHD -v)
#   DEMO_AUTO     1 runs `make demo` without a person
#   BENCH_QUICK   1 runs a short `make bench`; BENCH_ONLY=login|sync runs one part
#
# LIBEXECDIR, SYSCONFDIR, LOCALSTATEDIR and RUNDIR are compiled into pam_totp.so (-D) and into the
# Go binaries (pkg/paths, -ldflags -X; the testclock builds keep pkg/paths' defaults); the units,
# the installed pam_totp.conf, the D-Bus policy and the man pages written in markdown
# (docs/man/*.md) are rewritten from their default paths by $(SUBST_PATHS) at build time.

PREFIX        ?= /usr
BINDIR        ?= $(PREFIX)/bin
SBINDIR       ?= $(PREFIX)/sbin
LIBEXECDIR    ?= $(PREFIX)/libexec
DATADIR       ?= $(PREFIX)/share
MANDIR        ?= $(DATADIR)/man
COMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
DBUSPOLICYDIR ?= $(DATADIR)/dbus-1/system.d
PAMDIR        ?= /lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/security
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
RUNDIR        ?= /run
UNITDIR       ?= /lib/systemd/system
MANGZ         ?= 0
GO            ?= go
CC            ?= cc
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOTESTFLAGS   ?=
DEMO_AUTO     ?= 0

BUILD      ?= build
# Debian's golang package is older than go.mod wants; the Go toolchain lives in /usr/local/go.
export PATH := $(PATH):/usr/local/go/bin
GO_LDFLAGS := -s -w -X github.com/pam-totp/pam-totp/pkg/version.Version=$(VERSION)
# The directories every Go binary takes its default paths from (pkg/paths).
PATHS_PKG  := github.com/pam-totp/pam-totp/pkg/paths
GO_PATHS_LDFLAGS := -X $(PATHS_PKG).LibexecDir=$(LIBEXECDIR) -X $(PATHS_PKG).SysconfDir=$(SYSCONFDIR) \
	-X $(PATHS_PKG).LocalstateDir=$(LOCALSTATEDIR) -X $(PATHS_PKG).RunDir=$(RUNDIR)
GOFLAGS_COMMON := -trimpath -ldflags "$(GO_LDFLAGS) $(GO_PATHS_LDFLAGS)"
GOFLAGS_TESTCLOCK := -trimpath -ldflags "$(GO_LDFLAGS)"

# The compiled-in directories as last built: a change (make install PREFIX=...) relinks the
# binaries instead of installing ones that name other paths.
PATHS_STAMP := $(BUILD)/paths.stamp
PATHS_LINE := $(LIBEXECDIR) $(SYSCONFDIR) $(LOCALSTATEDIR) $(RUNDIR)

# Rewrites the default paths in a text file to the ones asked for (and @VERSION@), in one sed,
# through markers, so that no replacement is rewritten again. Used for the config, the units, the
# D-Bus policy and the markdown man pages.
SUBST_PATHS = sed -e 's|/usr/libexec/pam-totp|@LIBEXECDIR@/pam-totp|g' \
	-e 's|/etc/pam-totp|@SYSCONFDIR@/pam-totp|g' \
	-e 's|/var/lib/pam-totp|@LOCALSTATEDIR@/lib/pam-totp|g' \
	-e 's|/run/pam-totp|@RUNDIR@/pam-totp|g' \
	-e 's|/usr/sbin/totp-|@SBINDIR@/totp-|g' \
	-e 's|/usr/bin/totp|@BINDIR@/totp|g' \
	-e 's|/usr/share/dbus-1/system.d|@DBUSPOLICYDIR@|g' \
	-e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@LOCALSTATEDIR@|$(LOCALSTATEDIR)|g' -e 's|@RUNDIR@|$(RUNDIR)|g' \
	-e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DBUSPOLICYDIR@|$(DBUSPOLICYDIR)|g' \
	-e 's|@VERSION@|$(VERSION)|g'

PAM_CFLAGS := -std=gnu11 -O2 -g -fPIC -Wall -Wextra -Werror -Wformat=2 -Wshadow \
	-fstack-protector-strong -D_FORTIFY_SOURCE=2 -fvisibility=hidden \
	-DDEFAULT_HELPER='"$(LIBEXECDIR)/pam-totp/pam-totp-helper"' \
	-DDEFAULT_CONFIG='"$(SYSCONFDIR)/pam-totp/pam_totp.conf"' \
	-DDEFAULT_SOCKET='"$(RUNDIR)/pam-totp/verify.sock"'
PAM_LDFLAGS := -shared -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack -Wl,--as-needed

GO_SOURCES := $(shell find cmd pkg -name '*.go' 2>/dev/null) go.mod go.sum

# golangci-lint is built from the Go module proxy at a pinned version into build/tools.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BUILD)/tools/golangci-lint

# The etcd server for tests is built from tools/etcd (its own module: go.mod pins
# go.etcd.io/etcd/server/v3) into build/tools; the registry never embeds it.
ETCD := $(BUILD)/tools/etcd

.PHONY: all build build-testclock man subst test lint etcd bench demo demo-ha install deb deps clean fmt vet FORCE

all: build

$(PATHS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(PATHS_LINE)' | cmp -s - $@ || echo '$(PATHS_LINE)' > $@

build: $(BUILD)/pam_totp.so $(BUILD)/pam-totp-helper $(BUILD)/totp-admin $(BUILD)/totp-syncd $(BUILD)/totp-registry $(BUILD)/totp

$(BUILD)/pam_totp.so: pam/pam_totp.c $(PATHS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(PAM_CFLAGS) $(CPPFLAGS) -o $@ pam/pam_totp.c $(PAM_LDFLAGS) $(LDFLAGS) -lpam

# The helper is static (no libc, no NSS: the module resolves users and groups).
$(BUILD)/pam-totp-helper: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/pam-totp-helper

# totp: the user's enrollment command, talks to totp-syncd over the system bus.
$(BUILD)/totp: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp

# totp-admin links libpam (msteinert/pam) for `doctor`.
$(BUILD)/totp-admin: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp-admin

# totp-syncd links libc: it names its D-Bus callers through NSS (getpwuid_r), so users from LDAP
# or SSSD can enroll; Go's pure os/user would read /etc/passwd only.
$(BUILD)/totp-syncd: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp-syncd

# The registry is static too; it runs on a central host, not on login nodes.
$(BUILD)/totp-registry: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp-registry

# The same binaries with the clock the end-to-end tests set (pkg/clock); for tests only. CGO as
# in the rules above: totp-admin and totp-syncd link libc.
TESTCLOCK := $(BUILD)/testclock
TESTCLOCK_BINS := pam-totp-helper totp-admin totp-syncd totp-registry
build-testclock: $(addprefix $(TESTCLOCK)/,$(TESTCLOCK_BINS))

$(TESTCLOCK)/%: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=$(if $(filter totp-admin totp-syncd,$*),1,0) $(GO) build -tags testclock $(GOFLAGS_TESTCLOCK) -o $@ ./cmd/$*

deps:
	contrib/scripts/deps.sh

test: deps build build-testclock lint $(ETCD)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m $(GOTESTFLAGS) ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags testclock $(GOTESTFLAGS) ./pkg/clock/

bench: deps build $(ETCD)
	contrib/scripts/bench.sh

demo: deps build
	DEMO_AUTO=$(DEMO_AUTO) contrib/demo/demo.sh

# The same story with the registry highly available: 3 etcd members, 2 replicas, one killed.
demo-ha: deps build $(ETCD)
	DEMO_AUTO=$(DEMO_AUTO) DEMO_HA=1 contrib/demo/demo.sh

# The man pages: those of the command trees from the binaries (hidden `__man` verb, pkg/cmdline),
# and those written in markdown under docs/man (NAME.SECTION.md: pam_totp(8), pam_totp.conf(5),
# pam-totp-helper(8), totp-registry.conf(5)) through go-md2man (a tool in go.mod).
MAN_MD := $(wildcard docs/man/*.md)
MD2MAN := $(BUILD)/tools/go-md2man

$(MD2MAN): go.mod go.sum
	@mkdir -p $(@D)
	$(GO) build -o $@ github.com/cpuguy83/go-md2man/v2

man: build $(MD2MAN)
	rm -rf $(BUILD)/man
	mkdir -p $(BUILD)/man/man1 $(BUILD)/man/man5 $(BUILD)/man/man8
	for f in $(MAN_MD); do p=$$(basename $$f .md); \
		$(SUBST_PATHS) $$f | $(MD2MAN) > $(BUILD)/man/man$${p##*.}/$$p || exit 1; done
	$(BUILD)/totp __man 1 $(BUILD)/man/man1
	for b in totp-admin totp-syncd totp-registry; do $(BUILD)/$$b __man 8 $(BUILD)/man/man8 || exit 1; done
	if [ "$(MANGZ)" = 1 ]; then gzip -9n $(BUILD)/man/man*/*; fi

# The text files installed with paths in them, rewritten to the directories asked for. With
# LOCALSTATEDIR other than /var, the registry's unit names its store directory (which install
# creates) instead of systemd's StateDirectory, which is always below /var/lib.
SUBST_DIR := $(BUILD)/subst
UNIT_SED := $(if $(filter /var,$(LOCALSTATEDIR)),,-e 's|^StateDirectory=pam-totp-registry$$|ReadWritePaths=$(LOCALSTATEDIR)/lib/pam-totp-registry|' -e '/^StateDirectoryMode=/d')
subst: FORCE
	rm -rf $(SUBST_DIR)
	mkdir -p $(SUBST_DIR)
	$(SUBST_PATHS) pam_totp.conf.example > $(SUBST_DIR)/pam_totp.conf
	$(SUBST_PATHS) contrib/dbus/io.github.pamtotp.Sync1.conf > $(SUBST_DIR)/io.github.pamtotp.Sync1.conf
	for u in totp-syncd totp-registry; do \
		$(SUBST_PATHS) $(UNIT_SED) packaging/systemd/$$u.service > $(SUBST_DIR)/$$u.service || exit 1; done

install: build man subst
	install -d -m 0755 $(DESTDIR)$(PAMDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)/pam-totp
	install -m 0644 $(BUILD)/pam_totp.so $(DESTDIR)$(PAMDIR)/pam_totp.so
	install -m 0755 $(BUILD)/pam-totp-helper $(DESTDIR)$(LIBEXECDIR)/pam-totp/pam-totp-helper
	install -m 0755 $(BUILD)/totp-admin $(DESTDIR)$(BINDIR)/totp-admin
	install -m 0755 $(BUILD)/totp $(DESTDIR)$(BINDIR)/totp
	install -m 0755 $(BUILD)/totp-registry $(DESTDIR)$(SBINDIR)/totp-registry
	install -m 0755 $(BUILD)/totp-syncd $(DESTDIR)$(SBINDIR)/totp-syncd
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/pam-totp
	test -e $(DESTDIR)$(SYSCONFDIR)/pam-totp/pam_totp.conf || \
		install -m 0644 $(SUBST_DIR)/pam_totp.conf $(DESTDIR)$(SYSCONFDIR)/pam-totp/pam_totp.conf
	install -d -m 0700 $(DESTDIR)$(LOCALSTATEDIR)/lib/pam-totp
	$(if $(filter /var,$(LOCALSTATEDIR)),,install -d -m 0700 $(DESTDIR)$(LOCALSTATEDIR)/lib/pam-totp-registry)
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	install -m 0644 $(SUBST_DIR)/totp-syncd.service $(SUBST_DIR)/totp-registry.service $(DESTDIR)$(UNITDIR)/
	install -d -m 0755 $(DESTDIR)$(DBUSPOLICYDIR)
	install -m 0644 $(SUBST_DIR)/io.github.pamtotp.Sync1.conf $(DESTDIR)$(DBUSPOLICYDIR)/
	install -d -m 0755 $(DESTDIR)$(COMPLETIONDIR)
	for b in totp-admin totp totp-syncd totp-registry; do \
		$(BUILD)/$$b completion bash > $(DESTDIR)$(COMPLETIONDIR)/$$b || exit 1; done
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	for s in 1 5 8; do install -m 0644 $(BUILD)/man/man$$s/* $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; done

DEB_VERSION = $(shell echo $(VERSION) | sed -e 's/^v//' -e 's/-/+/g' | grep -q '^[0-9]' && echo $(VERSION) | sed -e 's/^v//' -e 's/-/+/g' || echo 0.0.0+$(VERSION))
DEB_ARCH    = $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
deb: build
	rm -rf $(BUILD)/deb
	$(MAKE) install DESTDIR=$(CURDIR)/$(BUILD)/deb PREFIX=/usr
	install -d $(BUILD)/deb/DEBIAN
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' packaging/debian/control.in > $(BUILD)/deb/DEBIAN/control
	install -m 0644 packaging/debian/conffiles $(BUILD)/deb/DEBIAN/conffiles
	dpkg-deb --root-owner-group --build $(BUILD)/deb $(BUILD)/pam-totp_$(DEB_VERSION)_$(DEB_ARCH).deb

fmt:
	gofmt -l -w cmd pkg pam e2e bench

vet:
	$(GO) vet ./...

$(GOLANGCI_LINT):
	@mkdir -p $(@D)
	GOBIN=$(CURDIR)/$(@D) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

etcd: $(ETCD)

$(ETCD): tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go
	@mkdir -p $(@D)
	cd tools/etcd && CGO_ENABLED=0 $(GO) build -trimpath -mod=readonly -o $(CURDIR)/$@ .

lint: $(GOLANGCI_LINT)
	@out=$$(gofmt -l cmd pkg pam e2e bench); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	$(GOLANGCI_LINT) run --build-tags testclock ./pkg/clock/

clean:
	rm -rf $(BUILD)
