#!/usr/bin/env bash
# switchyard's TLS listeners against Python's ssl module (OpenSSL) as the client:
# TLS 1.3 and 1.2 handshakes, ALPN http/1.1, SNI choosing between two certificates and
# a wss echo, all on 127.0.0.1 (tests/tls/tls_clients.py). Last line: `N passed, M failed`.
#
#   bash tests/tls/run.sh [--release]
#
# --release  use the release build of switchyard (default: debug)
#
# Needs the openssl command (certificates are made with it for each run). Environment:
# SWITCHYARD_BIN (a proxy binary to use instead of building one), TLS_VENV (the Python
# environment, default tests/tls/.venv), PYTHON (the interpreter that creates it,
# default python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

venv="${TLS_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
profile=debug
[[ "${1:-}" == --release ]] && profile=release

if ! command -v openssl >/dev/null; then
    echo "tls: error: the openssl command is missing; install it: apt-get install -y openssl"
    echo "0 passed, 1 failed"
    exit 2
fi

source "$root/tests/lib/peers.sh"
pinned_venv tls "$venv" "$python" "$here/requirements.txt"
switchyard_binary tls "$root" "$profile"

# The script bounds each step; this bounds the whole.
exec timeout 120 "$venv/bin/python" "$here/tls_clients.py" --switchyard "$proxy" </dev/null
