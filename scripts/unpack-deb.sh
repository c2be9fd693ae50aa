#!/bin/sh
# Usage: scripts/unpack-deb.sh DIR PACKAGE...
#
# Fetch Debian packages with `apt-get download` (no install, no root, the
# package database untouched) into DIR/debs and unpack them with
# `dpkg-deb -x` into DIR/root. Nothing outside DIR changes. The tests run
# MTAs from such trees when installing them would replace the machine's own
# (Sendmail always; Postfix when another MTA is installed).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR PACKAGE..." >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"
rm -rf "$dir/debs.new" "$dir/root.new"
mkdir "$dir/debs.new" "$dir/root.new"
(cd "$dir/debs.new" && apt-get download "$@")
for deb in "$dir"/debs.new/*.deb; do dpkg-deb -x "$deb" "$dir/root.new"; done
# Replace a previous tree only once the new one is complete.
rm -rf "$dir/debs" "$dir/root"
mv "$dir/debs.new" "$dir/debs"
mv "$dir/root.new" "$dir/root"
