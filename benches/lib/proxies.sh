# shellcheck shell=bash
# Sourced by compare.sh: the proxies' configs, and starting and stopping them.
# Uses compare.sh's TMP, NOFILE, NICE, ORIGIN_PORT, PORT, ADMIN_LISTEN_PORT, BINARY,
# PIDS and log.

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
$(nginx_tls_server "$2")
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
$(haproxy_tls_frontend "$2")
EOF
    echo "$file"
}

switchyard_raw_conf() { # -> a file that only turns WebSocket frame tracking off
    local file=$TMP/switchyard-raw.toml
    cat >"$file" <<EOF
# WebSocket tunnels as plain byte tunnels (no frame checks, no pings): the baseline the
# frame-aware default is measured against. Listening and forwarding come from the same
# flags as the other switchyard columns.
[defaults]
ws_validate = false
EOF
    echo "$file"
}

declare -A PROXY_PID SCRAPER_PID

scrape_every_second() { # port: what a Prometheus server and an open status page do
    while sleep 1; do
        curl -s -o /dev/null "http://127.0.0.1:$1/metrics" || true
        curl -s -o /dev/null "http://127.0.0.1:$1/status.json" || true
    done
}

start_proxy() { # name workers
    local name=$1 workers=$2 port=${PORT[$1]}
    case $name in
    # `nice` execs the proxy, so $! is the proxy's own pid (the root of its process tree).
    nginx) nice -n "$NICE" nginx -c "$(nginx_conf "$workers" "$port")" &>"$TMP/nginx.out" & ;;
    haproxy) nice -n "$NICE" haproxy -db -f "$(haproxy_conf "$workers" "$port")" &>"$TMP/haproxy.out" & ;;
    switchyard | switchyard-portable | switchyard-raw | switchyard-admin | switchyard-ring)
        local args=(--listen "127.0.0.1:$port" --upstream "127.0.0.1:$ORIGIN_PORT"
            --workers "$workers" --max-connections "$NOFILE" --log warn)
        mapfile -t -O "${#args[@]}" args < <(switchyard_tls_args "$port")
        [[ $name == switchyard-admin ]] && args+=(--admin-listen "127.0.0.1:$ADMIN_LISTEN_PORT")
        if [[ $name == switchyard-raw ]]; then
            args+=(--config "$(switchyard_raw_conf)")
            # A config the binary refuses would otherwise show only as a port that never answers.
            "${BINARY[$name]}" check "${args[@]}" >"$TMP/$name.check" 2>&1 || {
                log "switchyard check refuses the $name config: $(tail -1 "$TMP/$name.check")"
                exit 1
            }
        fi
        nice -n "$NICE" "${BINARY[$name]}" "${args[@]}" &>"$TMP/$name.out" &
        ;;
    esac
    PROXY_PID[$name]=$!
    PIDS+=("$!")
    wait_http "$port"
    tls_wait "$name"
    if [[ $name == switchyard-admin ]]; then
        scrape_every_second "$ADMIN_LISTEN_PORT" &
        SCRAPER_PID[$name]=$!
        PIDS+=("$!")
    fi
}

stop_proxy() { # name
    if [[ -n ${SCRAPER_PID[$1]:-} ]]; then
        kill "${SCRAPER_PID[$1]}" 2>/dev/null || true
        wait "${SCRAPER_PID[$1]}" 2>/dev/null || true
        unset "SCRAPER_PID[$1]"
    fi
    kill "${PROXY_PID[$1]}" 2>/dev/null || true
    wait "${PROXY_PID[$1]}" 2>/dev/null || true
}
