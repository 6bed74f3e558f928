# pam-totp: the Makefile is the interface. Every knob is a variable below.
#
#   make              build pam_totp.so, pam-totp-helper, totp-admin, totp, totp-registry and totp-syncd
#                     into build/
#   make build-testclock  build/testclock/: the binaries that link pkg/clock, built with -tags
#                     testclock so that the end-to-end suites set their clock; never install these
#   make test         install test dependencies (apt-get, Go modules), run `make lint` and every test;
#                     last, alone: e2e/packages (-tags packaging) installs the built .deb with dpkg,
#                     logs in over sshd with the pam-auth-update profile, and purges it again
#   make lint         gofmt, go vet and golangci-lint (.golangci.yml: staticcheck, unused, dupl, ...)
#   make etcd         build/tools/etcd: the etcd server the tests start as a 3-member cluster
#                     (pkg/kv/etcdtest), built from tools/etcd at the version pinned there
#   make bench        benchmarks against pam_google_authenticator and pam_oath (docs/benchmarks.md)
#   make demo         throwaway sshd on 127.0.0.1 with pam_totp and the registry's web portal;
#                     DEMO_AUTO=1 runs it unattended (the enrollment through the portal in headless
#                     Chromium, build/demo-portal)
#   make screenshots  docs/portal/*.png: the portal's pages at phone and desktop width, taken by the
#                     browser tests (e2e/portal with PAM_TOTP_SCREENSHOTS=1), shown in docs/portal.md
#   make man          build/man/man{1,5,8}: every man page (the command trees' and docs/man/*.md)
#   make install      install into DESTDIR under the directories below, with bash completions and
#                     man pages; the defaults give the layout the packages ship
#   make deb          build/pam-totp_VERSION_ARCH.deb (login nodes) and
#                     build/pam-totp-registry_VERSION_ARCH.deb (the registry host); packaging/debian
#   make rpm          build/rpm/RPMS/ARCH/pam-totp{,-registry}-VERSION-1.ARCH.rpm and the SRPM in
#                     build/rpm/SRPMS (packaging/rpm/pam-totp.spec), from a `git archive` tarball
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
#   GO_LDFLAGS_EXTRA extra Go linker flags (the RPM passes -B gobuildid: a GNU build id in each)
#   RPM_RELEASE   the RPMs' release (default 1); raise it to rebuild the same version
#   RPM_TOPDIR    rpmbuild's top directory (default build/rpm)
#   RPM_VENDOR    1 puts vendor/ (go mod vendor) into the RPM's source tarball, for a build host
#                 that cannot reach the Go module proxy
#   RPMBUILD_FLAGS extra rpmbuild flags (default --nodeps where rpm has no package database,
#                 as on Debian)
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
GO_LDFLAGS_EXTRA ?=
RPM_VENDOR    ?= 0
RPM_RELEASE   ?= 1
RPMBUILD_FLAGS ?= $(shell rpm -q --quiet rpm 2>/dev/null || echo --nodeps)

BUILD      ?= build
# Debian's golang package is older than go.mod wants; the Go toolchain lives in /usr/local/go.
export PATH := $(PATH):/usr/local/go/bin
GO_LDFLAGS := -s -w -X github.com/pam-totp/pam-totp/pkg/version.Version=$(VERSION) $(GO_LDFLAGS_EXTRA)
# The directories every Go binary takes its default paths from (pkg/paths).
PATHS_PKG  := github.com/pam-totp/pam-totp/pkg/paths
GO_PATHS_LDFLAGS := -X $(PATHS_PKG).LibexecDir=$(LIBEXECDIR) -X $(PATHS_PKG).SysconfDir=$(SYSCONFDIR) \
	-X $(PATHS_PKG).LocalstateDir=$(LOCALSTATEDIR) -X $(PATHS_PKG).RunDir=$(RUNDIR)
GOFLAGS_COMMON := -trimpath -ldflags "$(GO_LDFLAGS) $(GO_PATHS_LDFLAGS)"
GOFLAGS_TESTCLOCK := -trimpath -ldflags "$(GO_LDFLAGS)"
# The binaries that link libc (totp-admin, totp-syncd) are hardened as Debian's are: PIE, full
# RELRO and bind-now through the external linker, fortified and stack-protected cgo C.
GOFLAGS_CGO    := -trimpath -buildmode=pie -ldflags "$(GO_LDFLAGS) $(GO_PATHS_LDFLAGS) -linkmode=external -extldflags '-Wl,-z,relro -Wl,-z,now'"
CGO_HARDENING  := CGO_CFLAGS="-O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong"

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

.PHONY: all build build-testclock man subst test lint etcd bench demo demo-ha screenshots install deb rpm deps clean fmt vet FORCE

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
	CGO_ENABLED=1 $(CGO_HARDENING) $(GO) build $(GOFLAGS_CGO) -o $@ ./cmd/totp-admin

# totp-syncd links libc: it names its D-Bus callers through NSS (getpwuid_r), so users from LDAP
# or SSSD can enroll; Go's pure os/user would read /etc/passwd only.
$(BUILD)/totp-syncd: $(GO_SOURCES) $(PATHS_STAMP)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(CGO_HARDENING) $(GO) build $(GOFLAGS_CGO) -o $@ ./cmd/totp-syncd

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

test: deps build build-testclock lint $(ETCD) deb
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m $(GOTESTFLAGS) ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags testclock $(GOTESTFLAGS) ./pkg/clock/
	# Installs the .deb on this machine and changes /etc/pam.d: alone, after everything else.
	CGO_ENABLED=1 PAM_TOTP_DEB=$(CURDIR)/$(BUILD)/pam-totp_$(DEB_VERSION)_$(DEB_ARCH).deb \
		$(GO) test -count=1 -p 1 -tags packaging -timeout 10m $(GOTESTFLAGS) ./e2e/packages/

bench: deps build $(ETCD)
	contrib/scripts/bench.sh

demo: deps build $(BUILD)/demo-portal
	DEMO_AUTO=$(DEMO_AUTO) contrib/demo/demo.sh

# The program that plays the person in the portal for DEMO_AUTO=1 (headless Chromium).
$(BUILD)/demo-portal: $(GO_SOURCES) $(wildcard contrib/demo/portal/*.go)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./contrib/demo/portal

# The portal's pages as docs/portal.md shows them: the browser tests save them (root, Chromium).
screenshots: build build-testclock
	PAM_TOTP_SCREENSHOTS=1 CGO_ENABLED=1 $(GO) test -count=1 -run TestPortal $(GOTESTFLAGS) ./e2e/portal/

# The same story with the registry highly available: 3 etcd members, 2 replicas, one killed.
demo-ha: deps build $(BUILD)/demo-portal $(ETCD)
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

# The packages' upstream version: a tag's (v1.2-3-gabc -> 1.2+3+gabc), or 0.0.0+COMMIT without a
# tag (a commit id may start with a digit), so that any release sorts after a snapshot; no '-',
# which separates dpkg's and rpm's release.
PKG_VERSION = $(shell v=$$(echo $(VERSION) | sed -e 's/^v//' -e 's/-/+/g'); case $$v in ([0-9]*.*) echo $$v;; (*) echo 0.0.0+$$v;; esac)
# Debian version: PKG_VERSION and "-1", the packaging revision (a non-native package:
# changelog.Debian.gz).
DEB_VERSION = $(PKG_VERSION)-1
DEB_ARCH    = $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEBS        = $(BUILD)/pam-totp_$(DEB_VERSION)_$(DEB_ARCH).deb $(BUILD)/pam-totp-registry_$(DEB_VERSION)_$(DEB_ARCH).deb
deb: build
	rm -rf $(BUILD)/deb
	$(MAKE) install DESTDIR=$(CURDIR)/$(BUILD)/deb PREFIX=/usr
	packaging/debian/build-deb.sh $(BUILD)/deb $(BUILD) $(DEB_VERSION) $(DEB_ARCH)

# The RPMs (packaging/rpm/pam-totp.spec): rpmbuild -ba in build/rpm on a tarball that `git archive`
# makes of HEAD, with uncommitted changes to tracked files (git stash create), and vendor/ when
# RPM_VENDOR=1; its copy of the spec (build/rpm/SPECS) carries PKG_VERSION and RPM_RELEASE.
# Where rpm has no systemd macros (Debian: no systemd-rpm-macros), packaging/rpm/macros.debian
# stands in for them.
RPM_VERSION = $(PKG_VERSION)
RPM_TOPDIR ?= $(CURDIR)/$(BUILD)/rpm
RPM_TAR     = $(RPM_TOPDIR)/SOURCES/pam-totp-$(RPM_VERSION).tar
RPM_MACROS  = $(if $(shell rpm --eval '%{?_unitdir}' 2>/dev/null),,--load=$(CURDIR)/packaging/rpm/macros.debian)
rpm:
	rm -rf $(RPM_TOPDIR)
	mkdir -p $(RPM_TOPDIR)/SOURCES
	tree=$$(git stash create) && git archive --format=tar --prefix=pam-totp-$(RPM_VERSION)/ -o $(RPM_TAR) $${tree:-HEAD}
	if [ "$(RPM_VENDOR)" = 1 ]; then \
		$(GO) mod vendor -o $(RPM_TOPDIR)/vendor/pam-totp-$(RPM_VERSION)/vendor && \
		tar -rf $(RPM_TAR) -C $(RPM_TOPDIR)/vendor pam-totp-$(RPM_VERSION)/vendor || exit 1; fi
	gzip -n $(RPM_TAR)
	mkdir -p $(RPM_TOPDIR)/SPECS
	sed -e 's/^%global pamtotp_version .*/%global pamtotp_version $(RPM_VERSION)/' \
		-e 's/^%global pamtotp_gitversion .*/%global pamtotp_gitversion $(VERSION)/' \
		-e 's/^Release: .*/Release:        $(RPM_RELEASE)%{?dist}/' \
		packaging/rpm/pam-totp.spec > $(RPM_TOPDIR)/SPECS/pam-totp.spec
	rpmbuild -ba $(RPMBUILD_FLAGS) $(RPM_MACROS) --define '_topdir $(RPM_TOPDIR)' \
		$(RPM_TOPDIR)/SPECS/pam-totp.spec
	if command -v rpmlint >/dev/null; then rpmlint -r packaging/rpm/pam-totp.rpmlintrc \
		$(RPM_TOPDIR)/RPMS/*/*.rpm $(RPM_TOPDIR)/SRPMS/*.rpm $(RPM_TOPDIR)/SPECS/pam-totp.spec; fi

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
	$(GOLANGCI_LINT) run --build-tags packaging ./e2e/packages/

clean:
	rm -rf $(BUILD)
