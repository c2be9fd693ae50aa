#!/bin/sh
# Install miltrd from this checkout and run it on the sample config
# (etc/miltrd.toml), listening on 127.0.0.1:8894. Ctrl-C stops it.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e .
exec python3 -m miltrd run -c "${MILTRD_CONFIG:-etc/miltrd.toml}" "$@"
