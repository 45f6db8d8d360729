#!/bin/sh
# make-pki.sh OUTDIR: a test CA and the certificates and keys that the
# examples in pubkey/ use, written where those files look for them:
#
#   OUTDIR/certs/ca.crt         the CA certificate: on both hosts
#   OUTDIR/certs/gateway.crt    the gateway's, subjectAltName DNS:vpn.example.org
#   OUTDIR/private/gateway.key  its key (mode 600): on the gateway only
#   OUTDIR/certs/laptop.crt     the end user's, subjectAltName DNS:laptop.example.org
#   OUTDIR/private/laptop.key   its key (mode 600): on the laptop only
#   OUTDIR/ca/ca.key            the CA's key (mode 600): on neither host
#
# The subjectAltNames are the ids the example configurations use
# (@vpn.example.org, @laptop.example.org): mifike refuses a local.id that
# is not in our own certificate, and the peer refuses one not in its
# peer's. Set GATEWAY_NAME or LAPTOP_NAME to use other names (then change
# the ids to match). Keys are ECDSA P-256, certificates valid for DAYS
# days (default 365). Existing files are never overwritten.
#
# This is a test PKI: for production, keep the CA key offline (or use
# your organisation's CA) and make each key on the host that uses it.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
command -v openssl >/dev/null 2>&1 || { echo "$0: openssl is needed" >&2; exit 1; }

out=$1
gw=${GATEWAY_NAME:-vpn.example.org}
ue=${LAPTOP_NAME:-laptop.example.org}
days=${DAYS:-365}

for f in ca/ca.key certs/ca.crt certs/gateway.crt private/gateway.key certs/laptop.crt private/laptop.key; do
	if [ -e "$out/$f" ]; then
		echo "$0: $out/$f exists; remove the old files first or pick another OUTDIR" >&2
		exit 1
	fi
done

mkdir -p "$out/certs" "$out/private" "$out/ca"
chmod 700 "$out/private" "$out/ca"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Keys are created mode 600: no moment at which another user could read one.
key() {
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1")
	chmod 600 "$1"
}

# The CA: may sign certificates, nothing else (RFC 5280 §4.2.1.9).
key "$out/ca/ca.key"
openssl req -x509 -new -key "$out/ca/ca.key" -sha256 -days "$days" \
	-subj "/O=mifike example/CN=mifike example CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "subjectKeyIdentifier=hash" \
	-out "$out/certs/ca.crt"

# leaf NAME DNSNAME: a certificate that may sign IKE AUTH payloads
# (digitalSignature, RFC 4945 §5.1.3.2), its id as a dNSName
# subjectAltName (an FQDN ID matches it, RFC 4945 §3.1.2).
leaf() {
	key "$out/private/$1.key"
	openssl req -new -key "$out/private/$1.key" -subj "/O=mifike example/CN=$2" -out "$tmp/$1.csr"
	cat >"$tmp/$1.ext" <<-EOF
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature
		subjectAltName=DNS:$2
		subjectKeyIdentifier=hash
		authorityKeyIdentifier=keyid
	EOF
	openssl x509 -req -in "$tmp/$1.csr" -CA "$out/certs/ca.crt" -CAkey "$out/ca/ca.key" \
		-CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$days" \
		-extfile "$tmp/$1.ext" -out "$out/certs/$1.crt" 2>/dev/null
}
leaf gateway "$gw"
leaf laptop "$ue"

echo "made in $out: certs/ca.crt, certs/gateway.crt ($gw), private/gateway.key, certs/laptop.crt ($ue), private/laptop.key; the CA key is ca/ca.key"
