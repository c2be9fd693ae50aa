#!/bin/sh
# Run miltrd from this checkout on the sample config (etc/miltrd.toml),
# listening on 127.0.0.1:8894. Ctrl-C stops it. The first run makes the
# project's virtual environment (.venv) and installs miltrd into it; later
# runs start at once and reinstall only when pyproject.toml or the version
# changed (see scripts/venv.sh).
set -eu
cd "$(dirname "$0")/.."
. ./scripts/venv.sh
ensure_venv ""
exec "$VENV_PY" -m miltrd run -c "${MILTRD_CONFIG:-etc/miltrd.toml}" "$@"
