//! Soak: acknowledged messages survive repeated SIGKILL under load.
//!
//! Publishers (QoS 1 and 2) and persistent subscribers (3.1.1 and 5) keep
//! traffic flowing while the broker is killed and restarted several times;
//! every client reconnects and resumes as a real one would. Afterwards every
//! acknowledged message has reached every subscriber it matches, QoS 2 was
//! delivered exactly once, nothing unsent arrived, every session resumed, and
//! subscriptions and retained messages are still there. Runs up to a minute.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// SIGKILL/restart cycles in the load test.
const KILLS: u32 = 5;

/// The persistent subscribers' client ids.
const SUBSCRIBERS: [&str; 3] = ["dur-sub-q1", "dur-sub-q2", "dur-sub-v5"];

/// Queue limits high enough that nothing is dropped by policy during load.
const NO_DROP_CONFIG: &str = "max_online_messages = 1000000\nmax_offline_messages = -1\n";

#[derive(Default)]
struct Ledger {
    /// Payloads whose PUBACK (QoS 1) / PUBCOMP (QoS 2) the publisher got.
    acked: HashMap<u8, HashSet<String>>,
    /// Every payload a publisher put on the wire.
    sent: HashSet<String>,
    /// Deliveries to the application, per subscriber: payload -> count.
    received: HashMap<String, HashMap<String, u32>>,
    /// Reconnects whose CONNACK did not resume the session.
    lost_sessions: Vec<String>,
    connects: HashMap<String, u32>,
}

struct Shared {
    port: u16,
    ledger: Mutex<Ledger>,
    stop_publishing: AtomicBool,
    stop_subscribing: AtomicBool,
    deadline: Instant,
}

impl Shared {
    /// Messages acknowledged so far, QoS 1 and 2 together.
    fn acked(&self) -> usize {
        self.ledger
            .lock()
            .unwrap()
            .acked
            .values()
            .map(|s| s.len())
            .sum()
    }

    /// Lets load build up (bounded): waits for 250 more acknowledgements.
    fn wait_for_more_acks(&self) {
        let before = self.acked();
        wait_until(Duration::from_secs(5), || self.acked() >= before + 250);
    }

    /// Waits (bounded) until every subscriber has reconnected after `kills`
    /// kills, so the next kill finds each of them connected to the broker
    /// that is running now. Without it a fast broker reaches 250 more
    /// acknowledgements while a subscriber is still between connect
    /// attempts, and two kills pass while it is away. A subscriber that
    /// never comes back fails the reconnect assertion at the end.
    fn wait_for_subscribers(&self, kills: u32) {
        wait_until(Duration::from_secs(10), || {
            let l = self.ledger.lock().unwrap();
            SUBSCRIBERS
                .iter()
                .all(|id| l.connects.get(*id).copied().unwrap_or(0) >= kills)
        });
    }
}

/// Connects (persistent session), retrying while the broker is down. Records
/// a lost session when a reconnect does not find the session.
fn connect_retrying(
    sh: &Shared,
    conn: &Connect,
    proto: Protocol,
    first: &mut bool,
) -> Option<RawClient> {
    while Instant::now() < sh.deadline {
        match RawClient::try_connect(sh.port, proto, conn.clone(), Duration::from_secs(2)) {
            Ok((c, ack)) => {
                let mut l = sh.ledger.lock().unwrap();
                *l.connects.entry(conn.client_id.clone()).or_default() += 1;
                if !*first && !ack.session_present {
                    l.lost_sessions.push(conn.client_id.clone());
                }
                *first = false;
                return Some(c);
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    None
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Sent,
    Released,
}

/// A publisher that keeps up to `window` messages in flight, resends them
/// after a reconnect (PUBLISH with DUP, or PUBREL once PUBREC came), and
/// records each acknowledged payload.
fn publisher(sh: Arc<Shared>, idx: usize, qos: QoS, window: usize) {
    let id = format!("dur-pub-{}-{idx}", qos as u8);
    let topic = format!("dur/q{}/p{idx}", qos as u8);
    let conn = v3_connect(&id, false);
    let mut first = true;
    let mut seq = 0u64;
    let mut inflight: BTreeMap<u16, (String, Stage)> = BTreeMap::new();
    let mut next_pid = 1u16;
    'outer: loop {
        if sh.stop_publishing.load(Ordering::SeqCst) && inflight.is_empty() {
            break;
        }
        let Some(mut c) = connect_retrying(&sh, &conn, Protocol::V311, &mut first) else {
            break;
        };
        // Resume the in-flight messages in packet id order.
        for (&pid, (payload, stage)) in &inflight {
            let pkt = match stage {
                Stage::Sent => {
                    let mut m = publish_packet(&topic, qos, payload.as_bytes());
                    m.packet_id = pid;
                    m.dup = true;
                    Packet::Publish(m)
                }
                Stage::Released => Packet::PubRel(pubresp(pid)),
            };
            if c.try_send(&pkt).is_err() {
                continue 'outer;
            }
        }
        loop {
            if Instant::now() >= sh.deadline {
                break 'outer;
            }
            let stopping = sh.stop_publishing.load(Ordering::SeqCst);
            if stopping && inflight.is_empty() {
                c.disconnect();
                break 'outer;
            }
            while !stopping && inflight.len() < window {
                while inflight.contains_key(&next_pid) {
                    next_pid = next_pid.checked_add(1).unwrap_or(1);
                }
                let pid = next_pid;
                next_pid = next_pid.checked_add(1).unwrap_or(1);
                let payload = format!("{id}:{seq}");
                seq += 1;
                let mut m = publish_packet(&topic, qos, payload.as_bytes());
                m.packet_id = pid;
                sh.ledger.lock().unwrap().sent.insert(payload.clone());
                inflight.insert(pid, (payload, Stage::Sent));
                if c.try_send(&Packet::Publish(m)).is_err() {
                    continue 'outer;
                }
            }
            match c.recv(Duration::from_millis(200)) {
                Recv::Packet(Packet::PubAck(a)) if qos == QoS::AtLeastOnce => {
                    if let Some((payload, _)) = inflight.remove(&a.packet_id) {
                        sh.ledger
                            .lock()
                            .unwrap()
                            .acked
                            .entry(1)
                            .or_default()
                            .insert(payload);
                    }
                }
                Recv::Packet(Packet::PubRec(r)) if qos == QoS::ExactlyOnce => {
                    if let Some(e) = inflight.get_mut(&r.packet_id) {
                        e.1 = Stage::Released;
                    }
                    if c.try_send(&Packet::PubRel(pubresp(r.packet_id))).is_err() {
                        continue 'outer;
                    }
                }
                Recv::Packet(Packet::PubComp(r)) if qos == QoS::ExactlyOnce => {
                    if let Some((payload, stage)) = inflight.remove(&r.packet_id) {
                        assert!(
                            stage == Stage::Released,
                            "PUBCOMP before PUBREL for {payload}"
                        );
                        sh.ledger
                            .lock()
                            .unwrap()
                            .acked
                            .entry(2)
                            .or_default()
                            .insert(payload);
                    }
                }
                Recv::Packet(Packet::Disconnect(_)) => continue 'outer,
                Recv::Packet(other) => panic!("{id}: unexpected packet {other:?}"),
                Recv::Timeout => {}
                Recv::Closed => continue 'outer,
                Recv::Error(e) => panic!("{id}: undecodable bytes from broker: {e}"),
            }
        }
    }
}

/// A persistent subscriber that never resubscribes after the first connect.
/// QoS 2 deliveries are deduplicated by packet id until PUBREL, as a client
/// must; anything delivered twice to the application after that is the
/// broker's doing.
fn subscriber(sh: Arc<Shared>, conn: Connect, proto: Protocol, mut c: RawClient) {
    let name = conn.client_id.clone();
    let mut first = false; // already connected once by the caller
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    loop {
        loop {
            if sh.stop_subscribing.load(Ordering::SeqCst) || Instant::now() >= sh.deadline {
                c.disconnect();
                return;
            }
            match c.recv(Duration::from_millis(200)) {
                Recv::Packet(Packet::Publish(p)) => {
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    let deliver = match p.qos {
                        QoS::ExactlyOnce => awaiting_rel.insert(p.packet_id),
                        _ => true,
                    };
                    if deliver {
                        let mut l = sh.ledger.lock().unwrap();
                        *l.received
                            .entry(name.clone())
                            .or_default()
                            .entry(payload)
                            .or_default() += 1;
                    }
                    let ack = match p.qos {
                        QoS::AtMostOnce => None,
                        QoS::AtLeastOnce => Some(Packet::PubAck(pubresp(p.packet_id))),
                        QoS::ExactlyOnce => Some(Packet::PubRec(pubresp(p.packet_id))),
                    };
                    if let Some(a) = ack {
                        if c.try_send(&a).is_err() {
                            break;
                        }
                    }
                }
                Recv::Packet(Packet::PubRel(r)) => {
                    awaiting_rel.remove(&r.packet_id);
                    if c.try_send(&Packet::PubComp(pubresp(r.packet_id))).is_err() {
                        break;
                    }
                }
                Recv::Packet(Packet::Disconnect(_)) => break,
                Recv::Packet(other) => panic!("{name}: unexpected packet {other:?}"),
                Recv::Timeout => {}
                Recv::Closed => break,
                Recv::Error(e) => panic!("{name}: undecodable bytes from broker: {e}"),
            }
        }
        match connect_retrying(&sh, &conn, proto, &mut first) {
            Some(n) => c = n,
            None => return,
        }
    }
}

#[test]
fn acknowledged_messages_survive_repeated_sigkill() {
    let mut b = Broker::start_with_config(NO_DROP_CONFIG);
    let test_deadline = Instant::now() + Duration::from_secs(55);

    // Retained messages and persistent subscriptions, set up before any crash.
    let (mut setup, _) = RawClient::v3(b.mqtt_port, "dur-setup", true);
    for k in 0..5 {
        setup.publish(
            &format!("dur/retained/{k}"),
            format!("r{k}").as_bytes(),
            QoS::AtLeastOnce,
            true,
        );
    }
    setup.disconnect();
    let subs: Vec<(Connect, Protocol, &str, QoS)> = vec![
        (
            v3_connect("dur-sub-q1", false),
            Protocol::V311,
            "dur/q1/#",
            QoS::AtLeastOnce,
        ),
        (
            v3_connect("dur-sub-q2", false),
            Protocol::V311,
            "dur/q2/#",
            QoS::ExactlyOnce,
        ),
        (
            v5_connect("dur-sub-v5", false, Some(3600)),
            Protocol::V5,
            "dur/+/#",
            QoS::ExactlyOnce,
        ),
    ];

    let sh = Arc::new(Shared {
        port: b.mqtt_port,
        ledger: Mutex::new(Ledger::default()),
        stop_publishing: AtomicBool::new(false),
        stop_subscribing: AtomicBool::new(false),
        deadline: test_deadline,
    });
    sh.ledger
        .lock()
        .unwrap()
        .sent
        .extend((0..5).map(|k| format!("r{k}")));

    let mut sub_threads = Vec::new();
    for (conn, proto, filter, qos) in subs.clone() {
        let (mut c, ack) = RawClient::connect_ok(b.mqtt_port, proto, conn.clone());
        assert!(!ack.session_present);
        c.subscribe(filter, qos);
        let sh = sh.clone();
        sub_threads.push(thread::spawn(move || subscriber(sh, conn, proto, c)));
    }
    let mut pub_threads = Vec::new();
    for idx in 0..3 {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let sh = sh.clone();
            pub_threads.push(thread::spawn(move || publisher(sh, idx, qos, 8)));
        }
    }

    // Kill the broker mid-load, several times.
    let mut kills = 0;
    for _ in 0..KILLS {
        sh.wait_for_subscribers(kills);
        sh.wait_for_more_acks();
        b.kill9();
        kills += 1;
        b.restart();
    }
    // More load after the last restart, then stop publishing.
    sh.wait_for_more_acks();
    sh.stop_publishing.store(true, Ordering::SeqCst);
    for t in pub_threads {
        t.join().expect("publisher thread panicked");
    }

    // Every acknowledged message reaches every subscriber it matches (bounded wait).
    let complete = |l: &Ledger| {
        let q1 = l.acked.get(&1).cloned().unwrap_or_default();
        let q2 = l.acked.get(&2).cloned().unwrap_or_default();
        let has = |sub: &str, want: &HashSet<String>| {
            let got = l.received.get(sub);
            want.iter().all(|p| got.is_some_and(|g| g.contains_key(p)))
        };
        has("dur-sub-q1", &q1)
            && has("dur-sub-q2", &q2)
            && has("dur-sub-v5", &q1)
            && has("dur-sub-v5", &q2)
    };
    let all_arrived = wait_until(
        test_deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(20)),
        || complete(&sh.ledger.lock().unwrap()),
    );
    sh.stop_subscribing.store(true, Ordering::SeqCst);
    for t in sub_threads {
        t.join().expect("subscriber thread panicked");
    }

    let l = sh.ledger.lock().unwrap();
    let q1 = l.acked.get(&1).cloned().unwrap_or_default();
    let q2 = l.acked.get(&2).cloned().unwrap_or_default();
    eprintln!(
        "kills: {kills}; acked QoS1: {}, QoS2: {}; sent: {}; connects: {:?}; received: {:?}",
        q1.len(),
        q2.len(),
        l.sent.len(),
        l.connects,
        l.received
            .iter()
            .map(|(k, v)| (k, v.len()))
            .collect::<Vec<_>>()
    );
    assert_eq!(kills, KILLS);
    assert!(
        q1.len() >= 50 && q2.len() >= 50,
        "too little load to mean anything: {} / {}",
        q1.len(),
        q2.len()
    );

    let empty = HashMap::new();
    let rx = |s: &str| l.received.get(s).unwrap_or(&empty);
    let missing = |sub: &str, want: &HashSet<String>| {
        let mut m: Vec<String> = want
            .iter()
            .filter(|p| !rx(sub).contains_key(*p))
            .cloned()
            .collect();
        m.sort();
        m
    };
    let lost_q1 = missing("dur-sub-q1", &q1);
    let lost_q2 = missing("dur-sub-q2", &q2);
    let lost_v5 = [missing("dur-sub-v5", &q1), missing("dur-sub-v5", &q2)].concat();
    assert!(
        all_arrived && lost_q1.is_empty() && lost_q2.is_empty() && lost_v5.is_empty(),
        "acknowledged messages lost: dur-sub-q1 {} {:?}, dur-sub-q2 {} {:?}, dur-sub-v5 {} {:?}",
        lost_q1.len(),
        &lost_q1[..lost_q1.len().min(10)],
        lost_q2.len(),
        &lost_q2[..lost_q2.len().min(10)],
        lost_v5.len(),
        &lost_v5[..lost_v5.len().min(10)],
    );

    // QoS 2: never delivered twice (the v5 subscriber gets QoS 1 traffic at QoS 1).
    for sub in ["dur-sub-q2", "dur-sub-v5"] {
        let dups: Vec<(&String, &u32)> = rx(sub)
            .iter()
            .filter(|(p, n)| p.starts_with("dur-pub-2-") && **n > 1)
            .collect();
        assert!(
            dups.is_empty(),
            "{sub}: QoS 2 messages delivered more than once: {dups:?}"
        );
    }
    // Nothing invented.
    for sub in SUBSCRIBERS {
        let bogus: Vec<&String> = rx(sub).keys().filter(|p| !l.sent.contains(*p)).collect();
        assert!(
            bogus.is_empty(),
            "{sub} received payloads nobody sent: {bogus:?}"
        );
    }
    // Sessions resumed on every reconnect.
    assert!(
        l.lost_sessions.is_empty(),
        "sessions not resumed (session present = 0): {:?}",
        l.lost_sessions
    );
    for id in SUBSCRIBERS {
        assert!(
            l.connects.get(id).copied().unwrap_or(0) >= KILLS,
            "{id} reconnected only {:?} times across {KILLS} kills",
            l.connects.get(id)
        );
    }
    drop(l);

    // Subscriptions and retained messages are still there.
    let (mut c, ack) = RawClient::v3(b.mqtt_port, "dur-sub-q1", false);
    assert!(ack.session_present);
    let (mut p, _) = RawClient::v3(b.mqtt_port, "dur-final-pub", true);
    p.publish("dur/q1/final", b"final", QoS::AtLeastOnce, false);
    let got = c.wait_for(
        WAIT,
        |x| matches!(x, Packet::Publish(m) if &m.payload[..] == b"final"),
    );
    assert!(matches!(got, Packet::Publish(_)));
    let (mut r, _) = RawClient::v3(b.mqtt_port, "dur-retained-check", true);
    r.subscribe("dur/retained/#", QoS::AtLeastOnce);
    let mut got = payloads(&r.collect_publishes(6, Duration::from_secs(2)));
    got.sort();
    assert_eq!(got, vec!["r0", "r1", "r2", "r3", "r4"]);
}
