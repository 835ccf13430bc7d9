#!/usr/bin/env bash
# Instructions per request of the staunch gateway and of the two forwarders
# (crates/staunch-gateway/examples/forwarder.rs, with --parse and bare)
# over the same mock, counted
# by valgrind's callgrind: user space only, all threads, the same from run
# to run within about a percent. CPU time on this shared 2-core machine
# moves by 10-30 % between rounds (docs/gateway-benchmarks.md), so a change
# too small for scripts/bench-gateway.sh to see shows here first; the
# kernel's share (about half of a streamed request's CPU) is not counted.
#
#   scripts/count-gateway.sh                          # about 3 minutes after the build
#   GATEWAYS="before=/tmp/gw-old after=target/dist/staunch-gateway" \
#       SKIP_BUILD=1 scripts/count-gateway.sh
#
# For each server, plain chat requests and then streamed ones: the server
# starts under callgrind with instrumentation off, takes WARMUP seconds of
# load, is instrumented for DURATION seconds of closed-loop load (loadgen,
# CONCURRENCY connections), and the count is divided by the requests
# answered in that window. The callgrind files stay in
# target/count-gateway/ for `callgrind_annotate --inclusive=yes FILE`.
#
# Environment: GATEWAYS (space-separated NAME=BINARY, default
# gateway=target/dist/staunch-gateway), DURATION (10), WARMUP (3),
# CONCURRENCY (8), PROFILE (the cargo profile, default dist: what the wheel
# ships), SKIP_BUILD=1, BIN_DIR (target/$PROFILE).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/processes.sh
source "$ROOT/scripts/processes.sh"
cd "$ROOT"
gateway_bench_profile
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/count-gateway
GATEWAYS=${GATEWAYS:-gateway=$REL/staunch-gateway}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-8}
mkdir -p "$OUT"
rm -f "$OUT"/*

command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
    echo "needs valgrind (apt-get install valgrind)" >&2
    exit 1
}

PIDS=()
cleanup() { stop "${PIDS[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

gateway_bench_binaries
LOADGEN=$REL/examples/loadgen
start_mock "$REL/staunch-mock" mock

# count NAME MODE CMD...: CMD (listening on $PORT) under callgrind; prints
# "NAME MODE requests instructions".
count() {
    local name=$1 mode=$2 pid ok total file stream=()
    shift 2
    [[ $mode == stream ]] && stream=(--stream)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$name-$mode.out" \
        "$@" >"$OUT/$name-$mode.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$PORT" "$name-$mode" "$pid"
    "$LOADGEN" --target "http://127.0.0.1:$PORT" --only target "${stream[@]}" --saturate \
        --concurrency "$CONCURRENCY" --duration "$WARMUP" --warmup 0 --rounds 1 --timeout 60 >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    "$LOADGEN" --target "http://127.0.0.1:$PORT" --only target "${stream[@]}" --saturate \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 0 --rounds 1 --timeout 60 \
        --json >"$OUT/$name-$mode.json"
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$pid" >/dev/null
    stop "$pid"
    ok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['runs'][0]['target']['ok'])" \
        "$OUT/$name-$mode.json")
    total=0
    for file in "$OUT/$name-$mode.out"*; do
        total=$((total + $(awk '/^totals:/ {print $2; exit}' "$file")))
    done
    echo "$name $mode $ok $total" >>"$OUT/counts.txt"
}

NAMES=()
for spec in $GATEWAYS; do
    name=${spec%%=*}
    bin=${spec#*=}
    [[ -x $bin ]] || { echo "missing gateway binary $bin" >&2; exit 1; }
    PORT=$(free_port)
    every_model_to "$OUT/$name.toml" "$PORT" "$MOCK_URL"
    for mode in plain stream; do
        say "$name, $mode"
        count "$name" "$mode" "$bin" --config "$OUT/$name.toml"
    done
    NAMES+=("$name")
done
for name in forwarder-parse forwarder; do
    PORT=$(free_port)
    for mode in plain stream; do
        say "$name, $mode"
        count "$name" "$mode" "$REL/examples/forwarder" --listen "127.0.0.1:$PORT" --upstream "$MOCK_URL" \
            $([[ $name == forwarder-parse ]] && echo --parse)
    done
done

python3 - "$OUT/counts.txt" <<'PY' | tee "$OUT/report.txt"
import sys
rows = [line.split() for line in open(sys.argv[1])]
per = {(n, m): int(t) / int(ok) for n, m, ok, t in rows if int(ok) > 0}
print(f"\n{'server':<16} {'mode':<7} {'requests':>9} {'instructions/request':>21} {'vs parse':>9} {'vs bare':>8}")
for n, m, ok, t in rows:
    x = per.get((n, m))
    cells = []
    for fwd in ("forwarder-parse", "forwarder"):
        f = per.get((fwd, m))
        cells.append(f"{x / f:.2f}x" if x and f and not n.startswith("forwarder") else "")
    print(f"{n:<16} {m:<7} {int(ok):>9,} {x:>21,.0f} {cells[0]:>9} {cells[1]:>8}")
print("user space only (callgrind); plain: one chat answer, stream: one SSE stream read to [DONE];")
print("vs parse: to forwarder --parse (parse, re-serialise, one fallback), vs bare: to the bare forwarder")
PY
