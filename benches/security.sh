#!/usr/bin/env bash
# What the security features cost, measured in one run: QoS 0 fan-in and fan-out against a plain broker and
# against one that checks a password file and an ACL file of 1,000 rules (the rule that grants the benchmark's
# topics last, the worst case for matching), alternating RUNS times. Prints each run's delivered rate and the
# broker's CPU time, then the means and the ratio secured / plain.
#
#     benches/security.sh 3
#     benches/security.sh 3 --messages 100000      # more `harbormq bench` arguments for every run
#
# Environment:
#     BIN=PATH   the harbormq binary (default: this tree's, built in release first)
# Needs bash, jq and Linux's /proc.

set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
RUNS=${1:-3}
shift || true
command -v jq >/dev/null || { echo "security.sh needs jq (apt-get install jq)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
    echo "building harbormq (release)..." >&2
    cargo build --release --quiet --bin harbormq
    BIN="$ROOT/target/release/harbormq"
fi

TMP="$(mktemp -d -t harbormq-security.XXXXXX)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The secured broker's files: one user, 999 rules that match nothing the benchmark publishes, then the one
# that grants its topics.
printf 'bench-password\n' | "$BIN" passwd "$TMP/passwords" bench --password-stdin >/dev/null
{
    echo "user bench"
    for i in $(seq 1 999); do echo "topic readwrite site/$i/+/telemetry"; done
    echo "topic readwrite hmqbench/#"
} >"$TMP/acl"

TICKS=$(getconf CLK_TCK)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run MODE SCENARIO [ARGS...]: prints "RATE CPU_SECONDS" for one run against a fresh broker.
run() {
    local mode=$1 scenario=$2 port i before after
    shift 2
    local serve=() auth=()
    if [ "$mode" = secured ]; then
        serve=(--password-file "$TMP/passwords" --acl-file "$TMP/acl")
        auth=(--username bench --password bench-password)
    fi
    while :; do port=$((20000 + RANDOM % 12000)); port_open "$port" || break; done
    rm -rf "$TMP/data"
    RUST_LOG=warn "$BIN" serve --bind "127.0.0.1:$port" --data-dir "$TMP/data" --ws-bind "" \
        --admin-bind "" --sys-interval-secs 0 "${serve[@]}" >"$TMP/broker.log" 2>&1 &
    PID=$!
    for i in $(seq 1 150); do port_open "$port" && break; sleep 0.1; done
    before=$(cpu_ticks "$PID")
    "$BIN" bench "$scenario" --qos 0 --port "$port" "${auth[@]}" --json --quiet "$@" >"$TMP/out.json"
    after=$(cpu_ticks "$PID")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    echo "$(jq -r .results.delivered_rate "$TMP/out.json") $(echo "scale=2; ($after - $before) / $TICKS" | bc)"
}

for scenario in fan-in fan-out; do
    declare -A sum=([plain]=0 [secured]=0) cpu=([plain]=0 [secured]=0)
    for r in $(seq 1 "$RUNS"); do
        for mode in plain secured; do
            read -r rate seconds < <(run "$mode" "$scenario" "$@")
            echo "$scenario run $r $mode: $rate msg/s, broker CPU ${seconds}s"
            sum[$mode]=$(echo "${sum[$mode]} + $rate" | bc)
            cpu[$mode]=$(echo "${cpu[$mode]} + $seconds" | bc)
        done
    done
    plain=$(echo "${sum[plain]} / $RUNS" | bc)
    secured=$(echo "${sum[secured]} / $RUNS" | bc)
    echo "$scenario: plain $plain msg/s, secured $secured msg/s, secured / plain = $(echo "scale=3; $secured / $plain" | bc)"
    unset sum cpu
done
