#!/bin/sh
# The whole test suite, from a fresh machine: installs every dependency,
# then runs lint, type checks and all tests (unit, property, integration).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
python3 -m pytest "$@"
