#!/usr/bin/env bash
# Side-by-side load benchmark: every `harbormq bench` scenario against Mosquitto and harbormq, one table.
#
# Run from anywhere inside the repository:
#     benches/compare.sh            # the default sizes of the issues (takes a few minutes)
#     QUICK=1 benches/compare.sh    # small sizes, a smoke test of the script itself
#
# What it does: builds `harbormq` in release mode, then for each scenario starts a fresh Mosquitto
# (if `mosquitto` is on PATH; config `listener PORT 127.0.0.1`, `allow_anonymous true`,
# `max_queued_messages 1000000`, plus `persistence true` for the persistence scenario) and a fresh
# `harbormq serve` (temporary data dir), each on a free port of 127.0.0.1, runs the scenario against
# one broker and then the other with `harbormq bench ... --json`, and stops both brokers. The table
# shows each figure for both brokers and the ratio harbormq / Mosquitto; for latencies and memory lower
# is better. A trailing `!` marks a run that reported missing messages or errors.
#
# Environment:
#     QUICK=1                      small sizes
#     DURABILITY="sync periodic:100 off"   harbormq durability modes for the persistence scenario
#     KEEP=1                       keep the temporary directory (broker logs, JSON of every run)
#     BASELINE=PATH                an older `harbormq` binary run beside the current one in every scenario
#                                  (two more columns: its figure and current / baseline), to compare
#                                  versions in one run on the same machine
#
# Needs bash, jq and cargo. Both brokers share the machine's cores with the generator, so compare
# ratios from one run rather than absolute figures across machines. Both brokers are always stopped
# on exit (trap), whatever happens.

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
command -v jq >/dev/null || { echo "compare.sh needs jq (apt-get install jq)" >&2; exit 1; }

TMP="$(mktemp -d -t harbormq-compare.XXXXXX)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 19,000 idle connections need as many descriptors in the broker and in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export RUST_BACKTRACE=0

echo "building harbormq (release)..." >&2
cargo build --release --quiet --bin harbormq
BIN="$ROOT/target/release/harbormq"
HAVE_MOSQUITTO=0
command -v mosquitto >/dev/null && HAVE_MOSQUITTO=1
[ "$HAVE_MOSQUITTO" = 1 ] || echo "mosquitto not on PATH: its column stays empty (apt-get install mosquitto)" >&2

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local p
    while :; do
        # Below the ephemeral range (32768+), where the generator's own client sockets live.
        p=$((20000 + RANDOM % 12000))
        port_open "$p" || { echo "$p"; return; }
    done
}

# wait_port PORT PID: until PORT accepts connections (at most 15 s) or the process has died.
wait_port() {
    local i
    for i in $(seq 1 150); do
        port_open "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop PID: stops one broker started here and forgets it.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${PIDS[@]:-}"; do [ "$pid" != "$1" ] && kept+=("$pid"); done
    PIDS=("${kept[@]:-}")
}

# start_mosquitto NAME [persist]: sets PORT and PID, or returns 1 when it could not start.
start_mosquitto() {
    local name=$1 persist=${2:-} conf
    PORT=$(free_port)
    conf="$TMP/$name.mosquitto.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$PORT" >"$conf"
    if [ -n "$persist" ]; then
        mkdir -p "$TMP/$name.mosquitto-data"
        printf 'persistence true\npersistence_location %s/\n' "$TMP/$name.mosquitto-data" >>"$conf"
    fi
    mosquitto -c "$conf" >"$TMP/$name.mosquitto.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT" "$PID" || { stop "$PID"; return 1; }
}

# start_harbormq NAME [DURABILITY] [BINARY]: sets PORT and PID, or returns 1 when it could not start.
start_harbormq() {
    local name=$1 durability=${2:-sync} binary=${3:-$BIN}
    PORT=$(free_port)
    RUST_LOG=warn "$binary" serve --bind "127.0.0.1:$PORT" --data-dir "$TMP/$name.harbormq-data" \
        --durability "$durability" --ws-bind "" --admin-bind "" >"$TMP/$name.harbormq.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT" "$PID" || {
        stop "$PID"
        echo "  harbormq did not start: see $TMP/$name.harbormq.log (KEEP=1 keeps it)" >&2
        return 1
    }
}

# bench OUT PORT PID SCENARIO ARGS...: one run; its JSON goes to OUT (empty object on failure to report).
bench() {
    local out=$1 port=$2 pid=$3 scenario=$4
    shift 4
    local extra=()
    [ "$scenario" = connections ] && extra=(--pid "$pid")
    echo "  $(basename "$out" .json): harbormq bench $scenario $* ${extra[*]:-}" >&2
    "$BIN" bench "$scenario" --port "$port" --json --quiet "$@" "${extra[@]}" >"$out" 2>"$out.err" || true
    sed "s|^|$(basename "$out" .json): |" "$out.err" >>"$TMP/bench.err"
    [ -s "$out" ] || echo '{}' >"$out"
}

ROWS="$TMP/rows.psv"
: >"$ROWS"

# row LABEL METRIC UNIT MOSQ_JSON HMQ_JSON JQ_PATH [BASELINE_JSON]
row() {
    local label=$1 metric=$2 unit=$3 mj=$4 hj=$5 path=$6 bj=${7:-/dev/null} m h b mflag hflag bflag
    m=$(jq -r "($path) // empty" "$mj" 2>/dev/null || true)
    h=$(jq -r "($path) // empty" "$hj" 2>/dev/null || true)
    b=$(jq -r "($path) // empty" "$bj" 2>/dev/null || true)
    mflag=$(jq -r 'if .ok == false then "!" else "" end' "$mj" 2>/dev/null || true)
    hflag=$(jq -r 'if .ok == false then "!" else "" end' "$hj" 2>/dev/null || true)
    bflag=$(jq -r 'if .ok == false then "!" else "" end' "$bj" 2>/dev/null || true)
    printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$label" "$metric" "$unit" "$m" "$mflag" "$h" "$hflag" \
        "$b" "$bflag" >>"$ROWS"
}

# run_pair LABEL SCENARIO ARGS...: fresh brokers, the scenario against each (the baseline too, if any),
# brokers stopped.
run_pair() {
    local label=$1 scenario=$2
    shift 2
    local mj="$TMP/$label.mosquitto.json" hj="$TMP/$label.harbormq.json" bj="$TMP/$label.baseline.json"
    echo '{}' >"$mj"
    echo '{}' >"$hj"
    echo '{}' >"$bj"
    echo "$label" >&2
    if [ "$HAVE_MOSQUITTO" = 1 ] && start_mosquitto "$label"; then
        bench "$mj" "$PORT" "$PID" "$scenario" "$@"
        stop "$PID"
    fi
    if start_harbormq "$label"; then
        bench "$hj" "$PORT" "$PID" "$scenario" "$@"
        stop "$PID"
    fi
    if [ -n "${BASELINE:-}" ] && start_harbormq "$label-baseline" sync "$BASELINE"; then
        bench "$bj" "$PORT" "$PID" "$scenario" "$@"
        stop "$PID"
    fi
    PAIR_M=$mj
    PAIR_H=$hj
    PAIR_B=$bj
}

if [ "${QUICK:-0}" = 1 ]; then
    FANIN=(--publishers 4 --messages 20000)
    FANIN_QOS2=(--publishers 4 --messages 5000)
    FANOUT=(--subscribers 10 --messages 2000)
    LAT=(--rate 1000 --duration 3)
    CONNS=(--connections 1000)
    PERSIST=(--subscribers 5 --messages 10000)
else
    FANIN=(--publishers 4 --messages 250000)
    # Mosquitto manages a few thousand QoS 2 messages per second here: a quarter of the size keeps the run bounded.
    FANIN_QOS2=(--publishers 4 --messages 50000)
    FANOUT=(--subscribers 50 --messages 20000)
    LAT=(--rate 1000 --duration 10)
    CONNS=(--connections 19000)
    PERSIST=(--subscribers 10 --messages 100000)
fi

for qos in 0 1 2; do
    # Mosquitto silently drops inbound QoS 2 publishes beyond its 20-message inflight limit, so QoS 2 keeps to 20.
    if [ "$qos" = 2 ]; then
        run_pair "fan-in-qos$qos" fan-in "${FANIN_QOS2[@]}" --qos 2 --inflight 20
    else
        run_pair "fan-in-qos$qos" fan-in "${FANIN[@]}" --qos "$qos"
    fi
    row "fan-in qos$qos" "delivered" "msg/s" "$PAIR_M" "$PAIR_H" .results.delivered_rate "$PAIR_B"
done

for qos in 0 1; do
    run_pair "fan-out-qos$qos" fan-out "${FANOUT[@]}" --qos "$qos"
    row "fan-out qos$qos" "delivered" "msg/s" "$PAIR_M" "$PAIR_H" .results.delivered_rate "$PAIR_B"
done

for qos in 0 1; do
    run_pair "latency-qos$qos" latency "${LAT[@]}" --qos "$qos"
    for p in p50 p90 p99 p99_9 max; do
        row "latency 1k/s qos$qos" "$p" "us" "$PAIR_M" "$PAIR_H" ".latency_us.$p" "$PAIR_B"
    done
done

run_pair connections connections "${CONNS[@]}"
row "connections" "connect rate" "conn/s" "$PAIR_M" "$PAIR_H" .results.connect_rate "$PAIR_B"
row "connections" "alive" "conns" "$PAIR_M" "$PAIR_H" .results.alive "$PAIR_B"
row "connections" "broker RSS" "KiB/conn" "$PAIR_M" "$PAIR_H" .results.broker_rss_per_conn "$PAIR_B"

# Persistence: Mosquitto once (persistence true), harbormq once per durability mode.
mosq_persist="$TMP/persistence.mosquitto.json"
echo '{}' >"$mosq_persist"
echo "persistence (mosquitto)" >&2
if [ "$HAVE_MOSQUITTO" = 1 ] && start_mosquitto persistence persist; then
    bench "$mosq_persist" "$PORT" "$PID" persistence "${PERSIST[@]}"
    stop "$PID"
fi
for mode in ${DURABILITY:-sync periodic:100 off}; do
    name="persistence-${mode//:/-}"
    hj="$TMP/$name.harbormq.json"
    bj="$TMP/$name.baseline.json"
    echo '{}' >"$hj"
    echo '{}' >"$bj"
    echo "$name" >&2
    if start_harbormq "$name" "$mode"; then
        bench "$hj" "$PORT" "$PID" persistence "${PERSIST[@]}"
        stop "$PID"
    fi
    if [ -n "${BASELINE:-}" ] && start_harbormq "$name-baseline" "$mode" "$BASELINE"; then
        bench "$bj" "$PORT" "$PID" persistence "${PERSIST[@]}"
        stop "$PID"
    fi
    row "persistence $mode" "publish" "msg/s" "$mosq_persist" "$hj" .results.publish_rate "$bj"
    row "persistence $mode" "drain" "msg/s" "$mosq_persist" "$hj" .results.drain_rate "$bj"
    row "persistence $mode" "drained" "msgs" "$mosq_persist" "$hj" .results.drained "$bj"
done

ratio_of() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b != 0) printf "%.2f", a / b }'; }
fmt() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { if (v == int(v)) printf "%d", v; else printf "%.1f", v }'; }
if [ -n "${BASELINE:-}" ]; then
    printf '\n%-22s %-13s %-8s %13s %13s %7s %13s %7s\n' scenario metric unit mosquitto harbormq "h/m" \
        baseline "h/base"
else
    printf '\n%-22s %-13s %-8s %13s %13s %7s\n' scenario metric unit mosquitto harbormq "h/m"
fi
printf '%s\n' "------------------------------------------------------------------------------------------------------"
while IFS='|' read -r label metric unit m mflag h hflag b bflag; do
    line=$(printf '%-22s %-13s %-8s %13s %13s %7s' "$label" "$metric" "$unit" \
        "$(fmt "$m" || true)$mflag" "$(fmt "$h" || true)$hflag" "$(ratio_of "$h" "$m" || true)")
    if [ -n "${BASELINE:-}" ]; then
        line=$(printf '%s %13s %7s' "$line" "$(fmt "$b" || true)$bflag" "$(ratio_of "$h" "$b" || true)")
    fi
    printf '%s\n' "$line"
done <"$ROWS"
if [ -s "$TMP/bench.err" ]; then
    echo >&2
    echo "errors reported by runs (a ! in the table):" >&2
    grep -v ': *$' "$TMP/bench.err" | head -20 >&2 || true
fi
