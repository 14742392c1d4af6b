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

# Python dependencies, pinned, in an environment of their own, and the proxy.
source "$root/tests/lib/peers.sh"
pinned_venv browser "$venv" "$python" "$here/requirements.txt"
switchyard_binary browser "$root" "$profile"

# The test bounds itself (120 s); this bounds a browser that hangs on its way out.
exec timeout 180 "$venv/bin/python" "$here/status_page.py" --switchyard "$proxy" "${test_args[@]}" </dev/null
