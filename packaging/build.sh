#!/bin/sh
# Build the deb and the rpm from this checkout into dist/.
#   ./packaging/build.sh          both
#   ./packaging/build.sh deb      only the deb (needs debhelper, dh-python,
#                                 pybuild-plugin-pyproject, python3-all)
#   ./packaging/build.sh rpm      on Fedora/EL: the binary and source rpm; on
#                                 any other host (needs rpmbuild, e.g. Debian's
#                                 rpm package) only the source rpm, to rebuild
#                                 on Fedora/EL: an rpm's Python dependencies
#                                 and paths are those of the host it is built on
set -eu
cd "$(dirname "$0")/.."
# Build with the system's Python and tools, never a virtualenv or pyenv one.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
WHAT="${1:-all}"
VERSION=$(python3 -c "import re;print(re.search(r'__version__ = \"(.+)\"', open('miltrd/__init__.py').read())[1])")
OUT="$PWD/dist"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
SRC="$WORK/miltrd-$VERSION"
mkdir -p "$SRC"
# The source tree as committed (or as on disk, without caches).
tar --exclude=.git --exclude=.cache --exclude=.venv --exclude=dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -xf - -C "$SRC"

if [ "$WHAT" = all ] || [ "$WHAT" = deb ]; then
    cp -r packaging/debian "$SRC/debian"
    cp packaging/systemd/miltrd.service "$SRC/debian/miltrd.service"
    cp packaging/systemd/miltrd.socket "$SRC/debian/miltrd.socket"
    cp packaging/systemd/miltrd.tmpfiles "$SRC/debian/miltrd.tmpfiles"
    (cd "$SRC" && dpkg-buildpackage -us -uc -b >"$WORK/deb.log" 2>&1) || {
        tail -40 "$WORK/deb.log"; exit 1; }
    cp "$WORK"/miltrd_*.deb "$OUT/"
    rm -rf "$SRC/debian"
    echo "built $(ls "$OUT"/miltrd_*.deb)"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = rpm ]; then
    mkdir -p "$WORK/rpm/SOURCES"
    tar -czf "$WORK/rpm/SOURCES/miltrd-$VERSION.tar.gz" -C "$WORK" "miltrd-$VERSION"
    RPMDEF="--define=_topdir $WORK/rpm"
    if rpm -q --quiet python3-devel pyproject-rpm-macros systemd-rpm-macros 2>/dev/null; then
        # A Fedora/EL host with the build requirements: the real package.
        rpmbuild "$RPMDEF" --define "version $VERSION" -ba packaging/rpm/miltrd.spec \
            >"$WORK/rpm.log" 2>&1 || { tail -40 "$WORK/rpm.log"; exit 1; }
        cp "$WORK"/rpm/RPMS/noarch/miltrd-*.rpm "$OUT/"
    else
        echo "rpm: a Fedora/EL package is built on Fedora/EL (its Python dependencies" \
             "and site-packages path come from the build host's python3); this host" \
             "has no pyproject-rpm-macros, so only the source rpm is built." \
             "On Fedora/EL: rpmbuild --rebuild $(basename "$OUT")/miltrd-$VERSION-1.src.rpm" \
             "(or mock)." >&2
        rpmbuild "$RPMDEF" --define "version $VERSION" --define "dist %{nil}" --nodeps \
            -bs packaging/rpm/miltrd.spec >"$WORK/rpm.log" 2>&1 || {
            tail -40 "$WORK/rpm.log"; exit 1; }
    fi
    cp "$WORK"/rpm/SRPMS/miltrd-*.src.rpm "$OUT/"
    echo "built $(ls "$OUT"/miltrd-*.rpm)"
fi
