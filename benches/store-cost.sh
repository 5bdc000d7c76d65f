#!/usr/bin/env bash
# What durable queueing costs, harbormq (durability sync) against Mosquitto (persistence true) in one run:
# `harbormq bench persistence` publishes QoS 1 messages to offline persistent sessions, then drains them when
# the sessions return. Prints the publish rate, the drain rate and the bytes each broker wrote to disk per
# queued message (/proc/PID/io write_bytes over the publish and the drain together).
#
#     benches/store-cost.sh                                  # 1 session x 100,000 x 64 B, window 100
#     benches/store-cost.sh --subscribers 10 --messages 100000
#
# Environment:
#     BIN=PATH   the harbormq binary (default: this tree's, built in release first)
# Needs bash, jq, bc, mosquitto and Linux's /proc (reading another process's io needs the same user).

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
command -v jq >/dev/null || { echo "store-cost.sh needs jq" >&2; exit 1; }
command -v mosquitto >/dev/null || { echo "store-cost.sh needs mosquitto" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
    echo "building harbormq (release)..." >&2
    cargo build --release --quiet --bin harbormq
    BIN="$ROOT/target/release/harbormq"
fi
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--subscribers 1 --messages 100000)

TMP="$(mktemp -d -t harbormq-store-cost.XXXXXX)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 12000)); port_open "$p" || break; done; echo "$p"; }

# measure NAME: runs the scenario against the broker $PID on $PORT; prints the figures.
measure() {
    local name=$1 before after messages
    before=$(written "$PID")
    "$BIN" bench persistence --port "$PORT" --payload 64 --inflight 100 --json --quiet "${ARGS[@]}" \
        >"$TMP/out.json"
    after=$(written "$PID")
    messages=$(jq -r '.results.drained' "$TMP/out.json")
    printf '%-9s publish %8.0f msg/s   drain %8.0f msg/s   drained %s   written %s bytes/message\n' \
        "$name" "$(jq -r .results.publish_rate "$TMP/out.json")" "$(jq -r .results.drain_rate "$TMP/out.json")" \
        "$messages" "$(echo "($after - $before) / $messages" | bc)"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

PORT=$(free_port)
RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$TMP/harbormq" --ws-bind "" --admin-bind "" \
    --sys-interval-secs 0 --durability sync >"$TMP/harbormq.log" 2>&1 &
PID=$!
for _ in $(seq 1 150); do port_open "$PORT" && break; sleep 0.1; done
measure harbormq

PORT=$(free_port)
mkdir -p "$TMP/mosquitto"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nmax_inflight_messages 100\n' \
    "$PORT" "$TMP/mosquitto" >"$TMP/mosquitto.conf"
mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
PID=$!
for _ in $(seq 1 150); do port_open "$PORT" && break; sleep 0.1; done
measure mosquitto
