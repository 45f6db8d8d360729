#!/bin/bash
# libreswan-pack.sh KVER KPKGVER ROOT - put libreswan 4.10 (Debian 12's
# package) and an espintcp-capable ESP into the VM's initramfs root, so a
# guest test can run pluto as mifike's RFC 9329 peer. run-vm.sh calls it
# when VM_LIBRESWAN=1. Exit 3: it cannot be done here (the caller goes on
# without libreswan and the guest test skips); any other failure is real.
#
# Why each part:
#   - libreswan is only downloaded and unpacked, never installed: its
#     package conflicts with strongswan-starter, and apt would remove the
#     strongSwan the interop tests use.
#   - pluto does IKE over TCP only through the kernel's espintcp ULP: it
#     setsockopt(TCP_ULP, "espintcp")s the stream and reads and writes
#     whole messages (its --impair tcp-skip-setsockopt-espintcp path
#     does no RFC 9329 §3 length framing, so it talks to nobody). Debian's
#     6.1 kernels (cloud and generic) are built without
#     CONFIG_INET_ESPINTCP, so we build espintcp.ko and an esp4.ko with
#     CONFIG_INET_ESPINTCP out of tree from linux-source-6.1 of the same
#     version, against linux-headers-KVER. The stock esp4.ko is replaced.
# Everything lands in $WORK/libreswan (cached, ~15 MB); ~170 MB of
# downloads the first time (mostly linux-source, deleted once the modules
# are built), then nothing.
set -euo pipefail
KVER=$1 KPKGVER=$2 R=$3
WORK=${WORK:-/tmp/mifike-kernelvm}
C=$WORK/libreswan
mkdir -p "$C/debs"
say() { echo "[libreswan-pack] $*" >&2; }
skip() { say "cannot: $*"; exit 3; }
apt_download() {  # into $C/debs, retried: downloads fail now and then
  for try in 1 2 3; do
    ( cd "$C/debs" && apt-get download -q "$@" 2>&1 | { grep -v '^W: Download is performed unsandboxed' || true; } ) && return 0
    sleep 3; apt-get update -qq || true
  done
  return 1
}

# ---- 1. modules: espintcp.ko and esp4.ko with TCP encapsulation -------------
M=$C/modules-$KVER
if [ ! -f "$M/espintcp.ko" ] || [ ! -f "$M/esp4.ko" ]; then
  # The headers package brings Debian's kernel compiler (gcc-12) and kbuild.
  if [ ! -d "/usr/src/linux-headers-$KVER" ] || ! command -v make >/dev/null; then
    say "installing linux-headers-$KVER and make"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "linux-headers-$KVER" make >/dev/null ||
      skip "apt-get install linux-headers-$KVER make failed"
  fi
  SRCDEB=$(ls "$C"/debs/linux-source-6.1_"$KPKGVER"_all.deb 2>/dev/null || true)
  if [ -z "$SRCDEB" ]; then
    say "downloading linux-source-6.1=$KPKGVER"
    apt_download "linux-source-6.1=$KPKGVER" || skip "apt-get download linux-source-6.1=$KPKGVER failed"
    SRCDEB=$(ls "$C"/debs/linux-source-6.1_"$KPKGVER"_all.deb)
  fi
  B=$C/build-$KVER
  rm -rf "$B"; mkdir -p "$B"
  dpkg-deb --fsys-tarfile "$SRCDEB" | tar -xO ./usr/src/linux-source-6.1.tar.xz |
    tar -xJ -C "$B" --strip-components=3 linux-source-6.1/net/ipv4/esp4.c linux-source-6.1/net/xfrm/espintcp.c
  mv "$B/espintcp.c" "$B/espintcp_core.c"
  # espintcp_init() is called from xfrm_init() when built in; as a module
  # it runs at load time instead. Its ULP cannot be unregistered, so the
  # module has no exit function and stays loaded.
  cat > "$B/espintcp_mod.c" <<'EOF'
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include "espintcp_core.c"

static int __init espintcp_mod_init(void)
{
	espintcp_init();
	return 0;
}
module_init(espintcp_mod_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("espintcp ULP (RFC 8229/9329), built out of tree for a kernel without CONFIG_INET_ESPINTCP");
EOF
  printf 'obj-m := esp4.o espintcp.o\nespintcp-y := espintcp_mod.o\nCFLAGS_esp4.o := -DCONFIG_INET_ESPINTCP\n' > "$B/Kbuild"
  say "building espintcp.ko and esp4.ko for $KVER"
  # A kernel whose esp4.c no longer builds this way costs only this test:
  # the stock modules stay, the guest test skips.
  make -s -C "/usr/src/linux-headers-$KVER" M="$B" modules >"$B/build.log" 2>&1 ||
    skip "building espintcp.ko failed: $(tail -5 "$B/build.log")"
  mkdir -p "$M"; cp "$B/espintcp.ko" "$B/esp4.ko" "$M/"
  rm -rf "$B" "$SRCDEB"     # 140 MB; the modules are what is reused
fi
RM=$R/usr/lib/modules/$KVER
STOCK=$(find "$RM" -name 'esp4.ko*' | head -1)
[ -n "$STOCK" ] || { say "no esp4 module in the initramfs"; exit 1; }
rm -f "$STOCK"; cp "$M/esp4.ko" "$RM/kernel/net/ipv4/esp4.ko"
mkdir -p "$RM/extra"; cp "$M/espintcp.ko" "$RM/extra/"

# ---- 2. libreswan: pluto, whack, addconn and their libraries ---------------
X=$C/x
if [ ! -x "$X/usr/libexec/ipsec/pluto" ]; then
  say "downloading libreswan and its libraries"
  apt_download libreswan libnss3-tools || skip "apt-get download libreswan failed"
  deps=$(apt-cache depends libreswan libnss3-tools libunbound8 | awk '/ Depends: lib/{print $2}' | sort -u)
  for d in $deps; do dpkg -s "$d" >/dev/null 2>&1 || apt_download "$d" || skip "apt-get download $d failed"; done
  rm -rf "$X"; mkdir -p "$X"
  for f in "$C"/debs/*.deb; do case $f in */linux-source-*) ;; *) dpkg-deb -x "$f" "$X";; esac; done
fi
LP=$X/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LP
# NSS dlopen()s its soft token, its database module and freebl: they are
# not in ldd's list of pluto, so they and their own libraries are added.
NSSDIR=$(dirname "$(LD_LIBRARY_PATH=$LP ldd "$X/usr/libexec/ipsec/pluto" | awk '/libnss3.so/{print $3}')")
NSSMODS=$(ls "$NSSDIR"/libsoftokn3.so "$NSSDIR"/libfreebl3.so "$NSSDIR"/libfreeblpriv3.so "$NSSDIR"/libnssdbm3.so)
BINS="$X/usr/libexec/ipsec/pluto $X/usr/libexec/ipsec/whack $X/usr/libexec/ipsec/addconn $X/usr/bin/certutil $NSSMODS"
if ldd $BINS | grep -q 'not found'; then skip "libraries missing: $(ldd $BINS | grep 'not found' | sort -u | tr '\n' ' ')"; fi
mkdir -p "$R/usr/libexec/ipsec" "$R/etc/ipsec.d"
for b in pluto whack addconn; do cp "$X/usr/libexec/ipsec/$b" "$R/usr/libexec/ipsec/"; done
for lib in $(ldd $BINS | grep -v ':$' | grep -o '/[^ ]*' | sort -u) $NSSMODS "$NSSDIR"/*.chk; do
  case $lib in */ld-linux*) cp -L "$lib" "$R/lib64/";; *) cp -L "$lib" "$R/usr/lib/x86_64-linux-gnu/";; esac
done
# pluto wants an NSS database; an empty one without password is enough
# for PSK authentication.
mkdir -p "$R/etc/ipsec.d/nss"
"$X/usr/bin/certutil" -N -d "sql:$R/etc/ipsec.d/nss" --empty-password
"$X/usr/libexec/ipsec/pluto" --version > "$R/etc/libreswan-version" 2>&1 || true
say "packed $(cut -d" " -f1,2 "$R/etc/libreswan-version") and espintcp.ko"
