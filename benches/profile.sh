#!/usr/bin/env bash
# Where switchyard's time and memory go, next to nginx and HAProxy.
#
#   benches/profile.sh            # prints three reports; files stay in the printed dir
#
# 1. Syscalls per operation (strace -c -f on the proxy while wrk or loadgen runs), for
#    switchyard, HAProxy and nginx, 1 worker each: HTTP keep-alive requests and
#    WebSocket round trips.
# 2. Heap per idle tunnel (valgrind massif, 1000 tunnels): the allocation sites alive.
# 3. Instructions by function (valgrind callgrind, a short HTTP + WebSocket run):
#    `perf` is used instead when `perf stat -e instructions true` works on this machine.
#
# Needs strace, valgrind, nginx, haproxy, wrk (Debian: apt-get install -y strace valgrind
# nginx haproxy wrk). Ports: origin 19000, nginx 18081, HAProxy 18082, switchyard 18083.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"
for tool in strace valgrind nginx haproxy wrk; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool: apt-get update && apt-get install -y strace valgrind nginx haproxy wrk" >&2
        exit 1
    }
done
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard-bench -p switchyard
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
LOADGEN=$TARGET_DIR/release/loadgen
SWITCHYARD=$TARGET_DIR/release/switchyard
D=$(mktemp -d /tmp/switchyard-profile.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "files in $D" >&2' EXIT

"$LOADGEN" origin --listen 127.0.0.1:19000 &>"$D/origin.out" &
PIDS+=("$!")
sleep 0.5

mkdir -p "$D/nginx"
user=""
[[ $(id -u) == 0 ]] && user="user root;"
cat >"$D/nginx/nginx.conf" <<EOF
$user
daemon off; worker_processes 1; pid $D/nginx/nginx.pid; error_log $D/nginx/error.log warn;
events { worker_connections 4000; }
http {
    access_log off;
    proxy_temp_path $D/nginx/p; client_body_temp_path $D/nginx/b; fastcgi_temp_path $D/nginx/f;
    uwsgi_temp_path $D/nginx/u; scgi_temp_path $D/nginx/s;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    upstream origin { server 127.0.0.1:19000; keepalive 64; }
    server {
        listen 127.0.0.1:18081;
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
cat >"$D/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend front
    bind 127.0.0.1:18082
    default_backend origin
backend origin
    server origin 127.0.0.1:19000
EOF

syscalls() { # name pid port kind: syscalls per operation while the load runs
    local name=$1 pid=$2 port=$3 kind=$4 ops
    timeout 3 strace -c -f -p "$pid" -o "$D/strace.$name.$kind" 2>/dev/null &
    local tracer=$!
    sleep 0.3
    if [[ $kind == http ]]; then
        ops=$(wrk -t2 -c50 -d2s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
    else
        ops=$("$LOADGEN" ws-messages --target "127.0.0.1:$port" --duration 2 |
            sed -n 's/^result msgs=\([0-9]*\).*/\1/p' | awk '{print $1 * 2}')
    fi
    wait "$tracer" || true
    awk -v n="$ops" -v name="$name" -v kind="$kind" '
        NR > 2 && $NF != "total" && $4 + 0 > 0 { tot += $4; if ($4 / n >= 0.05) d = d sprintf(" %s %.2f", $NF, $4 / n) }
        END { printf "| %s | %s | %d | %.1f |%s |\n", name, kind, n, tot / n, d }' "$D/strace.$name.$kind"
}

"$SWITCHYARD" --listen 127.0.0.1:18083 --upstream 127.0.0.1:19000 --workers 1 --log warn &>"$D/switchyard.out" &
SY=$!
PIDS+=("$SY")
haproxy -db -f "$D/haproxy.cfg" &>"$D/haproxy.out" &
PIDS+=("$!")
HA=$!
nginx -c "$D/nginx/nginx.conf" &>"$D/nginx.out" &
PIDS+=("$!")
NG=$!
sleep 0.7
NGW=$(pgrep -P "$NG" | head -1)

echo "## Syscalls per operation (1 worker; http = one keep-alive request, ws = one 32-byte round trip)"
echo
echo "| proxy | load | operations | syscalls per operation | main ones per operation |"
echo "|---|---|---|---|---|"
for kind in http ws; do
    syscalls switchyard "$SY" 18083 "$kind"
    syscalls haproxy "$HA" 18082 "$kind"
    syscalls nginx "$NGW" 18081 "$kind"
done
kill "$SY" "$HA" "$NG" 2>/dev/null || true
wait "$SY" "$HA" "$NG" 2>/dev/null || true

echo
echo "## Heap alive per idle tunnel (massif, 1000 tunnels, switchyard --workers 1)"
valgrind --tool=massif --massif-out-file="$D/massif.out" --threshold=0.5 \
    "$SWITCHYARD" --listen 127.0.0.1:18083 --upstream 127.0.0.1:19000 --workers 1 --log warn &>"$D/massif.log" &
VG=$!
sleep 3
"$LOADGEN" ws-idle --target 127.0.0.1:18083 --pid "$VG" --tunnels 1000 --hold 3 | head -1
kill -INT "$VG"
wait "$VG" || true
ms_print "$D/massif.out" >"$D/massif.txt"
# The peak snapshot's top-level allocation sites, each named by its first frame in the
# proxy's own code or its runtime crates.
awk '
    /\(peak\)/ && !peak { match($0, /[0-9]+ \(peak\)/); peak = substr($0, RSTART, RLENGTH - 7) }
    peak != "" && $1 == peak && $2 ~ /,/ { inside = 1; print "peak heap (bytes): " $3; next }
    inside && /^ +[0-9]+ +[0-9,]+ +[0-9,]+/ { exit }
    inside && /^->/ { if (site) print site; match($0, /\([0-9,]+B\)/); size = substr($0, RSTART + 1, RLENGTH - 3); site = size " ?"; named = 0; next }
    inside && !named && /(switchyard|async_io|async_task|bytes::|concurrent_queue|vec_deque)/ && !/UnknownInlined/ {
        sub(/.*0x[0-9A-F]+: /, ""); site = size " " substr($0, 1, 120); named = 1 }
    END { if (site) print site }' "$D/massif.txt" | sed 's/^/    /'

echo
echo "## Instructions by function (callgrind; HTTP keep-alive + WebSocket round trips)"
valgrind --tool=callgrind --callgrind-out-file="$D/callgrind.out" \
    "$SWITCHYARD" --listen 127.0.0.1:18083 --upstream 127.0.0.1:19000 --workers 1 --log warn &>"$D/callgrind.log" &
VG=$!
sleep 3
wrk -t1 -c10 -d4s http://127.0.0.1:18083/ >/dev/null
"$LOADGEN" ws-messages --target 127.0.0.1:18083 --connections 10 --duration 3 >/dev/null
kill -INT "$VG"
wait "$VG" || true
callgrind_annotate "$D/callgrind.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -16 |
    sed 's#/root/.cargo/registry/src/[^/]*/##; s#/rustc/[0-9a-f]*/##' | cut -c1-170 | sed 's/^/    /'
