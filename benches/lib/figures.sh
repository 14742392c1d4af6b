# shellcheck shell=bash
# Sourced by compare.sh: one measurement of a figure against a proxy, and its CPU cost.
# Uses compare.sh's LOADGEN, PORT, PROXY_PID, DURATION, TUNNELS, HOLD and log, and
# proxies.sh's run; fills R, S and WARNINGS.

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
    ((TUNNELS > 0)) || return 0
    local out
    out=$(run "$LOADGEN" ws-idle --target "127.0.0.1:${PORT[$1]}" --pid "${PROXY_PID[$1]}" \
        --tunnels "$TUNNELS" --hold "$HOLD")
    log "$1/$2 $(head -1 <<<"$out")"
    R[$2,$1,idle]=$(field bytes_per_tunnel <<<"$out")
    R[$2,$1,alive]="$(field alive <<<"$out")/$TUNNELS"
}

cpu_ticks() { # pid -> CPU time (clock ticks) of it and its children: user + system, user
    local total=0 user=0 p t u
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        read -r t u < <(cat /proc/"$p"/task/*/stat 2>/dev/null | awk '{s += $14 + $15; u += $14} END {print s + 0, u + 0}')
        total=$((total + t)) user=$((user + u))
    done
    echo "$total $user"
}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
per_op() { # ticks rate -> µs per operation over one measurement of DURATION seconds
    awk -v t="$1" -v us="$TICK_US" -v r="$2" -v d="$DURATION" 'BEGIN { printf "%.1f", t * us / (r * d) }'
}

figure() { # figure name workers: one measurement, recorded in S
    local fig=$1 key="$3,$2" target=127.0.0.1:${PORT[$2]} out pid=${PROXY_PID[$2]:-} ticks=0 user=0
    [[ -n $pid ]] && read -r ticks user < <(cpu_ticks "$pid")
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
    rps1) rps1_measure "$key" "$target" ;; # lib/nginx_origin.sh
    big | chunked) # the same 1 MiB body, spliced or (chunked) framed by the proxy
        local path=/1m
        [[ $fig == chunked ]] && path=/1m-chunked
        out=$(run wrk -t1 -c4 -d"${DURATION}s" "http://$target$path")
        note "$key" "$fig" "$(wrk_mbps <<<"$out")"
        out="$(grep -E 'Transfer/sec|Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd';')"
        ;;
    tlshs | wss) # benches/lib/tls.sh
        out=$(tls_measure "$fig" "$2")
        [[ -n $out ]] || return 0
        note "$key" "$fig" "$(field "$([[ $fig == wss ]] && echo mbps || echo handshakes)" <<<"$out")"
        ;;
    esac
    log "$2/$3 $fig: $(head -1 <<<"$out")"
    # The proxy's CPU time per operation (per MB for the throughput figures): what the
    # rate cost it, steadier than the rate on a machine the load shares; and the part of
    # it spent in user space, the part a proxy's own code decides.
    if [[ -n $pid ]]; then
        local now now_user rate
        read -r now now_user < <(cpu_ticks "$pid")
        rate=${S[$key,$fig]##* }
        if [[ -n $rate && $rate != 0 ]]; then
            note "$key" "cpu_$fig" "$(per_op $((now - ticks)) "$rate")"
            note "$key" "usr_$fig" "$(per_op $((now_user - user)) "$rate")"
        fi
    fi
    if grep -qE 'Non-2xx|Socket errors|[1-9][0-9]* errors\)' <<<"$out"; then
        WARNINGS+=("$2, $3 worker(s), $fig: $(head -1 <<<"$out")")
    fi
}
WARNINGS=()
