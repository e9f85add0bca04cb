#!/usr/bin/env bash
# Set up tritonstub on a fresh machine, then test it or demo it.
#
#   bash scripts/bootstrap.sh test [pytest args]     install, provision the reference Triton, run pytest
#   bash scripts/bootstrap.sh demo [--stub ours|cpp] install, provision, serve examples/model_repository/add_sub
#                                                    with the real tritonserver through a stub, infer once
#   bash scripts/bootstrap.sh setup                  install and provision only
#
# "install" = create .venv (python3 -m venv) if missing and `pip install -e '.[test]'` into it, which
# also installs the reference Triton 2.51.0 (nvidia-pytriton==0.7.0). "provision" = copy the C++ stub
# next to libtriton_python.so and make sure the system Python the C++ stub embeds has numpy
# (apt-get install python3-numpy when run as root), and unpack the older Tritons 2.36 ... 2.49
# (one nvidia-pytriton wheel each, into .venv/older-tritons). Any failure stops here with a non-zero status:
# `test` never runs without the reference, and exports TRITONSTUB_REQUIRE_REFERENCE=1 so that
# real-Triton tests fail rather than skip.
#
# Environment: PYTHON (interpreter for a new venv, default python3), TRITONSTUB_VENV (default
# <repo>/.venv), TRITONSTUB_FORCE_INSTALL=1 (re-run pip even if pyproject.toml is unchanged).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TRITONSTUB_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.tritonstub-installed"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf '\nbootstrap: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ensure_venv() {
    if [ -x "$PY" ]; then
        return
    fi
    local base="${PYTHON:-python3}"
    command -v "$base" >/dev/null 2>&1 || die "no '$base' on PATH: install Python >= 3.9 or set PYTHON=/path/to/python3"
    say "creating $VENV with $("$base" --version 2>&1)"
    "$base" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install -y python3-venv)"
}

install_package() {
    local want
    want="$(cd "$ROOT" && "$PY" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
    # Skip pip when this very pyproject.toml was installed already and the package imports from this tree.
    if [ "${TRITONSTUB_FORCE_INSTALL:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
        && [ "$(cd / && "$PY" -c 'import tritonstub, os; print(os.path.dirname(os.path.dirname(tritonstub.__file__)))' 2>/dev/null)" = "$ROOT" ]; then
        say "tritonstub[test] already installed in $VENV"
        return
    fi
    say "installing tritonstub[test] (editable) and the reference Triton (nvidia-pytriton==0.7.0) into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" \
        || die "pip install -e '.[test]' failed; the reference Triton (nvidia-pytriton==0.7.0) and the test tools are required"
    printf '%s\n' "$want" > "$STAMP"
}

provision_reference() {
    "$PY" -m tritonstub.testing.reference --provision \
        || die "the reference Triton could not be provisioned (see above); real-Triton tests cannot run"
    # Older Tritons (2.36 ... 2.49), one nvidia-pytriton wheel each, for the protocol-era tests.
    "$PY" -m tritonstub.testing.older --provision \
        || die "the older Tritons could not be provisioned (see above); the protocol-era tests cannot run"
}

setup() {
    ensure_venv
    install_package
    provision_reference
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    test)
        setup
        export TRITONSTUB_REQUIRE_REFERENCE=1
        cd "$ROOT"
        say "running: python -m pytest $*"
        exec "$PY" -m pytest "$@"
        ;;
    demo)
        setup
        cd "$ROOT"
        exec "$PY" -m tritonstub.testing.demo "$@"
        ;;
    setup)
        setup
        ;;
    -h|--help|help)
        usage
        ;;
    *)
        usage >&2
        die "unknown command '${cmd}'; expected test, demo or setup"
        ;;
esac
