# shellcheck shell=bash
# Sourced by compare.sh: the tables (rates, CPU per operation, its user-space part), from R
# and WARNINGS.
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
# Proxies shown beside switchyard when measured, each with its own column and a quotient
# column: proxy | its column | the quotient's column | numerator | denominator | figures
# the quotient is given for ("all", or a list; never for a figure without a better side).
VARIANTS=(
    "switchyard-portable|switchyard (async-io)|async-io ÷ epoll|switchyard-portable|switchyard|all"
    "switchyard-raw|switchyard (ws_validate = false)|switchyard ÷ switchyard-raw|switchyard|switchyard-raw|tput msgs p99 idle cpu_tput cpu_msgs usr_tput usr_msgs"
    "switchyard-admin|switchyard (admin on, scraped every second)|admin on ÷ off|switchyard-admin|switchyard|all"
    "switchyard-ring|switchyard (ring)|ring ÷ aws-lc-rs|switchyard-ring|switchyard|tlshs wss cpu_tlshs cpu_wss usr_tlshs usr_wss"
)
variant_heads() { # -> VHEAD, QHEAD (the titles of the measured variants' columns), VRULE
    VHEAD="" QHEAD="" VRULE=""
    local spec proxy title qtitle
    for spec in "${VARIANTS[@]}"; do
        IFS='|' read -r proxy title qtitle _ <<<"$spec"
        measured "$proxy" || continue
        VHEAD+=" $title |" QHEAD+=" $qtitle |" VRULE+="---|"
    done
}
variant_cells() { # workers figure better -> VCELLS, QCELLS (the measured variants' cells)
    VCELLS="" QCELLS=""
    local spec proxy num den figs q
    for spec in "${VARIANTS[@]}"; do
        IFS='|' read -r proxy _ _ num den figs <<<"$spec"
        measured "$proxy" || continue
        q="-"
        if [[ $3 != - && ($figs == all || " $figs " == *" $2 "*) ]]; then
            q=$(quotient "${R[$1,$num,$2]:--}" "${R[$1,$den,$2]:--}")
        fi
        VCELLS+=" ${R[$1,$proxy,$2]:--} |" QCELLS+=" $q |"
    done
}

taken() { # workers figure: whether any proxy has it (a run with FIGURES skips the rest)
    local proxy
    for proxy in direct $PROXIES; do [[ -n ${R[$1,$proxy,$2]:-} ]] && return 0; done
    return 1
}

cpu_table() { # prefix (cpu or usr) title: the CPU time of each figure, under that prefix
    echo
    echo "$2"
    echo
    echo "| workers | figure | nginx | HAProxy | switchyard |$VHEAD switchyard ÷ best of the two |$QHEAD"
    echo "|---|---|---|---|---|$VRULE---|$VRULE"
    # figure (without its cpu_ or usr_ prefix) | label
    local CPU_ROWS=(
        "tput|WebSocket echo throughput (per MB)"
        "msgs|small messages (per echoed message: two through the proxy)"
        "hs|WebSocket handshakes (per handshake)"
        "rps|HTTP keep-alive requests (per request)"
        "big|HTTP 1 MiB responses (per MB)"
        "chunked|HTTP 1 MiB chunked responses (per MB)"
        "rps1|HTTP keep-alive requests, wrk -t1, nginx origin (per request)"
        "${TLS_CPU_ROWS[@]}"
    )
    local workers spec fig label n h s
    for workers in $WORKERS; do
        for spec in "${CPU_ROWS[@]}"; do
            IFS='|' read -r fig label <<<"$spec"
            fig=$1_$fig
            taken "$workers" "$fig" || continue
            n=${R[$workers,nginx,$fig]:--}
            h=${R[$workers,haproxy,$fig]:--}
            s=${R[$workers,switchyard,$fig]:--}
            variant_cells "$workers" "$fig" lo
            echo "| $workers | $label | $n | $h | $s |$VCELLS $(ratio lo "$s" "$n" "$h") |$QCELLS"
        done
    done
}

print_tables() {
    variant_heads
    # figure | label | better (hi/lo) | target (issue 14's, benches/RESULTS.md)
    local TABLE_ROWS=(
        "tput|WebSocket echo throughput, 64 KiB × 16 in flight (MB/s)|hi|≥ 1.3× HAProxy"
        "msgs|small messages/s, 50 connections|hi|≥ 1.0× the best"
        "p50|round trip p50, 50 connections (µs)|lo|"
        "p99|round trip p99, 50 connections (µs)|lo|≤ the best"
        "hs|WebSocket handshakes/s, 16 clients|hi|≥ 1.0× the best"
        "rps|HTTP keep-alive req/s, 50 connections (wrk)|hi|≥ 1.0× the best"
        "big|HTTP 1 MiB responses, 4 connections (MB/s, wrk)|hi|≥ 1.3× HAProxy"
        "chunked|HTTP 1 MiB chunked responses, 64 KiB chunks, 4 connections (MB/s, wrk)|hi|"
        "rps1|HTTP keep-alive req/s, wrk -t1 -c50, nginx origin|hi|≥ 1.0× the best"
        "${TLS_TABLE_ROWS[@]}"
        "idle|proxy memory per idle tunnel, $TUNNELS tunnels (bytes)|lo|< 1 KB"
        "alive|idle tunnels still echoing after ${HOLD}s|-|all"
    )
    echo
    echo "Median of $ROUNDS runs of ${DURATION}s each (idle tunnels: one run)."
    echo
    echo "| workers | figure | direct | nginx | HAProxy | switchyard |$VHEAD switchyard ÷ best of the two |$QHEAD target |"
    echo "|---|---|---|---|---|---|$VRULE---|$VRULE---|"
    for workers in $WORKERS; do
        for spec in "${TABLE_ROWS[@]}"; do
            IFS='|' read -r fig label better target <<<"$spec"
            taken "$workers" "$fig" || continue
            d=${R[$workers,direct,$fig]:--}
            n=${R[$workers,nginx,$fig]:--}
            h=${R[$workers,haproxy,$fig]:--}
            s=${R[$workers,switchyard,$fig]:--}
            r="-"
            [[ $better != - ]] && r=$(ratio "$better" "$s" "$n" "$h")
            variant_cells "$workers" "$fig" "$better"
            echo "| $workers | $label | $d | $n | $h | $s |$VCELLS $r |$QCELLS $target |"
        done
    done
    cpu_table cpu "Proxy CPU time (user + system, µs) per operation, median of the same runs."
    cpu_table usr "Of that, the time in user space (µs per operation, median of the same runs): the part a proxy's own code decides; the rest is the kernel's work for its system calls and packets."
    if ((${#WARNINGS[@]})); then
        echo
        echo "Errors during the run (figures above include them):"
        printf -- '- %s\n' "${WARNINGS[@]}"
    fi
}
