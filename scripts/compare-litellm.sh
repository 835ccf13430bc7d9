#!/usr/bin/env bash
# Compare the staunch gateway with LiteLLM's proxy on the same mock LLM
# server, on loopback, with the same load (crates/staunch-gateway/examples/loadgen.rs).
#
#   scripts/compare-litellm.sh            # ~15 minutes on 2 cores, first run
#                                         # adds a few minutes for pip
#
# What it does:
#   1. builds (release) the staunch mock, the load generator and the gateway;
#   2. creates target/litellm-venv and installs 'litellm[proxy]' (major 1);
#   3. starts the staunch mock on a free loopback port, LiteLLM's proxy on
#      another with scripts/litellm-config.yaml (every model -> the mock, as
#      an OpenAI-compatible endpoint), and the staunch gateway on a third with
#      a generated config whose one route sends every model to the same mock;
#   4. runs the same load against both: saturation (64 concurrent requests),
#      open-loop fixed rates (rising, stopping at the first rate a gateway
#      does not sustain), streaming, and 1,000 concurrent requests (for peak
#      RSS); each run measures the mock
#      directly and through the gateway, alternating, and samples the
#      gateway's CPU and peak RSS from /proc;
#   5. prints both side by side, and the staunch gateway's CPU per request
#      against a bare hyper forwarder's (examples/forwarder.rs) on the same
#      mock; the raw JSON stays in target/compare-litellm/.
# Everything it started is killed on exit.
#
# Not run by CI (too slow). Environment knobs:
#   STAUNCH_GATEWAY_BIN   a prebuilt staunch-gateway binary (skips building it)
#   LITELLM_SPEC          pip requirement (default 'litellm[proxy]>=1.70,<2')
#   LITELLM_WORKERS       LiteLLM worker processes (default: nproc, as its docs advise)
#   DURATION              seconds per path per load level (default 9)
#   RATES                 open-loop rates, increasing (default 10,25,50,100,200,500,1000,2000,4000)
#   STREAM_RATES          streaming rates (default 10,50,200,1000)
#   MAX_P99_MS            p99 under which a rate counts as sustained (default 100)
#   SKIP_BUILD=1          use the binaries already in target/release
#   SKIP_LITELLM=1        measure the staunch gateway only
#   USE_AXUM_GATEWAY=1    measure the axum_gateway example instead of the gateway
#   UPSTREAM_HTTP2=1      the staunch gateway speaks HTTP/2 to the mock (h2c,
#                         `http2_prior_knowledge = true`); LiteLLM keeps HTTP/1.1
#   GATEWAY_MALLOC_ARENA_MAX  run the staunch gateway with this MALLOC_ARENA_MAX
#                         (glibc; 1 trades some CPU for less memory)
#   GATEWAY_MAX_CONCURRENCY   the staunch gateway's [server] max_concurrency
#                         (default: unset, the shipped 256; at 1,000 concurrent
#                         the rest wait for a slot; 2048 admits all 1,000)
#
# If the staunch-gateway binary cannot be built and STAUNCH_GATEWAY_BIN is
# unset, the axum_gateway example stands in; it can only use its own embedded
# mock, which injects faults (20% 429, 10% 500), so its numbers include retries.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$TARGET_DIR/release
VENV=$TARGET_DIR/litellm-venv
OUT=$TARGET_DIR/compare-litellm
LITELLM_SPEC=${LITELLM_SPEC:-'litellm[proxy]>=1.70,<2'}
LITELLM_WORKERS=${LITELLM_WORKERS:-$(nproc)}
DURATION=${DURATION:-9}
RATES=${RATES:-10,25,50,100,200,500,1000,2000,4000}
STREAM_RATES=${STREAM_RATES:-10,50,200,1000}
MAX_P99_MS=${MAX_P99_MS:-100}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        # The whole process group: LiteLLM forks its workers.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT SECONDS NAME PID: bounded wait until 127.0.0.1:PORT accepts.
wait_port() {
    local port=$1 limit=$2 name=$3 pid=$4 i
    for ((i = 0; i < limit * 4; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before listening; its log:" >&2
            tail -n 30 "$OUT/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.25
    done
    echo "$name did not accept connections on port $port within ${limit}s; its log:" >&2
    tail -n 30 "$OUT/$name.log" >&2 || true
    exit 1
}

# start NAME CMD...: starts CMD in its own process group, logs to $OUT/NAME.log,
# and sets STARTED_PID.
start() {
    local name=$1
    shift
    setsid "$@" >"$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# --- 1. build -----------------------------------------------------------------
GATEWAY_KIND=staunch-gateway
GATEWAY_BIN=${STAUNCH_GATEWAY_BIN:-}
if [[ -n ${USE_AXUM_GATEWAY:-} ]]; then
    GATEWAY_BIN=$REL/examples/axum_gateway
    GATEWAY_KIND=axum_gateway
    [[ -n ${SKIP_BUILD:-} ]] || cargo build --release --example axum_gateway
fi
if [[ -z ${SKIP_BUILD:-} ]]; then
    say "building the mock and the load generator (release)"
    cargo build --release -p staunch-mock --bin staunch-mock -p staunch-gateway --example loadgen \
        --example forwarder
fi
if [[ -z $GATEWAY_BIN ]]; then
    GATEWAY_BIN=$REL/staunch-gateway
    if [[ -z ${SKIP_BUILD:-} ]]; then
        say "building the staunch gateway (release)"
        if ! cargo build --release -p staunch-gateway --bin staunch-gateway; then
            echo "the staunch-gateway binary does not build; the axum_gateway example stands in" >&2
            rm -f "$GATEWAY_BIN"
        fi
    fi
    if [[ ! -x $GATEWAY_BIN ]]; then
        GATEWAY_KIND=axum_gateway
        GATEWAY_BIN=$REL/examples/axum_gateway
        [[ -n ${SKIP_BUILD:-} ]] || cargo build --release --example axum_gateway
    fi
fi
LOADGEN=$REL/examples/loadgen
FORWARDER=$REL/examples/forwarder
MOCK_BIN=$REL/staunch-mock
for bin in "$LOADGEN" "$MOCK_BIN" "$GATEWAY_BIN"; do
    [[ -x $bin ]] || { echo "missing $bin (build it, or unset SKIP_BUILD)" >&2; exit 1; }
done

# --- 2. LiteLLM -----------------------------------------------------------------
if [[ -z ${SKIP_LITELLM:-} ]]; then
    if [[ ! -x $VENV/bin/litellm ]]; then
        say "installing $LITELLM_SPEC into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --upgrade pip
        "$VENV/bin/pip" install --quiet "$LITELLM_SPEC"
    fi
    LITELLM_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
fi

# --- 3. servers -----------------------------------------------------------------
say "starting the mock"
start mock "$MOCK_BIN" --port 0
MOCK_PID=$STARTED_PID
MOCK_URL=
for ((i = 0; i < 80; i++)); do
    MOCK_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$OUT/mock.log" | head -n 1 || true)
    [[ -n $MOCK_URL ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$OUT/mock.log" >&2; exit 1; }
    sleep 0.25
done
[[ -n $MOCK_URL ]] || { echo "the mock printed no address" >&2; exit 1; }
wait_port "${MOCK_URL##*:}" 20 mock "$MOCK_PID"
echo "mock: $MOCK_URL (pid $MOCK_PID)" >&2

say "starting the staunch gateway ($GATEWAY_KIND)"
GW_PORT=$(free_port)
GW_URL=http://127.0.0.1:$GW_PORT
GW_DIRECT=$MOCK_URL
if [[ $GATEWAY_KIND == staunch-gateway ]]; then
    cat >"$OUT/gateway.toml" <<EOF
# Generated by scripts/compare-litellm.sh: every model to the staunch mock.
[server]
listen = "127.0.0.1:$GW_PORT"
$([[ -n ${GATEWAY_MAX_CONCURRENCY:-} ]] && echo "max_concurrency = $GATEWAY_MAX_CONCURRENCY" || echo "# max_concurrency: the shipped default (256)")

[providers.mock]
kind = "openai-compatible"
base_url = "$MOCK_URL/v1"
http2_prior_knowledge = $([[ -n ${UPSTREAM_HTTP2:-} ]] && echo true || echo false)

[[routes]]
model = "*"

[[routes.targets]]
provider = "mock"
model = "gpt-4o-mini"
EOF
    if [[ -n ${GATEWAY_MALLOC_ARENA_MAX:-} ]]; then
        start gateway env MALLOC_ARENA_MAX="$GATEWAY_MALLOC_ARENA_MAX" "$GATEWAY_BIN" --config "$OUT/gateway.toml"
    else
        start gateway "$GATEWAY_BIN" --config "$OUT/gateway.toml"
    fi
else
    start gateway env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY \
        STAUNCH_GATEWAY_MAX_CONCURRENT="${GATEWAY_MAX_CONCURRENCY:-2048}" "$GATEWAY_BIN" --listen "127.0.0.1:$GW_PORT"
fi
GW_PID=$STARTED_PID
wait_port "$GW_PORT" 60 gateway "$GW_PID"
if [[ $GATEWAY_KIND == axum_gateway ]]; then
    # Its own embedded mock (with faults) is its direct path.
    GW_DIRECT=$(grep -o 'mock LLM server on http://127\.0\.0\.1:[0-9]*' "$OUT/gateway.log" | grep -o 'http://.*' || true)
    [[ -n $GW_DIRECT ]] || { echo "axum_gateway printed no mock address" >&2; exit 1; }
fi
echo "gateway: $GW_URL (pid $GW_PID), direct path $GW_DIRECT" >&2

if [[ -z ${SKIP_LITELLM:-} ]]; then
    say "starting LiteLLM $LITELLM_VERSION proxy ($LITELLM_WORKERS worker(s))"
    LL_PORT=$(free_port)
    LL_URL=http://127.0.0.1:$LL_PORT
    # A throwaway master key: LiteLLM refuses to start without one.
    LL_KEY="sk-Lg1-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    STAUNCH_MOCK_API_BASE=$MOCK_URL/v1 LITELLM_MASTER_KEY=$LL_KEY \
        LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
        start litellm "$VENV/bin/litellm" --config "$ROOT/scripts/litellm-config.yaml" \
        --host 127.0.0.1 --port "$LL_PORT" --num_workers "$LITELLM_WORKERS"
    LL_PID=$STARTED_PID
    wait_port "$LL_PORT" 180 litellm "$LL_PID"
    # The port can open before every worker is ready: one real answer first.
    for ((i = 0; i < 120; i++)); do
        if "$LOADGEN" --only target --target "$LL_URL" --api-key "$LL_KEY" --saturate \
            --concurrency 1 --duration 0.5 --warmup 0 --rounds 1 --json 2>/dev/null |
            python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["runs"][0]["target"]["ok"] > 0 else 1)'; then
            break
        fi
        sleep 1
    done
    echo "litellm: $LL_URL (pid $LL_PID)" >&2
fi

# --- 4. load --------------------------------------------------------------------
# bench NAME TARGET DIRECT PID [KEY]: the same four loads against one gateway.
bench() {
    local name=$1 target=$2 direct=$3 pid=$4 key=${5:-sk-loadgen-dummy}
    local common=(--target "$target" --direct "$direct" --pid "$pid" --api-key "$key"
        --duration "$DURATION" --warmup 2 --timeout 20 --max-p99-ms "$MAX_P99_MS" --json --label "$name")
    say "$name: saturation, 64 concurrent"
    "$LOADGEN" "${common[@]}" --saturate --concurrency 64 >"$OUT/$name-saturate.json"
    say "$name: fixed rates $RATES"
    "$LOADGEN" "${common[@]}" --rate "$RATES" --stop-when-unsustained >"$OUT/$name-rates.json"
    say "$name: streaming, saturation (64) and rates $STREAM_RATES"
    "$LOADGEN" "${common[@]}" --stream --saturate --concurrency 64 --rate "$STREAM_RATES" \
        --stop-when-unsustained >"$OUT/$name-stream.json"
    # Last: the allocator keeps some of what 1,000 requests in flight took.
    say "$name: saturation, 1,000 concurrent (peak RSS)"
    "$LOADGEN" "${common[@]}" --saturate --concurrency 1000 --rounds 1 >"$OUT/$name-c1000.json"
}

bench staunch "$GW_URL" "$GW_DIRECT" "$GW_PID"
# The baseline for the gateway's CPU: a bare hyper forwarder to the same mock.
if [[ -x $FORWARDER && $GATEWAY_KIND == staunch-gateway ]]; then
    FW_PORT=$(free_port)
    start forwarder "$FORWARDER" --listen "127.0.0.1:$FW_PORT" --upstream "$MOCK_URL"
    FW_PID=$STARTED_PID
    wait_port "$FW_PORT" 20 forwarder "$FW_PID"
    say "bare forwarder: saturation, 64 concurrent"
    "$LOADGEN" --target "http://127.0.0.1:$FW_PORT" --direct "$MOCK_URL" --pid "$FW_PID" \
        --duration "$DURATION" --warmup 2 --timeout 20 --json --label forwarder \
        --saturate --concurrency 64 >"$OUT/forwarder-saturate.json"
fi
if [[ -z ${SKIP_LITELLM:-} ]]; then
    bench litellm "$LL_URL" "$MOCK_URL" "$LL_PID" "$LL_KEY"
fi

# --- 5. report ------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "rustc: $(rustc --version)"
    echo "staunch: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') ($GATEWAY_KIND)"
    [[ $GATEWAY_KIND != staunch-gateway ]] || echo "staunch gateway: max_concurrency ${GATEWAY_MAX_CONCURRENCY:-256 (the default)}, upstream $([[ -n ${UPSTREAM_HTTP2:-} ]] && echo h2c || echo HTTP/1.1)${GATEWAY_MALLOC_ARENA_MAX:+, MALLOC_ARENA_MAX=$GATEWAY_MALLOC_ARENA_MAX}"
    [[ -n ${SKIP_LITELLM:-} ]] || echo "litellm: $LITELLM_VERSION, $LITELLM_WORKERS worker(s), $("$VENV/bin/python" --version)"
} >"$OUT/versions.txt"
cat "$OUT/versions.txt"
python3 - "$OUT" <<'PY' | tee "$OUT/report.txt"
import json, math, os, sys

out = sys.argv[1]
names = [n for n in ("staunch", "litellm") if os.path.exists(f"{out}/{n}-saturate.json")]
data = {n: {k: json.load(open(f"{out}/{n}-{k}.json")) for k in ("saturate", "rates", "c1000", "stream")} for n in names}

def fmt(x, spec="{:.2f}"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)

def proc(run, key):
    p = (run.get("target") or {}).get("process") or {}
    return p.get(key)

def row(label, values):
    print(f"{label:<40}" + "".join(f" {v:>21}" for v in values))

print()
row("", names)
print("-" * (40 + 22 * len(names)))
for key, title in (("saturate", "saturation, 64 concurrent"), ("c1000", "saturation, 1,000 concurrent")):
    runs = {n: data[n][key]["runs"][0] for n in names}
    print(title)
    row("  throughput (req/s)", [fmt(runs[n]["target"]["throughput_rps"], "{:.0f}") for n in names])
    row("  direct (mock alone) in the same run", [fmt(runs[n]["direct"]["throughput_rps"], "{:.0f}") for n in names])
    row("  errors", [str(sum(runs[n]["target"]["errors"].values())) for n in names])
    row("  p50 / p99 (ms)", [f'{fmt(runs[n]["target"]["p50_ms"])} / {fmt(runs[n]["target"]["p99_ms"])}' for n in names])
    row("  CPU per request (µs)", [fmt(proc(runs[n], "cpu_us_per_request"), "{:.1f}") for n in names])
    row("  CPU used (cores)", [fmt(proc(runs[n], "cpu_cores")) for n in names])
    row("  peak RSS (MB)", [fmt(proc(runs[n], "peak_rss_mb"), "{:.1f}") for n in names])
    row("  processes", [str(proc(runs[n], "processes")) for n in names])
if len(names) == 2:
    a, b = (data[n]["saturate"]["runs"][0]["target"]["throughput_rps"] for n in names)
    print(f"throughput ratio at saturation (64): {a / b:.1f}x" if b else "")
if "staunch" in names and os.path.exists(f"{out}/forwarder-saturate.json"):
    fw = json.load(open(f"{out}/forwarder-saturate.json"))["runs"][0]
    fw_cpu = proc(fw, "cpu_us_per_request")
    gw_cpu = proc(data["staunch"]["saturate"]["runs"][0], "cpu_us_per_request")
    print(f"bare hyper forwarder (examples/forwarder.rs), saturation 64: "
          f'{fmt(fw["target"]["throughput_rps"], "{:.0f}")} req/s, {fmt(fw_cpu, "{:.1f}")} µs CPU per request')
    if fw_cpu and gw_cpu:
        print(f"staunch gateway CPU per request / bare forwarder's: {gw_cpu / fw_cpu:.2f}x")

def rates_table(kind, title):
    print(f"\n{title}: added latency p50 / p99 (ms) = gateway minus mock alone; * = not sustained")
    by_rate = {}
    for n in names:
        for r in data[n][kind]["runs"]:
            if r["mode"] == "rate":
                by_rate.setdefault(r["rate"], {})[n] = r
    best = None
    for rate in sorted(by_rate):
        cells = []
        all_ok = True
        for n in names:
            r = by_rate[rate].get(n)
            if r is None:
                cells.append("skipped")
                all_ok = False
                continue
            ok = r["target_sustained"] and r["direct_sustained"]
            all_ok &= bool(ok)
            cells.append(f'{fmt(r["added_p50_ms"])} / {fmt(r["added_p99_ms"])}{"" if ok else "*"}')
        row(f"  {rate:g} req/s", cells)
        if all_ok and len(by_rate[rate]) == len(names):
            best = rate
    if best is not None:
        cells = []
        for n in names:
            r = by_rate[best][n]
            cells.append(f'{fmt(r["added_p99_ms"])} ms, {fmt(proc(r, "cpu_us_per_request"), "{:.0f}")} µs')
        row(f"  highest rate all sustain: {best:g} req/s", [""] * len(names))
        row("    added p99, CPU per request", cells)
    else:
        print("  no rate was sustained by every gateway")

rates_table("rates", "fixed rates, non-streaming")
runs = {n: data[n]["stream"]["runs"][0] for n in names}
print("\nstreaming (SSE to [DONE])")
row("  saturation (64): throughput (req/s)", [fmt(runs[n]["target"]["throughput_rps"], "{:.0f}") for n in names])
row("  CPU per request (µs)", [fmt(proc(runs[n], "cpu_us_per_request"), "{:.1f}") for n in names])
row("  peak RSS (MB)", [fmt(proc(runs[n], "peak_rss_mb"), "{:.1f}") for n in names])
rates_table("stream", "streaming rates")
print(f"\nraw JSON: {out}/")
PY
