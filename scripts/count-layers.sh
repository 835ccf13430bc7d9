#!/usr/bin/env bash
# Instructions per call of each row of benches/layers.rs (issue 23), counted
# by valgrind's callgrind: the column "instructions over raw" of the
# README's per-layer table. Criterion's times on this shared 2-core machine
# move by tens of nanoseconds between runs; these counts are the same from
# run to run, so a change of a few instructions shows here first.
#
#   scripts/count-layers.sh                        # every row, about 10 minutes after the build
#   ROWS="raw circuit_breaker retry" scripts/count-layers.sh
#
# Each row runs twice under callgrind (LAYERS_COUNT=<row>:CALLS, then
# 2 x CALLS calls of a ready in-memory provider through that row's
# service); the difference over CALLS is its count per call, so the bench's
# set-up (building every row's service) cancels out. The callgrind files
# stay in target/count-layers/ for `callgrind_annotate`.
#
# Environment: ROWS (space-separated row ids; default every row, as
# `LAYERS_COUNT=list` prints them), CALLS (1000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/count-layers
CALLS=${CALLS:-1000}
[[ $CALLS =~ ^[1-9][0-9]*$ ]] || { echo "CALLS must be a positive whole number, not '$CALLS'" >&2; exit 2; }
command -v valgrind >/dev/null || {
    echo "needs valgrind (apt-get install valgrind)" >&2
    exit 1
}
mkdir -p "$OUT"
rm -f "$OUT"/*

printf '== building benches/layers.rs\n' >&2
BIN=$(cargo bench --bench layers --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "layers" and m.get("executable"):
        print(m["executable"])
')
[[ -x $BIN ]] || { echo "could not build benches/layers.rs" >&2; exit 1; }
KNOWN=$(LAYERS_COUNT=list "$BIN")
ROWS=${ROWS:-$KNOWN}
for row in $ROWS; do
    grep -qx -- "$row" <<<"$KNOWN" || { echo "no row '$row' in benches/layers.rs; the rows:" $KNOWN >&2; exit 2; }
done

# total ROW N: instructions of the whole run calling ROW N times.
total() {
    local file="$OUT/$1.$2.out"
    LAYERS_COUNT="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$file" "$BIN" --bench \
        >"$OUT/$1.$2.log" 2>&1 || { echo "row $1 failed (log: $OUT/$1.$2.log)" >&2; exit 1; }
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

# Each row over its own raw: the HTTP path's rows over http_raw (that
# service and its classifier alone), every other row over raw.
declare -A COUNT
printf '%-24s %14s %16s\n' row instructions "over its raw"
for row in $ROWS; do
    once=$(total "$row" "$CALLS")
    twice=$(total "$row" $((2 * CALLS)))
    COUNT[$row]=$(((twice - once) / CALLS))
    case $row in
        raw | http_raw) base= ;;
        stack_http) base=http_raw ;;
        *) base=raw ;;
    esac
    over=-
    if [[ -n $base && -n ${COUNT[$base]:-} ]]; then
        over="$(printf '%+d' $((COUNT[$row] - COUNT[$base]))) ($base)"
    fi
    printf '%-24s %14d %16s\n' "$row" "${COUNT[$row]}" "$over"
done
