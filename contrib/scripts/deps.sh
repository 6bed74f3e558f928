#!/bin/sh
# Installs what building and testing pam-totp needs on Debian 12, then downloads the Go modules.
# Idempotent: packages already present are not fetched again.
set -eu
pkgs="gcc make dpkg-dev lintian libc6-dev libpam0g-dev openssh-server openssh-client sudo oathtool expect tmux iproute2 \
libpam-google-authenticator libpam-oath zbar-tools passwd openssl curl ca-certificates dbus python3-aiosmtpd libnss-extrausers bash-completion"
# make rpm and its test (e2e/packages): rpmbuild, rpmlint, rpm2cpio and cpio, file for brp-strip;
# man-db (and groff) for e2e/install: `man -w` finds the installed pages, groff renders them
pkgs="$pkgs rpm rpm2cpio rpmlint cpio file man-db"
# e2e/portal and `make demo` drive the registry's portal in headless Chromium (zbarimg, above,
# reads its QR code)
pkgs="$pkgs chromium"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages:$missing (run as root, or install them)" >&2
		exit 1
	fi
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
go mod download
