#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Side-by-side benchmark of switchyard, nginx and HAProxy in front of one origin, and of
# switchyard against itself:
# - switchyard-portable: its portable I/O path (async-io, built with `--features
#   portable`, column "switchyard (async-io)") against the Linux reactor (epoll, splice);
# - switchyard-raw: the same binary with `ws_validate = false` in `[defaults]` (a config
#   file in the temp dir), so WebSocket tunnels are plain byte tunnels, against the
#   frame-aware default (column "switchyard ÷ switchyard-raw");
# - switchyard-admin: the same binary with `--admin-listen` and a scraper that fetches
#   /metrics and /status.json every second for as long as it runs, against the admin
#   listener off (column "admin on ÷ off").
#
#   benches/compare.sh                    # 1 worker each, then 2 workers each
#   WORKERS=1 DURATION=2 benches/compare.sh
#   PROXIES="switchyard switchyard-portable" benches/compare.sh   # the two reactors only
#   PROXIES="switchyard switchyard-raw" FIGURES="tput msgs" benches/compare.sh
#                                         # frame-aware tunnels against byte tunnels
#   PROXIES="switchyard switchyard-admin" FIGURES="msgs rps" ROUNDS=5 benches/compare.sh
#                                         # the admin listener on, scraped, against off
#   benches/compare-tls.sh                # the TLS figures only, with switchyard on both
#                                         # crypto providers (benches/lib/tls.sh)
#
# Environment (all optional):
#   WORKERS="1 2"       worker counts to run (nginx worker_processes, HAProxy nbthread,
#                       switchyard --workers)
#   DURATION=3          seconds per measurement
#   ROUNDS=3            measurements per figure and proxy (the median is shown)
#   TUNNELS=5000 HOLD=3 idle-tunnel figure: tunnels held, seconds held (TUNNELS=0:
#                       no idle-tunnel figure)
#   PROXIES="nginx haproxy switchyard switchyard-portable"   (and/or switchyard-raw,
#                       switchyard-admin, switchyard-ring)
#   FIGURES="tput msgs hs rps big rps1 tlshs wss"   figures to take, and `chunked`
#                       (1 MiB in 64 KiB chunks, each chunk line read by the proxy) when named; rps,
#                       big, chunked and rps1 need wrk; rps1 is `wrk -t1 -c50` against an nginx origin, port
#                       19001 or NGINX_ORIGIN_PORT: lib/nginx_origin.sh; tls is tlshs and
#                       wss, the TLS figures of benches/lib/tls.sh)
#   NICE=0              run every process under `nice -n $NICE` (shared machines)
#   KEEP=1              keep the temp dir (configs, logs) and print its path
#
# Needs nginx, haproxy and wrk, each only when measured (Debian: apt-get update &&
# apt-get install -y nginx haproxy wrk); run as root it installs them when missing,
# saying so first. The portable build goes to its own target directory (`portable/`
# under the workspace's), so that neither build undoes the other.
# Everything listens on 127.0.0.1: origin 19000, nginx 18081, HAProxy 18082,
# switchyard 18083, switchyard (async-io) 18084, switchyard-raw 18085, switchyard-admin
# 18086 and its admin listener 18096 (override with ORIGIN_PORT, NGINX_PORT,
# HAPROXY_PORT, SWITCHYARD_PORT, SWITCHYARD_PORTABLE_PORT, SWITCHYARD_RAW_PORT,
# SWITCHYARD_ADMIN_PORT, ADMIN_LISTEN_PORT); switchyard-ring 18087
# (SWITCHYARD_RING_PORT); each proxy's TLS listener at its port + 100 (TLS_PORT_OFFSET).
set -euo pipefail

WORKERS=${WORKERS:-"1 2"}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
TUNNELS=${TUNNELS:-5000}
HOLD=${HOLD:-3}
PROXIES=${PROXIES:-"nginx haproxy switchyard switchyard-portable"}
FIGS=${FIGURES:-"tput msgs hs rps big rps1"}
NICE=${NICE:-0}
ORIGIN_PORT=${ORIGIN_PORT:-19000}
declare -A PORT=([nginx]=${NGINX_PORT:-18081} [haproxy]=${HAPROXY_PORT:-18082}
    [switchyard]=${SWITCHYARD_PORT:-18083} [switchyard-portable]=${SWITCHYARD_PORTABLE_PORT:-18084}
    [switchyard-raw]=${SWITCHYARD_RAW_PORT:-18085} [switchyard-admin]=${SWITCHYARD_ADMIN_PORT:-18086})
ADMIN_LISTEN_PORT=${ADMIN_LISTEN_PORT:-18096}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[compare] %s\n' "$*" >&2; }
measured() { [[ " $PROXIES " == *" $1 "* ]]; }
drop_proxy() { # name: stop measuring it
    local kept=() proxy
    for proxy in $PROXIES; do [[ $proxy == "$1" ]] || kept+=("$proxy"); done
    PROXIES="${kept[*]}"
}
# shellcheck source=lib/tls.sh
source "$ROOT/benches/lib/tls.sh"

# --- tools -----------------------------------------------------------------------------
tools=()
for proxy in nginx haproxy; do measured "$proxy" && tools+=("$proxy"); done
[[ " $FIGS " == *" rps "* || " $FIGS " == *" big "* || " $FIGS " == *" chunked "* ]] && tools+=(wrk)
[[ " $FIGS " == *" rps1 "* ]] && tools+=(nginx wrk)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
done
export PATH="$PATH:/usr/sbin:/sbin"
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}: apt-get update && apt-get install -y ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        log "missing: ${missing[*]}. Install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
fi

log "building loadgen and switchyard (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard-bench
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
LOADGEN=$TARGET_DIR/release/loadgen
declare -A BINARY=([switchyard]=$TARGET_DIR/release/switchyard
    [switchyard-portable]=$TARGET_DIR/portable/release/switchyard
    [switchyard-raw]=$TARGET_DIR/release/switchyard
    [switchyard-admin]=$TARGET_DIR/release/switchyard)
if { measured switchyard || measured switchyard-raw || measured switchyard-admin; } &&
    ! cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard; then
    log "switchyard does not build: measuring the others only"
    drop_proxy switchyard
    drop_proxy switchyard-raw
    drop_proxy switchyard-admin
fi
build_tls_variants
if measured switchyard-portable; then
    log "building switchyard with --features portable (release, into $TARGET_DIR/portable)"
    if ! cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard \
        --features portable --target-dir "$TARGET_DIR/portable"; then
        log "switchyard (portable) does not build: measuring the others only"
        drop_proxy switchyard-portable
    fi
fi

# Each idle tunnel is two sockets in the proxy, one in loadgen, one in the origin.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < TUNNELS * 2 + 200)); then
    log "RLIMIT_NOFILE $(ulimit -n) is too low for $TUNNELS tunnels; lowering TUNNELS"
    TUNNELS=$((($(ulimit -n) - 200) / 2))
fi
NOFILE=$(ulimit -n)

TMP=$(mktemp -d /tmp/switchyard-compare.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then log "configs and logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

LIB=$ROOT/benches/lib
# shellcheck source=lib/proxies.sh
source "$LIB/proxies.sh"
# shellcheck source=lib/figures.sh
source "$LIB/figures.sh"
# shellcheck source=lib/tables.sh
source "$LIB/tables.sh"
# shellcheck source=lib/nginx_origin.sh
source "$LIB/nginx_origin.sh"

require_free "$ORIGIN_PORT"
for proxy in $PROXIES; do require_free "${PORT[$proxy]}"; done
if measured switchyard-admin; then require_free "$ADMIN_LISTEN_PORT"; fi

nice -n "$NICE" "$LOADGEN" origin --listen "127.0.0.1:$ORIGIN_PORT" &>"$TMP/origin.out" &
PIDS+=("$!")
wait_http "$ORIGIN_PORT"
PORT[direct]=$ORIGIN_PORT
if nginx_origin_wanted; then
    require_free "$NGINX_ORIGIN_PORT"
    start_nginx_origin
fi
tls_setup

# Every proxy runs at once on its own port (idle while another is measured); each
# figure is taken for each in turn, ROUNDS times, and the median kept, so that a burst
# of load from elsewhere on the machine does not land on one proxy only.
for workers in $WORKERS; do
    for proxy in $PROXIES; do start_proxy "$proxy" "$workers"; done
    # Memory first, on fresh processes.
    for proxy in $PROXIES; do idle_figure "$proxy" "$workers"; done
    for fig in $FIGS; do
        [[ $fig == rps1 ]] && continue # in front of the nginx origin, below
        for _ in $(seq "$ROUNDS"); do
            for proxy in direct $PROXIES; do figure "$fig" "$proxy" "$workers"; done
        done
    done
    nginx_origin_figures "$workers"
    for proxy in $PROXIES; do stop_proxy "$proxy"; done
    for proxy in direct $PROXIES; do
        for fig in tput msgs p50 p99 hs rps big chunked rps1 {cpu,usr}_{tput,msgs,hs,rps,big,chunked,rps1}; do
            # shellcheck disable=SC2086 # word splitting wanted
            R[$workers,$proxy,$fig]=$(median ${S[$workers,$proxy,$fig]:-})
        done
    done
    tls_medians "$workers"
done


print_tables
