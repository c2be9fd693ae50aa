# Sourced by run.sh and test.sh: make sure the project's virtual environment
# (.venv) exists and holds miltrd from this checkout, installed editable with
# the given extras. Works with whichever python3 is first on PATH, Debian's
# own /usr/bin/python3 included (which refuses a global pip install:
# "externally-managed-environment", PEP 668).
#
#   ensure_venv ""        miltrd and its dependencies (run.sh)
#   ensure_venv "[test]"  plus the test tools (test.sh)
#
# The install is editable, so edits to the code need no reinstall; pip runs
# again only when what it installed from could have changed: pyproject.toml,
# the version, the extras asked for, the interpreter or this checkout's path.
# Afterwards VENV_PY names the environment's python.

VENV="${MILTRD_VENV:-$PWD/.venv}"
VENV_PY="$VENV/bin/python"

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_venv_stamp() {
    # What the install depends on: this checkout, the interpreter, the metadata.
    printf 'path %s\npython %s\n' "$PWD" \
        "$("$VENV_PY" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')"
    cat pyproject.toml miltrd/__init__.py | sha256sum
}

ensure_venv() {
    extras="$1"
    if ! "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
        # No environment, or one whose interpreter is gone (e.g. made by a
        # pyenv Python since removed): start afresh.
        rm -rf "$VENV"
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            # Debian splits venv/ensurepip out of python3 (python3-venv, which
            # also brings the pip the environment gets). Only Debian's own
            # interpreter can be helped with apt-get.
            if [ "$(command -v python3)" = /usr/bin/python3 ] && command -v apt-get >/dev/null; then
                echo "venv.sh: installing python3-venv (python3 -m venv needs it)" >&2
                _as_root apt-get update -q
                _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                    --no-install-recommends python3-venv
            else
                echo "venv.sh: $(command -v python3) has no venv/ensurepip module; install it or put another python3 first on PATH" >&2
                exit 1
            fi
        fi
        python3 -m venv "$VENV"
    fi
    stamp="$VENV/.miltrd-installed"
    have_extras="$VENV/.miltrd-extras"
    want=$(_venv_stamp)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        rm -f "$have_extras"
    elif [ -z "$extras" ] || grep -qxF "$extras" "$have_extras" 2>/dev/null; then
        return 0
    fi
    echo "venv.sh: installing miltrd$extras into $VENV" >&2
    "$VENV_PY" -m pip install -q --disable-pip-version-check -e ".$extras"
    printf '%s\n' "$want" >"$stamp"
    printf '%s\n' "$extras" >>"$have_extras"
}
