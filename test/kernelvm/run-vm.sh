#!/bin/bash
# run-vm.sh - boot Debian 12's stock kernel (ESP, XFRM interfaces and
# XFRM_MIGRATE as modules/built in) under qemu with a busybox initramfs, and
# run static test binaries inside it. Prints "RESULT: PASS" or "RESULT: FAIL"
# and exits accordingly. vm_test.go drives it; it can run alone too:
#
#   VM_RUN='xfrm.test -test.v' test/kernelvm/run-vm.sh bin/xfrm.test
#
# Why a VM: the CI machine's kernel has no ESP transform and we cannot load
# host modules; as root on Debian we can apt-get a kernel package and qemu.
#
# Arguments: static binaries (CGO_ENABLED=0), copied to /bin in the VM.
# Env:
#   VM_RUN        newline-separated commands run in order in the VM (PATH=/bin)
#   WORK          cache dir, outside the repo (~150 MB, reused; default
#                 /tmp/mifike-kernelvm)
#   KFLAVOR       cloud|generic Debian kernel flavour (cloud: smaller package)
#   ACCEL         auto|kvm|tcg  (auto = TCG unless /dev/kvm is real, see below)
#   VM_TIMEOUT    seconds before qemu is killed (=> FAIL); default 420
#   VM_MEM        MiB of guest RAM; default 1024
#   VM_SMP        guest CPUs; default 2
#   VM_LIBRESWAN  1: also pack libreswan and espintcp (libreswan-pack.sh)
#
# Pitfalls (learnt the hard way, kept here):
#   - busybox's own `ip` applet lacks xfrm/netns; we ship the host's iproute2.
#   - seqiv/echainiv need an "stdrng" (drbg), else SA installs fail with
#     "Kernel was unable to initialize cryptographic operations".
#   - qemu needs </dev/null when stdin is closed (CI).
#   - this machine kind's /dev/kvm is PVM (nested, no vmx/svm): a stock guest
#     kernel dies there, so auto picks TCG.
set -euo pipefail

WORK=${WORK:-/tmp/mifike-kernelvm}
KFLAVOR=${KFLAVOR:-cloud}
ACCEL=${ACCEL:-auto}
VM_TIMEOUT=${VM_TIMEOUT:-420}
VM_MEM=${VM_MEM:-1024}
VM_SMP=${VM_SMP:-2}
VM_RUN=${VM_RUN:-}
VM_LIBRESWAN=${VM_LIBRESWAN:-}
HERE=$(dirname "$(readlink -f "$0")")
T0=$(date +%s.%N)
log() { echo "[run-vm +$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s] $*" >&2; }

EXTRA=(); for b in "$@"; do EXTRA+=("$(readlink -f "$b")"); done   # before cd
mkdir -p "$WORK/debs"
cd "$WORK"

# ---- 1. packages -----------------------------------------------------------
# qemu is installed on the host; the kernel and busybox-static are only
# downloaded and unpacked, so the host's /boot and /bin stay untouched.
if ! command -v qemu-system-x86_64 >/dev/null; then
  log "installing qemu-system-x86"
  [ -n "$(ls /var/lib/apt/lists/*Packages* 2>/dev/null)" ] || apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi
case $KFLAVOR in generic) META=linux-image-amd64;; *) META=linux-image-$KFLAVOR-amd64;; esac
kpkg() { apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
KPKG=$(kpkg || true)
if [ -z "$KPKG" ]; then apt-get update -qq; KPKG=$(kpkg || true); fi
[ -n "$KPKG" ] || { log "cannot resolve $META"; exit 2; }
KVER=${KPKG#linux-image-}
if [ ! -f "$WORK/k/boot/vmlinuz-$KVER" ]; then
  log "downloading $KPKG + busybox-static"
  for try in 1 2 3; do     # downloads fail now and then (rc 100, transient): retry
    ( cd debs && ls "$KPKG"_*.deb busybox-static_*.deb >/dev/null 2>&1 ||
      apt-get download -q "$KPKG" busybox-static 2>&1 | { grep -v '^W: Download is performed unsandboxed' || true; } ) && break
    [ $try = 3 ] && { log "apt-get download failed"; exit 2; }; sleep 5; apt-get update -qq || true
  done
  rm -rf k bb; mkdir -p k bb
  dpkg-deb -x debs/"$KPKG"_*.deb k
  dpkg-deb -x debs/busybox-static_*.deb bb
  bb/bin/busybox depmod -b "$WORK/k" "$KVER"
fi
BB=$WORK/bb/bin/busybox
MODDIR=k/lib/modules/$KVER

# ---- 2. initramfs ------------------------------------------------------------
R=$WORK/root
rm -rf "$R"; mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,run,tmp,lib64,usr/lib/x86_64-linux-gnu}
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
ln -s ../bin/busybox "$R/sbin/modprobe"          # the kernel's request_module() path
ln -s bin "$R/usr/bin"; ln -s ../bin "$R/usr/sbin"; ln -s usr/lib "$R/lib"
IP=$(command -v ip || echo /usr/sbin/ip)
[ -x "$IP" ] || { log "iproute2's ip is missing on the host (apt-get install iproute2)"; exit 2; }
rm -f "$R/bin/ip"; cp -L "$IP" "$R/bin/ip"
for lib in $(ldd "$IP" | grep -o '/[^ ]*'); do
  case $lib in */ld-linux*) cp -L "$lib" "$R/lib64/";; *) cp -L "$lib" "$R/usr/lib/x86_64-linux-gnu/";; esac
done
# Modules: what mifike's kernel backend needs (see internal/xfrm's package
# doc) plus dependencies from modules.dep; names use '_', files may use '-'.
WANT="veth tun dummy xfrm_algo xfrm_user xfrm_interface af_key esp4 esp6 xfrm4_tunnel xfrm6_tunnel
      tunnel4 tunnel6 ip_tunnel ip6_tunnel gcm ctr ghash_generic seqiv echainiv authenc authencesn
      chacha20poly1305 chacha_generic poly1305_generic chacha20_x86_64 poly1305_x86_64 cbc hmac
      sha1_generic sha256_generic sha512_generic aes_generic
      cryptd crypto_simd aesni_intel ghash_clmulni_intel sha256_ssse3
      drbg jitterentropy_rng"
declare -A SEEN=(); ORDER=()
resolve() {  # depth-first so dependencies come before users
  local path=$1 line deps d
  [ -n "${SEEN[$path]:-}" ] && return; SEEN[$path]=1
  line=$(grep -m1 "^$path:" "$MODDIR/modules.dep" || true)
  deps=${line#*:}
  for d in $deps; do resolve "$d"; done
  ORDER+=("$path")
}
for m in $WANT; do
  pat=$(echo "$m" | sed 's/[_-]/[_-]/g')
  p=$(grep -m1 -E "(^|/)$pat\.ko:" "$MODDIR/modules.dep" | cut -d: -f1 || true)
  if [ -n "$p" ]; then resolve "$p"; fi     # else built in (or absent)
done
RM=$R/lib/modules/$KVER
mkdir -p "$RM"
for p in "${ORDER[@]}"; do mkdir -p "$RM/$(dirname "$p")"; cp "$MODDIR/$p" "$RM/$p"; done
cp "$MODDIR"/modules.builtin "$MODDIR"/modules.order "$RM/" 2>/dev/null || true
if [ "$VM_LIBRESWAN" = 1 ]; then
  # libreswan as a peer: pluto, its libraries, and an ESP with espintcp
  # (libreswan-pack.sh says why). Exit 3 = not possible here; the guest
  # test then skips, the rest still runs.
  KPKGVER=$(ls debs/"$KPKG"_*.deb | sed "s#.*/${KPKG}_##; s#_amd64\.deb##")
  rc=0; WORK=$WORK "$HERE/libreswan-pack.sh" "$KVER" "$KPKGVER" "$R" || rc=$?
  case $rc in 0) ;; 3) log "libreswan not packed; its guest test will skip";; *) log "libreswan-pack.sh failed ($rc)"; exit 1;; esac
fi
"$BB" depmod -b "$R" "$KVER"
printf '%s\n' "${ORDER[@]}" | sed 's#.*/##; s#\.ko$##' > "$R/etc/modules.list"
for b in "${EXTRA[@]}"; do cp -L "$b" "$R/bin/"; done
printf '%s\n' "$VM_RUN" > "$R/etc/run.list"
grep -q CONFIG_XFRM_MIGRATE=y "k/boot/config-$KVER" 2>/dev/null && echo "CONFIG_XFRM_MIGRATE=y" > "$R/etc/kconfig" || : > "$R/etc/kconfig"

cat > "$R/init" <<'INIT'
#!/bin/sh
# PID 1 in the VM. Everything goes to ttyS0; the host greps for RESULT:.
export PATH=/bin:/sbin MIFIKE_IN_VM=1 HOME=/tmp GOTRACEBACK=all
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
echo "INIT: started at $(cut -d' ' -f1 /proc/uptime)s uptime, kernel $(uname -r) $(cat /etc/kconfig)"
for m in $(cat /etc/modules.list); do modprobe "$m" 2>/dev/null || echo "INIT: modprobe $m failed (fine for cpu-specific crypto)"; done
/bin/ip link set lo up
RC=0
while IFS= read -r cmd; do
  [ -n "$cmd" ] || continue
  echo "INIT: running $cmd"
  T=$(cut -d' ' -f1 /proc/uptime)
  sh -c "$cmd" || { echo "INIT: FAILED ($?): $cmd"; RC=1; }
  echo "INIT: finished $cmd ($(awk -v a="$T" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.1f", b-a}')s)"
done < /etc/run.list
[ $RC = 0 ] || { echo "--- dmesg tail"; dmesg | tail -25; }
echo "INIT: done at $(cut -d' ' -f1 /proc/uptime)s uptime"
if [ $RC = 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
sync; poweroff -f
INIT
chmod +x "$R/init"
( cd "$R" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 ) > "$WORK/initrd.gz"
log "initramfs $(du -h "$WORK/initrd.gz" | cut -f1) (${#ORDER[@]} modules), kernel $KVER"

# ---- 3. boot -------------------------------------------------------------------
if [ "$ACCEL" = auto ]; then
  if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] &&
     grep -q -w -E 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; else ACCEL=tcg; fi
fi
# -cpu max under TCG exposes AES-NI/PCLMUL, so aesni-intel loads.
if [ "$ACCEL" = kvm ]; then QACC=(-accel kvm -cpu host); else QACC=(-accel tcg,thread=multi -cpu max); fi
log "booting with $ACCEL, $VM_SMP CPUs (timeout ${VM_TIMEOUT}s)"
OUTLOG=$WORK/console.log
set +e
# panic=-1 + -no-reboot: a kernel panic (init died) ends qemu at once.
timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 "${QACC[@]}" -m "$VM_MEM" -smp "$VM_SMP" \
  -nodefaults -display none -no-reboot -serial stdio \
  -kernel "k/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" </dev/null 2>&1 | tee "$OUTLOG"
QRC=${PIPESTATUS[0]}
set -e
log "qemu exited rc=$QRC"
if grep -q '^RESULT: PASS' "$OUTLOG"; then log "PASS"; exit 0; fi
log "FAIL (see $OUTLOG)"; exit 1
