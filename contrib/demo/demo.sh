#!/bin/bash
# make demo: the whole chain on 127.0.0.1. A totp-registry (TLS with a throwaway CA made here by
# openssl), one login node: its totp-syncd keeping the node's tokens.db in step with the registry,
# and a throwaway sshd whose PAM stack is pam_totp. A demo user is enrolled AT THE REGISTRY
# (`totp-admin --registry ... token add`, QR code in this terminal); the token reaches the node
# through totp-syncd; you log in over sshd with the code from your phone. Everything lives in a
# temp dir and is removed at the end (the processes, the demo user, the PAM service file).
#
# DEMO_AUTO=1 runs without a person: it reads the secret from the enrollment output, computes codes
# with oathtool, prints how long the token took from enrollment to active on the node, and proves
# a login with the current code, the refusal of a wrong code and of a replayed code; exit 0 only
# if all behaved.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build
auto=${DEMO_AUTO:-0}
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it starts sshd, adds a user and a PAM service file)"
for f in pam_totp.so pam-totp-helper totp-admin totp-registry totp-syncd; do
	[ -x "$build/$f" ] || [ -f "$build/$f" ] || die "missing $build/$f: run 'make' first"
done
for t in openssl curl oathtool ssh-keygen expect; do
	command -v "$t" >/dev/null || die "missing $t (contrib/scripts/deps.sh installs it)"
done

tmp=$(mktemp -d /tmp/pam-totp-demo.XXXXXX)
chmod 0711 "$tmp" # sshd reads authorized_keys/ as the user; the store and registry stay 0700
user=ptdemo$$
service=pam-totp-demo-$$
sshd_pid= registry_pid= syncd_pid=
stop() { # stop PID: SIGTERM, then SIGKILL after 5 s
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
cleanup() {
	set +e
	stop "$sshd_pid"
	stop "$syncd_pid"
	stop "$registry_pid"
	rm -f "/etc/pam.d/$service"
	id "$user" >/dev/null 2>&1 && userdel "$user" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { # a TCP port nobody listens on at 127.0.0.1
	local p
	for p in $(shuf -i 20000-40000 -n 50); do
		if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
	done
	die "no free port on 127.0.0.1"
}
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# --- the registry: a throwaway CA, a server certificate for 127.0.0.1, keyring, admin token -----
reg=$tmp/registry
mkdir -m 0700 "$reg" "$reg/data" "$reg/keys"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj "/CN=pam-totp demo CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$reg/ca.key" -out "$reg/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
	-keyout "$reg/registry-tls.key" -out "$reg/registry.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$reg/ext"
openssl x509 -req -in "$reg/registry.csr" -CA "$reg/ca.pem" -CAkey "$reg/ca.key" -CAcreateserial \
	-days 1 -extfile "$reg/ext" -out "$reg/registry.crt" 2>/dev/null
chmod 0644 "$reg/ca.pem" "$reg/registry.crt"
chmod 0600 "$reg/ca.key" "$reg/registry-tls.key"
(umask 077; printf 'demo %s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >"$reg/keys/registry.keyring")
admin_token=$(head -c 24 /dev/urandom | base64 -w0 | tr -d '/+=')
(umask 077
	printf '%s\n' "$admin_token" >"$reg/admin-token"
	printf 'demo %s\n' "$(printf %s "$admin_token" | sha256sum | cut -d' ' -f1)" >"$reg/admins")
rport=$(freeport)
cat >"$reg/registry.conf" <<CONF
listen = "127.0.0.1:$rport"
tls_cert = "$reg/registry.crt"
tls_key = "$reg/registry-tls.key"
store = "$reg/data/registry.db"
key_file = "$reg/keys/registry.keyring"
admin_tokens_file = "$reg/admins"
issuer = "pam-totp demo"
CONF
chmod 0644 "$reg/registry.conf"
registry_url=https://127.0.0.1:$rport
"$build/totp-registry" --config "$reg/registry.conf" 2>"$tmp/registry.log" &
registry_pid=$!
status() { curl -sf --max-time 2 --cacert "$reg/ca.pem" "$registry_url/v1/status"; }
for _ in $(seq 100); do status >/dev/null && break; sleep 0.1; done
status >/dev/null || { cat "$tmp/registry.log" >&2; die "totp-registry did not start"; }
say "totp-registry serves $registry_url (TLS, CA $reg/ca.pem)"
radmin() {
	"$build/totp-admin" --registry "$registry_url" --admin-token-file "$reg/admin-token" \
		--ca-file "$reg/ca.pem" "$@"
}

# --- the login node: pam_totp (helper, config, store, all root-owned) and totp-syncd ------------
mkdir -m 0755 "$tmp/libexec"
install -m 0755 "$build/pam-totp-helper" "$tmp/libexec/pam-totp-helper"
install -m 0644 "$build/pam_totp.so" "$tmp/pam_totp.so"
mkdir -m 0700 "$tmp/store" "$tmp/node"
say "registering the login node at the registry (node add demo-node --scope demo)"
cred=$(radmin node add demo-node --scope demo | grep -Eo 'ptn1\.[^[:space:]]+' | head -n1)
[ -n "$cred" ] || die "node add printed no credential"
(umask 077; printf '%s\n' "$cred" >"$tmp/node/node.credential")
install -m 0644 "$reg/ca.pem" "$tmp/node/registry-ca.pem"
mport=$(freeport)
cat >"$tmp/pam_totp.conf" <<CONF
issuer = "pam-totp demo"
[store]
dir = "$tmp/store"
[sync]
registry = "$registry_url"
ca_file = "$tmp/node/registry-ca.pem"
credential_file = "$tmp/node/node.credential"
metrics_listen = "127.0.0.1:$mport"
CONF
chmod 0644 "$tmp/pam_totp.conf"
"$build/totp-syncd" --config "$tmp/pam_totp.conf" 2>"$tmp/syncd.log" &
syncd_pid=$!
synced() { "$build/totp-syncd" status --config "$tmp/pam_totp.conf" >/dev/null 2>&1; }
for _ in $(seq 100); do synced && break; sleep 0.1; done
synced || { cat "$tmp/syncd.log" >&2; die "totp-syncd did not sync"; }
say "totp-syncd keeps $tmp/store/tokens.db in step (metrics on 127.0.0.1:$mport)"
applied() { # the node's applied revision, from its metrics
	curl -sf --max-time 2 "http://127.0.0.1:$mport/metrics" |
		awk '$1 == "pam_totp_sync_applied_revision" { print int($2) }'
}
wait_active() { # wait until the node has applied the registry's current revision
	local want n
	want=$(status | sed -E 's/.*"revision":([0-9]+).*/\1/')
	for n in $(seq 1000); do
		[ "$(applied || echo 0)" -ge "$want" ] && return 0
		sleep 0.005
	done
	die "the node did not apply revision $want within 5 s"
}

# --- the demo user and its SSH key ---------------------------------------------------------------
useradd -M -d / -s /bin/sh "$user"
radmin user add "$user" --scope demo
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
	say "enrolling a token for $user at the registry: scan the QR code with your authenticator app"
	t0=$(date +%s%N)
	radmin token add "$user" --name phone
	wait_active
	say "the token is active on the node, $(ms "$t0") ms after \`token add\` started"
	say "now log in over SSH with the next code from your app (your key is the demo key):"
	say "  ssh -p $port -i $tmp/id_demo $user@127.0.0.1"
	ssh -p "$port" -i "$tmp/id_demo" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR "$user@127.0.0.1" || true
	say "done; cleaning up"
	exit 0
fi

# --- unattended: the same story with computed codes ----------------------------------------------
say "enrolling a token for $user at the registry (QR below, as a person would see it)"
t0=$(date +%s%N)
radmin token add "$user" --name demo | tee "$tmp/enroll.txt"
t1=$(date +%s%N)
wait_active
say "token active on the node $(ms "$t1") ms after \`token add\` returned ($(ms "$t0") ms after it started)"
secret=$(grep -Eo 'secret=[A-Z2-7]+' "$tmp/enroll.txt" | head -n1 | cut -d= -f2)
[ -n "$secret" ] || die "no secret in the enrollment output"
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
	say "totp-syncd's log:"; tail -n 20 "$tmp/syncd.log" >&2
	say "totp-registry's log:"; tail -n 20 "$tmp/registry.log" >&2
fi
[ "$bad" = 0 ]
