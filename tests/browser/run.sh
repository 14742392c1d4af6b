#!/usr/bin/env bash
# The admin listener's status page in headless Chromium: switchyard, a WebSocket echo
# upstream and WebSocket clients on 127.0.0.1, the page driven by Selenium through
# chromedriver (tests/browser/status_page.py). Last line: `N passed, M failed`.
#
#   bash tests/browser/run.sh [--release] [--screenshot FILE]
#
# --release          use the release build of switchyard (default: debug)
# --screenshot FILE  save the page as a PNG, e.g. docs/status-page.png (the README's)
#
# Needs Debian's chromium and chromium-driver (`apt-get install -y chromium
# chromium-driver`; .ci/run installs them). Environment: SWITCHYARD_BIN (a proxy binary
# to use instead of building one), BROWSER_VENV (the Python environment, default
# tests/browser/.venv), PYTHON (the interpreter that creates it, default python3),
# CHROMIUM and CHROMEDRIVER (default /usr/bin/chromium, /usr/bin/chromedriver).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

venv="${BROWSER_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

profile=debug
test_args=()
while (($#)); do
    case "$1" in
        --release) profile=release ;;
        *) test_args+=("$1") ;;
    esac
    shift
done

for program in "${CHROMIUM:-/usr/bin/chromium}" "${CHROMEDRIVER:-/usr/bin/chromedriver}"; do
    if [[ ! -x "$program" ]]; then
        echo "browser: error: $program is missing; install it: apt-get install -y chromium chromium-driver"
        echo "0 passed, 1 failed"
        exit 2
    fi
done

# Python dependencies, pinned, in an environment of their own.
if [[ ! -x "$venv/bin/python" ]]; then
    echo "browser: creating $venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" - "$here/requirements.txt" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        if version(name) != pinned:
            sys.exit(1)
PY
    echo "browser: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')"
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
    echo "browser: error: no proxy binary at $proxy"
    echo "0 passed, 1 failed"
    exit 2
fi

# The test bounds itself (120 s); this bounds a browser that hangs on its way out.
exec timeout 180 "$venv/bin/python" "$here/status_page.py" --switchyard "$proxy" "${test_args[@]}" </dev/null
