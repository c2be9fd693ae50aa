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
# with; publicsuffix: the Public Suffix List file the dmarc plugin reads.
# python3-dev: the C pymilter (the [bench] extra) builds against Python.h.
PKGS="postfix miltertest libmilter-dev gcc python3-dev swaks dnsmasq-base libwrap0 m4
      debhelper dh-python pybuild-plugin-pyproject python3-all rpm man-db python3-venv
      opendkim opendkim-tools opendmarc publicsuffix"
# Without their recommends (libnss-mymachines would edit nsswitch.conf).
BARE="debootstrap systemd-container"
# Installing postfix would remove the machine's own MTA (sendmail-bin, exim4,
# ...: they all provide mail-transport-agent and conflict). The tests never
# do that: with another MTA installed, postfix is left out (the Postfix tests
# then fail, saying postfix is missing), and no install below may remove
# any package (--no-remove).
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}
other_mta=$(dpkg-query -W -f='${Package} ${Status} ${Provides}\n' 2>/dev/null |
    awk '/ok installed/ && /mail-transport-agent/ && $1 != "postfix" { printf "%s ", $1 }')
if [ -n "$other_mta" ] && ! installed postfix; then
    echo "install-test-deps.sh: not installing postfix: it would replace this machine's MTA (${other_mta% })" >&2
    PKGS=$(echo $PKGS | sed 's/^postfix //')
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
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-remove \
        --no-install-recommends $bare
fi
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    # Postfix asks how to configure the system MTA; the tests need none.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-remove $missing
fi

# Sendmail conflicts with Postfix as an installed package, so the tests run
# it from its Debian packages unpacked with dpkg -x (never installed) into
# .cache/sendmail; tests/integration/mta.py runs that tree as a private instance.
SM=.cache/sendmail
if [ ! -x "$SM/root/usr/libexec/sendmail/sendmail" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    mkdir -p "$SM/debs"
    (cd "$SM/debs" && apt-get download sendmail-bin sendmail-cf sendmail-base >/dev/null \
        || { $SUDO apt-get update -q && apt-get download sendmail-bin sendmail-cf sendmail-base; })
    for deb in "$SM"/debs/*.deb; do dpkg -x "$deb" "$SM/root"; done
fi
