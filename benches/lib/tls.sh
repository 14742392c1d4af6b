# shellcheck shell=bash
# Sourced by compare.sh: the TLS figures (issue 12), kept apart from the plain ones.
# - tlshs: full TLS 1.3 handshakes/s, 16 clients, each connection one `GET /` then
#   close_notify and close (`loadgen tls-handshakes`);
# - wss: the 64 KiB × 16 in flight WebSocket echo over TLS (`loadgen ws-throughput
#   --tls-ca`).
# FIGURES=tls stands for both. Every proxy gets a TLS listener beside its plain one
# (its port + TLS_PORT_OFFSET, 100 unless set) with the same ECDSA P-256 certificate,
# made once per run by `loadgen tls-cert`, and TLS 1.3 only (nginx `ssl_protocols
# TLSv1.3`, HAProxy `ssl-min-ver TLSv1.3`; switchyard serves 1.2 and 1.3 and the client
# offers only 1.3). The client is the same for all: rustls on ring, no resumption.
# switchyard-ring (port 18087, TLS 18187, only when named in PROXIES) is switchyard
# built with `--features ring`: the other crypto provider (the default is aws-lc-rs),
# side by side.
# Uses compare.sh's FIGS, FIGURES, PORT, BINARY, TARGET_DIR, ROOT, TMP, LOADGEN,
# measured, drop_proxy, log, and proxies.sh's require_free.

TLS_PORT_OFFSET=${TLS_PORT_OFFSET:-100}
TLS_DIR="" # set by tls_setup
PORT["switchyard-ring"]=${SWITCHYARD_RING_PORT:-18087}

# FIGURES=tls is both TLS figures; a default run takes them after the others.
tls_figures=()
for fig in $FIGS; do
    if [[ $fig == tls ]]; then tls_figures+=(tlshs wss); else tls_figures+=("$fig"); fi
done
FIGS="${tls_figures[*]}"
[[ -z ${FIGURES:-} ]] && FIGS+=" tlshs wss"
unset tls_figures

tls_wanted() { [[ " $FIGS " == *" tlshs "* || " $FIGS " == *" wss "* ]]; }
tls_port() { echo $((${PORT[$1]} + TLS_PORT_OFFSET)); } # name

build_tls_variants() { # the ring build, copied aside; the default binary again after it
    measured switchyard-ring || return 0
    BINARY["switchyard-ring"]=$TARGET_DIR/release/switchyard-ring
    log "building switchyard with --features ring (release)"
    if cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard \
        --features ring; then
        cp "$TARGET_DIR/release/switchyard" "${BINARY["switchyard-ring"]}"
    else
        log "switchyard (ring) does not build: measuring the others only"
        drop_proxy switchyard-ring
    fi
    # Only the last link changes: the default build's units are still fresh.
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchyard
}

tls_setup() { # the run's certificate; the TLS ports free
    tls_wanted || return 0
    TLS_DIR=$TMP/tls
    "$LOADGEN" tls-cert --out "$TLS_DIR"
    local proxy
    for proxy in $PROXIES; do require_free "$(tls_port "$proxy")"; done
}

nginx_tls_server() { # port -> a server block for its TLS port, or nothing
    tls_wanted || return 0
    cat <<EOF
    server {
        listen 127.0.0.1:$(($1 + TLS_PORT_OFFSET)) ssl;
        ssl_certificate $TLS_DIR/cert.pem;
        ssl_certificate_key $TLS_DIR/key.pem;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
        }
    }
EOF
}

haproxy_tls_frontend() { # port -> a frontend for its TLS port, or nothing
    tls_wanted || return 0
    cat <<EOF
frontend front_tls
    bind 127.0.0.1:$(($1 + TLS_PORT_OFFSET)) ssl crt $TLS_DIR/both.pem ssl-min-ver TLSv1.3 alpn http/1.1
    default_backend origin
EOF
}

switchyard_tls_args() { # port -> the flags of its TLS listener, one a line, or nothing
    tls_wanted || return 0
    printf '%s\n' --listen-tls "127.0.0.1:$(($1 + TLS_PORT_OFFSET))" \
        --tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem"
}

tls_wait() { # name: until GET / over TLS 1.3 answers 200, at most 10 s
    tls_wanted || return 0
    local port
    port=$(tls_port "$1")
    for _ in $(seq 100); do
        [[ $(curl -sk --tlsv1.3 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/" 2>/dev/null) == 200 ]] &&
            return 0
        sleep 0.1
    done
    log "nothing answers TLS on port $port ($1)"
    return 1
}

tls_measure() { # figure name -> loadgen's output, or nothing where the figure does not apply
    [[ $2 == direct ]] && return 0
    local target
    target=127.0.0.1:$(tls_port "$2")
    case $1 in
    tlshs) run "$LOADGEN" tls-handshakes --target "$target" --tls-ca "$TLS_DIR/cert.pem" \
        --duration "$DURATION" ;;
    wss) run "$LOADGEN" ws-throughput --target "$target" --tls-ca "$TLS_DIR/cert.pem" \
        --duration "$DURATION" ;;
    esac
}

tls_medians() { # workers
    local proxy fig
    for proxy in $PROXIES; do
        for fig in tlshs wss {cpu,usr}_{tlshs,wss}; do
            # shellcheck disable=SC2086 # word splitting wanted
            R["$1,$proxy,$fig"]=$(median ${S["$1,$proxy,$fig"]:-})
        done
    done
}

# Rows of the tables (see tables.sh; the CPU rows without their cpu_ or usr_ prefix).
# shellcheck disable=SC2034 # used by tables.sh
TLS_TABLE_ROWS=(
    "tlshs|TLS 1.3 full handshakes/s, 16 clients, one GET / each (ECDSA P-256)|hi|≥ nginx"
    "wss|wss echo throughput, 64 KiB × 16 in flight (MB/s)|hi|≥ HAProxy"
)
# shellcheck disable=SC2034 # used by tables.sh
TLS_CPU_ROWS=(
    "tlshs|TLS 1.3 full handshakes (per handshake and its request)"
    "wss|wss echo throughput (per MB)"
)
