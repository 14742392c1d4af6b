# Sourced by compare.sh: the two tables, from R and WARNINGS.
# Uses compare.sh's WORKERS, ROUNDS, DURATION, TUNNELS, HOLD and measured.

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
portable_cells() { # workers figure better -> the two cells (or nothing)
    measured switchyard-portable || return 0
    local p=${R[$1,switchyard-portable,$2]:--} q="-"
    [[ $3 != - ]] && q=$(quotient "$p" "${R[$1,switchyard,$2]:--}")
    PCELL=" $p |" QCELL=" $q |"
}

print_tables() {
    # The portable build's columns, when it was measured: its figure, and its figure over the
    # Linux reactor's.
    if measured switchyard-portable; then
        P_HEAD=" switchyard (async-io) |"
        Q_HEAD=" async-io ÷ epoll |"
        P_RULE="---|"
    else
        P_HEAD="" Q_HEAD="" P_RULE=""
    fi
    # figure | label | better (hi/lo) | target
    local TABLE_ROWS=(
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
    echo
    echo "Median of $ROUNDS runs of ${DURATION}s each (idle tunnels: one run)."
    echo
    echo "| workers | figure | direct | nginx | HAProxy | switchyard |$P_HEAD switchyard ÷ best of the two |$Q_HEAD target |"
    echo "|---|---|---|---|---|---|$P_RULE---|$P_RULE---|"
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
            echo "| $workers | $label | $d | $n | $h | $s |$PCELL $r |$QCELL $target |"
        done
    done
    local CPU_ROWS=(
        "cpu_tput|WebSocket echo throughput (per MB)"
        "cpu_msgs|small messages (per echoed message: two through the proxy)"
        "cpu_hs|WebSocket handshakes (per handshake)"
        "cpu_rps|HTTP keep-alive requests (per request)"
        "cpu_big|HTTP 1 MiB responses (per MB)"
    )
    echo
    echo "Proxy CPU time (user + system, µs) per operation, median of the same runs."
    echo
    echo "| workers | figure | nginx | HAProxy | switchyard |$P_HEAD switchyard ÷ best of the two |$Q_HEAD"
    echo "|---|---|---|---|---|$P_RULE---|$P_RULE"
    for workers in $WORKERS; do
        for spec in "${CPU_ROWS[@]}"; do
            IFS='|' read -r fig label <<<"$spec"
            n=${R[$workers,nginx,$fig]:--}
            h=${R[$workers,haproxy,$fig]:--}
            s=${R[$workers,switchyard,$fig]:--}
            PCELL="" QCELL=""
            portable_cells "$workers" "$fig" lo
            echo "| $workers | $label | $n | $h | $s |$PCELL $(ratio lo "$s" "$n" "$h") |$QCELL"
        done
    done
    if ((${#WARNINGS[@]})); then
        echo
        echo "Errors during the run (figures above include them):"
        printf -- '- %s\n' "${WARNINGS[@]}"
    fi
}
