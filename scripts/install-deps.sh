#!/usr/bin/env bash
# Installs what mifike needs on a fresh Debian machine (run as root):
# Debian packages through apt-get when what they provide is missing, then
# the Go modules. Safe to run again: it installs only what is missing.
#
#   install-deps.sh               everything the tests need (make test)
#   install-deps.sh demo          only what `mifike demo` runs (make demo):
#                                 ip, nft, ping, sysctl, and FreeRADIUS, through
#                                 which the demo's end user authenticates (EAP)
#   install-deps.sh demo-cluster  what `mifike demo cluster` runs (its etcd is
#                                 built into mifike): the demo's without FreeRADIUS
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-test}
# "file or command that proves it is there" → Debian package
declare -A need
# The network lab (internal/lab, internal/demo): namespaces and veth links,
# the routers' NAT and the demo's path failures, pings, forwarding.
declare -A lab=([ip]=iproute2 [nft]=nftables [ping]=iputils-ping [/usr/sbin/sysctl]=procps)
case $mode in
test)
	need=(
		[tshark]=tshark
		[/usr/lib/ipsec/charon]=strongswan-charon
		[swanctl]=strongswan-swanctl
		[pki]=strongswan-pki
		# kernel-libipsec (userspace ESP: this kernel has none), and the crypto
		# plugins charon loads: openssl, curve25519, gcm, chapoly, ...
		[/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so]=libcharon-extra-plugins
		[/usr/lib/ipsec/plugins/libstrongswan-openssl.so]=libstrongswan-standard-plugins
		[/usr/lib/ipsec/plugins/libstrongswan-curve25519.so]=libstrongswan-extra-plugins
		[iperf3]=iperf3
		# EAP through RADIUS: a real server for internal/radiuslab, its
		# clients (radclient), wpa_supplicant's eapol_test as an EAP peer, and
		# strongSwan's EAP-MSCHAPv2 plugin (its eap-radius, eap-md5 and
		# eap-tls plugins come with libcharon-extra-plugins above).
		[/usr/sbin/freeradius]=freeradius
		[radclient]=freeradius-utils
		[eapol_test]=eapoltest
		[/usr/lib/ipsec/plugins/libstrongswan-eap-mschapv2.so]=libcharon-extauth-plugins
	)
	;;
demo)
	need=([/usr/sbin/freeradius]=freeradius)
	;;
demo-cluster)
	need=()
	;;
*)
	echo "usage: install-deps.sh [demo|demo-cluster]  (no argument: what the tests need)" >&2
	exit 2
	;;
esac
for what in "${!lab[@]}"; do
	need[$what]=${lab[$what]}
done

missing=()
for what in "${!need[@]}"; do
	if [[ $what == /* ]]; then
		[ -e "$what" ] && continue
	else
		command -v "$what" >/dev/null 2>&1 && continue
	fi
	missing+=("${need[$what]}")
done
# apt_get runs apt-get, waiting for another apt or dpkg (unattended-
# upgrades, a second install-deps) to let go of its locks instead of
# failing at once: dpkg's lock through apt's own DPkg::Lock::Timeout (apt
# says whom it waits for), the package lists' lock, which that option does
# not cover, by retrying with a message.
apt_get() {
	local waited=0 log
	log=$(mktemp)
	while :; do
		if apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
			rm -f "$log"
			return 0
		fi
		if ! grep -qE 'Could not get lock|Unable to lock' "$log" || [ $waited -ge 600 ]; then
			rm -f "$log"
			return 1
		fi
		[ $waited -eq 0 ] && echo "install-deps: another apt or dpkg holds its lock; waiting for it (up to 10 minutes)" >&2
		sleep 5
		waited=$((waited + 5))
	done
}

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		if [ "$mode" = test ]; then
			echo "install-deps: missing ${missing[*]}; run as root to install them with apt-get (tests needing them will skip)" >&2
		else
			echo "install-deps: missing ${missing[*]}; the demo runs as root, and as root this installs them with apt-get" >&2
		fi
	else
		echo "install-deps: apt-get install ${missing[*]}"
		echo "install-deps: if another apt or dpkg (unattended-upgrades, a second install) holds its lock, this waits for it, up to 10 minutes"
		export DEBIAN_FRONTEND=noninteractive
		# tshark asks whether non-root users may capture; answer without a prompt.
		echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
		# iperf3 asks whether to start a daemon; no.
		echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
		if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
			apt_get update
			apt_get install -y --no-install-recommends "${missing[@]}"
		fi
	fi
fi

# The demos' modules come with `make build`; the tests need every one.
if [ "$mode" = test ]; then
	go mod download
fi
