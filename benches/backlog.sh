#!/usr/bin/env bash
# Backlog benchmark: what a large backlog queued for offline persistent
# sessions costs one raftmq node (default configuration: no queue limits), in
# memory while it fills, across a SIGKILL and restart, and while it drains.
#
#   fan5  $FAN_SESSIONS persistent sessions (MQTT 3.1.1, clean session false)
#         subscribe at QoS 1 to one topic and disconnect; then $FAN_MESSAGES
#         QoS 1 messages of $SIZE bytes are published to it, so each is
#         queued for every session (its payload is stored once).
#   deep  The same on a fresh data directory with one session and
#         $DEEP_MESSAGES messages.
#
# Each phase: fill (loadgen pub --count: fill msg/s acknowledged; the
# broker's VmRSS sampled every 200 ms into rss-*.tsv: its peak during the fill,
# with the kernel's VmHWM as a floor as the broker started with the phase, and
# its value at the end), SIGKILL, restart on the same data directory (time
# from process start until /health answers 200, and until a reconnecting
# persistent subscriber receives its first PUBLISH; RSS once healthy), then
# that subscriber (session 0) drains its queue fully (loadgen drain: msg/s
# from CONNACK to the last message; every sequence number 0..N-1 must arrive:
# "lost" are the missing ones, duplicates are counted apart; peak RSS from the
# restart until drained).
# Prints a summary table with the targets beside the numbers (RSS <= 256 MB,
# restart to serving <= 2 s, drain >= 50,000 msg/s), and writes it to
# $OUT/summary.md when OUT is set. Exit status 1 if a run failed or lost
# messages; missed targets are only reported.
#
# Disk: the data directory holds the Raft log and the queued messages; allow
# about 5 x messages x SIZE (today's binary, fan5 defaults: 4.4 GB; deep:
# ~50 GB). The work dir is $OUT, else a temp dir under $TMPDIR (default
# /tmp). A phase's data directory is deleted when it ends unless KEEP_DATA=1.
#
# Usage: bash benches/backlog.sh [fan5] [deep]
# Environment: FAN_MESSAGES [1000000], FAN_SESSIONS [5], DEEP_MESSAGES
#   [10000000], SIZE [1024], PUBLISHERS [8] (x INFLIGHT [64] in flight each),
#   MQTT_VERSION [3.1.1] (or 5: session expiry 3600 s), DRAIN_IDLE [30] (s
#   without a message before a drain gives up), OUT (keep logs, JSON results,
#   RSS samples and summary.md), KEEP_DATA=1, NO_BUILD=1,
#   CARGO_TARGET_DIR [$HOME/.cache/raftmq-target], RAFTMQ_BIN, TMPDIR,
#   CONFIG (a broker config file instead of the defaults, e.g. to check that
#   max_offline_messages = 1000 shows up as lost messages).
set -euo pipefail

FAN_MESSAGES=${FAN_MESSAGES:-1000000}
FAN_SESSIONS=${FAN_SESSIONS:-5}
DEEP_MESSAGES=${DEEP_MESSAGES:-10000000}
SIZE=${SIZE:-1024}
PUBLISHERS=${PUBLISHERS:-8}
INFLIGHT=${INFLIGHT:-64}
MQTT_VERSION=${MQTT_VERSION:-3.1.1}
DRAIN_IDLE=${DRAIN_IDLE:-30}
KEEP_DATA=${KEEP_DATA:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/raftmq-target}
RAFTMQ_BIN=${RAFTMQ_BIN:-$CARGO_TARGET_DIR/release/raftmq}
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WHAT=${*:-fan5 deep}

# Targets (printed beside the numbers).
RSS_TARGET_MB=256
SERVING_TARGET_S=2
DRAIN_TARGET=50000

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"; WORK=$(cd "$OUT" && pwd); KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/raftmq-backlog.XXXXXX"); KEEP=0
fi

BPID=""
SAMPLER=""
DRAINER=""
cleanup() {
    local rc=$? p
    for p in "$DRAINER" "$SAMPLER" "$BPID"; do
        [[ -n "$p" ]] && kill -9 "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [[ $KEEP == 0 ]] && rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "backlog.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }

command -v python3 >/dev/null || die "python3 is required (free ports, JSON results, the summary)"
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    log "building raftmq and loadgen (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$HERE/.." && cargo build --release -q -p raftmq -p raftmq-benches --bin raftmq --bin loadgen) \
        || die "build failed"
fi
[[ -x "$RAFTMQ_BIN" ]] || die "raftmq binary not found at $RAFTMQ_BIN"
[[ -x "$LOADGEN" ]] || die "loadgen not found at $LOADGEN"
if [[ -n "${CONFIG:-}" ]]; then
    CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")
    [[ -r "$CONFIG" ]] || die "CONFIG $CONFIG is not readable"
fi

# start_broker DIR: one node with the default configuration (no config file,
# unless CONFIG) on the ports of the current phase; sets BPID.
start_broker() {
    local dir=$1 config=()
    [[ -n "${CONFIG:-}" ]] && config=(--config "$CONFIG")
    mkdir -p "$dir/data"
    RAFTMQ_COOKIE=bench "$RAFTMQ_BIN" start --node-id 1 --data-dir "$dir/data" \
        --mqtt "127.0.0.1:$MQTT" --http "127.0.0.1:$HTTP" --cluster "127.0.0.1:$CLUS" \
        "${config[@]}" >>"$dir/broker.log" 2>&1 &
    BPID=$!
}

kill_broker() {
    [[ -n "$BPID" ]] && kill -9 "$BPID" 2>/dev/null || true
    wait "$BPID" 2>/dev/null || true
    BPID=""
    [[ -n "$SAMPLER" ]] && wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
}

healthy() { curl -fsS -o /dev/null -m 1 "http://127.0.0.1:$HTTP/health" 2>/dev/null; }

# wait_healthy DIR: until /health answers 200 (the broker must stay alive).
wait_healthy() {
    local dir=$1 deadline=$(( $(now_ms) + 600000 ))
    until healthy; do
        kill -0 "$BPID" 2>/dev/null || die "the broker exited; its log: $dir/broker.log
$(tail -n 20 "$dir/broker.log")"
        (( $(now_ms) < deadline )) || die "broker not healthy within 600 s"
        sleep 0.02
    done
}

# VmRSS of PID in kB (empty once it has exited); hwm_kb: its peak so far (VmHWM).
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

# sample_rss PID FILE: "unix_ms rss_kB" every 200 ms while PID runs; sets SAMPLER.
sample_rss() {
    local pid=$1 file=$2
    (
        while kb=$(rss_kb "$pid") && [[ -n "$kb" ]]; do
            echo "$(now_ms) $kb"
            sleep 0.2
        done
    ) >>"$file" &
    SAMPLER=$!
}

# peak_mb FILE FROM_MS TO_MS HWM_KB: the largest sample in [FROM, TO], or the
# kernel's high-water mark HWM_KB if larger (a window that starts with the
# process: VmHWM is its exact peak, which 200 ms samples can miss), in MB.
peak_mb() {
    awk -v a="$2" -v b="$3" -v m="${4:-0}" '$1 >= a && $1 <= b && $2 > m {m = $2} END {printf "%.0f", m / 1024}' "$1"
}

mb() { awk -v k="${1:-0}" 'BEGIN {printf "%.0f", k / 1024}'; }
secs() { awk -v ms="$1" 'BEGIN {printf "%.2f", ms / 1000}'; }

# phase NAME SESSIONS MESSAGES
phase() {
    local name=$1 sessions=$2 messages=$3
    local dir="$WORK/$name" topic="backlog/$name" rc
    mkdir -p "$dir"
    MQTT=$(free_port); HTTP=$(free_port); CLUS=$(free_port)
    local need_mb=$(( messages * SIZE * 5 / 1048576 )) avail_mb
    avail_mb=$(df -Pm "$dir" | awk 'NR == 2 {print $4}')
    (( avail_mb > need_mb )) || log "warning: $name may need ~$need_mb MB of disk; $avail_mb MB free under $dir"

    log "$name: $sessions persistent session(s), $messages QoS 1 messages of $SIZE B (work dir $dir)"
    start_broker "$dir"
    wait_healthy "$dir"
    sample_rss "$BPID" "$dir/rss-fill.tsv"
    local common=(--host "127.0.0.1:$MQTT" -V "$MQTT_VERSION" --session-expiry 3600)
    "$LOADGEN" sessions "${common[@]}" -c "$sessions" -t "$topic" -q 1 --client-prefix "$name" \
        --json --quiet >"$dir/sessions.json" 2>"$dir/sessions.txt" \
        || die "$name: creating the sessions failed: $(tail -3 "$dir/sessions.txt")"

    local t_fill0 t_fill1
    t_fill0=$(now_ms)
    set +e
    "$LOADGEN" pub "${common[@]}" --count "$messages" -c "$PUBLISHERS" --inflight "$INFLIGHT" -q 1 \
        -s "$SIZE" -t "$topic" --client-prefix "$name-pub" --drain 120 --json \
        >"$dir/fill.json" 2>"$dir/fill.txt"
    rc=$?
    set -e
    t_fill1=$(now_ms)
    local rss_fill_end hwm_fill
    rss_fill_end=$(mb "$(rss_kb "$BPID")")
    hwm_fill=$(hwm_kb "$BPID")
    [[ $rc == 0 ]] || die "$name: the fill did not get every message acknowledged (exit $rc): $(tail -5 "$dir/fill.txt")"
    local fill_rate peak_fill disk_mb
    fill_rate=$(json "$dir/fill.json" acked_rate)
    peak_fill=$(peak_mb "$dir/rss-fill.tsv" "$t_fill0" "$t_fill1" "$hwm_fill")
    disk_mb=$(du -sm "$dir/data" | awk '{print $1}')
    log "$name: filled at $fill_rate msg/s in $(secs $((t_fill1 - t_fill0))) s; RSS peak $peak_fill MB, at the end $rss_fill_end MB; data dir $disk_mb MB"

    log "$name: SIGKILL and restart"
    kill_broker
    local t0 t_health rss_health
    t0=$(now_ms)
    start_broker "$dir"
    sample_rss "$BPID" "$dir/rss-restart.tsv"
    "$LOADGEN" drain "${common[@]}" -c 1 --expect "$messages" --client-prefix "$name" \
        --connect-retry 600 --idle "$DRAIN_IDLE" --json --quiet \
        >"$dir/drain.json" 2>"$dir/drain.txt" &
    DRAINER=$!
    wait_healthy "$dir"
    t_health=$(now_ms)
    rss_health=$(mb "$(rss_kb "$BPID")")
    log "$name: /health 200 after $(secs $((t_health - t0))) s, RSS $rss_health MB; draining session ${name}_sub_0"
    set +e
    wait "$DRAINER"
    rc=$?
    set -e
    DRAINER=""
    local t_drained hwm_drain
    t_drained=$(now_ms)
    hwm_drain=$(hwm_kb "$BPID")
    [[ -s "$dir/drain.json" ]] || die "$name: drain failed (exit $rc): $(tail -5 "$dir/drain.txt")"
    local peak_drain first_ms
    peak_drain=$(peak_mb "$dir/rss-restart.tsv" "$t0" "$t_drained" "$hwm_drain")
    first_ms=$(json "$dir/drain.json" first_message_unix_ms)
    sed 's/^/    /' "$dir/drain.txt" >&2
    kill_broker
    [[ "$KEEP_DATA" == 1 ]] || rm -rf "$dir/data"

    python3 - "$WORK/rows.jsonl" "$dir/fill.json" "$dir/drain.json" <<EOF
import json, sys
fill, drain = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
first = "$first_ms"
row = dict(phase="$name", sessions=$sessions, messages=$messages,
           fill_rate=fill["acked_rate"], peak_fill_mb=$peak_fill, rss_fill_end_mb=$rss_fill_end,
           disk_mb=$disk_mb, health_s=($t_health - $t0) / 1000,
           first_delivery_s=(float(first) - $t0) / 1000 if first else None,
           rss_health_mb=$rss_health, peak_drain_mb=$peak_drain,
           drain_rate=drain["drain_rate"], received=drain["distinct"],
           lost=drain["missing"], duplicates=drain["duplicates"],
           session_present=drain["sessions_present"] == 1, drain_exit=$rc)
open(sys.argv[1], "a").write(json.dumps(row) + "\n")
EOF
}

: >"$WORK/rows.jsonl"
for w in $WHAT; do
    case $w in
        fan5) phase fan5 "$FAN_SESSIONS" "$FAN_MESSAGES" ;;
        deep) phase deep 1 "$DEEP_MESSAGES" ;;
        *) die "unknown phase '$w' (fan5, deep)" ;;
    esac
done

python3 - "$WORK/rows.jsonl" "$RSS_TARGET_MB" "$SERVING_TARGET_S" "$DRAIN_TARGET" "$SIZE" \
    "${OUT:+$WORK/summary.md}" "${CONFIG:+config $CONFIG}" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rss_t, serve_t, drain_t, size = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
out = sys.argv[6] if len(sys.argv) > 6 else ""

def mark(ok):
    return " ✓" if ok else " ✗"

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)

def rss(v):
    return num(v) + mark(v <= rss_t)

def serve(v):
    return "-" if v is None else f"{v:.2f}" + mark(v <= serve_t)

cols = ["phase", "sessions", "messages", "fill msg/s", "peak RSS fill MB", "RSS end of fill MB",
        "data dir MB", "restart→health s", "restart→first delivery s", "RSS after restart MB",
        "peak RSS restart+drain MB", "drain msg/s", "lost", "duplicates"]
config = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] else "default configuration"
lines = [f"Backlog on one raftmq node, {config}, QoS 1, {size} B payloads",
         "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
for r in rows:
    cells = [r["phase"], str(r["sessions"]), num(r["messages"]), num(r["fill_rate"]),
             rss(r["peak_fill_mb"]), rss(r["rss_fill_end_mb"]), num(r["disk_mb"]),
             serve(r["health_s"]), serve(r["first_delivery_s"]), rss(r["rss_health_mb"]),
             rss(r["peak_drain_mb"]), num(r["drain_rate"]) + mark(r["drain_rate"] >= drain_t),
             num(r["lost"]) + mark(r["lost"] == 0) + ("" if r["session_present"] else " (session lost)"),
             num(r["duplicates"])]
    lines.append("| " + " | ".join(cells) + " |")
target = ["target", "", "", "", f"≤ {rss_t:.0f}", f"≤ {rss_t:.0f}", "", f"≤ {serve_t:g}",
          f"≤ {serve_t:g}", f"≤ {rss_t:.0f}", f"≤ {rss_t:.0f}", f"≥ {drain_t:,.0f}", "0", ""]
lines.append("| " + " | ".join(target) + " |")
lines += ["", "RSS: the broker's VmRSS, sampled every 200 ms. Lost: sequence numbers the drained "
          "session never received (acknowledged to the publisher, all of them). Drain msg/s: "
          "distinct messages from the subscriber's CONNACK to its last message."]
text = "\n".join(lines) + "\n"
print()
print(text, end="")
if out:
    open(out, "w").write(text)
bad = [r["phase"] for r in rows if r["lost"] or not r["session_present"] or r["drain_exit"] != 0]
if bad:
    print(f"FAILED: {', '.join(bad)} lost messages or the drain failed", file=sys.stderr)
    sys.exit(1)
EOF
