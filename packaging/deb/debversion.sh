#!/bin/sh
# debversion.sh DESCRIBE COUNT prints the Debian package version of a
# build whose "mifike version" is DESCRIBE (git describe --always --dirty)
# and whose commit is the COUNTth of its history:
#
#   v1.2.0              -> 1.2.0
#   v1.2.0-5-gabc1234   -> 1.2.0+5.gabc1234    (5 commits after the tag)
#   v1.3.0-rc1          -> 1.3.0~rc1           (sorts before 1.3.0)
#   abc1234             -> 0~123.gabc1234      (no tag yet: by commit count,
#                                                so that later builds sort later)
#   ...-dirty           -> ...+dirty
#
# A native package's version has no "-" (that would start a Debian
# revision), and it must begin with a digit (deb-version(7)).
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 DESCRIBE COUNT" >&2
	exit 2
fi
v=$1 count=$2
dirty=
case $v in
*-dirty) v=${v%-dirty} dirty=+dirty ;;
esac
if printf '%s\n' "$v" | grep -Eqx '[0-9a-f]{7,40}'; then
	out="0~$count.g$v"
else
	v=${v#v}
	after=
	# TAG-N-gHASH: the last two fields are git describe's, the tag may
	# have hyphens of its own.
	if printf '%s\n' "$v" | grep -Eqx '.+-[0-9]+-g[0-9a-f]+'; then
		hash=${v##*-g}
		v=${v%-g*}
		n=${v##*-}
		v=${v%-*}
		after="+$n.g$hash"
	fi
	out="$(printf '%s' "$v" | tr -- '-_' '~.')$after"
fi
out="$out$dirty"
if ! printf '%s\n' "$out" | grep -Eqx '[0-9][A-Za-z0-9.+~]*'; then
	echo "$0: cannot make a Debian version of \"$1\" (got \"$out\")" >&2
	exit 1
fi
printf '%s\n' "$out"
