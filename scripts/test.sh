#!/bin/sh
# The whole test suite, from a fresh machine: installs every dependency
# (Debian packages with apt-get, Python ones into the project's virtual
# environment .venv, with the C pymilter the compatibility tests compare
# with), then runs lint, type checks and all tests (unit,
# property, integration) with that environment's python.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
. ./scripts/venv.sh
# [bench] brings the C pymilter (built against libmilter-dev), which the
# pymilter compatibility tests compare miltrd's layer with.
ensure_venv "[test,bench]"
# As if activated: a test that starts "python3" or "miltrd" gets this environment's.
PATH="$VENV/bin:$PATH"
VIRTUAL_ENV="$VENV"
export PATH VIRTUAL_ENV
"$VENV_PY" -m ruff check .
"$VENV_PY" -m ruff format --check .
"$VENV_PY" -m mypy
exec "$VENV_PY" -m pytest "$@"
