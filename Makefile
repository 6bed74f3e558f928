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
#   make demo         throwaway sshd on 127.0.0.1 with pam_totp; DEMO_AUTO=1 runs it unattended
#   make install      install into DESTDIR (honours the directory variables below), with bash
#                     completions and man pages
#   make deb          build/pam-totp_VERSION_ARCH.deb (login nodes) and
#                     build/pam-totp-registry_VERSION_ARCH.deb (the registry host); packaging/debian
#   make rpm          build/rpm/RPMS/ARCH/pam-totp{,-registry}-VERSION-1.ARCH.rpm and the SRPM in
#                     build/rpm/SRPMS (packaging/rpm/pam-totp.spec), from a `git archive` tarball
#   make deps         apt-get the build and test dependencies (Debian 12) and download Go modules
#
# Variables
#   DESTDIR     staging root for install (default: empty)
#   PREFIX      /usr
#   BINDIR      $(PREFIX)/bin            totp-admin, totp
#   SBINDIR     $(PREFIX)/sbin           totp-registry, totp-syncd
#   LIBEXECDIR  $(PREFIX)/libexec        pam-totp/pam-totp-helper goes below it
#   PAMDIR      /lib/x86_64-linux-gnu/security (Debian multiarch; /usr/lib64/security on RHEL)
#   SYSCONFDIR  /etc                     pam-totp/pam_totp.conf
#   LOCALSTATEDIR /var                   lib/pam-totp: the node store (root 0700)
#   UNITDIR     /lib/systemd/system      totp-syncd.service, totp-registry.service
#   DATADIR     $(PREFIX)/share          dbus-1/system.d, bash-completion
#   MANDIR      $(DATADIR)/man
#   RUNDIR      /run                     pam-totp/verify.sock: the resident verifier's socket that
#                                        pam_totp.so tries first (module argument socket=)
#   GO          go
#   CC          cc
#   VERSION     from `git describe`
#   GO_LDFLAGS_EXTRA extra Go linker flags (the RPM passes -B gobuildid: a GNU build id in each)
#   RPM_RELEASE the RPMs' release (default 1); raise it to rebuild the same version
#   RPM_TOPDIR  rpmbuild's top directory (default build/rpm)
#   RPM_VENDOR  1 puts vendor/ (go mod vendor) into the RPM's source tarball, for a build host
#               that cannot reach the Go module proxy
#   RPMBUILD_FLAGS extra rpmbuild flags (default --nodeps where rpm has no package database,
#               as on Debian)
#   GOTESTFLAGS extra flags for `go test` (e.g. -run TestSSHD -v)
#   DEMO_AUTO   1 runs `make demo` without a person
#   BENCH_QUICK 1 runs a short `make bench`; BENCH_ONLY=login|sync runs one part

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
PAMDIR     ?= /lib/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)/security
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
UNITDIR    ?= /lib/systemd/system
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
RUNDIR     ?= /run
GO         ?= go
CC         ?= cc
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOTESTFLAGS ?=
GO_LDFLAGS_EXTRA ?=
RPM_VENDOR ?= 0
RPM_RELEASE ?= 1
RPMBUILD_FLAGS ?= $(shell rpm -q --quiet rpm 2>/dev/null || echo --nodeps)
DEMO_AUTO  ?= 0

BUILD      := build
# Debian's golang package is older than go.mod wants; the Go toolchain lives in /usr/local/go.
export PATH := $(PATH):/usr/local/go/bin
GO_LDFLAGS     := -s -w -X github.com/pam-totp/pam-totp/pkg/version.Version=$(VERSION) $(GO_LDFLAGS_EXTRA)
GOFLAGS_COMMON := -trimpath -ldflags "$(GO_LDFLAGS)"
# The binaries that link libc (totp-admin, totp-syncd) are hardened as Debian's are: PIE, full
# RELRO and bind-now through the external linker, fortified and stack-protected cgo C.
GOFLAGS_CGO    := -trimpath -buildmode=pie -ldflags "$(GO_LDFLAGS) -linkmode=external -extldflags '-Wl,-z,relro -Wl,-z,now'"
CGO_HARDENING  := CGO_CFLAGS="-O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong"

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

.PHONY: all build build-testclock test lint etcd bench demo demo-ha install deb rpm deps clean fmt vet

all: build

build: $(BUILD)/pam_totp.so $(BUILD)/pam-totp-helper $(BUILD)/totp-admin $(BUILD)/totp-syncd $(BUILD)/totp-registry $(BUILD)/totp

$(BUILD)/pam_totp.so: pam/pam_totp.c
	@mkdir -p $(@D)
	$(CC) $(PAM_CFLAGS) $(CPPFLAGS) -o $@ $< $(PAM_LDFLAGS) $(LDFLAGS) -lpam

# The helper is static (no libc, no NSS: the module resolves users and groups).
$(BUILD)/pam-totp-helper: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/pam-totp-helper

# totp: the user's enrollment command, talks to totp-syncd over the system bus.
$(BUILD)/totp: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp

# totp-admin links libpam (msteinert/pam) for `doctor`.
$(BUILD)/totp-admin: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(CGO_HARDENING) $(GO) build $(GOFLAGS_CGO) -o $@ ./cmd/totp-admin

# totp-syncd links libc: it names its D-Bus callers through NSS (getpwuid_r), so users from LDAP
# or SSSD can enroll; Go's pure os/user would read /etc/passwd only.
$(BUILD)/totp-syncd: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=1 $(CGO_HARDENING) $(GO) build $(GOFLAGS_CGO) -o $@ ./cmd/totp-syncd

# The registry is static too; it runs on a central host, not on login nodes.
$(BUILD)/totp-registry: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_COMMON) -o $@ ./cmd/totp-registry

# The same binaries with the clock the end-to-end tests set (pkg/clock); for tests only. CGO as
# in the rules above: totp-admin and totp-syncd link libc.
TESTCLOCK := $(BUILD)/testclock
TESTCLOCK_BINS := pam-totp-helper totp-admin totp-syncd totp-registry
build-testclock: $(addprefix $(TESTCLOCK)/,$(TESTCLOCK_BINS))

$(TESTCLOCK)/%: $(GO_SOURCES)
	@mkdir -p $(@D)
	CGO_ENABLED=$(if $(filter totp-admin totp-syncd,$*),1,0) $(GO) build -tags testclock $(GOFLAGS_COMMON) -o $@ ./cmd/$*

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

demo: deps build
	DEMO_AUTO=$(DEMO_AUTO) contrib/demo/demo.sh

# The same story with the registry highly available: 3 etcd members, 2 replicas, one killed.
demo-ha: deps build $(ETCD)
	DEMO_AUTO=$(DEMO_AUTO) DEMO_HA=1 contrib/demo/demo.sh

install: build
	install -d -m 0755 $(DESTDIR)$(PAMDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)/pam-totp
	install -m 0644 $(BUILD)/pam_totp.so $(DESTDIR)$(PAMDIR)/pam_totp.so
	install -m 0755 $(BUILD)/pam-totp-helper $(DESTDIR)$(LIBEXECDIR)/pam-totp/pam-totp-helper
	install -m 0755 $(BUILD)/totp-admin $(DESTDIR)$(BINDIR)/totp-admin
	install -m 0755 $(BUILD)/totp $(DESTDIR)$(BINDIR)/totp
	install -d -m 0755 $(DESTDIR)$(SBINDIR)
	install -m 0755 $(BUILD)/totp-registry $(DESTDIR)$(SBINDIR)/totp-registry
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/pam-totp
	test -e $(DESTDIR)$(SYSCONFDIR)/pam-totp/pam_totp.conf || \
		install -m 0644 pam_totp.conf.example $(DESTDIR)$(SYSCONFDIR)/pam-totp/pam_totp.conf
	install -d -m 0700 $(DESTDIR)$(LOCALSTATEDIR)/lib/pam-totp
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/totp-syncd $(DESTDIR)$(SBINDIR)/totp-syncd
	install -m 0644 packaging/systemd/totp-syncd.service packaging/systemd/totp-registry.service $(DESTDIR)$(UNITDIR)/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/dbus-1/system.d
	install -m 0644 contrib/dbus/io.github.pamtotp.Sync1.conf $(DESTDIR)$(DATADIR)/dbus-1/system.d/
	install -d -m 0755 $(DESTDIR)$(DATADIR)/bash-completion/completions
	for b in totp-admin totp totp-syncd totp-registry; do \
		$(BUILD)/$$b completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/$$b || exit 1; done
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	$(BUILD)/totp __man 1 $(DESTDIR)$(MANDIR)/man1
	for b in totp-admin totp-syncd totp-registry; do $(BUILD)/$$b __man 8 $(DESTDIR)$(MANDIR)/man8 || exit 1; done

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
