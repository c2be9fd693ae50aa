#!/bin/sh
# Install what the integration tests talk to: Postfix (a private instance
# is started by the tests, never the system one), OpenDKIM's miltertest,
# Sendmail's libmilter headers for the C interop filter, swaks, and
# dnsmasq as the DNS server the SPF tests run on loopback.
set -eu
cd "$(dirname "$0")/.."
# libwrap0 and m4: what the unpacked Sendmail links against and builds its .cf with.
# debhelper, dh-python, pybuild-plugin-pyproject, python3-all, rpm, man-db: the
# packaging tests build the packages and read the man pages; debootstrap and
# systemd-container (systemd-nspawn) make and boot the Debian container they
# install the deb in (never on this machine). python3-venv: scripts/venv.sh.
# opendkim, opendkim-tools, opendmarc: the DKIM and DMARC peers miltrd is compared
# with; publicsuffix: the Public Suffix List file the dmarc plugin reads;
# python3-dkim: Debian's dkimpy, whose dkimverify command checks what miltrd signs.
# python3-dev: the C pymilter (the [bench] extra) builds against Python.h.
PKGS="postfix miltertest libmilter-dev gcc python3-dev swaks dnsmasq-base libwrap0 m4
      debhelper dh-python pybuild-plugin-pyproject python3-all rpm man-db python3-venv
      opendkim opendkim-tools opendmarc publicsuffix python3-dkim"
# Without their recommends (libnss-mymachines would edit nsswitch.conf).
BARE="debootstrap systemd-container"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# MTAs the tests run from Debian's packages unpacked beside the project
# (scripts/unpack-deb.sh: apt-get download and dpkg-deb -x, never
# installed); tests/integration/mta.py runs each tree as a private instance.
# Sendmail always: sendmail-bin conflicts with postfix. Postfix too: the
# tests use the system's postfix when it is installed and this tree when it
# is not, and one test runs this tree on every machine.
unpack() { # DIR FILE PACKAGE...: unless DIR/root/FILE is there already
    dir=$1 file=$2
    shift 2
    [ -x "$dir/root/$file" ] && return 0
    scripts/unpack-deb.sh "$dir" "$@" >/dev/null ||
        { $SUDO apt-get update -q && scripts/unpack-deb.sh "$dir" "$@" >/dev/null; }
}
unpack .cache/sendmail usr/libexec/sendmail/sendmail sendmail-bin sendmail-cf sendmail-base
unpack .cache/postfix usr/sbin/postfix postfix

# Installing postfix would remove the machine's own MTA (sendmail-bin, exim4,
# ...: they all provide mail-transport-agent and conflict). The tests never
# do that: with another MTA installed, postfix is left out and the tests run
# the unpacked one; what it links against is installed instead (libraries
# conflict with no MTA), and no install below may remove any package
# (--no-remove).
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}
other_mta=$(dpkg-query -W -f='${Package} ${Status} ${Provides}\n' 2>/dev/null |
    awk '/ok installed/ && /mail-transport-agent/ && $1 != "postfix" { printf "%s ", $1 }')
if [ -n "$other_mta" ] && ! installed postfix; then
    echo "install-test-deps.sh: not installing postfix: it would replace this machine's MTA (${other_mta% }); the tests run it from .cache/postfix" >&2
    libs=$(dpkg-deb -f .cache/postfix/debs/postfix_*.deb Depends | tr ',' '\n' |
        sed 's/[(|].*//; s/ //g' | grep '^lib' || true)
    PKGS=$(echo $PKGS $libs | sed 's/^postfix //')
    # The accounts Postfix's own postinst would make: its daemons run as
    # postfix; postdrop is its setgid group. No login, no home directory.
    getent group postdrop >/dev/null || $SUDO groupadd --system postdrop
    getent passwd postfix >/dev/null ||
        $SUDO useradd --system --user-group --no-create-home --home-dir /var/spool/postfix \
            --shell /usr/sbin/nologin postfix
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
bare=""
for p in $BARE; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || bare="$bare $p"
done
if [ -n "$bare" ]; then
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-remove \
        --no-install-recommends $bare
fi
if [ -n "$missing" ]; then
    $SUDO apt-get update -q
    # Postfix asks how to configure the system MTA; the tests need none.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-remove $missing
fi
