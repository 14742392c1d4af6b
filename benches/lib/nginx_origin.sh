# shellcheck shell=bash
# Sourced by compare.sh: the second HTTP load shape (issue 14), `wrk -t1 -c50` against an
# nginx origin that answers every request with a short body, beside `wrk -t2 -c50`
# against loadgen's origin. Figure `rps1` (and `cpu_rps1`); it runs when FIGURES names it.
# After the other figures of a worker count, every proxy is restarted in front of the
# nginx origin (same flags, same configs, only the upstream port differs), the figure is
# taken in the same interleaved rounds, and the proxies are left to compare.sh to stop.
# Uses compare.sh's TMP, NOFILE, NICE, ORIGIN_PORT, PORT, PIDS, PROXIES, ROUNDS,
# DURATION, log, proxies.sh's start_proxy/stop_proxy/wait_http/run and figures.sh's note.

NGINX_ORIGIN_PORT=${NGINX_ORIGIN_PORT:-19001}
NGINX_ORIGIN_BODY="Hello, world!"

nginx_origin_wanted() { [[ " $FIGS " == *" rps1 "* ]]; }

start_nginx_origin() { # an nginx that answers every request itself, keep-alive
    local dir=$TMP/nginx-origin user=""
    mkdir -p "$dir/tmp"
    [[ $(id -u) == 0 ]] && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
# The origin of the wrk -t1 shape: a short body for every request, no logging, keep-alive
# without a request limit (so that neither the proxies' pooled connections nor wrk's are
# closed under them).
$user
daemon off;
worker_processes auto;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:$NGINX_ORIGIN_PORT;
        location / {
            default_type text/plain;
            return 200 "$NGINX_ORIGIN_BODY";
        }
    }
}
EOF
    nice -n "$NICE" nginx -c "$dir/nginx.conf" &>"$TMP/nginx-origin.out" &
    PIDS+=("$!")
    wait_http "$NGINX_ORIGIN_PORT"
}

rps1_measure() { # key target: one wrk -t1 -c50 run, noted as rps1; sets out
    out=$(run wrk -t1 -c50 -d"${DURATION}s" "http://$2/")
    out="$(grep -E 'Requests/sec|Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd';')"
    note "$1" rps1 "$(awk '/Requests\/sec:/ {sub(/.*Requests\/sec: /, ""); printf "%.0f", $1}' <<<"$out")"
}

nginx_origin_figures() { # workers: rps1 for direct and every proxy, in front of nginx
    nginx_origin_wanted || return 0
    local workers=$1 proxy saved=$ORIGIN_PORT saved_direct=${PORT[direct]}
    for proxy in $PROXIES; do stop_proxy "$proxy"; done
    ORIGIN_PORT=$NGINX_ORIGIN_PORT
    PORT[direct]=$NGINX_ORIGIN_PORT
    for proxy in $PROXIES; do start_proxy "$proxy" "$workers"; done
    for _ in $(seq "$ROUNDS"); do
        for proxy in direct $PROXIES; do figure rps1 "$proxy" "$workers"; done
    done
    ORIGIN_PORT=$saved
    PORT[direct]=$saved_direct
}
