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

# Python dependencies, pinned, in an environment of their own, and the proxy.
source "$root/tests/lib/peers.sh"
pinned_venv autobahn "$venv" "$python" "$here/requirements.txt"
switchyard_binary autobahn "$root" "$profile"

exec "$venv/bin/python" "$here/run.py" --proxy "$proxy" "${run_args[@]}" -- "${proxy_args[@]}" </dev/null
