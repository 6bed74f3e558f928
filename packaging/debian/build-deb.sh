#!/bin/sh
# Builds the Debian packages from a staged `make install` (make deb calls it):
#   pam-totp           a login node: pam_totp.so, the helper, totp-syncd, totp, totp-admin, the
#                      pam-auth-update profile
#   pam-totp-registry  the registry host: totp-registry, its unit, man pages and completion
# with dpkg-deb, no debhelper: Depends from dpkg-shlibdeps plus what a node runs with, stripped
# shared objects, compressed man pages and changelog, md5sums, the maintainer scripts and the
# lintian overrides of packaging/debian/PACKAGE/.
#
# usage: build-deb.sh STAGE OUTDIR VERSION ARCH
set -eu
[ $# -eq 4 ] || { echo "usage: $0 STAGE OUTDIR VERSION ARCH" >&2; exit 2; }
stage=$1 version=$3 arch=$4
out=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
umask 022

# dpkg-shlibdeps wants a source tree: debian/control, and each package's files in debian/PACKAGE.
work=$out/debian-build
rm -rf "$work"
mkdir -p "$work/debian"
printf 'Source: pam-totp\n\nPackage: pam-totp\nArchitecture: any\n\nPackage: pam-totp-registry\nArchitecture: any\n' >"$work/debian/control"
node=$work/debian/pam-totp
reg=$work/debian/pam-totp-registry
cp -a "$stage" "$node"
mkdir -p "$reg"

# Everything named totp-registry* (binary, unit, man pages, completion) goes to the registry.
(cd "$node" && find . -name 'totp-registry*' ! -type d) | while read -r f; do
	mkdir -p "$reg/$(dirname "$f")"
	mv "$node/$f" "$reg/$f"
done
install -D -m 0644 "$here/pam-configs/pam-totp" "$node/usr/share/pam-configs/pam-totp"
install -d -m 0755 "$node/usr/share/doc/pam-totp/examples" "$reg/usr/share/doc/pam-totp-registry/examples"
install -m 0644 "$top/pam_totp.conf.example" "$top/contrib/pam.d/sshd.debian" "$top/contrib/pam.d/sudo.debian" \
	"$top/contrib/sshd_config.d/pam-totp.conf" "$node/usr/share/doc/pam-totp/examples/"
install -m 0644 "$top/contrib/registry.conf.example" "$reg/usr/share/doc/pam-totp-registry/examples/"

gitversion=$(git -C "$top" describe --tags --always --dirty 2>/dev/null || echo unknown)
stamp=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
date=$(LC_ALL=C date -u -R -d "@$stamp")

for pkg in pam-totp pam-totp-registry; do
	root=$work/debian/$pkg
	src=$here/$pkg
	doc=$root/usr/share/doc/$pkg
	install -d -m 0755 "$doc" "$root/usr/share/lintian/overrides"
	install -m 0644 "$here/copyright" "$doc/copyright"
	sed -e "s/@VERSION@/$version/" -e "s/@GITVERSION@/$gitversion/" -e "s/@DATE@/$date/" "$here/changelog" |
		gzip -9n >"$doc/changelog.Debian.gz"
	chmod 0644 "$doc/changelog.Debian.gz"
	install -m 0644 "$src/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
	if [ -d "$root/usr/share/man" ]; then
		find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
	fi

	# Strip what the build left symbols in (pam_totp.so is built with -g), as dh_strip does; the
	# Go binaries are linked with -s -w already.
	elves=""
	for f in $(find "$root" -type f | sort); do
		readelf -h "$f" >/dev/null 2>&1 || continue
		if readelf -d "$f" 2>/dev/null | grep -q NEEDED; then
			case "$f" in
			*.so) strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f" ;;
			*) strip --remove-section=.comment --remove-section=.note "$f" ;;
			esac
			elves="$elves ${f#"$work"/}"
		fi
	done
	install -d -m 0755 "$root/DEBIAN" # dpkg-shlibdeps finds the package root by it
	shlibs=""
	if [ -n "$elves" ]; then
		# shellcheck disable=SC2086 # a list of paths without blanks
		shlibs=$(cd "$work" && dpkg-shlibdeps -O $elves | sed -n 's/^shlibs:Depends=//p')
	fi

	size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
	sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
		-e "s/\${shlibs:Depends}/$shlibs/" -e 's/^Depends: , /Depends: /' -e '/^Depends: *$/d' \
		"$src/control.in" >"$root/DEBIAN/control"
	for s in postinst prerm postrm; do
		install -m 0755 "$src/$s" "$root/DEBIAN/$s"
	done
	: >"$work/conffiles"
	if [ -f "$src/conffiles" ]; then
		install -m 0644 "$src/conffiles" "$root/DEBIAN/conffiles"
		cp "$src/conffiles" "$work/conffiles"
	fi
	(cd "$root" && find . -type f ! -path './DEBIAN/*' | sed 's|^\./||' | sort |
		while read -r f; do grep -qxF "/$f" "$work/conffiles" || md5sum "$f"; done) >"$root/DEBIAN/md5sums"
	chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
	dpkg-deb --root-owner-group --build "$root" "$out/${pkg}_${version}_${arch}.deb"
done
