#!/usr/bin/env bash
# Cluster operations benchmarks on a local three-node raftmq cluster:
#
#   failover  Leader SIGKILL under QoS 1 load. Publishers (16 x 64 inflight,
#             64 B) on node 2, the subscriber on node 3, $RATE msg/s offered;
#             after $KILL_AT s the leader is SIGKILLed. Reports the longest
#             time without any PUBACK (loadgen's max_ack_gap_ms: the time
#             until publishes are acknowledged again), and lost messages.
#             Repeated $ROUNDS times, fresh cluster each time; prints medians.
#
#   restart   Fills the cluster with $SESSIONS persistent sessions and
#             $RETAINED retained messages, then SIGKILLs a follower and
#             restarts it, and then SIGKILLs all three and restarts them.
#             Reports the time from process start until /health answers 200
#             and until an MQTT client gets its CONNACK.
#
# Usage: bash benches/cluster-ops.sh [failover] [restart]
# Environment: ROUNDS [3], RATE [10000], DURATION [10], KILL_AT [5],
#   SESSIONS [100000], RETAINED [100000], OUT (keep logs), NO_BUILD=1,
#   CARGO_TARGET_DIR [$HOME/.cache/raftmq-target], RAFTMQ_BIN.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
DURATION=${DURATION:-10}
KILL_AT=${KILL_AT:-5}
SESSIONS=${SESSIONS:-100000}
RETAINED=${RETAINED:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/raftmq-target}
RAFTMQ_BIN=${RAFTMQ_BIN:-$CARGO_TARGET_DIR/release/raftmq}
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WHAT=${*:-failover restart}

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/raftmq-cluster-ops.XXXXXX"); KEEP=0
fi

declare -A PID MQTT HTTP CLUS
cleanup() {
    local rc=$? i
    for i in 1 2 3; do
        [[ -n "${PID[$i]:-}" ]] && kill -9 "${PID[$i]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [[ $KEEP == 0 ]] && rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "cluster-ops.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
now_ms() { date +%s%3N; }

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    log "building raftmq and loadgen"
    (cd "$HERE/.." && cargo build --release -q -p raftmq -p raftmq-benches --bin raftmq --bin loadgen) || die "build failed"
fi

# start_node I DIR [JOIN_PORT]
start_node() {
    local i=$1 dir=$2 join=()
    [[ -n "${3:-}" ]] && join=(--join "127.0.0.1:$3")
    mkdir -p "$dir/node$i"
    RAFTMQ_COOKIE=bench "$RAFTMQ_BIN" start --node-id "$i" --data-dir "$dir/node$i" \
        --config "$dir/raftmq.toml" --mqtt "127.0.0.1:${MQTT[$i]}" --http "127.0.0.1:${HTTP[$i]}" \
        --cluster "127.0.0.1:${CLUS[$i]}" "${join[@]}" >>"$dir/node$i.log" 2>&1 &
    PID[$i]=$!
}

healthy() { curl -fsS -o /dev/null -m 1 "http://127.0.0.1:$1/health" 2>/dev/null; }

wait_healthy() {
    local port=$1
    for _ in $(seq 1200); do
        healthy "$port" && return 0
        sleep 0.05
    done
    die "node on HTTP port $port not healthy within 60 s"
}

connack() { "$LOADGEN" conn --host "127.0.0.1:$1" -c 1 --quiet --connect-timeout 1 >/dev/null 2>&1; }

start_cluster() {
    local dir=$1 i
    mkdir -p "$dir"
    printf 'max_inflight_messages = 0\nmax_online_messages = -1\nmax_offline_messages = -1\n' >"$dir/raftmq.toml"
    for i in 1 2 3; do MQTT[$i]=$(free_port); HTTP[$i]=$(free_port); CLUS[$i]=$(free_port); done
    start_node 1 "$dir"; wait_healthy "${HTTP[1]}"
    start_node 2 "$dir" "${CLUS[1]}"; wait_healthy "${HTTP[2]}"
    start_node 3 "$dir" "${CLUS[1]}"; wait_healthy "${HTTP[3]}"
}

stop_cluster() {
    local i
    for i in 1 2 3; do
        [[ -n "${PID[$i]:-}" ]] && kill -9 "${PID[$i]}" 2>/dev/null || true
        wait "${PID[$i]}" 2>/dev/null || true
        PID[$i]=""
    done
}

leader_of() {
    curl -fsS -m 2 "http://127.0.0.1:$1/api/v1/cluster/show" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'
}

failover() {
    local round gaps=() lost=()
    for round in $(seq "$ROUNDS"); do
        local dir="$WORK/failover-$round"
        start_cluster "$dir"
        "$LOADGEN" bench --host "127.0.0.1:${MQTT[2]}" --sub-host "127.0.0.1:${MQTT[3]}" \
            --qos 1 --size 64 --clients 16 --inflight 64 --subs 1 --rate "$RATE" \
            --duration "$DURATION" --warmup 2 --drain 10 --client-prefix "fo$round" --json --quiet \
            >"$dir/result.json" 2>"$dir/loadgen.txt" &
        local lg=$!
        sleep "$((KILL_AT + 2))"
        local leader
        leader=$(leader_of "${HTTP[2]}")
        local t0
        t0=$(now_ms)
        kill -9 "${PID[$leader]}"
        wait "${PID[$leader]}" 2>/dev/null || true
        PID[$leader]=""
        # Detection: first /health 200 of a survivor with a new leader.
        local newl=""
        while [[ -z "$newl" || "$newl" == "None" || "$newl" == "$leader" ]]; do
            newl=$(leader_of "${HTTP[2]}" 2>/dev/null || echo "")
            sleep 0.02
        done
        local t1
        t1=$(now_ms)
        wait "$lg" || true
        python3 - "$dir/result.json" "$round" "$leader" "$newl" "$((t1 - t0))" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"round {sys.argv[2]}: killed leader {sys.argv[3]}, new leader {sys.argv[4]} seen by node 2 after {sys.argv[5]} ms; "
      f"max PUBACK gap {d['max_ack_gap_ms']:.0f} ms; acked {d['acked']} lost {d['lost']} dup {d['duplicates']} "
      f"ack p99 {d['ack_latency_ms'].get('p99', 0):.1f} ms errors {d['errors']}", flush=True)
EOF
        gaps+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_ack_gap_ms"])' "$dir/result.json")")
        lost+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lost"])' "$dir/result.json")")
        stop_cluster
    done
    python3 -c 'import statistics,sys; g=[float(x) for x in sys.argv[1].split()]; l=[int(x) for x in sys.argv[2].split()]; print(f"failover: median max PUBACK gap {statistics.median(g):.0f} ms (all: {[round(x) for x in g]}); lost total {sum(l)}")' "${gaps[*]}" "${lost[*]}"
}

restart() {
    # Batches of 5,000 held connections (loadgen uses two descriptors each)
    # stay under a 20,000 open-files limit.
    local dir="$WORK/restart" b per=$((SESSIONS / 20))
    start_cluster "$dir"
    log "filling: $SESSIONS persistent sessions"
    for b in $(seq 20); do
        "$LOADGEN" conn --host "127.0.0.1:${MQTT[$(( (b % 3) + 1 ))]}" -c "$per" -r 5000 \
            --clean-session false --client-prefix "sess$b" --quiet >/dev/null 2>"$dir/fill-sess-$b.txt" \
            || die "session fill failed: $(tail -3 "$dir/fill-sess-$b.txt")"
    done
    log "filling: $RETAINED retained messages"
    "$LOADGEN" pub --host "127.0.0.1:${MQTT[2]}" --qos 1 --retain -t 'ret/%i/%n' -c 10 --inflight 64 \
        --rate 20000 --warmup 0 --duration "$(python3 -c "print($RETAINED / 20000)")" --quiet \
        >/dev/null 2>"$dir/fill-ret.txt" || true
    sleep 2
    curl -fsS "http://127.0.0.1:${HTTP[3]}/api/v1/status" | tee "$dir/status-before.json"; echo
    du -sh "$dir"/node3 | sed 's/^/data dir of node 3: /'

    log "restart of one follower (node 3)"
    kill -9 "${PID[3]}"; wait "${PID[3]}" 2>/dev/null || true
    local t0 t1 t2
    t0=$(now_ms); start_node 3 "$dir"
    until healthy "${HTTP[3]}"; do sleep 0.02; done; t1=$(now_ms)
    until connack "${MQTT[3]}"; do sleep 0.02; done; t2=$(now_ms)
    echo "follower restart: /health 200 after $((t1 - t0)) ms, first CONNACK after $((t2 - t0)) ms"
    curl -fsS "http://127.0.0.1:${HTTP[3]}/api/v1/status"; echo

    log "restart of the whole cluster"
    stop_cluster
    t0=$(now_ms)
    start_node 1 "$dir"; start_node 2 "$dir"; start_node 3 "$dir"
    until healthy "${HTTP[1]}" && healthy "${HTTP[2]}" && healthy "${HTTP[3]}"; do sleep 0.02; done; t1=$(now_ms)
    until connack "${MQTT[1]}"; do sleep 0.02; done; t2=$(now_ms)
    echo "whole-cluster restart: all /health 200 after $((t1 - t0)) ms, first CONNACK after $((t2 - t0)) ms"
    curl -fsS "http://127.0.0.1:${HTTP[1]}/api/v1/status"; echo
    stop_cluster
}

for w in $WHAT; do
    case $w in
        failover) failover ;;
        restart) restart ;;
        *) die "unknown benchmark '$w' (failover, restart)" ;;
    esac
done
