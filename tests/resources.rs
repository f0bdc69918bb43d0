//! Resource limits on a real broker. The disk alarm (`disk_free_limit`) on a
//! broker whose data directory is a small tmpfs: publishes fill it until the
//! alarm refuses them before any acknowledgement (MQTT 5: reason
//! QUOTA_EXCEEDED; MQTT 3: the connection closes), nothing acknowledged is
//! lost, subscribers keep draining, and publishing resumes by itself once
//! space is back. RocksDB's memory budget as `/metrics` shows it, and bad
//! sizes in the config file. The per-session quota (`max_queue_bytes`),
//! which refuses the same way.
//!
//! The tmpfs tests need root (mount): without it each says SKIPPED and passes.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use raftmq::codec::reason;

/// 96 MiB of disk, the alarm below 32 MiB free; a small RocksDB budget so
/// memtables and WAL files (at most 2 × 8 MiB) stay well inside the margin.
const TMPFS_MIB: u32 = 96;
const CONFIG: &str = "disk_free_limit = \"32MiB\"\n\
                      rocksdb_block_cache_size = \"4MiB\"\n\
                      rocksdb_write_buffer_size = \"8MiB\"\n";
/// Incompressible, so the disk fills as fast as the payloads say. Small
/// enough that a page of a queue read from disk is cut by its item count
/// (256) before its byte budget (1 MiB): a page cut by bytes is taken as
/// the end of the queue and the rest waits for the next live message.
const PAYLOAD: usize = 2 * 1024;
/// Bounds of a fill: far more than the disk holds, and a time limit.
const MAX_FILL: u32 = 100_000;
const FILL_TIME: Duration = Duration::from_secs(120);
const TOPIC: &str = "fill/x";

/// Payload `i`: its number in 8 digits, then noise.
fn payload(i: u32) -> Vec<u8> {
    let mut out = format!("{i:08}").into_bytes();
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < PAYLOAD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn id_of(p: &Publish) -> Option<u32> {
    std::str::from_utf8(p.payload.get(..8)?).ok()?.parse().ok()
}

/// What a fill got: the numbers acknowledged, and the one refused.
struct Fill {
    acked: Vec<u32>,
    refused: u32,
}

/// MQTT 5: publishes `from`, `from + 1`, ... at `qos` until one gets
/// QUOTA_EXCEEDED. Any other failure code fails the test.
fn fill_v5(c: &mut RawClient, qos: QoS, from: u32) -> Fill {
    let began = Instant::now();
    let mut acked = Vec::new();
    for i in from..from + MAX_FILL {
        assert!(
            began.elapsed() < FILL_TIME,
            "still accepting after {FILL_TIME:?}"
        );
        let ack = c
            .publish_with(publish_packet(TOPIC, qos, &payload(i)))
            .expect("an acknowledgement");
        match ack.reason {
            reason::SUCCESS => acked.push(i),
            reason::QUOTA_EXCEEDED => return Fill { acked, refused: i },
            other => panic!(
                "publish {i}: reason {other:#04x}, neither SUCCESS nor QUOTA_EXCEEDED ({} acknowledged before)",
                acked.len()
            ),
        }
    }
    panic!("{MAX_FILL} publishes accepted: the disk alarm never refused one");
}

/// A persistent MQTT 5 subscriber to `fill/#`, offline once this returns.
fn offline_subscriber(b: &Broker, id: &str) {
    let (mut s, _) = RawClient::v5(b.mqtt_port, id, true, Some(3600));
    s.subscribe("fill/#", QoS::AtLeastOnce);
    s.disconnect();
}

/// Connects the persistent subscriber again and receives (acknowledging
/// each) until every number in `wanted` arrived; returns every number
/// received. Fails if any is missing after a minute.
fn drain(b: &Broker, id: &str, wanted: &[u32]) -> (RawClient, BTreeSet<u32>) {
    let (mut s, ack) = RawClient::v5(b.mqtt_port, id, false, Some(3600));
    assert!(ack.session_present, "the subscriber's session is gone");
    let wanted: BTreeSet<u32> = wanted.iter().copied().collect();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.is_subset(&got) && Instant::now() < deadline {
        for p in s.collect_publishes(wanted.len(), Duration::from_secs(2)) {
            got.extend(id_of(&p));
        }
    }
    let missing: Vec<u32> = wanted.difference(&got).copied().collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages never delivered, the first: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    (s, got)
}

fn health(b: &Broker) -> serde_json::Value {
    let (code, body) = b.api("/health");
    assert_eq!(code, 200, "a disk alarm does not make /health fail: {body}");
    body
}

fn alarms(b: &Broker) -> Vec<String> {
    health(b)["alarms"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until /health reports the disk alarm: a publish refused
/// on a fresh reading of the disk may come up to one check interval before
/// the monitor raises the alarm.
fn wait_for_alarm(b: &Broker) {
    assert!(
        wait_until(Duration::from_secs(5), || alarms(b) == ["disk_free_limit"]),
        "a publish was refused but /health reports no disk alarm: {}",
        health(b)
    );
}

/// The value of one /metrics line (name with its labels), 0 if absent.
fn metric(b: &Broker, series: &str) -> u64 {
    let (status, text) = http_get(b.http_port, "/metrics", WAIT).expect("GET /metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn refused(b: &Broker, qos: u8) -> u64 {
    metric(
        b,
        &format!("raftmq_publishes_refused_total{{reason=\"disk_free_limit\",qos=\"{qos}\"}}"),
    )
}

/// Lines of the broker's log that contain `text`.
fn log_lines(b: &Broker, text: &str) -> usize {
    read_file(&b.log_path())
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

#[test]
fn mqtt5_publishes_past_disk_free_limit_get_quota_exceeded_and_every_acknowledged_one_is_delivered()
{
    let Some(b) = TmpfsBroker::start(TMPFS_MIB, CONFIG) else {
        return;
    };
    offline_subscriber(&b, "disk-sub5");
    // A QoS 2 message stored before the alarm, its release still to come,
    // from a publisher that goes away and comes back.
    let (mut q2, _) = RawClient::v5(b.mqtt_port, "disk-q2", true, Some(3600));
    let mut stored = publish_packet("fill/q2", QoS::ExactlyOnce, b"stored before the alarm");
    stored.packet_id = 7;
    q2.send(&Packet::Publish(stored.clone()));
    match q2.expect_packet(WAIT) {
        Packet::PubRec(r) => assert_eq!((r.packet_id, r.reason), (7, reason::SUCCESS)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    q2.disconnect();

    let (mut p, _) = RawClient::v5(b.mqtt_port, "disk-pub5", true, None);
    let first = fill_v5(&mut p, QoS::AtLeastOnce, 0);
    eprintln!(
        "{} QoS 1 publishes acknowledged, then #{} refused with QUOTA_EXCEEDED; {} bytes free",
        first.acked.len(),
        first.refused,
        b.free_bytes()
    );
    assert!(first.acked.len() > 100, "refused almost at once");
    assert!(refused(&b, 1) >= 1);
    wait_for_alarm(&b);
    // Refused on every check, logged once while it stays raised.
    let mut acked = first.acked;
    let mut refusals = vec![first.refused];
    let again = fill_v5(&mut p, QoS::AtLeastOnce, first.refused + 1);
    acked.extend(again.acked);
    refusals.push(again.refused);
    // QoS 2 too: PUBREC QUOTA_EXCEEDED, and nothing stored.
    let q2_fill = fill_v5(&mut p, QoS::ExactlyOnce, again.refused + 1);
    acked.extend(q2_fill.acked);
    refusals.push(q2_fill.refused);
    assert!(refused(&b, 2) >= 1);
    // QoS 0 while the alarm is raised: dropped and counted.
    let mut next = q2_fill.refused + 1;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let f = fill_v5(&mut p, QoS::AtLeastOnce, next);
            acked.extend(f.acked);
            refusals.push(f.refused);
            p.send(&Packet::Publish(publish_packet(
                TOPIC,
                QoS::AtMostOnce,
                &payload(f.refused + 1),
            )));
            refusals.push(f.refused + 1);
            next = f.refused + 2;
            p.ping();
            refused(&b, 0) >= 1
        }),
        "QoS 0 publishes under the alarm are not counted"
    );
    wait_for_alarm(&b);
    let h = health(&b);
    assert_eq!(h["accepting_publishes"], false, "{h}");
    assert_eq!(h["disk_free_limit_bytes"], 32 * 1024 * 1024, "{h}");
    // Below the limit, or too near it for one more message; under the
    // point where the alarm clears in any case.
    assert!(
        h["disk_free_bytes"].as_u64().unwrap() < 32 * 1024 * 1024 * 11 / 10,
        "{h}"
    );
    assert_eq!(
        metric(&b, "raftmq_alarm{alarm=\"disk_free_limit\"}"),
        1,
        "the alarm gauge"
    );
    assert_eq!(
        log_lines(&b, "disk alarm raised"),
        log_lines(&b, "disk alarm cleared") + 1,
        "every change is logged once"
    );

    // The stored QoS 2 message's publisher comes back: its resent PUBLISH
    // (recorded already) and its PUBREL store nothing new and are answered.
    let (mut q2, ack) = RawClient::v5(b.mqtt_port, "disk-q2", false, Some(3600));
    assert!(ack.session_present);
    stored.dup = true;
    q2.send(&Packet::Publish(stored));
    match q2.expect_packet(WAIT) {
        Packet::PubRec(r) => assert_eq!((r.packet_id, r.reason), (7, reason::SUCCESS)),
        other => panic!("expected PUBREC SUCCESS for the resent QoS 2 PUBLISH, got {other:?}"),
    }
    q2.send(&Packet::PubRel(pubresp(7)));
    match q2.expect_packet(WAIT) {
        Packet::PubComp(r) => assert_eq!((r.packet_id, r.reason), (7, reason::SUCCESS)),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }

    // The subscriber drains under the alarm: everything acknowledged
    // arrives, nothing refused does.
    let (mut s, got) = drain(&b, "disk-sub5", &acked);
    let delivered_refused: Vec<u32> = refusals
        .iter()
        .filter(|r| got.contains(r))
        .copied()
        .collect();
    assert!(
        delivered_refused.is_empty(),
        "refused publishes were delivered: {delivered_refused:?}"
    );
    eprintln!(
        "{} acknowledged messages delivered; {} refused, none delivered",
        acked.len(),
        refusals.len()
    );
    s.expect_no_publish(QUIET);
}

#[test]
fn mqtt3_publish_past_disk_free_limit_closes_the_connection_instead_of_acknowledging() {
    let Some(b) = TmpfsBroker::start(TMPFS_MIB, CONFIG) else {
        return;
    };
    offline_subscriber(&b, "disk-sub3");
    let began = Instant::now();
    let mut acked = Vec::new();
    let mut refusals = Vec::new();
    let mut i = 0u32;
    // Publish until the broker closes instead of acknowledging; then once
    // more on a new connection, which the alarm closes too.
    while refusals.len() < 2 {
        assert!(
            began.elapsed() < FILL_TIME,
            "still accepting after {FILL_TIME:?}"
        );
        let (mut p, _) = RawClient::v3(b.mqtt_port, "disk-pub3", true);
        loop {
            let mut publish = publish_packet(TOPIC, QoS::AtLeastOnce, &payload(i));
            publish.packet_id = p.pid();
            let pid = publish.packet_id;
            p.send(&Packet::Publish(publish));
            match p.recv(WAIT) {
                Recv::Packet(Packet::PubAck(a)) => {
                    assert_eq!(a.packet_id, pid);
                    acked.push(i);
                }
                Recv::Closed => {
                    refusals.push(i);
                    i += 1;
                    break;
                }
                other => panic!("publish {i}: expected PUBACK or a close, got {other:?}"),
            }
            i += 1;
            assert!(i < MAX_FILL, "the disk alarm never refused a publish");
        }
    }
    eprintln!(
        "{} MQTT 3 publishes acknowledged; the connection closed instead of acknowledging {:?}; {} bytes free",
        acked.len(),
        refusals,
        b.free_bytes()
    );
    assert!(acked.len() > 100, "refused almost at once");
    assert!(refused(&b, 1) >= 2, "each refused publish is counted");
    wait_for_alarm(&b);
    assert!(log_lines(&b, "closing the MQTT 3 connection instead of acknowledging") >= 2);
    let (s, got) = drain(&b, "disk-sub3", &acked);
    assert!(
        refusals.iter().all(|r| !got.contains(r)),
        "a publish whose connection was closed unanswered was delivered"
    );
    s.disconnect();
}

#[test]
fn publishing_resumes_by_itself_once_the_subscriber_has_drained_its_queue() {
    let Some(b) = TmpfsBroker::start(TMPFS_MIB, &format!("{CONFIG}{SYS_READER}")) else {
        return;
    };
    offline_subscriber(&b, "disk-subr");
    // $SYS subscribers hear of each change at once.
    let (mut sys, _) = RawClient::v5_sys(b.mqtt_port, "disk-sys");
    sys.subscribe("$SYS/1/alarms/disk_free_limit", QoS::AtMostOnce);
    assert_eq!(&sys.expect_publish(WAIT).payload[..], b"0");
    let (mut p, _) = RawClient::v5(b.mqtt_port, "disk-pubr", true, None);
    let fill = fill_v5(&mut p, QoS::AtLeastOnce, 0);
    wait_for_alarm(&b);
    assert_eq!(&sys.expect_publish(WAIT).payload[..], b"1");
    let full = b.free_bytes();
    // Subscribe, connect, disconnect and ping still work under the alarm.
    let (mut other, _) = RawClient::v5(b.mqtt_port, "disk-other", true, None);
    other.subscribe("other/#", QoS::AtLeastOnce);
    other.ping();
    other.disconnect();

    // The subscriber takes (and acknowledges) everything: the queue and the
    // messages are deleted, and compaction under the alarm frees the space.
    let (mut s, _) = drain(&b, "disk-subr", &fill.acked);
    let began = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || alarms(&b).is_empty()),
        "the alarm is still raised a minute after the queue drained ({} bytes free, {} at the refusal); log:\n{}",
        b.free_bytes(),
        full,
        b.log_tail(30)
    );
    eprintln!(
        "{} messages drained; alarm cleared {:?} later; {} bytes free (was {full})",
        fill.acked.len(),
        began.elapsed(),
        b.free_bytes()
    );
    assert!(log_lines(&b, "disk alarm cleared") >= 1);
    assert_eq!(&sys.expect_publish(WAIT).payload[..], b"0");
    assert_eq!(metric(&b, "raftmq_alarm{alarm=\"disk_free_limit\"}"), 0);
    assert_eq!(health(&b)["accepting_publishes"], true);

    // No restart: the same publisher's next message is stored and delivered.
    let next = fill.refused + 1;
    let ack = p
        .publish_with(publish_packet(TOPIC, QoS::AtLeastOnce, &payload(next)))
        .expect("PUBACK");
    assert_eq!(ack.reason, reason::SUCCESS);
    let got = s.collect_publishes(1, WAIT);
    assert_eq!(got.iter().filter_map(id_of).collect::<Vec<_>>(), [next]);
}

#[test]
fn rocksdb_memory_and_its_configured_budget_are_in_metrics() {
    let b = Broker::start_with_config(
        "rocksdb_block_cache_size = \"16MiB\"\nrocksdb_write_buffer_size = \"8MiB\"\n",
    );
    let (mut p, _) = RawClient::v5(b.mqtt_port, "mem-pub", true, None);
    p.publish(TOPIC, &payload(1), QoS::AtLeastOnce, false);
    assert_eq!(
        metric(&b, "raftmq_rocksdb_block_cache_limit_bytes"),
        16 * 1024 * 1024
    );
    assert_eq!(
        metric(&b, "raftmq_rocksdb_write_buffer_limit_bytes"),
        8 * 1024 * 1024
    );
    assert!(metric(&b, "raftmq_rocksdb_memtable_bytes") >= PAYLOAD as u64);
    assert!(metric(&b, "raftmq_rocksdb_block_cache_bytes") > 0);
    assert!(metric(&b, "raftmq_disk_free_bytes") > 0);
    assert_eq!(metric(&b, "raftmq_alarm{alarm=\"disk_free_limit\"}"), 0);
}

#[test]
fn a_bad_size_fails_startup_naming_the_key_and_its_line() {
    for (toml, key) in [
        ("disk_free_limit = \"plenty\"\n", "disk_free_limit"),
        ("disk_free_limit = -1\n", "disk_free_limit"),
        (
            "rocksdb_block_cache_size = \"1.5GB\"\n",
            "rocksdb_block_cache_size",
        ),
        (
            "rocksdb_write_buffer_size = \"1MiB\"\n",
            "rocksdb_write_buffer_size",
        ),
    ] {
        let text = format!("allow_anonymous = true\n{toml}");
        let (status, log) = Broker::run_expecting_exit(&text, Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{toml:?} accepted ({status:?}); log:\n{log}"
        );
        assert!(
            log.contains(key) && log.contains("line 2"),
            "{toml:?}: the error names neither the key nor its line:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------
// max_queue_bytes: a persistent session's queue quota
// ---------------------------------------------------------------------------

/// 1,000 payload bytes per session: ten messages of 100 bytes.
const QUOTA_CONFIG: &str = "max_queue_bytes = 1000\n";

#[test]
fn a_publish_past_a_sessions_max_queue_bytes_gets_quota_exceeded_and_is_not_delivered() {
    let b = Broker::start_with_config(QUOTA_CONFIG);
    offline_subscriber(&b, "quota-sub");
    let (mut p, _) = RawClient::v5(b.mqtt_port, "quota-pub", true, None);
    let reasons: Vec<u8> = (0..11u8)
        .map(|i| {
            let ack = p.publish_with(publish_packet("fill/quota", QoS::AtLeastOnce, &[i; 100]));
            ack.expect("a PUBACK").reason
        })
        .collect();
    let mut want = vec![reason::SUCCESS; 10];
    want.push(reason::QUOTA_EXCEEDED);
    assert_eq!(reasons, want);
    // QoS 2 is refused the same way, at PUBREC.
    let rec = p.publish_with(publish_packet("fill/quota", QoS::ExactlyOnce, &[11; 100]));
    assert_eq!(rec.expect("a PUBREC").reason, reason::QUOTA_EXCEEDED);

    // The subscriber gets the ten acknowledged, and nothing refused.
    let (mut s, ack) = RawClient::v5(b.mqtt_port, "quota-sub", false, Some(3600));
    assert!(ack.session_present);
    let got = s.collect_publishes(12, Duration::from_secs(2));
    let firsts: Vec<u8> = got.iter().map(|m| m.payload[0]).collect();
    assert_eq!(firsts, (0..10).collect::<Vec<u8>>());
    for m in &got {
        s.ack(m);
    }
    // Drained, the session takes publishes again (its acks commit first).
    let deadline = Instant::now() + WAIT;
    loop {
        let ack = p.publish_with(publish_packet("fill/quota", QoS::AtLeastOnce, &[12; 100]));
        match ack.expect("a PUBACK").reason {
            reason::SUCCESS => break,
            reason::QUOTA_EXCEEDED if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("after the drain: reason {other:#04x}"),
        }
    }
    assert_eq!(s.expect_publish(WAIT).payload[0], 12);
}

#[test]
fn an_mqtt3_publish_past_max_queue_bytes_closes_the_connection_instead_of_acknowledging() {
    let b = Broker::start_with_config(QUOTA_CONFIG);
    offline_subscriber(&b, "quota3-sub");
    let (mut p, _) = RawClient::v3(b.mqtt_port, "quota3-pub", true);
    for i in 0..10u8 {
        p.publish("fill/quota3", &[i; 100], QoS::AtLeastOnce, false);
    }
    p.send(&Packet::Publish(Publish {
        packet_id: 77,
        ..publish_packet("fill/quota3", QoS::AtLeastOnce, &[10; 100])
    }));
    let before_close = p.expect_closed(WAIT);
    assert!(
        !before_close
            .iter()
            .any(|x| matches!(x, Packet::PubAck(a) if a.packet_id == 77)),
        "the refused publish was acknowledged: {before_close:?}"
    );
}
