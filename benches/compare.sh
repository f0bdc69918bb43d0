#!/usr/bin/env bash
# Compare MQTT brokers with loadgen (the README's comparison).
#
# For each of ROUNDS rounds, for each broker in BROKERS (alternating, so slow
# drift on a shared machine hits every broker alike), start a FRESH broker on
# free loopback ports and run two `loadgen bench` scenarios against it:
#   saturation: --qos 1 --size 64 --clients 16 --inflight 64 --rate 0 --subs 1
#   steady:     the same at --rate $STEADY_RATE (default 20000 msg/s)
# then print every run, the per-broker medians, and raftmq/peer ratios.
#
# Scenarios (SCENARIOS), named as emqtt-bench / mqttbs name them; each bench
# scenario prints delivered msg/s and p50/p99 end-to-end latency:
#   saturation      QoS 1, 16 publishers x 64 inflight -> 1 subscriber
#   steady          the same at --rate $STEADY_RATE
#   fanout-1-1k-q0  1 publisher at 1,000 msg/s -> 1,000 subscribers, QoS 0
#                   (1 M deliveries/s offered; at --rate 0 a QoS 0 publisher
#                   just fills its socket)
#   fanout-1-1k-q1  the same at QoS 1 (64 inflight)
#   fanin-1k-1      1,000 publishers (QoS 1, 4 inflight each) -> 1 subscriber
#   p2p-1k-1k       1,000 publishers, each to its own subscriber (QoS 1)
#   sharedsub-1k-5  1,000 publishers -> a shared subscription of 5 (QoS 1)
#   conn-15k        15,000 idle MQTT 3.1.1 connections: the broker's RSS
#                   before and with them, per connection, its descriptors,
#                   and connect p50/p99
#   storm-10k       10,000 new persistent sessions (clean session false) at
#                   STORM_RATE/s: connects/s achieved, CONNACK p50/p99
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
#   RUMQTTD_BIN     rumqttd 0.20 (broker "rumqttd")   [rumqttd on PATH]
#                   (cargo install rumqttd --version 0.20.0)
#   RMQTT_BIN       RMQTT's rmqttd (broker "rmqtt")   [rmqttd on PATH]
#                   (apt protobuf-compiler cmake; cargo install rmqttd)
#                   A peer that is not installed is skipped, saying so.
#   STORM_RATE      offered connects/s for storm-10k  [10000]
#   NO_BUILD=1      do not run cargo build for loadgen
#   OUT             keep JSON results and broker logs here [a temp dir, removed]
#   PROFILE_DIR     profile every raftmq/raftmq3 run with perf (cpu-clock,
#                   DWARF call graphs, all of the broker's processes, warmup
#                   included) and write a flamegraph per run there, named
#                   <broker>-<scenario>-r<round>.svg (needs perf, and
#                   inferno: cargo install inferno). Profiled runs are slower:
#                   quote throughput from unprofiled runs.
#   PERF_FREQ       samples per second for PROFILE_DIR    [499]
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
RUMQTTD_BIN=${RUMQTTD_BIN:-$(command -v rumqttd || true)}
RMQTT_BIN=${RMQTT_BIN:-$(command -v rmqttd || true)}
STORM_RATE=${STORM_RATE:-10000}
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
    # Its own cluster port too: the default (44053) is in the ephemeral
    # range, and a storm's 10,000 client ports in TIME_WAIT may hold it.
    "$RAFTMQ_BIN" start --node-id 1 --data-dir "$dir/data" --config "$dir/raftmq.toml" \
        --mqtt "127.0.0.1:$port" --http "127.0.0.1:$http" --cluster "127.0.0.1:$(free_port)" \
        >"$WORK/raftmq.log" 2>&1 &
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

# rumqttd 0.20: a v4 and a v5 listener, no delay between accepts, and room
# for the connection scenarios.
start_rumqttd() {
    local port=$1 port2=$2 dir=$3
    cat >"$dir/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
[v5.1]
name = "v5-1"
listen = "127.0.0.1:$port2"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
EOF
    "$RUMQTTD_BIN" --config "$dir/rumqttd.toml" >"$WORK/rumqttd.log" 2>&1 &
    BROKER_PID=$!
}

# RMQTT: its defaults, on our port.
# RMQTT (rmqttd 0.24): one TCP listener, anonymous, with room for the
# benchmark's inflight window and queues (its defaults allow 16 inflight and
# 1,000 queued messages per client).
start_rmqtt() {
    local port=$1 dir=$3
    cat >"$dir/rmqtt.toml" <<EOF
[listener.tcp.external]
addr = "127.0.0.1:$port"
allow_anonymous = true
max_connections = 1024000
max_handshaking_limit = 100000
max_inflight = 65535
max_mqueue_len = 10000000
backlog = 8192
nodelay = true
EOF
    (cd "$dir" && exec "$RMQTT_BIN" -f "$dir/rmqtt.toml" --id 1) >"$WORK/rmqtt.log" 2>&1 &
    BROKER_PID=$!
}

# Whether broker $1 can run here; a peer that is not installed is skipped.
check_broker() {
    case $1 in
        mosquitto) [[ -x "$MOSQUITTO_BIN" ]] || die "mosquitto not found at $MOSQUITTO_BIN (apt-get install mosquitto)" ;;
        raftmq|raftmq3) [[ -x "$RAFTMQ_BIN" ]] || die "raftmq binary not found at $RAFTMQ_BIN (cargo build --release --bin raftmq, set RAFTMQ_BIN, or BROKERS=mosquitto)" ;;
        rumqttd) [[ -n "$RUMQTTD_BIN" && -x "$RUMQTTD_BIN" ]] || {
            log "skipping rumqttd: not installed (cargo install rumqttd --version 0.20.0, or set RUMQTTD_BIN)"
            return 1
        } ;;
        rmqtt) [[ -n "$RMQTT_BIN" && -x "$RMQTT_BIN" ]] || {
            log "skipping rmqtt: not installed (apt-get install protobuf-compiler cmake; cargo install rmqttd; or set RMQTT_BIN)"
            return 1
        } ;;
        *) declare -F "start_$1" >/dev/null || die "unknown broker '$1' (no start_$1 function)" ;;
    esac
}

scenario_args() {
    local common=(--qos 1 --size 64 --clients 16 --inflight 64 --subs 1
        --duration "$DURATION" --warmup "$WARMUP")
    local t=(--size 64 --duration "$DURATION" --warmup "$WARMUP")
    case $1 in
        saturation) echo "${common[*]} --rate 0" ;;
        steady) echo "${common[*]} --rate $STEADY_RATE" ;;
        fanout-1-1k-q0) echo "${t[*]} --qos 0 --clients 1 --subs 1000 --rate 1000 --topic fan/1 --sub-topic fan/1" ;;
        fanout-1-1k-q1) echo "${t[*]} --qos 1 --clients 1 --inflight 64 --subs 1000 --rate 0 --topic fan/1 --sub-topic fan/1" ;;
        fanin-1k-1) echo "${t[*]} --qos 1 --clients 1000 --inflight 4 --subs 1 --rate 0 --topic in/%i --sub-topic in/+" ;;
        p2p-1k-1k) echo "${t[*]} --qos 1 --clients 1000 --inflight 4 --subs 1000 --rate 0 --topic p2p/%i --sub-topic p2p/%i --pattern p2p" ;;
        sharedsub-1k-5) echo "${t[*]} --qos 1 --clients 1000 --inflight 4 --subs 5 --rate 0 --topic sh/%i --sub-topic \$share/bench/sh/+ --pattern shared" ;;
        *) die "unknown scenario '$1'" ;;
    esac
}

# The resident set of the broker's processes, in KB.
broker_rss_kb() {
    local pid total=0 kb
    for pid in "$BROKER_PID" "${EXTRA_PIDS[@]}"; do
        kb=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# The broker's open descriptors.
broker_fds() {
    local pid total=0 n
    for pid in "$BROKER_PID" "${EXTRA_PIDS[@]}"; do
        n=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        total=$((total + n))
    done
    echo "$total"
}

# conn-15k: the broker's RSS with no clients, then while 15,000 idle
# connections are held, and its descriptors then; $2 gets loadgen's conn
# JSON with those figures added.
run_conn_scenario() {
    local port=$1 out=$2 n=15000 rss0 rss1 fds lg rc
    sleep 2
    rss0=$(broker_rss_kb)
    "$LOADGEN" conn --host "127.0.0.1:$port" -c "$n" --rate 5000 -d 20 \
        --client-prefix "idle$RANDOM" --json --quiet $LOADGEN_ARGS >"$out.conn" 2>"${out%.json}.txt" &
    lg=$!
    # Connecting takes n/5000 s; sample once they are all held.
    sleep $((n / 5000 + 10))
    rss1=$(broker_rss_kb)
    fds=$(broker_fds)
    wait "$lg"
    rc=$?
    python3 - "$out.conn" "$rss0" "$rss1" "$fds" >"$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rss0, rss1, fds = map(int, sys.argv[2:5])
d.update(rss_before_kb=rss0, rss_with_kb=rss1, fds=fds,
         per_conn_b=round((rss1 - rss0) * 1024 / max(d.get("connected", 0), 1)))
print(json.dumps(d))
PY
    return $rc
}

# storm-10k: 10,000 new persistent sessions, offered at STORM_RATE/s.
run_storm_scenario() {
    local port=$1 out=$2
    "$LOADGEN" conn --host "127.0.0.1:$port" -c 10000 --rate "$STORM_RATE" --clean-session false \
        --client-prefix "storm$RANDOM" --json --quiet $LOADGEN_ARGS >"$out" 2>"${out%.json}.txt"
}

# PROFILE_DIR: sample the broker's processes for the whole run ($1 = seconds).
PERF_PID=""
start_profile() {
    local secs=$1 dir=$2 pids
    [[ -n "${PROFILE_DIR:-}" && $broker == raftmq* ]] || return 0
    pids=$(IFS=,; echo "${BROKER_PID}${EXTRA_PIDS[*]:+,${EXTRA_PIDS[*]}}")
    perf record -e cpu-clock -F "${PERF_FREQ:-499}" --call-graph dwarf,16384 -p "$pids" \
        -o "$dir/perf.data" -- sleep "$secs" >"$dir/perf.txt" 2>&1 &
    PERF_PID=$!
}
finish_profile() {
    local dir=$1 svg
    [[ -n "$PERF_PID" ]] || return 0
    wait "$PERF_PID" || true
    PERF_PID=""
    mkdir -p "$PROFILE_DIR"
    svg="$PROFILE_DIR/$broker-$scen-r$round.svg"
    perf script -i "$dir/perf.data" 2>/dev/null | inferno-collapse-perf >"$dir/folded.txt"
    inferno-flamegraph --minwidth 1 --title "$broker $scen (round $round): on-CPU, perf cpu-clock ${PERF_FREQ:-499} Hz" \
        <"$dir/folded.txt" >"$svg"
    cp "$dir/folded.txt" "${svg%.svg}.folded"
    rm -f "$dir/perf.data"
    log "profile: $svg"
}

# ---------------------------------------------------------------- main

command -v python3 >/dev/null || die "python3 is required (free ports, result parsing)"
ACTIVE=""
for b in $BROKERS; do
    if check_broker "$b"; then ACTIVE="$ACTIVE $b"; fi
done
BROKERS=${ACTIVE# }
[[ -n "$BROKERS" ]] || die "no broker to run"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    log "building loadgen (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$HERE/.." && cargo build --release -q -p raftmq-benches --bin loadgen) || die "loadgen build failed"
fi
[[ -x "$LOADGEN" ]] || die "loadgen not found at $LOADGEN"
if [[ -n "${PROFILE_DIR:-}" ]]; then
    command -v perf >/dev/null || die "PROFILE_DIR needs perf (apt-get install linux-perf)"
    command -v inferno-flamegraph >/dev/null || die "PROFILE_DIR needs inferno (cargo install inferno)"
fi

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
            start_profile $((WARMUP + DURATION)) "$dir"
            case $scen in
                conn-15k) run_conn_scenario "$port" "$dir/result.json" ;;
                storm-10k) run_storm_scenario "$port" "$dir/result.json" ;;
                *) "$LOADGEN" bench --host "127.0.0.1:$port" "${sub_args[@]}" $(scenario_args "$scen") \
                    --client-prefix "cmp${round}_${broker}" --json --quiet $LOADGEN_ARGS \
                    >"$dir/result.json" 2>"$dir/loadgen.txt" ;;
            esac
            rc=$?
            finish_profile "$dir"
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
if d.get("mode") == "conn":
    c = d["connect_latency_ms"]
    extra = ""
    if "rss_with_kb" in d:
        extra = (f"RSS {d['rss_before_kb']/1024:.1f} -> {d['rss_with_kb']/1024:.1f} MB  "
                 f"per conn {d['per_conn_b']} B  fds {d['fds']}  ")
    print(f"round {d['round']}  {d['broker']:<10} {d['scenario']:<14} connected {d['connected']}  "
          f"failed {d['failed']}  dropped {d['dropped']}  {d['connect_rate']:.0f} connects/s  {extra}"
          f"connect p50/p99 {c.get('p50', 0):.3f}/{c.get('p99', 0):.3f} ms", flush=True)
    sys.exit(0)
a, e = d["ack_latency_ms"], d["e2e_latency_ms"]
print(f"round {d['round']}  {d['broker']:<10} {d['scenario']:<14} "
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
    if key.startswith("connect_p"):
        return r["connect_latency_ms"].get(key.split("_", 1)[1])
    if key.startswith("ack_") or key.startswith("e2e_"):
        h, q = key.split("_", 1)
        return r[h + "_latency_ms"].get(q)
    return r.get(key)

bench_keys = ["published_rate", "acked_rate", "received_rate",
              "ack_p50", "ack_p99", "e2e_p50", "e2e_p99", "e2e_p999", "lost", "errors"]
conn_keys = ["connected", "failed", "dropped", "connect_rate", "connect_p50", "connect_p99",
             "rss_before_kb", "rss_with_kb", "per_conn_b", "fds"]
meds = {}
print()
print("medians per broker (n = runs)")
for s in scens:
    srows = [r for r in rows if r["scenario"] == s]
    keys = conn_keys if srows and srows[0].get("mode") == "conn" else bench_keys
    print(f"{'scenario':<15}{'broker':<11}{'n':>3}" + "".join(f"{k:>15}" for k in keys))
    for b in brokers:
        rs = [r for r in srows if r["broker"] == b]
        if not rs:
            continue
        m = {k: med([metric(r, k) for r in rs]) for k in keys}
        meds[(s, b)] = m
        cells = "".join(f"{'-' if m[k] is None else round(m[k], 3):>15}" for k in keys)
        print(f"{s:<15}{b:<11}{len(rs):>3}{cells}")

def ratio(r, m, k):
    return f"{r[k] / m[k]:.3f}" if r.get(k) and m.get(k) else "-"

for name in ("raftmq", "raftmq3"):
    for peer in ("mosquitto", "rumqttd", "rmqtt"):
        if name not in brokers or peer not in brokers:
            continue
        print()
        print(f"{name} / {peer} (medians)")
        for s in scens:
            r, m = meds.get((s, name)), meds.get((s, peer))
            if not r or not m:
                continue
            if "connect_rate" in r:
                print(f"  {s:<15} connects/s {ratio(r, m, 'connect_rate')}  connect p99 {ratio(r, m, 'connect_p99')}"
                      f"  RSS per conn {ratio(r, m, 'per_conn_b')}")
            else:
                print(f"  {s:<15} throughput: acked {ratio(r, m, 'acked_rate')}  received {ratio(r, m, 'received_rate')}"
                      f"   latency: ack p99 {ratio(r, m, 'ack_p99')}  e2e p50 {ratio(r, m, 'e2e_p50')}  e2e p99 {ratio(r, m, 'e2e_p99')}")
EOF
