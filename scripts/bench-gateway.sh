#!/usr/bin/env bash
# The staunch gateway against two hyper forwarders, in one run, over the
# same mock (issue 33): the forwarder the issue measures against (parse,
# re-serialise, one fallback: examples/forwarder.rs --parse) and a bare one
# (bytes passed through). CPU per request, throughput, added latency and peak
# RSS at 1, 32 and 128 connections, and the gateway's CPU per request as a
# multiple of the forwarder's; then streams: CPU per streamed event at 32
# streams back to back, and peak RSS with 1,000 streams open at once.
#
#   scripts/bench-gateway.sh                  # ~5 minutes after the build
#   GATEWAYS="before=/tmp/gw-old after=target/dist/staunch-gateway" \
#       SKIP_BUILD=1 scripts/bench-gateway.sh # two gateway binaries, interleaved
#
# What it does:
#   1. builds (cargo profile dist, as the wheel ships: whole-program LTO,
#      about 10 minutes on 2 cores) staunch-gateway, staunch-mock and the examples
#      forwarder and loadgen;
#   2. starts the mock, each gateway (a generated config: every model to
#      the mock, otherwise the shipped defaults, so the JSON access log is
#      on and goes to stderr, kept in a file) and
#      crates/staunch-gateway/examples/forwarder.rs twice (--parse, and
#      bare) in front of the mock;
#   3. for each round, for each connection count, runs the same closed-loop
#      load (loadgen --saturate, one connection per worker, 1 loadgen thread)
#      against each server in turn: the mock alone, then the server, for
#      DURATION seconds each after a warm-up. loadgen reads the server's
#      utime+stime from /proc/PID/stat before and after its phase and
#      divides by the requests answered, and its VmHWM (reset through
#      /proc/PID/clear_refs before the phase) for the peak RSS;
#   4. prints, per connection count and server, the median over the rounds
#      of CPU µs per request, req/s, p50/p99 added latency (server minus the
#      mock alone in the same run) and the peak RSS, and the median of each
#      round's gateway/forwarder CPU ratio, to each forwarder;
#   5. streams, on fresh processes of each server: STREAMS closed-loop
#      streams (loadgen --stream, each SSE body read to [DONE]) over a mock
#      sending a token every 5 ms, for CPU per SSE event relayed; then
#      HELD_STREAMS at once over a second mock sending a token every
#      HELD_TOKEN_MS, for the peak RSS with that many streams in flight.
#      The gateways get max_concurrency = 2 x HELD_STREAMS there, so that
#      all of them are served at once.
# Rounds interleave the servers because this machine's speed drifts: only
# figures from the same round compare well. Everything it started is killed
# on exit; the raw JSON and the logs stay in target/bench-gateway/.
#
# Environment:
#   GATEWAYS      space-separated NAME=BINARY (default gateway=target/dist/staunch-gateway)
#   PROFILE       the cargo profile to build and run (default dist; release builds
#                 in half the time, and both forwarders gain about as much from
#                 dist as the gateway, so the ratios hold)
#   CONNECTIONS   comma-separated (default 1,32,128)
#   ROUNDS        rounds (default 3)
#   DURATION      seconds per phase (default 4)
#   WARMUP        seconds of warm-up before each phase (default 1)
#   GATEWAY_ENV   extra environment for the gateways, e.g. RUST_LOG=off
#   STREAMS       streams back to back for CPU per event (default 32; 0: skip)
#   HELD_STREAMS  streams open at once for peak RSS (default 1000; 0: skip)
#   HELD_TOKEN_MS the slow mock's milliseconds per token (default 60)
#   UPSTREAM_HTTP2=1  every server speaks HTTP/2 to the mock (prior
#                 knowledge: http2_prior_knowledge = true, forwarder --http2),
#                 as to a provider that negotiates HTTP/2 over TLS. The mock
#                 serves 200 streams per connection: the gateway opens
#                 another connection every 100 streams, and the forwarders
#                 spread their client connections over one client per 100
#                 held streams (--connections), so that no server queues
#   SKIP_BUILD=1  use the binaries already built
#   BIN_DIR       where staunch-mock and examples/{loadgen,forwarder} are
#                 (default target/$PROFILE)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/processes.sh
source "$ROOT/scripts/processes.sh"
cd "$ROOT"
gateway_bench_profile
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/bench-gateway
GATEWAYS=${GATEWAYS:-gateway=$REL/staunch-gateway}
CONNECTIONS=${CONNECTIONS:-1,32,128}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
STREAMS=${STREAMS:-32}
HELD_STREAMS=${HELD_STREAMS:-1000}
HELD_TOKEN_MS=${HELD_TOKEN_MS:-60}
UPSTREAM_HTTP2=${UPSTREAM_HTTP2:-}
[[ $HELD_STREAMS =~ ^[0-9]+$ ]] || { echo "HELD_STREAMS must be a whole number, not '$HELD_STREAMS'" >&2; exit 2; }
# Over HTTP/2 the forwarders' clients: one per 100 held streams, as the
# gateway opens a connection per 100 streams.
FORWARDER_CLIENTS=$(((HELD_STREAMS + 99) / 100))
((FORWARDER_CLIENTS > 0)) || FORWARDER_CLIENTS=1
read -r -a GATEWAY_ENV <<<"${GATEWAY_ENV:-}"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.toml

PIDS=()
cleanup() { stop "${PIDS[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT TERM


gateway_bench_binaries
LOADGEN=$REL/examples/loadgen
FORWARDER=$REL/examples/forwarder
MOCK=$REL/staunch-mock

# start_servers UPSTREAM_URL SUFFIX [MAX_CONCURRENCY]: each gateway and the
# forwarder in front of UPSTREAM_URL, logging to $OUT/NAME$SUFFIX.log; sets
# NAMES (the two forwarders last), PID_OF, URL_OF and BIN_OF.
NAMES=()
declare -A PID_OF URL_OF BIN_OF
start_servers() {
    local upstream=$1 suffix=$2 limit=${3:-} spec name bin port
    NAMES=()
    for spec in $GATEWAYS; do
        name=${spec%%=*}
        bin=${spec#*=}
        [[ -x $bin ]] || { echo "missing gateway binary $bin" >&2; exit 1; }
        port=$(free_port)
        every_model_to "$OUT/$name$suffix.toml" "$port" "$upstream" \
            "${limit:+max_concurrency = $limit}" "${UPSTREAM_HTTP2:+http2_prior_knowledge = true}"
        env "${GATEWAY_ENV[@]}" "$bin" --config "$OUT/$name$suffix.toml" >"$OUT/$name$suffix.log" 2>&1 &
        started "$name" "$suffix" "$port" "$!" "$bin"
    done
    # The forwarder as issue 33 defines it (parse, re-serialise, one
    # fallback), then the bare one (bytes passed through), last.
    for name in forwarder-parse forwarder; do
        port=$(free_port)
        "$FORWARDER" --listen "127.0.0.1:$port" --upstream "$upstream" \
            ${UPSTREAM_HTTP2:+--http2 --connections $FORWARDER_CLIENTS} \
            $([[ $name == forwarder-parse ]] && echo --parse) >"$OUT/$name$suffix.log" 2>&1 &
        started "$name" "$suffix" "$port" "$!" "$FORWARDER"
    done
}

# started NAME SUFFIX PORT PID BIN: waits for server NAME to listen and
# records it in NAMES, PID_OF, URL_OF and BIN_OF.
started() {
    PIDS+=("$4")
    wait_port "$3" "$1$2" "$4"
    NAMES+=("$1")
    PID_OF[$1]=$4
    URL_OF[$1]=http://127.0.0.1:$3
    BIN_OF[$1]=$5
}

# stop_servers: the servers start_servers started last.
stop_servers() {
    local name pids=()
    for name in "${NAMES[@]}"; do pids+=("${PID_OF[$name]}"); done
    stop "${pids[@]}"
}

say "starting the mock"
start_mock "$MOCK" mock
FAST_MOCK=$MOCK_URL
start_servers "$FAST_MOCK" ""

{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "staunch: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    for name in "${NAMES[@]}"; do echo "$name: ${BIN_OF[$name]} (pid ${PID_OF[$name]})"; done
    echo "load: loadgen --saturate, connections $CONNECTIONS, $ROUNDS round(s), ${DURATION} s per phase after ${WARMUP} s warm-up${GATEWAY_ENV:+, gateways with ${GATEWAY_ENV[*]}}"
    echo "streams: $STREAMS back to back (a token every 5 ms), $HELD_STREAMS held at once (a token every $HELD_TOKEN_MS ms); upstream ${UPSTREAM_HTTP2:+HTTP/2 (prior knowledge)}${UPSTREAM_HTTP2:-HTTP/1.1}"
} | tee "$OUT/versions.txt" >&2

for ((round = 1; round <= ROUNDS; round++)); do
    for c in ${CONNECTIONS//,/ }; do
        for name in "${NAMES[@]}"; do
            say "round $round, $c connection(s): $name"
            "$LOADGEN" --target "${URL_OF[$name]}" --direct "$FAST_MOCK" --pid "${PID_OF[$name]}" \
                --saturate --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" \
                --rounds 1 --timeout 20 --json --label "$name" >"$OUT/r$round-c$c-$name.json"
        done
    done
done

# Streams, on fresh processes: a peak RSS is then that of its phase.
# stream_phase NAME FILE CONCURRENCY DURATION DIRECT_URL
stream_phase() {
    "$LOADGEN" --target "${URL_OF[$1]}" --direct "$5" --pid "${PID_OF[$1]}" --stream \
        --saturate --concurrency "$3" --duration "$4" --warmup "$WARMUP" \
        --rounds 1 --timeout 60 --json --label "$1" >"$OUT/$2"
}
if ((STREAMS > 0)); then
    stop_servers
    start_servers "$FAST_MOCK" -streams
    for ((round = 1; round <= ROUNDS; round++)); do
        for name in "${NAMES[@]}"; do
            say "round $round, $STREAMS streams back to back: $name"
            stream_phase "$name" "r$round-s$STREAMS-$name.json" "$STREAMS" "$DURATION" "$FAST_MOCK"
        done
    done
fi
if ((HELD_STREAMS > 0)); then
    stop_servers
    printf 'stream_token_ms = %d\n' "$HELD_TOKEN_MS" >"$OUT/held-mock.toml"
    start_mock "$MOCK" held-mock "$OUT/held-mock.toml"
    HELD_MOCK=$MOCK_URL
    start_servers "$HELD_MOCK" -held $((2 * HELD_STREAMS))
    for name in "${NAMES[@]}"; do
        say "$HELD_STREAMS streams at once: $name"
        # Longer than a phase of short streams: every worker's stream must
        # be open at once for a while.
        stream_phase "$name" "held-$name.json" "$HELD_STREAMS" $((DURATION + 4)) "$HELD_MOCK"
    done
fi

python3 - "$OUT" "$ROUNDS" "$CONNECTIONS" "$STREAMS" "$HELD_STREAMS" "${NAMES[@]}" <<'PY' | tee "$OUT/report.txt"
import json, statistics, sys

out, rounds, conns = sys.argv[1], int(sys.argv[2]), [int(c) for c in sys.argv[3].split(",")]
streams, held, names = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]

def run(r, c, n):
    return json.load(open(f"{out}/r{r}-c{c}-{n}.json"))["runs"][0]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, spec):
    return "-" if x is None else spec.format(x)

def proc(x, key):
    return (x["target"].get("process") or {}).get(key)

FORWARDERS = ("forwarder-parse", "forwarder")

def ratios(get, n):
    """Medians over the rounds of n's value over each forwarder's (from `get(round, name)`)."""
    if n in FORWARDERS:
        return ["", ""]
    cells = []
    for fwd in FORWARDERS:
        xs = [get(r, n) / get(r, fwd) for r in range(1, rounds + 1) if get(r, n) and get(r, fwd)]
        cells.append(fmt(med(xs), "{:.2f}x"))
    return cells

print(f"\n{'conns':>5}  {'server':<15} {'CPU µs/req':>10} {'req/s':>8} {'p50 added':>10} {'p99 added':>10} {'peak RSS':>9} {'vs parse':>8} {'vs bare':>8}  errors")
for c in conns:
    for n in names:
        runs = [run(r, c, n) for r in range(1, rounds + 1)]
        cpu = [proc(x, "cpu_us_per_request") for x in runs]
        vs = ratios(lambda r, m: proc(run(r, c, m), "cpu_us_per_request"), n)
        rss = [proc(x, "peak_rss_mb") for x in runs]
        errors = sum(sum(x["target"]["errors"].values()) for x in runs)
        print(f"{c:>5}  {n:<15} {fmt(med(cpu), '{:.1f}'):>10} {fmt(med([x['target']['throughput_rps'] for x in runs]), '{:,.0f}'):>8}"
              f" {fmt(med([x['added_p50_ms'] for x in runs]), '{:.3f} ms'):>10} {fmt(med([x['added_p99_ms'] for x in runs]), '{:.3f} ms'):>10}"
              f" {fmt(max([x for x in rss if x is not None], default=None), '{:.1f} MB'):>9}"
              f" {vs[0]:>8} {vs[1]:>8}  {errors}")
print("\nmedians over the rounds (peak RSS: the highest); vs parse / vs bare: the median of each round's")
print("CPU ratio to forwarder-parse (issue 33's baseline: parse, re-serialise, one fallback) and to the")
print("bare forwarder (bytes passed through)")
print("per round, CPU µs/request:")
for c in conns:
    for n in names:
        cells = [fmt(proc(run(r, c, n), "cpu_us_per_request"), "{:.1f}") for r in range(1, rounds + 1)]
        print(f"  c={c:<4} {n:<15} " + "  ".join(f"{x:>6}" for x in cells))

if streams > 0:
    def srun(r, n):
        return json.load(open(f"{out}/r{r}-s{streams}-{n}.json"))["runs"][0]
    print(f"\n{streams} streams back to back (SSE to [DONE]), medians over the rounds; vs: CPU per stream,")
    print("which is CPU per token (every server relays the same upstream streams; the gateway drops the")
    print("role-only frame, so it sends one event fewer)")
    print(f"  {'server':<15} {'streams/s':>9} {'events/stream':>13} {'CPU µs/stream':>13} {'CPU µs/event':>12} {'vs parse':>8} {'vs bare':>8}  errors")
    for n in names:
        runs = [srun(r, n) for r in range(1, rounds + 1)]
        vs = ratios(lambda r, m: proc(srun(r, m), "cpu_us_per_request"), n)
        errors = sum(sum(x["target"]["errors"].values()) for x in runs)
        print(f"  {n:<15} {fmt(med([x['target']['throughput_rps'] for x in runs]), '{:,.0f}'):>9}"
              f" {fmt(med([x['target'].get('events_per_request') for x in runs]), '{:.1f}'):>13}"
              f" {fmt(med([proc(x, 'cpu_us_per_request') for x in runs]), '{:.1f}'):>13}"
              f" {fmt(med([proc(x, 'cpu_us_per_event') for x in runs]), '{:.2f}'):>12}"
              f" {vs[0]:>8} {vs[1]:>8}  {errors}")
    print("  per round, CPU µs/stream:")
    for n in names:
        cells = [fmt(proc(srun(r, n), "cpu_us_per_request"), "{:.1f}") for r in range(1, rounds + 1)]
        print(f"    {n:<15} " + "  ".join(f"{x:>6}" for x in cells))
if held > 0:
    print(f"\n{held} streams open at once (fresh processes):")
    print(f"  {'server':<15} {'streams/s':>9} {'p50 / p99 (ms)':>17} {'TTFB p50':>9} {'CPU µs/event':>12} {'peak RSS':>9} {'RSS vs bare':>11}  errors")
    runs = {n: json.load(open(f"{out}/held-{n}.json"))["runs"][0] for n in names}
    fwd_rss = proc(runs["forwarder"], "peak_rss_mb")
    for n, x in runs.items():
        t, rss = x["target"], proc(x, "peak_rss_mb")
        ratio = rss / fwd_rss if rss and fwd_rss and n != "forwarder" else None
        print(f"  {n:<15} {t['throughput_rps']:>9,.0f} {t['p50_ms']:>8.1f} / {t['p99_ms']:<7.1f}"
              f" {fmt(t.get('ttfb_p50_ms'), '{:.1f} ms'):>9} {fmt(proc(x, 'cpu_us_per_event'), '{:.2f}'):>12}"
              f" {fmt(rss, '{:.1f} MB'):>9} {fmt(ratio, '{:.2f}x'):>11}  {sum(t['errors'].values())}")
print(f"raw JSON: {out}/")
PY
