//go:build packaging && linux

// Package packages installs the built packages on this machine and checks what an admin meets:
// `dpkg -i` of build/pam-totp_*.deb, the pam-auth-update profile enabled with
// `pam-auth-update --enable pam-totp`, a token enrolled with the installed totp-admin, a login
// over a real sshd on 127.0.0.1 (service sshd, Debian's /etc/pam.d/sshd with @include
// common-auth) with a password and a code, removal refused while a PAM file names pam_totp.so
// by hand, and a purge that leaves /etc/pam.d byte for byte as it was; the registry package
// installed and purged alone; pam-totp's postinst and prerm with the commands they call
// recorded (first install, upgrade, removal; with and without systemd); and lintian, which must
// find no error and no warning in either package.
//
// The package has only tests, behind the build tag packaging: they change the real /etc/pam.d
// and install into /usr, so they must not run beside the other test packages. `make test` runs
// them as a step of their own after `go test ./...`, with the .deb that `make deb` built
// ($PAM_TOTP_DEB; without it the newest build/pam-totp_*.deb). They need root and refuse to
// start when pam-totp is installed or its files or directories exist already; t.Cleanup purges
// the package and restores every file of /etc/pam.d and /var/lib/pam, also when a test fails.
package packages
