#!/usr/bin/env bash
# The Autobahn WebSocket cases (kosoku, fuzzing-client mode) against a Python
# `websockets` echo server, direct and through switchyard; fails when any case's
# outcome differs between the two. Last line: `N passed, M failed`.
#
#   bash tests/autobahn/run.sh [--all] [run.py options] [-- extra switchyard args]
#
# --debug        use the debug build of switchyard (default: release)
# --all          every case (default: all but the 9.x, 12.x and 13.x cases)
# --case GLOB    only these cases (repeatable), e.g. --case '5.*'
# --byte-tunnel  also a pass with ws_validate = false (byte-tunnel.toml) against the
#                same direct run: both modes for one direct pass
# --timeout S    deadline for the whole run in seconds
# -- ARGS        passed to switchyard, e.g. -- --config tests/autobahn/raw.toml
#
# Environment: SWITCHYARD_BIN (a proxy binary to use instead of building one),
# AUTOBAHN_VENV (the Python environment, default tests/autobahn/.venv),
# PYTHON (the interpreter that creates it, default python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

venv="${AUTOBAHN_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

profile=release
run_args=()
proxy_args=()
while (($#)); do
    case "$1" in
        --)
            shift
            proxy_args=("$@")
            break
            ;;
        --debug) profile=debug ;;
        *) run_args+=("$1") ;;
    esac
    shift
done

# Python dependencies, pinned, in an environment of their own.
if [[ ! -x "$venv/bin/python" ]]; then
    echo "autobahn: creating $venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" - "$here/requirements.txt" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        if version(name) != pinned:
            sys.exit(1)
EOF
    echo "autobahn: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

# The proxy, built by cargo (a no-op when it is up to date).
if [[ -n "${SWITCHYARD_BIN:-}" ]]; then
    proxy="$SWITCHYARD_BIN"
else
    build=(cargo build --quiet -p switchyard)
    [[ "$profile" == release ]] && build+=(--release)
    "${build[@]}"
    proxy="${CARGO_TARGET_DIR:-$root/target}/$profile/switchyard"
fi
if [[ ! -x "$proxy" ]]; then
    echo "autobahn: error: no proxy binary at $proxy"
    echo "0 passed, 1 failed"
    exit 2
fi

exec "$venv/bin/python" "$here/run.py" --proxy "$proxy" "${run_args[@]}" -- "${proxy_args[@]}" </dev/null
