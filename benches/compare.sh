#!/usr/bin/env bash
# Side-by-side benchmark of switchyard, nginx and HAProxy in front of one origin, and of
# switchyard's two I/O paths: its Linux reactor (epoll, splice) and the portable one
# (async-io, built with `--features portable`, column "switchyard (async-io)").
#
#   benches/compare.sh                    # 1 worker each, then 2 workers each
#   WORKERS=1 DURATION=2 benches/compare.sh
#   PROXIES="switchyard switchyard-portable" benches/compare.sh   # the two reactors only
#   PROXIES="switchyard switchyard-admin" benches/compare.sh      # metrics on vs off
#
# Environment (all optional):
#   WORKERS="1 2"       worker counts to run (nginx worker_processes, HAProxy nbthread,
#                       switchyard --workers)
#   DURATION=3          seconds per measurement
#   ROUNDS=3            measurements per figure and proxy (the median is shown)
#   TUNNELS=5000 HOLD=3 idle-tunnel figure: tunnels held, seconds held
#   PROXIES="nginx haproxy switchyard switchyard-portable"
#                       (also: switchyard-admin, the same build with --admin-listen and
#                       its /metrics scraped every SCRAPE_EVERY seconds while measured;
#                       its columns: "switchyard (admin on)" and its ratio to switchyard)
#   SCRAPE_EVERY=1      seconds between scrapes of switchyard-admin (Prometheus: 15)
#   FIGURES="tput msgs hs rps big"        figures to take (rps and big need wrk)
#   NICE=0              run every process under `nice -n $NICE` (shared machines)
#   KEEP=1              keep the temp dir (configs, logs) and print its path
#
# Needs nginx, haproxy and wrk, each only when measured (Debian: apt-get update &&
# apt-get install -y nginx haproxy wrk); run as root it installs them when missing,
# saying so first. The portable build goes to its own target directory (`portable/`
# under the workspace's), so that neither build undoes the other.
# Everything listens on 127.0.0.1: origin 19000, nginx 18081, HAProxy 18082,
# switchyard 18083, switchyard (async-io) 18084, switchyard (admin on) 18085 with its
# admin listener on 18086 (override with ORIGIN_PORT, NGINX_PORT, HAPROXY_PORT,
# SWITCHYARD_PORT, SWITCHYARD_PORTABLE_PORT, SWITCHYARD_ADMIN_PORT, ADMIN_PORT).
set -euo pipefail

WORKERS=${WORKERS:-"1 2"}
DURATION=${DURATION:-3}
ROUNDS=${ROUNDS:-3}
TUNNELS=${TUNNELS:-5000}
HOLD=${HOLD:-3}
PROXIES=${PROXIES:-"nginx haproxy switchyard switchyard-portable"}
FIGS=${FIGURES:-"tput msgs hs rps big"}
NICE=${NICE:-0}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
ADMIN_PORT=${ADMIN_PORT:-18086}
ORIGIN_PORT=${ORIGIN_PORT:-19000}
declare -A PORT=([nginx]=${NGINX_PORT:-18081} [haproxy]=${HAPROXY_PORT:-18082} [switchyard]=${SWITCHYARD_PORT:-18083}
    [switchyard-portable]=${SWITCHYARD_PORTABLE_PORT:-18084} [switchyard-admin]=${SWITCHYARD_ADMIN_PORT:-18085})

ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[compare] %s\n' "$*" >&2; }
measured() { [[ " $PROXIES " == *" $1 "* ]]; }
drop_proxy() { # name: stop measuring it
    local kept=() proxy
    for proxy in $PROXIES; do [[ $proxy == "$1" ]] || kept+=("$proxy"); done
    PROXIES="${kept[*]}"
}

# --- tools -----------------------------------------------------------------------------
tools=()
for proxy in nginx haproxy; do measured "$proxy" && tools+=("$proxy"); done
[[ " $FIGS " == *" rps "* || " $FIGS " == *" big "* ]] && tools+=(wrk)
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
    [switchyard-admin]=$TARGET_DIR/release/switchyard)
if { measured switchyard || measured switchyard-admin; } &&
    ! cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard; then
    log "switchyard does not build: measuring the others only"
    drop_proxy switchyard
    drop_proxy switchyard-admin
fi
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

run() { nice -n "$NICE" "$@"; }

wait_http() { # port: until GET / answers 200, at most 10 s
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    log "nothing answers on port $1"
    return 1
}

require_free() { # port: refuse to measure whatever already listens there
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        log "port $1 is already in use; stop what listens there or set the *_PORT variables"
        exit 1
    fi
}
require_free "$ORIGIN_PORT"
for proxy in $PROXIES; do require_free "${PORT[$proxy]}"; done
measured switchyard-admin && require_free "$ADMIN_PORT"

# --- configs ---------------------------------------------------------------------------
nginx_conf() { # workers port
    local dir=$TMP/nginx
    mkdir -p "$dir/tmp"
    local user=""
    [[ $(id -u) == 0 ]] && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
# nginx's WebSocket proxying guide, plus upstream keepalive: the map yields '' instead of
# 'close' for non-upgrade requests so upstream connections are reused (as the other two do).
$user
daemon off;
worker_processes $1;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
        }
    }
}
EOF
    echo "$dir/nginx.conf"
}

haproxy_conf() { # workers port
    local file=$TMP/haproxy.cfg
    cat >"$file" <<EOF
global
    nbthread $1
    maxconn $(((NOFILE - 200) / 2))
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
    timeout tunnel 1h
frontend front
    bind 127.0.0.1:$2
    default_backend origin
backend origin
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
    echo "$file"
}

declare -A PROXY_PID
SCRAPER_PID=""

start_proxy() { # name workers
    local name=$1 workers=$2 port=${PORT[$1]}
    case $name in
    # `nice` execs the proxy, so $! is the proxy's own pid (the root of its process tree).
    nginx) nice -n "$NICE" nginx -c "$(nginx_conf "$workers" "$port")" &>"$TMP/nginx.out" & ;;
    haproxy) nice -n "$NICE" haproxy -db -f "$(haproxy_conf "$workers" "$port")" &>"$TMP/haproxy.out" & ;;
    switchyard | switchyard-portable)
        nice -n "$NICE" "${BINARY[$name]}" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$ORIGIN_PORT" \
            --workers "$workers" --max-connections "$NOFILE" --log warn &>"$TMP/$name.out" &
        ;;
    switchyard-admin)
        nice -n "$NICE" "${BINARY[$name]}" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$ORIGIN_PORT" \
            --workers "$workers" --max-connections "$NOFILE" --log warn \
            --admin-listen "127.0.0.1:$ADMIN_PORT" &>"$TMP/$name.out" &
        ;;
    esac
    PROXY_PID[$name]=$!
    PIDS+=("$!")
    wait_http "$port"
    if [[ $name == switchyard-admin ]]; then
        # Scraped all along, as Prometheus would (more often): the figures include it.
        while sleep "$SCRAPE_EVERY"; do
            curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/metrics" || true
        done &
        SCRAPER_PID=$!
        PIDS+=("$!")
    fi
}

stop_proxy() { # name
    if [[ $1 == switchyard-admin && -n $SCRAPER_PID ]]; then
        kill "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
        SCRAPER_PID=""
    fi
    kill "${PROXY_PID[$1]}" 2>/dev/null || true
    wait "${PROXY_PID[$1]}" 2>/dev/null || true
}

# --- figures ---------------------------------------------------------------------------
declare -A R # R[workers,proxy,figure] = median over the rounds
declare -A S # S[workers,proxy,figure] = every round's value, space-separated

field() { # key: value of key=... on the `result` line of stdin
    sed -n "s/^result .*\b$1=\([^ ]*\).*/\1/p"
}

wrk_mbps() { # wrk output on stdin -> Transfer/sec in MB/s
    awk '/^Transfer\/sec:/ {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
        f = (u == "GB") ? 1073.741824 : (u == "MB") ? 1.048576 : (u == "KB") ? 0.001024 : 0.000001
        printf "%.0f", v * f }'
}

median() { # values... -> the median (the lower middle one for an even count)
    printf '%s\n' "$@" | { grep -v '^$' || true; } | sort -g | awk '{v[NR] = $1} END { if (NR) print v[int((NR + 1) / 2)] }'
}

note() { # key figure value
    S[$1,$2]="${S[$1,$2]:-} $3"
}

idle_figure() { # name workers
    local out
    out=$(run "$LOADGEN" ws-idle --target "127.0.0.1:${PORT[$1]}" --pid "${PROXY_PID[$1]}" \
        --tunnels "$TUNNELS" --hold "$HOLD")
    log "$1/$2 $(head -1 <<<"$out")"
    R[$2,$1,idle]=$(field bytes_per_tunnel <<<"$out")
    R[$2,$1,alive]="$(field alive <<<"$out")/$TUNNELS"
}

cpu_ticks() { # pid -> CPU time (user + system, clock ticks) of it and its children
    local total=0 p
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        total=$((total + $(cat /proc/"$p"/task/*/stat 2>/dev/null | awk '{s += $14 + $15} END {print s + 0}')))
    done
    echo "$total"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))

figure() { # figure name workers: one measurement, recorded in S
    local fig=$1 key="$3,$2" target=127.0.0.1:${PORT[$2]} out pid=${PROXY_PID[$2]:-} ticks=0
    [[ -n $pid ]] && ticks=$(cpu_ticks "$pid")
    case $fig in
    tput)
        out=$(run "$LOADGEN" ws-throughput --target "$target" --duration "$DURATION")
        note "$key" tput "$(field mbps <<<"$out")"
        ;;
    msgs)
        out=$(run "$LOADGEN" ws-messages --target "$target" --duration "$DURATION")
        note "$key" msgs "$(field msgs <<<"$out")"
        note "$key" p50 "$(field p50_us <<<"$out")"
        note "$key" p99 "$(field p99_us <<<"$out")"
        ;;
    hs)
        out=$(run "$LOADGEN" ws-handshakes --target "$target" --duration "$DURATION")
        note "$key" hs "$(field handshakes <<<"$out")"
        ;;
    rps)
        out=$(run wrk -t2 -c50 -d"${DURATION}s" "http://$target/")
        out="$(grep -E 'Requests/sec|Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd';')"
        note "$key" rps "$(awk '/Requests\/sec:/ {sub(/.*Requests\/sec: /, ""); printf "%.0f", $1}' <<<"$out")"
        ;;
    big)
        out=$(run wrk -t1 -c4 -d"${DURATION}s" "http://$target/1m")
        note "$key" big "$(wrk_mbps <<<"$out")"
        out="$(grep -E 'Transfer/sec|Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd';')"
        ;;
    esac
    log "$2/$3 $fig: $(head -1 <<<"$out")"
    # The proxy's CPU time per operation (per MB for the throughput figures): what the
    # rate cost it, steadier than the rate on a machine the load shares.
    if [[ -n $pid ]]; then
        local used=$(($(cpu_ticks "$pid") - ticks)) rate
        rate=${S[$key,$fig]##* }
        [[ -n $rate && $rate != 0 ]] &&
            note "$key" "cpu_$fig" "$(awk -v t="$used" -v us="$TICK_US" -v r="$rate" -v d="$DURATION" \
                'BEGIN { printf "%.1f", t * us / (r * d) }')"
    fi
    if grep -qE 'Non-2xx|Socket errors|[1-9][0-9]* errors\)' <<<"$out"; then
        WARNINGS+=("$2, $3 worker(s), $fig: $(head -1 <<<"$out")")
    fi
}
WARNINGS=()

nice -n "$NICE" "$LOADGEN" origin --listen "127.0.0.1:$ORIGIN_PORT" &>"$TMP/origin.out" &
PIDS+=("$!")
wait_http "$ORIGIN_PORT"
PORT[direct]=$ORIGIN_PORT

# Every proxy runs at once on its own port (idle while another is measured); each
# figure is taken for each in turn, ROUNDS times, and the median kept, so that a burst
# of load from elsewhere on the machine does not land on one proxy only.
for workers in $WORKERS; do
    for proxy in $PROXIES; do start_proxy "$proxy" "$workers"; done
    # Memory first, on fresh processes.
    for proxy in $PROXIES; do idle_figure "$proxy" "$workers"; done
    for fig in $FIGS; do
        for round in $(seq "$ROUNDS"); do
            for proxy in direct $PROXIES; do figure "$fig" "$proxy" "$workers"; done
        done
    done
    for proxy in $PROXIES; do stop_proxy "$proxy"; done
    for proxy in direct $PROXIES; do
        for fig in tput msgs p50 p99 hs rps big cpu_tput cpu_msgs cpu_hs cpu_rps cpu_big; do
            # shellcheck disable=SC2086 # word splitting wanted
            R[$workers,$proxy,$fig]=$(median ${S[$workers,$proxy,$fig]:-})
        done
    done
done

# --- table -----------------------------------------------------------------------------
# figure | label | better (hi/lo) | target
TABLE_ROWS=(
    "tput|WebSocket echo throughput, 64 KiB × 16 in flight (MB/s)|hi|≥ 1.3× HAProxy"
    "msgs|small messages/s, 50 connections|hi|≥ 1.3× nginx"
    "p50|round trip p50, 50 connections (µs)|lo|"
    "p99|round trip p99, 50 connections (µs)|lo|≤ 0.7× nginx"
    "hs|WebSocket handshakes/s, 16 clients|hi|≥ 1.3× nginx"
    "rps|HTTP keep-alive req/s, 50 connections (wrk)|hi|≥ 1.2× HAProxy"
    "big|HTTP 1 MiB responses, 4 connections (MB/s, wrk)|hi|≥ HAProxy"
    "idle|proxy memory per idle tunnel, $TUNNELS tunnels (bytes)|lo|< 2 KB"
    "alive|idle tunnels still echoing after ${HOLD}s|-|all"
)
ratio() { # better sy a b
    awk -v better="$1" -v s="$2" -v a="$3" -v b="$4" 'BEGIN {
        n = 0
        if (a != "" && a != "-") { best = a; n++ }
        if (b != "" && b != "-") { if (n == 0 || (better == "hi" && b > best) || (better == "lo" && b < best)) best = b; n++ }
        if (s == "" || s == "-" || n == 0 || best == 0) { print "-"; exit }
        printf "%.2f×", s / best }'
}
quotient() { # a b -> a ÷ b
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || a == "-" || b == "" || b == "-" || b == 0) { print "-"; exit }
        printf "%.2f×", a / b }'
}
# The portable build's columns, when it was measured: its figure, and its figure over the
# Linux reactor's.
if measured switchyard-portable; then
    P_HEAD=" switchyard (async-io) |"
    Q_HEAD=" async-io ÷ epoll |"
    P_RULE="---|"
else
    P_HEAD="" Q_HEAD="" P_RULE=""
fi
portable_cells() { # workers figure better -> the two cells (or nothing)
    measured switchyard-portable || return 0
    local p=${R[$1,switchyard-portable,$2]:--} q="-"
    [[ $3 != - ]] && q=$(quotient "$p" "${R[$1,switchyard,$2]:--}")
    PCELL=" $p |" QCELL=" $q |"
}
# The same for the admin listener on (its figure, and its figure over switchyard's: the
# issue's budget is within 3 %, 0.97× to 1.03×).
if measured switchyard-admin; then
    A_HEAD=" switchyard (admin on) |"
    B_HEAD=" admin on ÷ off |"
    A_RULE="---|"
else
    A_HEAD="" B_HEAD="" A_RULE=""
fi
admin_cells() { # workers figure better -> the two cells (or nothing)
    measured switchyard-admin || return 0
    local a=${R[$1,switchyard-admin,$2]:--} b="-"
    [[ $3 != - ]] && b=$(quotient "$a" "${R[$1,switchyard,$2]:--}")
    PCELL="$PCELL $a |" QCELL="$QCELL $b |"
}
echo
echo "Median of $ROUNDS runs of ${DURATION}s each (idle tunnels: one run)."
echo
echo "| workers | figure | direct | nginx | HAProxy | switchyard |$P_HEAD$A_HEAD switchyard ÷ best of the two |$Q_HEAD$B_HEAD target |"
echo "|---|---|---|---|---|---|$P_RULE$A_RULE---|$P_RULE$A_RULE---|"
for workers in $WORKERS; do
    for spec in "${TABLE_ROWS[@]}"; do
        IFS='|' read -r fig label better target <<<"$spec"
        d=${R[$workers,direct,$fig]:--}
        n=${R[$workers,nginx,$fig]:--}
        h=${R[$workers,haproxy,$fig]:--}
        s=${R[$workers,switchyard,$fig]:--}
        r="-"
        [[ $better != - ]] && r=$(ratio "$better" "$s" "$n" "$h")
        PCELL="" QCELL=""
        portable_cells "$workers" "$fig" "$better"
        admin_cells "$workers" "$fig" "$better"
        echo "| $workers | $label | $d | $n | $h | $s |$PCELL $r |$QCELL $target |"
    done
done
CPU_ROWS=(
    "cpu_tput|WebSocket echo throughput (per MB)"
    "cpu_msgs|small messages (per echoed message: two through the proxy)"
    "cpu_hs|WebSocket handshakes (per handshake)"
    "cpu_rps|HTTP keep-alive requests (per request)"
    "cpu_big|HTTP 1 MiB responses (per MB)"
)
echo
echo "Proxy CPU time (user + system, µs) per operation, median of the same runs."
echo
echo "| workers | figure | nginx | HAProxy | switchyard |$P_HEAD$A_HEAD switchyard ÷ best of the two |$Q_HEAD$B_HEAD"
echo "|---|---|---|---|---|$P_RULE$A_RULE---|$P_RULE$A_RULE"
for workers in $WORKERS; do
    for spec in "${CPU_ROWS[@]}"; do
        IFS='|' read -r fig label <<<"$spec"
        n=${R[$workers,nginx,$fig]:--}
        h=${R[$workers,haproxy,$fig]:--}
        s=${R[$workers,switchyard,$fig]:--}
        PCELL="" QCELL=""
        portable_cells "$workers" "$fig" lo
        admin_cells "$workers" "$fig" lo
        echo "| $workers | $label | $n | $h | $s |$PCELL $(ratio lo "$s" "$n" "$h") |$QCELL"
    done
done
if ((${#WARNINGS[@]})); then
    echo
    echo "Errors during the run (figures above include them):"
    printf -- '- %s\n' "${WARNINGS[@]}"
fi
