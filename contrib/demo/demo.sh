#!/bin/bash
# make demo: the whole issue-4 story on 127.0.0.1. A totp-registry (TLS with a throwaway CA made
# here by openssl) and one login node: a private dbus-daemon configured like the system bus with
# the shipped policy (contrib/dbus/io.github.pamtotp.Sync1.conf), totp-syncd following the registry
# and serving io.github.pamtotp.Sync1 on that bus, and a throwaway sshd whose PAM stack is
# pam_totp. The admin only tells the registry about a demo user (`totp-admin --registry ... user
# add`, no token). The demo user then runs `totp enroll --name phone` as themself: QR code in this
# terminal, a code from the phone app typed back, "active on this node"; then logs in over sshd
# with the app's next code. Everything lives in a temp dir and is removed at the end, also on
# Ctrl-C, SIGTERM or a closed terminal (the processes, the demo user, the PAM service file).
#
# The registry also serves its web portal (docs/portal.md) at https://127.0.0.1:PORT/portal/: the
# demo prints the URL; sign-in codes and notices go to a mail sink on 127.0.0.1
# (pkg/mail/testdata/smtpd.py, python3-aiosmtpd) that writes each mail to a file in the temp dir.
#
# DEMO_AUTO=1 runs without a person: build/demo-portal (contrib/demo/portal) plays the person in
# the portal in headless Chromium (sign in with the mailed code, add a token, type the first code
# computed from the secret on the page, wait for "active on 1 of 1 login nodes" and print how long
# that took, confirm the backup codes); with DEMO_ENROLL=cli, contrib/demo/enroll.exp plays the
# person at `totp enroll` instead (reads the key printed below the QR code, types the code oathtool
# computes, prints how long from the code typed to active on this node). Then it proves that the code typed to enroll does not
# log in, and, with the next time step's code, a login, the refusal of a wrong code and of a
# replayed code; exit 0 only if all behaved.
#
# DEMO_HA=1 (make demo-ha) runs the registry highly available instead: a 3-member etcd cluster on
# 127.0.0.1 (build/tools/etcd, from make etcd), two totp-registry replicas on it, and a node that
# knows both. Replica A is killed with SIGKILL just before the user enrolls: the enrollment, the
# logins' cluster-wide claims and the node's sync all go on through replica B (docs/ha.md).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build
policy=$repo/contrib/dbus/io.github.pamtotp.Sync1.conf
auto=${DEMO_AUTO:-0}
enroll_via=${DEMO_ENROLL:-portal}
ha=${DEMO_HA:-0}
etcd_bin=$build/tools/etcd
say() { printf '  %s\n' "$*"; }
heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf '\033[1mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it starts sshd and a bus, adds a user and a PAM service file)"
for f in pam_totp.so pam-totp-helper totp totp-admin totp-registry totp-syncd; do
	[ -f "$build/$f" ] || die "missing $build/$f: run 'make' first"
done
for t in openssl curl oathtool ssh-keygen expect dbus-daemon runuser useradd userdel; do
	command -v "$t" >/dev/null || die "missing $t (contrib/scripts/deps.sh installs it)"
done
[ -f "$policy" ] || die "missing $policy"
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || die "missing python3-aiosmtpd (contrib/scripts/deps.sh installs it)"
if [ "$auto" = 1 ] && [ "$enroll_via" = portal ]; then
	[ -x "$build/demo-portal" ] || die "missing $build/demo-portal: run 'make demo' (it builds it)"
	command -v chromium >/dev/null || die "missing chromium (contrib/scripts/deps.sh installs it)"
fi
[ "$ha" != 1 ] || [ -x "$etcd_bin" ] || die "missing $etcd_bin: run 'make etcd' first (make demo-ha does)"
if [ "$auto" != 1 ] && ! [ -t 0 ]; then
	die "the interactive demo needs a terminal for the code you type; DEMO_AUTO=1 runs without one"
fi

tmp=$(mktemp -d /tmp/pam-totp-demo.XXXXXX)
chmod 0711 "$tmp" # the demo user reaches bin/, bus/ and authorized_keys/; the rest stays 0700
user=ptdemo$$
service=pam-totp-demo-$$
sshd_pid= registry_pid= registry2_pid= syncd_pid= bus_pid= enroll_pid= mail_pid= mail_feed_pid=
etcd_pids=()
stop() { # stop PID [TENTHS]: SIGTERM, then SIGKILL after TENTHS/10 s (default 5 s)
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null || return 0
	for _ in $(seq "${2:-50}"); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
stop_tree() { # stop_tree PID: its descendants first (runuser, then totp, which does not end on
	# SIGTERM while it waits at its code prompt: SIGKILL after 1 s), then PID
	local kid
	[ -n "$1" ] || return 0
	for kid in $(pgrep -P "$1"); do stop_tree "$kid" 10; done
	stop "$1" "${2:-50}"
}
cleanup() {
	set +e
	trap '' INT TERM HUP # finish cleaning up even when the terminal goes away meanwhile
	stop_tree "$enroll_pid"
	stop "$sshd_pid"
	stop "$syncd_pid"
	stop "$bus_pid"
	stop "$registry_pid"
	stop "$registry2_pid"
	stop "$mail_feed_pid" # smtpd.py ends when its stdin closes
	stop "$mail_pid"
	for p in "${etcd_pids[@]}"; do stop "$p"; done
	rm -f "/etc/pam.d/$service"
	if id "$user" >/dev/null 2>&1; then
		# userdel refuses while a process of the user lives: end what the demo started as the user
		for p in $(pgrep -u "$user"); do kill -9 "$p" 2>/dev/null; done
		for _ in $(seq 50); do userdel "$user" 2>/dev/null && break; sleep 0.1; done
		id "$user" >/dev/null 2>&1 && printf 'demo: could not remove user %s: userdel %s\n' "$user" "$user" >&2
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP

freeport() { # a TCP port nobody listens on at 127.0.0.1
	local p
	for p in $(shuf -i 20000-40000 -n 50); do
		if ! ss -Hltn "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
	done
	die "no free port on 127.0.0.1"
}

# --- 0. the mail sink: each mail the registry sends (sign-in codes, notices) becomes a file -------
mkdir -m 0700 "$tmp/mail"
mport=$(freeport)
mkfifo -m 0600 "$tmp/mail.in"
/usr/bin/python3 "$repo/pkg/mail/testdata/smtpd.py" "$mport" "$tmp/mail" <"$tmp/mail.in" >"$tmp/mail.ready" 2>"$tmp/mail.log" &
mail_pid=$!
sleep 100000 >"$tmp/mail.in" &
mail_feed_pid=$!
for _ in $(seq 100); do grep -q READY "$tmp/mail.ready" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$tmp/mail.ready" || { cat "$tmp/mail.log" >&2; die "the mail sink did not start"; }

# --- 1. the registry: a throwaway CA, a server certificate for 127.0.0.1, keyring, admin token ---
heading "1/5 registry"
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
store_conf="store = \"$reg/data/registry.db\""
if [ "$ha" = 1 ]; then
	# Three etcd members on 127.0.0.1 (plain http: loopback only), each with its own data dir.
	mkdir -m 0700 "$tmp/etcd"
	cluster= endpoints=()
	for i in 0 1 2; do
		cport[$i]=$(freeport) pport[$i]=$(freeport)
		cluster+="${cluster:+,}m$i=http://127.0.0.1:${pport[$i]}"
		endpoints+=("\"http://127.0.0.1:${cport[$i]}\"")
	done
	for i in 0 1 2; do
		"$etcd_bin" --name "m$i" --data-dir "$tmp/etcd/m$i" \
			--listen-client-urls "http://127.0.0.1:${cport[$i]}" --advertise-client-urls "http://127.0.0.1:${cport[$i]}" \
			--listen-peer-urls "http://127.0.0.1:${pport[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pport[$i]}" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "demo-$$" \
			--max-txn-ops 10000 --listen-metrics-urls "" --log-level warn 2>"$tmp/etcd/m$i.log" &
		etcd_pids+=($!)
	done
	healthy() { curl -sf --max-time 1 "http://127.0.0.1:${cport[$1]}/health" | grep -q '"health":"true"'; }
	for i in 0 1 2; do
		for _ in $(seq 150); do healthy "$i" && break; sleep 0.1; done
		healthy "$i" || { cat "$tmp/etcd/m$i.log" >&2; die "etcd member m$i did not become healthy"; }
	done
	say "etcd: 3 members on 127.0.0.1:${cport[0]}, :${cport[1]}, :${cport[2]} (build/tools/etcd)"
	store_conf=$(printf '[store]\nbackend = "etcd"\nendpoints = [%s]\nprefix = "/pam-totp-demo/"\n' \
		"$(IFS=,; echo "${endpoints[*]}")")
fi
# [enroll] bootstrap "none": a user's first token needs no proof; [mail] to the sink; [portal] on
# the registry's listener, signing in with a mailed code or a code from a token.
registry_conf() { # registry_conf PORT: a registry's config; replicas differ only in the port
	cat <<CONF
listen = "127.0.0.1:$1"
tls_cert = "$reg/registry.crt"
tls_key = "$reg/registry-tls.key"
key_file = "$reg/keys/registry.keyring"
admin_tokens_file = "$reg/admins"
issuer = "pam-totp demo"
$store_conf
[enroll]
bootstrap = "none"
[mail]
host = "127.0.0.1:$mport"
from = "totp@registry.demo"
contact = "the demo's helpdesk"
starttls = "never"
[portal]
enabled = true
site_name = "pam-totp demo"
contact = "the demo's helpdesk (mails land in $tmp/mail)"
sign_in = ["mail", "code"]
CONF
}
start_registry() { # start_registry PORT NAME: starts it in the background (its pid in $!)
	registry_conf "$1" >"$reg/$2.conf"
	chmod 0644 "$reg/$2.conf"
	"$build/totp-registry" --config "$reg/$2.conf" 2>"$tmp/$2.log" &
}
status() { curl -sf --max-time 2 --cacert "$reg/ca.pem" "$1/v1/status"; }
wait_registry() { # wait_registry URL NAME
	for _ in $(seq 100); do status "$1" >/dev/null && return 0; sleep 0.1; done
	cat "$tmp/$2.log" >&2; die "totp-registry ($2) did not start"
}
rport=$(freeport)
registry_url=https://127.0.0.1:$rport
start_registry "$rport" registry
registry_pid=$!
wait_registry "$registry_url" registry
registry_urls=$registry_url
if [ "$ha" = 1 ]; then
	rport2=$(freeport)
	registry2_url=https://127.0.0.1:$rport2
	start_registry "$rport2" registry2
	registry2_pid=$!
	wait_registry "$registry2_url" registry2
	registry_urls=$registry_url,$registry2_url
	say "totp-registry replica A serves $registry_url, replica B $registry2_url"
	say "  one store: etcd prefix /pam-totp-demo/, the same keyring and admin tokens (TLS, throwaway CA)"
else
	say "totp-registry serves $registry_url (TLS, throwaway CA)"
fi
portal_base=$registry_url # replica B's once A is killed (DEMO_HA)
portal_url=$portal_base/portal/
say "portal: $portal_url (the browser warns: the certificate is from the demo's CA, $reg/ca.pem);"
say "  sign in with your user name and the code mailed to you: mails land in $tmp/mail/*.eml"
radmin() {
	"$build/totp-admin" --registry "$registry_urls" --admin-token-file "$reg/admin-token" \
		--ca-file "$reg/ca.pem" "$@"
}

# --- 2. the login node: a system-like bus, pam_totp (helper, config, store), totp-syncd ----------
heading "2/5 login node: private system bus and totp-syncd"
mkdir -m 0755 "$tmp/bus" "$tmp/bin" "$tmp/libexec"
bus=unix:path=$tmp/bus/system_bus_socket
# Like Debian's /usr/share/dbus-1/system.conf, with the shipped policy of the service included as
# it is (the template the tests use too).
sed -e "s|@SOCKET@|$tmp/bus/system_bus_socket|" -e "s|@POLICY@|$policy|" \
	"$repo/contrib/dbus/private-system-bus.conf.in" >"$tmp/bus/bus.conf"
dbus-daemon --config-file="$tmp/bus/bus.conf" --nofork --print-address=3 \
	3>"$tmp/bus/address" 2>"$tmp/dbus.log" &
bus_pid=$!
for _ in $(seq 100); do [ -s "$tmp/bus/address" ] && break; sleep 0.1; done
[ -s "$tmp/bus/address" ] || { cat "$tmp/dbus.log" >&2; die "dbus-daemon did not start"; }
say "dbus-daemon on $bus"
say "  policy: contrib/dbus/io.github.pamtotp.Sync1.conf (root owns the name, everyone may call)"

install -m 0755 "$build/pam-totp-helper" "$tmp/libexec/pam-totp-helper"
install -m 0644 "$build/pam_totp.so" "$tmp/pam_totp.so"
install -m 0755 "$build/totp" "$tmp/bin/totp" # run by the demo user
mkdir -m 0700 "$tmp/store" "$tmp/node"
cred=$(radmin node add demo-node --scope demo | grep -Eo 'ptn1\.[^[:space:]]+' | head -n1)
[ -n "$cred" ] || die "node add printed no credential"
(umask 077; printf '%s\n' "$cred" >"$tmp/node/node.credential")
install -m 0644 "$reg/ca.pem" "$tmp/node/registry-ca.pem"
cat >"$tmp/pam_totp.conf" <<CONF
issuer = "pam-totp demo"
[store]
dir = "$tmp/store"
[sync]
registry = $(if [ "$ha" = 1 ]; then echo "[\"$registry_url\", \"$registry2_url\"]"; else echo "\"$registry_url\""; fi)
ca_file = "$tmp/node/registry-ca.pem"
credential_file = "$tmp/node/node.credential"
metrics_listen = ""
verify_socket = "$tmp/run/verify.sock"
CONF
chmod 0644 "$tmp/pam_totp.conf"
"$build/totp-syncd" --config "$tmp/pam_totp.conf" --bus "$bus" --debug 2>"$tmp/syncd.log" &
syncd_pid=$!
synced() { "$build/totp-syncd" status --config "$tmp/pam_totp.conf" >/dev/null 2>&1; }
for _ in $(seq 100); do synced && break; sleep 0.1; done
synced || { cat "$tmp/syncd.log" >&2; die "totp-syncd did not sync"; }
say "node demo-node registered (totp-admin node add demo-node --scope demo);"
say "totp-syncd keeps $tmp/store/tokens.db in step and serves io.github.pamtotp.Sync1 on the bus"

# --- 3. the demo user (known to the registry, no token), its SSH key, sshd -----------------------
heading "3/5 demo user and sshd"
useradd -M -d / -s /bin/sh "$user"
radmin user add "$user" --scope demo --mail "$user@demo.test" >/dev/null
# as the demo user, on the demo's bus, in a clean environment
as_user=(runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/ "DBUS_SYSTEM_BUS_ADDRESS=$bus"
	"TERM=${TERM:-xterm}" LANG=C.UTF-8)
as_user() { "${as_user[@]}" "$@"; }
# The first call as the user also proves the bus policy: the user reaches totp-syncd.
for _ in $(seq 50); do as_user "$tmp/bin/totp" status >/dev/null 2>&1 && break; sleep 0.1; done
as_user "$tmp/bin/totp" status >/dev/null ||
	{ cat "$tmp/syncd.log" "$tmp/dbus.log" >&2; die "totp status as $user failed"; }
say "user $user: in the registry (totp-admin user add $user --scope demo), no token yet"
ssh-keygen -q -t ed25519 -N '' -C "demo key" -f "$tmp/id_demo"
mkdir -m 0755 "$tmp/authorized_keys"
install -m 0644 "$tmp/id_demo.pub" "$tmp/authorized_keys/$user"

# sshd under its own name, so its PAM service is ours
cp /usr/sbin/sshd "$tmp/$service"
cat >"/etc/pam.d/$service" <<PAMD
# pam-totp demo, removed when the demo ends
auth     required  $tmp/pam_totp.so helper=$tmp/libexec/pam-totp-helper config=$tmp/pam_totp.conf socket=$tmp/run/verify.sock maxtries_as_autherr
account  required  pam_unix.so
session  required  pam_permit.so
PAMD
ssh-keygen -q -t ed25519 -N '' -f "$tmp/hostkey"
port=$(freeport)
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
say "sshd on 127.0.0.1:$port, PAM service $service: key, then a TOTP code"

# run CMD... (an external command) in the background and wait for it, so that a signal reaches
# the trap at once and cleanup stops CMD; stdin stays the terminal's.
run_waited() {
	local st=0
	"$@" <&0 &
	enroll_pid=$!
	wait "$enroll_pid" || st=$?
	enroll_pid=
	return "$st"
}
next_step() { # wait for the next 30 s time step: a code is for one use, the one typed at
	# enrollment included
	local now step
	now=$(date +%s) step=$(( now / 30 ))
	say "waiting $(( (step + 1) * 30 - now )) s for the app's next code (a code is for one use)"
	while [ $(( $(date +%s) / 30 )) -le "$step" ]; do sleep 0.2; done
}

kill_replica_a() { # DEMO_HA: replica A dies just before the user enrolls
	[ "$ha" = 1 ] || return 0
	heading "replica A killed"
	kill -9 "$registry_pid"
	wait "$registry_pid" 2>/dev/null || true
	registry_pid=
	say "kill -9 of totp-registry replica A ($registry_url): enrollment, logins and sync go on"
	say "through replica B ($registry2_url), on the same etcd store"
	portal_base=$registry2_url
	portal_url=$portal_base/portal/
	say "the portal too: $portal_url"
}

if [ "$auto" != 1 ]; then
	kill_replica_a
	heading "4/5 totp enroll, as $user"
	say "(or, instead, in a browser: $portal_url, user $user, the mailed code from $tmp/mail)"
	say "scan the QR code with your authenticator app, then type the code it shows"
	say "\$ totp enroll --name phone"
	echo
	run_waited "${as_user[@]}" "$tmp/bin/totp" enroll --name phone || die "totp enroll did not finish"
	heading "5/5 SSH login with the token"
	say "\$ ssh -p $port -i $tmp/id_demo $user@127.0.0.1"
	say "at the code prompt, wait for the app's NEXT code (a code is for one use);"
	say "exit the shell to end the demo"
	ssh -p "$port" -i "$tmp/id_demo" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
		-o LogLevel=ERROR "$user@127.0.0.1" || true
	heading "done: removing everything"
	exit 0
fi

# --- unattended: the same story, enroll.exp playing the person ------------------------------------
kill_replica_a
if [ "$enroll_via" = portal ]; then
	heading "4/5 enrollment in the web portal, as $user (headless Chromium plays the person)"
	say "$portal_url"
	spki=$(openssl x509 -in "$reg/registry.crt" -pubkey -noout | openssl pkey -pubin -outform der |
		openssl dgst -sha256 -binary | base64)
	# $tmp/node is 0700: the driver writes the secret and the code it typed there
	run_waited "$build/demo-portal" -url "$portal_base" -spki "$spki" -user "$user" -mail-dir "$tmp/mail" \
		-out "$tmp/node" ||
		{ tail -n 20 "$tmp/syncd.log" "$tmp"/registry*.log >&2; die "the portal enrollment did not reach active on every node"; }
	secret=$(cat "$tmp/node/secret")
	read -r alg digits period <"$tmp/node/params"
	enroll_code=$(cat "$tmp/node/code")
else
	heading "4/5 totp enroll, as $user (the demo plays the phone: oathtool)"
	say "\$ totp enroll --name phone"
	echo
	log=$tmp/node/enroll.txt # 0700: it holds the key
	run_waited "$repo/contrib/demo/enroll.exp" "$log" "${as_user[@]}" "$tmp/bin/totp" enroll --name phone ||
		{ tail -n 20 "$tmp/syncd.log" "$tmp"/registry*.log >&2; die "totp enroll did not reach active on this node"; }
	secret=$(grep -Eo 'secret \(base32\): [A-Z2-7]+' "$log" | head -n1 | awk '{print $3}')
	read -r alg digits period < <(sed -nE 's/.*parameters: +([A-Z0-9]+), ([0-9]+) digits, every ([0-9]+) seconds.*/\1 \2 \3/p' "$log" | head -n1)
	# The code typed to enroll was used at the registry; the node learnt its step with the token.
	enroll_code=$(grep -Eo 'Code shown by the app now: [0-9]+' "$log" | tail -n1 | awk '{print $NF}')
fi
[ -n "$secret" ] || die "no secret from the enrollment"
[ "$period" = 30 ] || die "the demo expects 30 s codes, got ${period:-none}"

login() { # login CODE: one ssh login answering CODE at the prompt
	"$repo/contrib/demo/login.exp" "$port" "$tmp/id_demo" "$user" "$1"
}
code() { oathtool --totp="$alg" --digits="$digits" -b "$secret"; }
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
heading "5/5 SSH logins with the token"
check "the code typed to enroll is refused (used once, at the registry)" 1 "$enroll_code" "already been used"
next_step
# Keep the next three logins inside one 30 s step, so the replay is really the same code.
while [ $(( $(date +%s) % 30 )) -gt 20 ]; do sleep 1; done
current=$(code)
check "login with the app's current code" 0 "$current" "logged in as $user"
wrong=$(printf '%06d' $(( (10#$current + 500000) % 1000000 )))
check "login with a wrong code is refused" 1 "$wrong" "Verification failed."
check "the same code again (replay) is refused" 1 "$current" "already been used"
# Each login was a connection to totp-syncd's resident verifier, not a helper process.
answered=$(grep -c "login answered by the resident verifier" "$tmp/syncd.log" || true)
if [ "$answered" -ge 4 ]; then
	say "PASS  the $answered logins went through totp-syncd's resident verifier ($tmp/run/verify.sock)"; ok=$((ok + 1))
else
	say "FAIL  only $answered logins went through the resident verifier; the others started the helper"; bad=$((bad + 1))
fi
if [ "$ha" = 1 ]; then
	follows=$("$build/totp-syncd" status --config "$tmp/pam_totp.conf" 2>&1 || true)
	if grep -qF "$registry2_url" <<<"$follows" && ! status "$registry_url" >/dev/null; then
		say "PASS  with replica A dead, the node follows replica B ($registry2_url)"; ok=$((ok + 1))
	else
		say "FAIL  the node does not say it follows replica B:"; printf '%s\n' "$follows"; bad=$((bad + 1))
	fi
fi
heading "$ok passed, $bad failed"
if [ "$bad" != 0 ]; then
	say "sshd's log:"; tail -n 30 "$tmp/sshd.log" >&2
	say "totp-syncd's log:"; tail -n 20 "$tmp/syncd.log" >&2
	say "totp-registry's log:"; tail -n 20 "$tmp"/registry*.log >&2
fi
[ "$bad" = 0 ]
