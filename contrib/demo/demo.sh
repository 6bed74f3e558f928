#!/bin/bash
# make demo: a throwaway sshd on 127.0.0.1 whose PAM stack is pam_totp, a demo user enrolled with
# a QR code in this terminal, and a login with the code from your phone. Everything lives in a
# temp dir and is removed at the end (the demo user, the PAM service file, the sshd process).
#
# DEMO_AUTO=1 runs without a person: it computes codes with oathtool and proves a login with the
# current code, the refusal of a wrong code and of a replayed code; exit 0 only if all behaved.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build
auto=${DEMO_AUTO:-0}
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it starts sshd, adds a user and a PAM service file)"
for f in pam_totp.so pam-totp-helper totp-admin; do
	[ -x "$build/$f" ] || [ -f "$build/$f" ] || die "missing $build/$f: run 'make' first"
done

tmp=$(mktemp -d /tmp/pam-totp-demo.XXXXXX)
chmod 0711 "$tmp" # sshd reads authorized_keys/ as the user; the store below stays 0700
user=ptdemo$$
service=pam-totp-demo-$$
sshd_pid=
cleanup() {
	set +e
	[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
	rm -f "/etc/pam.d/$service"
	id "$user" >/dev/null 2>&1 && userdel "$user" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- pam_totp: helper, config, store, all root-owned in the temp dir ---------------------------
mkdir -m 0755 "$tmp/libexec"
install -m 0755 "$build/pam-totp-helper" "$tmp/libexec/pam-totp-helper"
install -m 0644 "$build/pam_totp.so" "$tmp/pam_totp.so"
mkdir -m 0700 "$tmp/store"
cat >"$tmp/pam_totp.conf" <<CONF
issuer = "pam-totp demo"
[store]
dir = "$tmp/store"
CONF
chmod 0644 "$tmp/pam_totp.conf"
admin() { "$build/totp-admin" "$1" "$2" --config "$tmp/pam_totp.conf" "${@:3}"; }

# --- the demo user and its SSH key ---------------------------------------------------------------
useradd -M -d / -s /bin/sh "$user"
ssh-keygen -q -t ed25519 -N '' -C "demo key" -f "$tmp/id_demo"
mkdir -m 0755 "$tmp/authorized_keys"
install -m 0644 "$tmp/id_demo.pub" "$tmp/authorized_keys/$user"

# --- sshd under its own name, so its PAM service is ours -----------------------------------------
cp /usr/sbin/sshd "$tmp/$service"
cat >"/etc/pam.d/$service" <<PAMD
# pam-totp demo, removed when the demo ends
auth     required  $tmp/pam_totp.so helper=$tmp/libexec/pam-totp-helper config=$tmp/pam_totp.conf
account  required  pam_unix.so
session  required  pam_permit.so
PAMD
ssh-keygen -q -t ed25519 -N '' -f "$tmp/hostkey"
port=
for p in $(shuf -i 20000-40000 -n 20); do
	if ! ss -Hltn "sport = :$p" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port on 127.0.0.1"
cat >"$tmp/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $port
HostKey $tmp/hostkey
PidFile $tmp/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
AuthenticationMethods publickey,keyboard-interactive
ExposeAuthInfo yes
AuthorizedKeysFile $tmp/authorized_keys/%u
StrictModes no
PrintMotd no
SSHD
mkdir -p /run/sshd
"$tmp/$service" -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
ss -Hltn "sport = :$port" | grep -q . || { cat "$tmp/sshd.log" >&2; die "sshd did not start"; }
say "sshd (PAM service $service) listens on 127.0.0.1:$port; demo user: $user"

login() { # login CODE: one ssh login answering CODE at the prompt
	"$repo/contrib/demo/login.exp" "$port" "$tmp/id_demo" "$user" "$1"
}

if [ "$auto" != 1 ]; then
	say "enroll a token for $user: scan the QR code with your authenticator app, then type its code"
	admin token add --name phone "$user"
	say "now log in over SSH with the next code from your app (your key is the demo key):"
	say "  ssh -p $port -i $tmp/id_demo $user@127.0.0.1"
	ssh -p "$port" -i "$tmp/id_demo" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR "$user@127.0.0.1" || true
	say "done; cleaning up"
	exit 0
fi

# --- unattended: the same story with computed codes ----------------------------------------------
secret=$(head -c 20 /dev/urandom | base32 | tr -d '=')
say "enrolling $user (QR below, as a person would see it)"
admin token add --name demo --secret "$secret" --no-verify "$user"
code() { oathtool --totp -b "$secret" "$@"; }
ok=0 bad=0
check() { # check NAME WANT-STATUS CODE WANT-TEXT; ssh exits 255 when authentication is refused
	local name=$1 want=$2 text=$4 st=0 out
	out=$(login "$3") || st=$?
	printf '%s\n' "$out"
	if { { [ "$want" = 0 ] && [ "$st" = 0 ]; } || { [ "$want" != 0 ] && [ "$st" = 255 ]; }; } &&
		grep -qF -- "$text" <<<"$out"; then
		say "PASS  $name (ssh exit $st)"; ok=$((ok + 1))
	else
		say "FAIL  $name (ssh exit $st, wanted $([ "$want" = 0 ] && echo 0 || echo 255) and \"$text\")"
		bad=$((bad + 1))
	fi
}
# Keep the three logins inside one 30 s step, so the replay is really the same code.
while [ $(( $(date +%s) % 30 )) -gt 20 ]; do sleep 1; done
current=$(code)
check "login with the current code" 0 "$current" "logged in as $user"
wrong=$(printf '%06d' $(( (10#$current + 500000) % 1000000 )))
check "login with a wrong code is refused" 1 "$wrong" "Verification failed."
check "the same code again (replay) is refused" 1 "$current" "already been used"
say "$ok passed, $bad failed"
if [ "$bad" != 0 ]; then
	say "sshd's log:"; tail -n 30 "$tmp/sshd.log" >&2
fi
[ "$bad" = 0 ]
