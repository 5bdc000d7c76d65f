#!/usr/bin/env bash
# Old against new, alternating: one `harbormq bench` scenario run RUNS times against a fresh `harbormq serve`
# of each binary in turn. Prints each run's figure and the broker's CPU time (user + system, from
# /proc/PID/stat), then the means and the ratios new / old. Alternating runs on one machine cancel most of
# the drift a single run of compare.sh suffers; broker CPU time varies less than rates do.
#
#     BASELINE=/path/to/old/harbormq benches/ab.sh 4 fan-out --qos 1 --messages 100000
#     BASELINE=... SERVE_ARGS="--durability off" FIELD=.results.publish_rate \
#         benches/ab.sh 2 persistence --subscribers 10 --messages 100000
#
# Environment:
#     BASELINE=PATH     the older `harbormq` binary (required)
#     NEW=PATH          the newer one (default: this tree's, built in release first)
#     SERVE_ARGS="..."  more `harbormq serve` arguments for both brokers
#     FIELD=.results.x  the JSON figure printed (default .results.delivered_rate)
# The load generator is always the newer binary's `harbormq bench`. Needs bash, jq and Linux's /proc.

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ $# -ge 2 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
[ -n "${BASELINE:-}" ] || { echo "ab.sh needs BASELINE=PATH, the older harbormq binary" >&2; exit 2; }
command -v jq >/dev/null || { echo "ab.sh needs jq (apt-get install jq)" >&2; exit 1; }
RUNS=$1
shift
FIELD=${FIELD:-.results.delivered_rate}
read -r -a EXTRA <<<"${SERVE_ARGS:-}"

if [ -z "${NEW:-}" ]; then
    echo "building harbormq (release)..." >&2
    cargo build --release --quiet --bin harbormq
    NEW="$ROOT/target/release/harbormq"
fi

TMP="$(mktemp -d -t harbormq-ab.XXXXXX)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TICKS=$(getconf CLK_TCK)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME BINARY: one scenario against a fresh broker; prints "NAME FIGURE CPU_SECONDS".
run() {
    local name=$1 binary=$2 port i before after
    shift 2
    while :; do port=$((20000 + RANDOM % 12000)); port_open "$port" || break; done
    rm -rf "$TMP/data"
    RUST_LOG=warn "$binary" serve --bind "127.0.0.1:$port" --data-dir "$TMP/data" --ws-bind "" \
        --admin-bind "" --sys-interval-secs 0 "${EXTRA[@]}" >"$TMP/$name.log" 2>&1 &
    PID=$!
    for i in $(seq 1 150); do port_open "$port" && break; sleep 0.1; done
    before=$(cpu_ticks "$PID")
    "$NEW" bench "$@" --port "$port" --json --quiet >"$TMP/out.json"
    after=$(cpu_ticks "$PID")
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    awk -v name="$name" -v figure="$(jq -r "$FIELD" "$TMP/out.json")" -v ticks=$((after - before)) \
        -v per_second="$TICKS" 'BEGIN { printf "%s %s %.3f\n", name, figure, ticks / per_second }'
}

for _ in $(seq 1 "$RUNS"); do
    run old "$BASELINE" "$@"
    run new "$NEW" "$@"
done | tee "$TMP/runs" >&2
awk '{ f[$1] += $2; c[$1] += $3; n[$1]++ }
     END {
         printf "old: mean %.0f, broker CPU %.3f s\nnew: mean %.0f, broker CPU %.3f s\n",
             f["old"] / n["old"], c["old"] / n["old"], f["new"] / n["new"], c["new"] / n["new"]
         printf "new / old: figure %.3f, broker CPU %.3f\n", f["new"] / f["old"], c["new"] / c["old"]
     }' "$TMP/runs"
