//go:build linux

// Package install checks what `make install` puts on a system, staged below a temporary DESTDIR
// with every directory moved away from the defaults (PREFIX=/usr/local, SYSCONFDIR, LOCALSTATEDIR,
// RUNDIR, PAMDIR, UNITDIR): that the module, each binary's defaults, the units, the installed
// config and the D-Bus policy name the directories asked for and nothing still points at /usr,
// /etc/pam-totp or /var/lib/pam-totp; that man finds pam_totp(8), pam_totp.conf(5) and every
// binary's page, which lists every command its --help lists; and that the installed bash
// completions of totp and totp-admin complete commands and flags in a real bash.
//
// The package has only tests. They need no root: one `make install` into a temporary directory,
// built in a build directory of its own (BUILD=), so the repository's build/ keeps its paths.
package install
