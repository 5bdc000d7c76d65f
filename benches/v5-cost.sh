#!/usr/bin/env bash
# What MQTT 5.0 costs beside MQTT 3.1.1 on one broker:
#   1. fan-in with 3.1.1 clients and fan-in with 5.0 clients sending USER_PROPERTIES user properties per
#      message, alternately against one `harbormq serve`, RUNS times; the ratio of the mean rates;
#   2. idle connections of each version against a fresh broker each, alternately, RUNS times; the RSS per
#      connection of each run and the medians.
#
#     benches/v5-cost.sh            # RUNS=6 USER_PROPERTIES=2 CONNECTIONS=19000
#     RUNS=2 CONNECTIONS=2000 benches/v5-cost.sh
#
# Environment: BIN=PATH a `harbormq` binary (default: this tree's, built in release first); RUNS,
# USER_PROPERTIES, CONNECTIONS as above. Needs bash and jq.

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
command -v jq >/dev/null || { echo "v5-cost.sh needs jq (apt-get install jq)" >&2; exit 1; }
RUNS=${RUNS:-6}
USER_PROPERTIES=${USER_PROPERTIES:-2}
CONNECTIONS=${CONNECTIONS:-19000}
if [ -z "${BIN:-}" ]; then
    echo "building harbormq (release)..." >&2
    cargo build --release --quiet --bin harbormq
    BIN="$ROOT/target/release/harbormq"
fi

TMP="$(mktemp -d -t harbormq-v5cost.XXXXXX)"
PID=""
stop() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    PID=""
}
trap 'stop; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
# Idle connections need as many descriptors in the broker and in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start: a fresh broker on a free port; sets PORT and PID.
start() {
    local i
    while :; do PORT=$((20000 + RANDOM % 12000)); port_open "$PORT" || break; done
    rm -rf "$TMP/data"
    RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$TMP/data" --ws-bind "" \
        --admin-bind "" --sys-interval-secs 0 >"$TMP/broker.log" 2>&1 &
    PID=$!
    for i in $(seq 1 150); do port_open "$PORT" && return 0; sleep 0.1; done
    echo "the broker did not start; its log:" >&2
    cat "$TMP/broker.log" >&2
    exit 1
}

fan_in() {
    "$BIN" bench fan-in --port "$PORT" --json --quiet "$@" | jq -r .results.delivered_rate
}

echo "fan-in: 3.1.1 against 5.0 with $USER_PROPERTIES user properties, $RUNS alternating runs" >&2
start
for _ in $(seq 1 "$RUNS"); do
    echo "$(fan_in --protocol 4) $(fan_in --protocol 5 --user-properties "$USER_PROPERTIES")"
done | tee "$TMP/fan-in" >&2
stop
awk '{ v3 += $1; v5 += $2 }
     END { printf "fan-in: 3.1.1 mean %.0f msg/s, 5.0 mean %.0f msg/s, 5.0 / 3.1.1 = %.3f\n",
               v3 / NR, v5 / NR, v5 / v3 }' "$TMP/fan-in"

echo "idle connections: $CONNECTIONS of each version, $RUNS alternating runs" >&2
for _ in $(seq 1 "$RUNS"); do
    for level in 4 5; do
        start
        rss=$("$BIN" bench connections --port "$PORT" --pid "$PID" --protocol "$level" \
            --connections "$CONNECTIONS" --json --quiet | jq -r .results.broker_rss_per_conn)
        stop
        echo "$level $rss"
    done
done | tee "$TMP/idle" >&2
for level in 4 5; do
    awk -v level="$level" '$1 == level { print $2 }' "$TMP/idle" | sort -n |
        awk -v level="$level" '{ v[NR] = $1 }
            END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                  printf "idle connection, protocol level %s: median RSS %.3f KiB\n", level, m }'
done
