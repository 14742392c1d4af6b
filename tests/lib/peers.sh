# Shared by the scripts that run Python peers against the switchyard binary
# (tests/autobahn/run.sh, tests/browser/run.sh). Source it; it defines functions only.

# pinned_venv LABEL VENV PYTHON REQUIREMENTS: makes VENV with PYTHON when missing and
# installs REQUIREMENTS (name==version lines) into it unless every pin is there already.
pinned_venv() {
    local label="$1" venv="$2" python="$3" requirements="$4"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "$label: creating $venv"
        "$python" -m venv "$venv"
    fi
    if ! "$venv/bin/python" - "$requirements" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        if version(name) != pinned:
            sys.exit(1)
PY
        echo "$label: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    fi
}

# switchyard_binary LABEL ROOT PROFILE: sets `proxy` to $SWITCHYARD_BIN, or to the binary
# cargo builds in ROOT with PROFILE (debug or release; a no-op when it is up to date).
# Exits 2, saying so, when there is none.
switchyard_binary() {
    local label="$1" root="$2" profile="$3"
    if [[ -n "${SWITCHYARD_BIN:-}" ]]; then
        proxy="$SWITCHYARD_BIN"
    else
        local build=(cargo build --quiet -p switchyard)
        [[ "$profile" == release ]] && build+=(--release)
        "${build[@]}"
        proxy="${CARGO_TARGET_DIR:-$root/target}/$profile/switchyard"
    fi
    if [[ ! -x "$proxy" ]]; then
        echo "$label: error: no proxy binary at $proxy"
        echo "0 passed, 1 failed"
        exit 2
    fi
}
