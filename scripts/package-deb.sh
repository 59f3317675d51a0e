#!/usr/bin/env bash
# Builds the Debian package dist/apt-p2p_<version>_<arch>.deb from the compiled binary (bun build
# --compile) and the files in packaging/: the binary, its systemd service, the default configuration,
# APT's proxy setting and a man page made from the binary's --help.
#
# Usage: scripts/package-deb.sh [--binary FILE] [--out DIR] [--compress xz|gzip|zstd|none]
#   --binary FILE  package this binary instead of building dist/apt-p2p (`bun run build`) first
#   --out DIR      where the .deb goes (default: dist)
#   --compress     dpkg-deb's compressor (default: xz, the smallest, which takes minutes for the
#                  ~110 MB binary on a busy machine; the tests use none)
# Needs dpkg-dev (dpkg-shlibdeps, dpkg-parsechangelog) and help2man.
set -euo pipefail

umask 022

# Paths given are taken from the caller's directory, before the cd to the repository.
binary=""
out=""
compress=xz
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$(realpath -m -- "$2"); shift 2 ;;
    --out) out=$(realpath -m -- "$2"); shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    *) echo "usage: $0 [--binary FILE] [--out DIR] [--compress xz|gzip|zstd|none]" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
out=${out:-dist}

fail() { echo "package-deb: $*" >&2; exit 1; }

for tool in dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev dpkg-parsechangelog:dpkg-dev help2man:help2man gzip:gzip; do
  command -v "${tool%%:*}" >/dev/null || fail "${tool%%:*} is missing: apt-get install ${tool##*:}"
done

version=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' package.json)
[ -n "$version" ] || fail "cannot read the version from package.json"
arch=$(dpkg --print-architecture)

# The package's changelog must describe this version: a version bump needs an entry there too.
changelog=packaging/debian/changelog
changelog_version=$(dpkg-parsechangelog -l "$changelog" -S Version)
[ "$changelog_version" = "$version" ] ||
  fail "$changelog is at $changelog_version but package.json at $version: add a changelog entry"
maintainer=$(dpkg-parsechangelog -l "$changelog" -S Maintainer)
# Every date in the package (file times, the man page's date) is the changelog's, so that the same
# tree always gives the same package.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)
export SOURCE_DATE_EPOCH

if [ -z "$binary" ]; then
  # Always rebuilt: it takes seconds, and a stale binary would be packaged under a new version.
  node_modules/.bin/bun run build >/dev/null
  binary=dist/apt-p2p
fi
[ -x "$binary" ] || fail "$binary is not an executable"
binary_version=$("$binary" --version)
[ "$binary_version" = "$version" ] || fail "$binary is version $binary_version, package.json says $version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg

# The file tree, every mode explicit. The binary is not stripped: `bun build --compile` appends the
# program to the executable, and strip would cut it off.
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/apt-p2p" \
  "$pkg/etc/apt/apt.conf.d" "$pkg/usr/share/apt-p2p/apt.conf.d" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/doc/apt-p2p" "$pkg/usr/share/lintian/overrides"
install -m 0755 "$binary" "$pkg/usr/bin/apt-p2p"
install -m 0644 packaging/apt-p2p.service "$pkg/lib/systemd/system/apt-p2p.service"
install -m 0644 packaging/apt-p2p.conf "$pkg/etc/apt-p2p/apt-p2p.conf"
install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/apt-p2p/copyright"
# A native package (its version has no Debian revision: we are upstream and packager), so by policy
# (12.7) the Debian changelog is changelog.gz, not changelog.Debian.gz.
gzip -9n <"$changelog" >"$pkg/usr/share/doc/apt-p2p/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/apt-p2p/changelog.gz"
# Lintian tags that the way the binary is made leaves no way to fix; the file says why.
install -m 0644 packaging/lintian-overrides "$pkg/usr/share/lintian/overrides/apt-p2p"

# APT's proxy setting must go with `dpkg -r`, not only with purge: a conffile (anything shipped as a
# regular file under /etc, which Debian policy says must be a conffile) stays after `dpkg -r`, and APT
# would keep sending every download to a daemon that is gone. So the setting is a regular file of
# the package under /usr/share, and /etc/apt/apt.conf.d/30apt-p2p a symlink to it that the package
# ships. dpkg tracks a symlink like any file, never as a conffile (conffiles are regular files
# only), so `dpkg -r` removes both, with no maintainer script involved; APT reads the link. The link
# is absolute, as policy wants for links between top-level directories.
install -m 0644 packaging/apt.conf.d/30apt-p2p "$pkg/usr/share/apt-p2p/apt.conf.d/30apt-p2p"
ln -s /usr/share/apt-p2p/apt.conf.d/30apt-p2p "$pkg/etc/apt/apt.conf.d/30apt-p2p"

# The man page, from the binary's --help: help2man renders the program's own help and our include
# files add every command's help and the FILES section.
packaging/man-commands.sh "$pkg/usr/bin/apt-p2p" >"$work/commands.h2m"
help2man --no-info --no-discard-stderr --section=1 --source="apt-p2p $version" \
  --name="peer-to-peer downloader and caching proxy for APT" \
  --include="$work/commands.h2m" --include=packaging/apt-p2p.h2m \
  --output="$work/apt-p2p.1" "$pkg/usr/bin/apt-p2p"
gzip -9n <"$work/apt-p2p.1" >"$pkg/usr/share/man/man1/apt-p2p.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/apt-p2p.1.gz"

# The libc the binary links against, as dpkg-shlibdeps states it; it wants a debian/control to read.
mkdir -p "$work/shlibs/debian"
printf 'Source: apt-p2p\n\nPackage: apt-p2p\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$pkg/usr/bin/apt-p2p" 2>"$work/shlibs.log") ||
  { cat "$work/shlibs.log" >&2; fail "dpkg-shlibdeps failed"; }
shlibs_depends=${shlibs#shlibs:Depends=}

# Control area.
installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
  -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@SHLIBS_DEPENDS@|$shlibs_depends|" \
  packaging/debian/control.in >"$pkg/DEBIAN/control"
if grep -q '@[A-Z_]*@' "$pkg/DEBIAN/control"; then fail "a field of packaging/debian/control.in was left unfilled"; fi
echo /etc/apt-p2p/apt-p2p.conf >"$pkg/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
  >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

find "$pkg" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/apt-p2p_${version}_${arch}.deb"
# --root-owner-group: every file root:root in the package, without fakeroot.
dpkg-deb --root-owner-group -Z"$compress" --build "$pkg" "$deb" >/dev/null
echo "$deb"
