#!/usr/bin/env bash
# What the security features cost, measured in one run: QoS 0 fan-in and fan-out against a fresh broker in
# each of four modes, alternating RUNS times:
#   plain     TCP, no checks
#   secured   TCP, a password file and an ACL file of 1,000 rules (the rule that grants the benchmark's topics
#             last, the worst case for matching)
#   tls       TLS 1.3 (RSA 2048 certificate of a CA made here with openssl), no checks
#   tls+sec   TLS and both files
#   http      TCP, an HTTP authentication and authorisation service (a Python responder started here that
#             allows everything; after the first question per client and topic, answers come from the cache)
# Prints each run's delivered rate and the broker's CPU time, then the means and each mode's ratio to plain.
#
#     benches/security.sh 3
#     benches/security.sh 3 --messages 100000      # more `harbormq bench` arguments for every run
#
# Environment:
#     BIN=PATH                 the harbormq binary (default: this tree's, built in release first)
#     MODES="plain secured"    the modes to run (default: all five)
#     SCENARIOS="fan-in"       the scenarios to run (default: fan-in fan-out)
# Needs bash, jq, bc, openssl, python3 and Linux's /proc.

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
HTTP_PID=""
trap 'cleanup; [ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

# The secured broker's files: one user, 999 rules that match nothing the benchmark publishes, then the one
# that grants its topics.
printf 'bench-password\n' | "$BIN" passwd "$TMP/passwords" bench --password-stdin >/dev/null
{
    echo "user bench"
    for i in $(seq 1 999); do echo "topic readwrite site/$i/+/telemetry"; done
    echo "topic readwrite hmqbench/#"
} >"$TMP/acl"

# A CA and a server certificate for localhost, as the README's Security section makes them.
(
    cd "$TMP"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName = DNS:localhost, IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext \
        -out server.crt
) 2>/dev/null

# The HTTP service: allows every question.
cat >"$TMP/allow.py" <<'PY'
import http.server, sys
class Allow(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"result":"allow"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Allow).serve_forever()
PY

TICKS=$(getconf CLK_TCK)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run MODE SCENARIO [ARGS...]: prints "RATE CPU_SECONDS" for one run against a fresh broker.
run() {
    local mode=$1 scenario=$2 port i before after
    shift 2
    local serve=() client=()
    case "$mode" in
        secured | tls+sec)
            serve+=(--password-file "$TMP/passwords" --acl-file "$TMP/acl")
            client+=(--username bench --password bench-password) ;;
    esac
    while :; do port=$((20000 + RANDOM % 12000)); port_open "$port" || break; done
    case "$mode" in
        tls | tls+sec)
            # Plain TCP on the port after, for nothing but the readiness check below.
            serve+=(--tls-bind "127.0.0.1:$port" --certfile "$TMP/server.crt" --keyfile "$TMP/server.key"
                --bind "127.0.0.1:$((port + 1))")
            client+=(--tls --cafile "$TMP/ca.crt" --host localhost) ;;
        http)
            serve+=(--bind "127.0.0.1:$port" --http-auth-url "http://127.0.0.1:$HTTP_PORT/auth"
                --http-acl-url "http://127.0.0.1:$HTTP_PORT/acl") ;;
        *) serve+=(--bind "127.0.0.1:$port") ;;
    esac
    rm -rf "$TMP/data"
    RUST_LOG=warn "$BIN" serve --data-dir "$TMP/data" --ws-bind "" --wss-bind "" --admin-bind "" \
        --sys-interval-secs 0 "${serve[@]}" >"$TMP/broker.log" 2>&1 &
    PID=$!
    for i in $(seq 1 150); do port_open "$port" && break; sleep 0.1; done
    before=$(cpu_ticks "$PID")
    "$BIN" bench "$scenario" --qos 0 --port "$port" "${client[@]}" --json --quiet "$@" >"$TMP/out.json"
    after=$(cpu_ticks "$PID")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    echo "$(jq -r .results.delivered_rate "$TMP/out.json") $(echo "scale=2; ($after - $before) / $TICKS" | bc)"
}

read -r -a MODES <<<"${MODES:-plain secured tls tls+sec http}"
while :; do HTTP_PORT=$((20000 + RANDOM % 12000)); port_open "$HTTP_PORT" || break; done
python3 "$TMP/allow.py" "$HTTP_PORT" &
HTTP_PID=$!
for _ in $(seq 1 50); do port_open "$HTTP_PORT" && break; sleep 0.1; done
for scenario in ${SCENARIOS:-fan-in fan-out}; do
    declare -A sum=() cpu=()
    for mode in "${MODES[@]}"; do sum[$mode]=0; cpu[$mode]=0; done
    for r in $(seq 1 "$RUNS"); do
        for mode in "${MODES[@]}"; do
            read -r rate seconds < <(run "$mode" "$scenario" "$@")
            echo "$scenario run $r $mode: $rate msg/s, broker CPU ${seconds}s"
            sum[$mode]=$(echo "${sum[$mode]} + $rate" | bc)
            cpu[$mode]=$(echo "${cpu[$mode]} + $seconds" | bc)
        done
    done
    plain=$(echo "${sum[plain]} / $RUNS" | bc)
    for mode in "${MODES[@]}"; do
        mean=$(echo "${sum[$mode]} / $RUNS" | bc)
        echo "$scenario $mode: mean $mean msg/s, broker CPU $(echo "scale=2; ${cpu[$mode]} / $RUNS" | bc)s," \
            "$mode / plain = $(echo "scale=3; $mean / $plain" | bc)"
    done
    unset sum cpu
done
