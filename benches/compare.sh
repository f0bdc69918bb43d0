#!/usr/bin/env bash
# Compare MQTT brokers with loadgen (the README's comparison).
#
# For each of ROUNDS rounds, for each broker in BROKERS (alternating, so slow
# drift on a shared machine hits every broker alike), start a FRESH broker on
# free loopback ports and run two `loadgen bench` scenarios against it:
#   saturation: --qos 1 --size 64 --clients 16 --inflight 64 --rate 0 --subs 1
#   steady:     the same at --rate $STEADY_RATE (default 20000 msg/s)
# then print every run, the per-broker medians, and raftmq/mosquitto ratios.
#
# Environment (all optional):
#   BROKERS         brokers to run, in order          [mosquitto raftmq]
#   ROUNDS          rounds                            [3]
#   DURATION        measured seconds per run          [10]
#   WARMUP          warmup seconds per run            [2]
#   STEADY_RATE     offered msg/s for "steady"        [20000]
#   SCENARIOS       which scenarios                   [saturation steady]
#   LOADGEN_ARGS    extra loadgen arguments (e.g. "--mqtt-version 5")
#   CARGO_TARGET_DIR                                  [$HOME/.cache/raftmq-target]
#   RAFTMQ_BIN      raftmq binary                     [$CARGO_TARGET_DIR/release/raftmq]
#   MOSQUITTO_BIN   mosquitto binary                  [/usr/sbin/mosquitto]
#   NO_BUILD=1      do not run cargo build for loadgen
#   OUT             keep JSON results and broker logs here [a temp dir, removed]
#
# Brokers are plugins: to add one, write start_<name> (start it on $1 = MQTT
# port, $2 = spare port, $3 = scratch dir, in the background, setting
# BROKER_PID; a multi-process broker also sets EXTRA_PIDS, and SUB_PORT when
# subscribers should use another node) and add <name> to BROKERS.
#
# raftmq3 is a three-node raftmq cluster: publishers connect to node 2 (a
# follower, so every publish is forwarded to the leader, node 1) and the
# subscriber to node 3.
set -euo pipefail

BROKERS=${BROKERS:-"mosquitto raftmq"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
STEADY_RATE=${STEADY_RATE:-20000}
SCENARIOS=${SCENARIOS:-"saturation steady"}
LOADGEN_ARGS=${LOADGEN_ARGS:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/raftmq-target}
RAFTMQ_BIN=${RAFTMQ_BIN:-$CARGO_TARGET_DIR/release/raftmq}
MOSQUITTO_BIN=${MOSQUITTO_BIN:-/usr/sbin/mosquitto}
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    WORK=$(cd "$OUT" && pwd)
    KEEP_WORK=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/raftmq-compare.XXXXXX")
    KEEP_WORK=0
fi

BROKER_PID=""
EXTRA_PIDS=()
SUB_PORT=""
cleanup() {
    local rc=$?
    stop_broker
    if [[ $KEEP_WORK == 0 ]]; then
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "compare.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Stop the broker we started (by PID, plus EXTRA_PIDS), waiting for it to exit.
stop_broker() {
    local pid
    for pid in "$BROKER_PID" "${EXTRA_PIDS[@]}"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    BROKER_PID=""
    EXTRA_PIDS=()
    SUB_PORT=""
}

# Wait until the broker answers an MQTT CONNECT with a successful CONNACK.
wait_ready() {
    local port=$1 name=$2
    for _ in $(seq 300); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            die "$name exited during startup; log: $WORK/$name.log (last lines below)
$(tail -n 20 "$WORK/$name.log" 2>/dev/null)"
        fi
        if "$LOADGEN" conn --host "127.0.0.1:$port" -c 1 --quiet --connect-timeout 1 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not accept MQTT connections on port $port within 30 s"
}

start_mosquitto() {
    local port=$1 dir=$3
    cat >"$dir/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
# No per-client caps that would throttle or drop the benchmark's traffic.
max_inflight_messages 0
max_queued_messages 10000000
max_queued_bytes 0
# Mosquitto defaults to Nagle on client sockets; with it, PUBACKs to a
# publisher wait for the client's delayed ACK and ack latency at moderate
# per-connection rates is inflated by up to one send interval.
set_tcp_nodelay true
EOF
    "$MOSQUITTO_BIN" -c "$dir/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
    BROKER_PID=$!
}

start_raftmq() {
    local port=$1 http=$2 dir=$3
    mkdir -p "$dir/data"
    # The same caps as Mosquitto above: none that would throttle or drop the
    # benchmark's traffic (the defaults, VerneMQ's, drop beyond 20 inflight +
    # 1000 queued per online session). Durability is unchanged: fsync per batch.
    printf 'max_inflight_messages = 0\nmax_online_messages = -1\n' >"$dir/raftmq.toml"
    "$RAFTMQ_BIN" start --node-id 1 --data-dir "$dir/data" --config "$dir/raftmq.toml" \
        --mqtt "127.0.0.1:$port" --http "127.0.0.1:$http" >"$WORK/raftmq.log" 2>&1 &
    BROKER_PID=$!
}

# Three nodes: node 1 bootstraps (and leads), nodes 2 and 3 join it.
# Publishers use node 2 ($1), the subscriber node 3 (SUB_PORT).
start_raftmq3() {
    local port=$1 dir=$3 i
    printf 'max_inflight_messages = 0\nmax_online_messages = -1\n' >"$dir/raftmq.toml"
    local mqtt=("$(free_port)" "$port" "$(free_port)")
    local http=("$(free_port)" "$(free_port)" "$(free_port)")
    local clus=("$(free_port)" "$(free_port)" "$(free_port)")
    for i in 0 1 2; do
        mkdir -p "$dir/node$((i + 1))"
        local join=()
        [[ $i -gt 0 ]] && join=(--join "127.0.0.1:${clus[0]}")
        RAFTMQ_COOKIE=compare "$RAFTMQ_BIN" start --node-id $((i + 1)) --data-dir "$dir/node$((i + 1))" \
            --config "$dir/raftmq.toml" --mqtt "127.0.0.1:${mqtt[$i]}" --http "127.0.0.1:${http[$i]}" \
            --cluster "127.0.0.1:${clus[$i]}" "${join[@]}" >>"$WORK/raftmq3.log" 2>&1 &
        case $i in
            # Node 1 leads: it is up before the others join.
            0) BROKER_PID=$!; wait_ready "${mqtt[0]}" raftmq3; EXTRA_PIDS+=("$BROKER_PID") ;;
            1) BROKER_PID=$! ;;
            2) EXTRA_PIDS+=($!) ;;
        esac
    done
    SUB_PORT=${mqtt[2]}
    CLUSTER_HTTP=${http[0]}
}

check_broker() {
    case $1 in
        mosquitto) [[ -x "$MOSQUITTO_BIN" ]] || die "mosquitto not found at $MOSQUITTO_BIN (apt-get install mosquitto)" ;;
        raftmq|raftmq3) [[ -x "$RAFTMQ_BIN" ]] || die "raftmq binary not found at $RAFTMQ_BIN (cargo build --release --bin raftmq, set RAFTMQ_BIN, or BROKERS=mosquitto)" ;;
        *) declare -F "start_$1" >/dev/null || die "unknown broker '$1' (no start_$1 function)" ;;
    esac
}

scenario_args() {
    local common=(--qos 1 --size 64 --clients 16 --inflight 64 --subs 1
        --duration "$DURATION" --warmup "$WARMUP")
    case $1 in
        saturation) echo "${common[*]} --rate 0" ;;
        steady) echo "${common[*]} --rate $STEADY_RATE" ;;
        *) die "unknown scenario '$1'" ;;
    esac
}

# ---------------------------------------------------------------- main

command -v python3 >/dev/null || die "python3 is required (free ports, result parsing)"
for b in $BROKERS; do check_broker "$b"; done

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    log "building loadgen (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$HERE/.." && cargo build --release -q -p raftmq-benches --bin loadgen) || die "loadgen build failed"
fi
[[ -x "$LOADGEN" ]] || die "loadgen not found at $LOADGEN"

log "brokers: $BROKERS; rounds: $ROUNDS; scenarios: $SCENARIOS; ${DURATION}s + ${WARMUP}s warmup each; results in $WORK"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

for round in $(seq "$ROUNDS"); do
    for broker in $BROKERS; do
        for scen in $SCENARIOS; do
            dir="$WORK/run-$round-$broker-$scen"
            mkdir -p "$dir"
            port=$(free_port)
            port2=$(free_port)
            "start_$broker" "$port" "$port2" "$dir"
            wait_ready "$port" "$broker"
            sub_args=()
            if [[ -n "$SUB_PORT" ]]; then
                wait_ready "$SUB_PORT" "$broker"
                sub_args=(--sub-host "127.0.0.1:$SUB_PORT")
            fi
            # shellcheck disable=SC2046 # word splitting of the argument lists is intended
            set +e
            "$LOADGEN" bench --host "127.0.0.1:$port" "${sub_args[@]}" $(scenario_args "$scen") \
                --client-prefix "cmp${round}_${broker}" --json --quiet $LOADGEN_ARGS \
                >"$dir/result.json" 2>"$dir/loadgen.txt"
            rc=$?
            set -e
            stop_broker
            if [[ $rc -ne 0 && $rc -ne 2 ]] || [[ ! -s "$dir/result.json" ]]; then
                log "round $round $broker $scen: loadgen failed (exit $rc):"
                sed 's/^/    /' "$dir/loadgen.txt" >&2
                continue
            fi
            python3 - "$round" "$broker" "$scen" "$rc" "$dir/result.json" >>"$RESULTS" <<'EOF'
import json, sys
round_, broker, scen, rc, path = sys.argv[1:]
d = json.load(open(path))
d.update(round=int(round_), broker=broker, scenario=scen, exit=int(rc))
print(json.dumps(d))
EOF
            python3 - "$RESULTS" <<'EOF'
import json, sys
d = [json.loads(l) for l in open(sys.argv[1])][-1]
a, e = d["ack_latency_ms"], d["e2e_latency_ms"]
print(f"round {d['round']}  {d['broker']:<10} {d['scenario']:<10} "
      f"pub {d['published_rate']:>9.0f}/s  ack {d['acked_rate']:>9.0f}/s  recv {d['received_rate']:>9.0f}/s  "
      f"ack p50/p99 {a.get('p50', 0):.3f}/{a.get('p99', 0):.3f} ms  "
      f"e2e p50/p99 {e.get('p50', 0):.3f}/{e.get('p99', 0):.3f} ms  "
      f"lost {d['lost']} dup {d['duplicates']} errors {d['errors']}", flush=True)
EOF
        done
    done
done

[[ -s "$RESULTS" ]] || die "no successful runs"

python3 - "$RESULTS" "$BROKERS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
brokers = sys.argv[2].split()
scens = []
for r in rows:
    if r["scenario"] not in scens:
        scens.append(r["scenario"])

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def metric(r, key):
    if key.startswith("ack_") or key.startswith("e2e_"):
        h, q = key.split("_", 1)
        return r[h + "_latency_ms"].get(q)
    return r.get(key)

keys = ["published_rate", "acked_rate", "received_rate",
        "ack_p50", "ack_p99", "e2e_p50", "e2e_p99", "e2e_p999", "lost", "errors"]
meds = {}
print()
print("medians per broker (n = runs)")
hdr = f"{'scenario':<11}{'broker':<11}{'n':>3}" + "".join(f"{k:>15}" for k in keys)
print(hdr)
for s in scens:
    for b in brokers:
        rs = [r for r in rows if r["broker"] == b and r["scenario"] == s]
        if not rs:
            continue
        m = {k: med([metric(r, k) for r in rs]) for k in keys}
        meds[(s, b)] = m
        cells = "".join(f"{'-' if m[k] is None else round(m[k], 3):>15}" for k in keys)
        print(f"{s:<11}{b:<11}{len(rs):>3}{cells}")

for name in ("raftmq", "raftmq3"):
    if name not in brokers or "mosquitto" not in brokers:
        continue
    print()
    print(f"{name} / mosquitto (medians)")
    for s in scens:
        r, m = meds.get((s, name)), meds.get((s, "mosquitto"))
        if not r or not m:
            continue
        def ratio(k):
            return f"{r[k] / m[k]:.3f}" if r[k] and m[k] else "-"
        print(f"  {s:<11} throughput: acked {ratio('acked_rate')}  received {ratio('received_rate')}"
              f"   latency: ack p99 {ratio('ack_p99')}  e2e p50 {ratio('e2e_p50')}  e2e p99 {ratio('e2e_p99')}")
EOF
