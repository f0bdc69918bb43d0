//! Command line.

use clap::{ArgAction, Args, Parser, Subcommand};

const LONG_ABOUT: &str = "\
MQTT load generator in the style of emqtt-bench. It speaks MQTT 3.1.1 (or 5.0)
itself over raw TCP, so it can be pointed at any broker, and it keeps exact
per-message timestamps.

Modes and what they measure:
  pub    publishers only: offered, published and acked msg/s, and
         publish->PUBACK (QoS 1) / publish->PUBCOMP (QoS 2) latency.
  sub    subscribers only: received msg/s and end-to-end latency of messages
         sent by loadgen publishers on the SAME host (timestamps are
         CLOCK_MONOTONIC), plus duplicates and sequence gaps.
  conn   connection storm: connect latency (TCP connect + CONNECT->CONNACK)
         percentiles, failures, and connections dropped while held open.
  bench  subscribers + publishers in one process (the README numbers):
         published/acked/received msg/s, ack latency, end-to-end latency,
         lost (acked by the broker but never delivered), duplicates.
  sessions  creates persistent sessions subscribed to a filter and
         disconnects them, so they queue what is published while away.
  drain  reconnects persistent sessions (e.g. made by `sessions`, filled by
         `pub --count N`) and receives their backlog: time to the first
         message, drain msg/s, and which of the N sequence numbers never came.

Timing: with --rate R, publishers send on an open-loop timetable and latency is
measured from each message's INTENDED send time, so a stalled broker (or a full
inflight window) shows up as latency instead of silently lowering the load
(no coordinated omission). --rate 0 saturates: each publisher keeps --inflight
messages outstanding.

Output: a table (stdout), or with --json one JSON object on stdout and the table
on stderr. Progress lines go to stderr (--quiet silences them).

Exit status: 0 clean; 1 fatal (bad arguments, broker unreachable, connect or
subscribe refused); 2 the run completed but saw errors (e.g. broker
disconnects) or lost messages (drain: fewer than --expect distinct ones).";

#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about = "MQTT load generator: throughput, latency, loss for any broker", long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Subcommand, Debug)]
pub enum Mode {
    /// Publishers only: published/acked msg/s and publish->ack latency.
    #[command(
        long_about = "Publishers only. Measures offered, published and acked msg/s and \
        publish->PUBACK/PUBCOMP latency (from the intended send time). Payloads carry the \
        loadgen header, so a separate `loadgen sub` on the same host measures end-to-end latency."
    )]
    Pub(PubArgs),
    /// Subscribers only: received msg/s and end-to-end latency.
    #[command(
        long_about = "Subscribers only. Measures received msg/s and, for messages from \
        loadgen publishers on the same host, end-to-end latency from the publisher's intended \
        send time; also counts duplicates and gaps per publisher sequence."
    )]
    Sub(SubArgs),
    /// Connection storm: connect latency percentiles and failures.
    #[command(
        long_about = "Opens --clients connections at --rate per second (open loop), \
        measures connect latency (TCP connect + CONNECT->CONNACK) from each connection's \
        scheduled start, counts failures by kind, then holds the connections open for \
        --duration seconds and counts any the broker drops."
    )]
    Conn(ConnArgs),
    /// Subscribers + publishers in one process: throughput, latency, loss.
    #[command(
        long_about = "Starts --subs subscribers on --sub-host and waits for their SUBACKs, \
        then runs publishers as in `pub` against --host for --warmup + --duration seconds. \
        Every payload carries the intended send time and a per-publisher sequence number, so \
        the subscriber side measures end-to-end latency and detects loss (messages the broker \
        acknowledged but never delivered; meaningful at QoS>0 with subscribers that stayed \
        connected) and duplicates. After the run, subscribers get up to --drain seconds to \
        receive everything that was sent."
    )]
    Bench(BenchArgs),
    /// Create persistent sessions subscribed to a filter, then disconnect them.
    #[command(
        long_about = "Connects --clients sessions <prefix>_sub_<i> with clean session false \
        (MQTT 5: clean start false and --session-expiry), subscribes each to --topic at --qos, \
        waits for every SUBACK and disconnects. The sessions stay on the broker and queue what \
        is published to the filter while they are away; `drain` reconnects them. \
        --clean-session is ignored."
    )]
    Sessions(SessionsArgs),
    /// Reconnect persistent sessions and receive their backlog: first message, rate, loss.
    #[command(
        long_about = "Reconnects --clients sessions <prefix>_sub_<i> with clean session false \
        (no SUBSCRIBE: the session's own subscriptions deliver), retrying the connection for up \
        to --connect-retry seconds (e.g. while the broker restarts), then receives and \
        acknowledges every PUBLISH. Payloads are loadgen's (as `pub --count N` sends them): \
        each session must receive every sequence number 0..--expect-1; it stops when it has, \
        after --idle seconds without a PUBLISH, or at --timeout. Reports, per session and in \
        all: whether the session was present, time from this process's start (and as Unix ms) \
        to CONNACK and to the first PUBLISH, drain msg/s (distinct messages from CONNACK to the \
        last new one), duplicates, and the sequence numbers missing. --clean-session is ignored."
    )]
    Drain(DrainArgs),
}

fn parse_version(s: &str) -> Result<u8, String> {
    match s {
        "3.1.1" | "311" | "4" | "3" => Ok(4),
        "5" | "5.0" => Ok(5),
        _ => Err(format!("unsupported MQTT version '{s}' (use 3.1.1 or 5)")),
    }
}

/// Options shared by every mode.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Broker address, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub host: String,
    /// MQTT user name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// MQTT password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Client id prefix; ids are <prefix>_pub_<i>, <prefix>_sub_<i>, <prefix>_conn_<i>
    /// [default: loadgen_<pid>].
    #[arg(long)]
    pub client_prefix: Option<String>,
    /// Clean session (3.1.1) / clean start (5). `false` gives persistent sessions.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "true|false")]
    pub clean_session: bool,
    /// Keepalive in seconds (0 = none); a PINGREQ goes out after keepalive/2 of silence.
    #[arg(short = 'k', long, default_value_t = 60)]
    pub keepalive: u16,
    /// MQTT protocol version: 3.1.1 or 5.
    #[arg(short = 'V', long, default_value = "3.1.1", value_parser = parse_version)]
    pub mqtt_version: u8,
    /// MQTT 5 session expiry interval (s) sent when --clean-session false.
    #[arg(long, default_value_t = 3600)]
    pub session_expiry: u32,
    /// Seconds allowed for TCP connect + CONNACK (and for SUBACK).
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Publisher load shape (pub and bench).
#[derive(Args, Debug, Clone)]
pub struct LoadOpts {
    /// Number of publisher connections.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub clients: usize,
    /// Publish QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload bytes (at least 28: the loadgen header is stamped into every payload).
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,
    /// Max unacknowledged messages per publisher (QoS>0); capped by the
    /// broker's MQTT 5 Receive Maximum.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// Total offered msg/s across all publishers; 0 = as fast as the inflight
    /// window allows (saturation).
    #[arg(short = 'r', long, default_value_t = 0)]
    pub rate: u64,
    /// Topic; %i is replaced by the publisher index, %n by the message's
    /// sequence number (a new topic per message, e.g. to fill retained state).
    #[arg(short = 't', long, default_value = "loadgen/%i")]
    pub topic: String,
    /// Publish with the retain flag.
    #[arg(long)]
    pub retain: bool,
    /// Measured seconds (after warmup).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// After the run: seconds to wait for outstanding acks, and then for
    /// subscribers to receive everything sent.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

#[derive(Args, Debug, Clone)]
pub struct PubArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: LoadOpts,
    /// Publish exactly N messages in all, then wait up to --drain seconds for
    /// their acks and exit (--duration and --warmup are ignored; the rates
    /// are over the whole run). Publisher i sends a contiguous block of the
    /// sequence numbers 0..N-1, so a `drain --expect N` can tell which of
    /// them a subscriber never got. 0 = run for --duration.
    #[arg(short = 'n', long, default_value_t = 0)]
    pub count: u64,
}

#[derive(Args, Debug, Clone)]
pub struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of subscriber connections (each subscribes to the filter).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: usize,
    /// Topic filter.
    #[arg(short = 't', long, default_value = "loadgen/#")]
    pub topic: String,
    /// Subscription QoS.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Seconds to listen (after warmup).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to listen before measuring.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of connections to open.
    #[arg(short = 'c', long, default_value_t = 100)]
    pub clients: usize,
    /// New connections per second (0 = all at once).
    #[arg(short = 'r', long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to hold the connections open after the last attempt.
    #[arg(short = 'd', long, default_value_t = 0.0)]
    pub duration: f64,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub load: LoadOpts,
    /// Number of subscribers; each receives every message (fan-out).
    #[arg(long, default_value_t = 1)]
    pub subs: usize,
    /// Broker address for subscribers [default: --host].
    #[arg(long)]
    pub sub_host: Option<String>,
    /// Subscription filter [default: --topic with each %i level replaced by +].
    #[arg(long)]
    pub sub_topic: Option<String>,
    /// Subscription QoS [default: --qos].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub sub_qos: Option<u8>,
    /// Who must receive what, for loss accounting: fanout = every subscriber
    /// every message; p2p = subscriber i the messages of publisher i (use %i
    /// in --sub-topic); shared = each message once, by any subscriber (a
    /// $share/ filter).
    #[arg(long, value_enum, default_value_t = Pattern::Fanout)]
    pub pattern: Pattern,
}

/// Which subscribers a message is meant for (`bench --pattern`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Fanout,
    P2p,
    Shared,
}

#[derive(Args, Debug, Clone)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of persistent sessions.
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: usize,
    /// Topic filter each session subscribes to.
    #[arg(short = 't', long, default_value = "loadgen/#")]
    pub topic: String,
    /// Subscription QoS.
    #[arg(short = 'q', long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
}

#[derive(Args, Debug, Clone)]
pub struct DrainArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of sessions to drain (<prefix>_sub_0 .. <prefix>_sub_<c-1>).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub clients: usize,
    /// Sequence numbers each session must receive: 0..N-1 (as `pub --count N` sends).
    #[arg(short = 'n', long)]
    pub expect: u64,
    /// Count only messages of this loadgen run (`run_id` in `pub --json`); others are "stale".
    #[arg(long)]
    pub run_id: Option<u32>,
    /// Keep retrying the connection for this many seconds (0 = one attempt).
    #[arg(long, default_value_t = 0.0)]
    pub connect_retry: f64,
    /// Stop after this many seconds without a PUBLISH (counted from CONNACK).
    #[arg(long, default_value_t = 10.0)]
    pub idle: f64,
    /// Stop after this many seconds in all, complete or not.
    #[arg(long, default_value_t = 3600.0)]
    pub timeout: f64,
}
