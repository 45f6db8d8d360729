#!/bin/sh
# build.sh builds the Debian package of mifike with dpkg-deb alone (no
# debhelper, no source package): "make deb" runs it.
#
#   OUT=dir     where the .deb goes (default: dist/ in the repository)
#   VERSION=v   what "mifike version" says (default: git describe
#               --always --dirty, as "make build"); the package's version
#               is made from it by debversion.sh
#   GO=go       the Go toolchain
#   DEB_COMPRESSION=xz  dpkg-deb's -Z (the test takes none: xz of the
#               binary takes longer than the build)
#
# It prints the .deb's path last. The package is static (CGO_ENABLED=0),
# so it depends on no library; the daemon runs no other program.
set -eu
umask 022
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"
GO=${GO:-go}
OUT=${OUT:-$top/dist}
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
debversion=$("$here/debversion.sh" "$VERSION" "$count")
maintainer=${DEB_MAINTAINER:-"The mifike authors <maintainers@mifike.invalid>"}
# One date for the changelog and every file's time, the commit's, so that
# the same commit builds the same package (reproducible-builds.org).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

stage=$(mktemp -d "${TMPDIR:-/tmp}/mifike-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/mifike
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
	"$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
	"$root/usr/share/fish/vendor_completions.d" "$root/usr/share/lintian/overrides" "$doc/examples"

# The binary, native (its gen-man and completion write the pages below);
# -s -w leave out the symbol table and DWARF (Debian ships stripped
# binaries; Go's tracebacks do not need them).
goarch=$($GO env GOARCH)
case $goarch in
amd64 | arm64 | riscv64 | s390x) arch=$goarch ;;
ppc64le) arch=ppc64el ;;
386) arch=i386 ;;
*) echo "$0: no Debian architecture for GOARCH $goarch" >&2; exit 1 ;;
esac
CGO_ENABLED=0 $GO build -ldflags "-s -w -X main.version=$VERSION" -o "$root/usr/bin/mifike" ./cmd/mifike
mifike=$root/usr/bin/mifike
if [ "$goarch" != "$($GO env GOHOSTARCH)" ]; then
	echo "$0: cross-building for $arch: the man pages and completions need a native mifike" >&2
	exit 1
fi

# Manual pages and completions, from the command's own definitions.
"$mifike" gen-man "$stage/man"
found=
for page in "$stage"/man/*.[1-9]; do
	[ -e "$page" ] || continue
	section=${page##*.}
	mkdir -p "$root/usr/share/man/man$section"
	gzip -9n <"$page" >"$root/usr/share/man/man$section/${page##*/}.gz"
	found=1
done
if [ -z "$found" ]; then
	echo "$0: mifike gen-man wrote no manual page" >&2
	exit 1
fi
"$mifike" completion bash >"$root/usr/share/bash-completion/completions/mifike"
"$mifike" completion zsh >"$root/usr/share/zsh/vendor-completions/_mifike"
"$mifike" completion fish >"$root/usr/share/fish/vendor_completions.d/mifike.fish"

install -m 644 packaging/systemd/mifike.service "$root/lib/systemd/system/mifike.service"
cp -R examples/. "$doc/examples/"
install -m 644 "$here/copyright" "$doc/copyright"
install -m 644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/mifike"
# A native package (its version has no Debian revision) names its
# changelog changelog.gz, not changelog.Debian.gz (Policy 12.7).
{
	echo "mifike ($debversion) unstable; urgency=medium"
	echo
	echo "  * Built from git $VERSION ($(git rev-parse HEAD 2>/dev/null || echo unknown))."
	echo
	echo " -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"

# No conffiles: the package ships nothing in /etc. The configuration
# holds keys and is the administrator's (README: Install).
for s in postinst prerm postrm; do
	install -m 755 "$here/$s" "$root/DEBIAN/$s"
done
find "$root" -path "$root/DEBIAN" -prune -o -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
chmod 755 "$mifike"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
	>"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@MAINTAINER@/$maintainer/" \
	-e "s/@INSTALLED_SIZE@/$size/" "$here/control.in" >"$root/DEBIAN/control"
chmod 644 "$root/DEBIAN/control"
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
deb=$OUT/mifike_${debversion}_$arch.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
