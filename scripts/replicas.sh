#!/usr/bin/env bash
# Three gateway replicas sharing one Redis under a fixed load, while Redis
# is stopped, restarted empty and paused (issue 27).
#
#   scripts/replicas.sh [--seconds N]     # N seconds per phase (default 30, at least 14)
#
# What it does:
#   1. builds (release) staunch-gateway and staunch-mock, unless SKIP_BUILD=1;
#      installs redis-server through apt-get when it is missing (as
#      scripts/test.sh does);
#   2. starts redis-server (a password, no persistence) on a free port, the
#      mock, and three staunch-gateway replicas with the same configuration:
#      `[shared]` on that Redis (replicas = 3, decision_timeout_ms = 50),
#      route `quota-*` to a target with a quota of LIMIT_RPM requests a
#      minute (max_wait_ms = 0) on the mock's OpenAI route, falling back to
#      a spare on its Anthropic route, and route `flaky-*` to a target on
#      its Gemini route (a breaker of 3 failures, 5 s) with the same spare;
#   3. drives them with scripts/replicas_load.py: RATE requests/s to
#      `quota-*` and FLAKY_RATE/s to `flaky-*`, round-robin across the
#      replicas, open loop; first WARMUP_SECONDS at 3 x RATE to empty the
#      shared bucket;
#   4. phases of N seconds: 1 Redis up; 2 Redis stopped (redis-cli shutdown
#      nosave); 3 Redis restarted, empty; 4 Redis paused (SIGSTOP) for N/2
#      seconds, then SIGCONT for the rest. Three seconds into each phase the
#      mock's Gemini route fails every request for three seconds, so that
#      the flaky target's circuits open;
#   5. prints a table per phase: requests sent and answered, errors reaching
#      callers by status, admissions to the limited target (the mock's count)
#      against the limit's rate, what a provider bucket at the limit would
#      have refused, local decisions, circuit openings published and
#      received, latency added, and when every replica shared again; and
#      checks that the Redis password is in no log.
# Everything it started is killed on exit; the logs, configuration and raw
# JSON stay in target/replicas/.
#
# Environment: LIMIT_RPM (default 300), RATE (15), FLAKY_RATE (6),
# SKIP_BUILD=1, BIN_DIR (default target/release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/processes.sh
source "$ROOT/scripts/processes.sh"
cd "$ROOT"
SECONDS_PER_PHASE=30
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) SECONDS_PER_PHASE=$2; shift 2 ;;
        -h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
N=$SECONDS_PER_PHASE
if ((N < 14)); then echo "--seconds must be at least 14" >&2; exit 2; fi
LIMIT_RPM=${LIMIT_RPM:-300}
RATE=${RATE:-15}
FLAKY_RATE=${FLAKY_RATE:-6}
WARMUP_RATE=$((RATE * 3))
# Long enough for the warm-up to empty the shared bucket, and 2 s more.
WARMUP_SECONDS=$(python3 -c "print(round($LIMIT_RPM / ($WARMUP_RATE - $LIMIT_RPM / 60) + 2, 1))")
REL=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/replicas
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.toml "$OUT"/*.json "$OUT"/marks

PIDS=()
REDIS_PID=
cleanup() {
    [[ -n $REDIS_PID ]] && kill -CONT "$REDIS_PID" 2>/dev/null || true
    stop "${PIDS[@]}" $REDIS_PID
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mark() { echo "$1 $(date +%s.%N)" >>"$OUT/marks"; say "phase: $1"; }

# As scripts/test.sh: apt-get as root or through a password-less sudo.
if ! command -v redis-server >/dev/null; then
    run=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            run=(sudo -n)
        else
            echo "missing redis-server: install it (Debian/Ubuntu: sudo apt-get install redis-server) and run me again" >&2
            exit 1
        fi
    fi
    command -v apt-get >/dev/null || { echo "missing redis-server and no apt-get: install it and run me again" >&2; exit 1; }
    say "installing redis-server through apt-get"
    "${run[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq redis-server >/dev/null
fi

if [[ -z ${SKIP_BUILD:-} ]]; then
    say "building (release)"
    cargo build --release -p staunch-gateway --bin staunch-gateway -p staunch-mock --bin staunch-mock
fi
MOCK=$REL/staunch-mock
GATEWAY=$REL/staunch-gateway
for bin in "$MOCK" "$GATEWAY"; do
    [[ -x $bin ]] || { echo "missing $bin (build it, or unset SKIP_BUILD)" >&2; exit 1; }
done

REDIS_PORT=$(free_port)
# Generated for this run; checked against every log at the end.
REDIS_PASSWORD="replicas-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --requirepass "$REDIS_PASSWORD" >>"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PORT" redis "$REDIS_PID"
}
say "starting redis-server on $REDIS_PORT"
start_redis

say "starting the mock"
start_mock "$MOCK" mock

GATEWAY_URLS=()
for r in 1 2 3; do
    port=$(free_port)
    cat >"$OUT/gateway-$r.toml" <<EOF
# Generated by scripts/replicas.sh: replica $r of 3, the same but for the port.
[server]
listen = "127.0.0.1:$port"

[shared]
redis_url = "redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
replicas = 3
decision_timeout_ms = 50

[providers.limited]
kind = "openai-compatible"
base_url = "$MOCK_URL/v1"

[providers.flaky]
kind = "gemini"
base_url = "$MOCK_URL"

[providers.spare]
kind = "anthropic"
base_url = "$MOCK_URL"

[[routes]]
model = "quota-*"
  [[routes.targets]]
  provider = "limited"
  model = "limited-model"
  retry = { max_retries = 0 }
  quota = { requests_per_minute = $LIMIT_RPM, max_wait_ms = 0 }
  [[routes.targets]]
  provider = "spare"
  model = "spare-model"

[[routes]]
model = "flaky-*"
  [[routes.targets]]
  provider = "flaky"
  model = "flaky-model"
  retry = { max_retries = 0 }
  breaker = { consecutive_failures = 3, break_secs = 5, break_jitter = 0.0 }
  [[routes.targets]]
  provider = "spare"
  model = "spare-model"
EOF
    "$GATEWAY" --config "$OUT/gateway-$r.toml" >"$OUT/gateway-$r.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "gateway-$r" "$pid"
    GATEWAY_URLS+=("http://127.0.0.1:$port")
done
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "staunch: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(redis-server --version | cut -d' ' -f1-3)"
    echo "phases: ${N} s each after a ${WARMUP_SECONDS} s warm-up at ${WARMUP_RATE}/s; limit ${LIMIT_RPM}/min; load ${RATE}/s + ${FLAKY_RATE}/s flaky"
} | tee "$OUT/versions.txt" >&2

fault() { # on|off: every request of the mock's Gemini route fails, or none.
    local body='{}'
    [[ $1 == on ]] && body='{"gemini": {"random": [{"probability": 1.0, "fault": {"type": "server_error"}}]}}'
    curl -sf -X POST -H 'content-type: application/json' -d "$body" "$MOCK_URL/_mock/scenario" >/dev/null
}
# flaky_window REST: the Gemini route fails from 3 s to 6 s, then REST more seconds.
flaky_window() {
    sleep 3
    fault on
    sleep 3
    fault off
    sleep "$1"
}

TOTAL=$(python3 -c "print($N * 4 + 1)")
(IFS=,; python3 scripts/replicas_load.py run --gateways "${GATEWAY_URLS[*]}" --mock "$MOCK_URL" \
    --out "$OUT/run.json" --rate "$RATE" --flaky-rate "$FLAKY_RATE" --seconds "$TOTAL" \
    --warmup-rate "$WARMUP_RATE" --warmup-seconds "$WARMUP_SECONDS") &
LOAD=$!
PIDS+=("$LOAD")
mark warm-up
sleep "$(python3 -c "print($WARMUP_SECONDS + 0.2)")"

mark "1-redis-up"
flaky_window $((N - 6))

mark "2-redis-down"
redis-cli -p "$REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" shutdown nosave >/dev/null 2>&1 || true
wait "$REDIS_PID" 2>/dev/null || true
flaky_window $((N - 6))

mark "3-restarted"
start_redis
flaky_window $((N - 6))

mark "4a-paused"
kill -STOP "$REDIS_PID"
flaky_window $((N / 2 - 6))
kill -CONT "$REDIS_PID"
mark "4b-resumed"
sleep $((N - N / 2))
mark end

wait "$LOAD"
python3 scripts/replicas_load.py report --run "$OUT/run.json" --marks "$OUT/marks" \
    --limit-rpm "$LIMIT_RPM" | tee "$OUT/report.txt"
leaks=$(grep -l -- "$REDIS_PASSWORD" "$OUT"/gateway-*.log || true)
if [[ -n $leaks ]]; then
    echo "the Redis password appears in: $leaks" | tee -a "$OUT/report.txt"
    exit 1
fi
echo "the Redis password appears in no gateway log" | tee -a "$OUT/report.txt"
