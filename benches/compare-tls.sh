#!/usr/bin/env bash
# The TLS figures only (issue 12): full TLS 1.3 handshakes/s and the wss 64 KiB echo
# throughput, nginx, HAProxy and switchyard on aws-lc-rs and on ring, 1 worker each,
# 5 interleaved rounds of 3 s, no idle-tunnel figure; a few minutes once built. Every
# variable of compare.sh still applies, e.g.
#   WORKERS="1 2" ROUNDS=7 benches/compare-tls.sh
#   PROXIES="switchyard switchyard-ring" benches/compare-tls.sh   # the two providers
set -euo pipefail
export FIGURES=${FIGURES:-tls}
export PROXIES=${PROXIES:-"nginx haproxy switchyard switchyard-ring"}
export WORKERS=${WORKERS:-1}
export ROUNDS=${ROUNDS:-5}
export TUNNELS=${TUNNELS:-0}
exec "$(dirname "$0")/compare.sh"
