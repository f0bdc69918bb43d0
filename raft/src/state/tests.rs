//! Unit tests of apply: each drives [`MqttState`] through committed
//! entries on a fresh RocksDB and checks results, events and what a reopen
//! reads back.

use std::sync::Arc;

use bytes::Bytes;
use openraft::CommittedLeaderId;
use parking_lot::Mutex;
use raftmq_storage::{Store, Table};

use super::{ApplyEvent, EventSink, MqttState};
use crate::command::*;

#[derive(Default)]
struct Recorder(Mutex<Vec<ApplyEvent>>);
impl EventSink for Recorder {
    fn emit(&self, ev: ApplyEvent) {
        self.0.lock().push(ev);
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    st: MqttState,
    sink: Arc<Recorder>,
    index: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Recorder::default());
        let st = MqttState::open(Store::open(dir.path()).unwrap(), sink.clone()).unwrap();
        Fixture {
            _dir: dir,
            st,
            sink,
            index: 0,
        }
    }

    /// Applies one entry; returns its results and the epoch-like id of
    /// its first command.
    fn apply(&mut self, cmds: Vec<Command>) -> (Vec<CmdResult>, u64) {
        let r = self.apply_numbered(1, 0, cmds.into_iter().map(|c| (0, c)).collect());
        (r, self.index << 16)
    }

    /// Applies one entry of numbered commands from `origin`.
    fn apply_numbered(
        &mut self,
        origin: u64,
        floor: u64,
        cmds: Vec<(u64, Command)>,
    ) -> Vec<CmdResult> {
        self.index += 1;
        let e = crate::types::numbered_entry(self.index, origin, floor, cmds);
        self.st.apply_entries(vec![e]).unwrap().remove(0).results
    }

    fn register(&mut self, client: &str, expiry_s: u32, will: Option<Will>) -> u64 {
        let (r, _) = self.apply(vec![Command::Register(Register {
            client_id: client.into(),
            node: 1,
            clean_start: false,
            expiry_s,
            will: will.map(Box::new),
            now_ms: 1000,
        })]);
        match &r[0] {
            CmdResult::Registered { epoch, .. } => *epoch,
            other => panic!("{other:?}"),
        }
    }

    fn subscribe(&mut self, client: &str, epoch: u64, filter: &str, qos: u8) {
        self.apply(vec![Command::Subscribe(Subscribe {
            client_id: client.into(),
            epoch,
            filters: vec![(filter.into(), SubOpts::with_qos(qos))],
        })]);
    }

    fn disconnect(&mut self, client: &str, epoch: u64, publish_will: bool, now_ms: u64) {
        self.apply(vec![Command::Disconnect(Disconnect {
            client_id: client.into(),
            epoch,
            publish_will,
            new_expiry_s: None,
            now_ms,
        })]);
    }

    fn delivered(&self, client: &str) -> Vec<Delivery> {
        self.sink
            .0
            .lock()
            .iter()
            .flat_map(|e| match e {
                ApplyEvent::Deliver {
                    client_id,
                    delivery,
                    ..
                } if &**client_id == client => vec![delivery.clone()],
                ApplyEvent::Fanout(f) => f
                    .targets()
                    .filter(|(c, _, _)| &***c == client)
                    .map(|(_, _, t)| f.delivery(t))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }
}

fn msg(topic: &str, qos: u8, publisher: &str) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::from_static(b"p"),
        qos,
        retain: false,
        publisher: publisher.into(),
        props: MsgProps::default(),
        created_ms: 1000,
        expires_ms: None,
    }
}

fn publish(client: &str, pid: u16, m: Message) -> Command {
    Command::Publish(Publish {
        client_id: client.into(),
        packet_id: pid,
        msg: m.into(),
    })
}

#[test]
fn resent_qos2_publish_is_routed_once_until_released() {
    let mut f = Fixture::new();
    let e = f.register("s", 60, None);
    f.subscribe("s", e, "t", 2);
    let (r, _) = f.apply(vec![
        publish("p", 9, msg("t", 2, "p")),
        publish("p", 9, msg("t", 2, "p")),
    ]);
    assert_eq!(
        r[0],
        CmdResult::Published {
            duplicate: false,
            matched: 1
        }
    );
    assert_eq!(
        r[1],
        CmdResult::Published {
            duplicate: true,
            matched: 0
        }
    );
    let (r, _) = f.apply(vec![Command::Release(Release {
        client_id: "p".into(),
        packet_id: 9,
    })]);
    assert_eq!(r[0], CmdResult::Released { found: true });
    let (r, _) = f.apply(vec![publish("p", 9, msg("t", 2, "p"))]);
    assert_eq!(
        r[0],
        CmdResult::Published {
            duplicate: false,
            matched: 1
        }
    );
    assert_eq!(f.delivered("s").len(), 2);
}

#[test]
fn persistent_queue_survives_reopen_and_acks_remove_items() {
    let mut f = Fixture::new();
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "q/#", 1);
    f.disconnect("s", e, false, 2000);
    f.apply(
        (0..5)
            .map(|i| publish("p", 0, msg(&format!("q/{i}"), 1, "p")))
            .collect(),
    );
    let store = f.st.store().clone();
    let reopened = MqttState::open(store, Arc::new(Recorder::default())).unwrap();
    assert_eq!(reopened.queued_count(), 5);
    let e2 = f.register("s", NEVER, None);
    f.apply(vec![Command::Ack(Ack {
        client_id: "s".into(),
        epoch: e2,
        seqs: vec![0, 1, 2],
    })]);
    assert_eq!(f.st.queued_count(), 2);
    // An ack for an older epoch is ignored.
    let (r, _) = f.apply(vec![Command::Ack(Ack {
        client_id: "s".into(),
        epoch: e,
        seqs: vec![3, 4],
    })]);
    assert_eq!(r[0], CmdResult::Stale);
    assert_eq!(f.st.queued_count(), 2);
}

#[test]
fn queued_count_follows_enqueue_ack_and_a_clean_start_that_ends_the_session() {
    let mut f = Fixture::new();
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "q", 1);
    f.disconnect("s", e, false, 2000);
    f.apply((0..4).map(|_| publish("p", 0, msg("q", 1, "p"))).collect());
    assert_eq!(f.st.queued_count(), 4);
    let e2 = f.register("s", NEVER, None);
    f.apply(vec![Command::Ack(Ack {
        client_id: "s".into(),
        epoch: e2,
        seqs: vec![0],
    })]);
    assert_eq!(f.st.queued_count(), 3);
    // A clean start ends the old session and its queue.
    f.apply(vec![Command::Register(Register {
        client_id: "s".into(),
        node: 1,
        clean_start: true,
        expiry_s: 0,
        will: None,
        now_ms: 3000,
    })]);
    assert_eq!(f.st.queued_count(), 0);
}

#[test]
fn reopen_restores_last_applied_and_membership_exactly() {
    let mut f = Fixture::new();
    for _ in 0..3 {
        f.apply(vec![publish("p", 0, msg("t", 1, "p"))]);
    }
    let before = f.st.last_applied;
    assert_eq!(before.map(|l| l.index), Some(3));
    let reopened = MqttState::open(f.st.store().clone(), Arc::new(Recorder::default())).unwrap();
    assert_eq!(reopened.last_applied, before);
    assert_eq!(reopened.membership, f.st.membership);
    assert_eq!(reopened.settings, f.st.settings);
}

#[test]
fn identify_records_the_latest_identity_per_node_and_survives_reopen() {
    let mut f = Fixture::new();
    let (r, _) = f.apply(vec![
        Command::Identify(Identify {
            node: 2,
            identity: 7,
        }),
        Command::Identify(Identify {
            node: 3,
            identity: 9,
        }),
        Command::Identify(Identify {
            node: 2,
            identity: 8,
        }),
    ]);
    assert!(r.iter().all(|r| *r == CmdResult::Done), "{r:?}");
    let want = std::collections::BTreeMap::from([(2, 8), (3, 9)]);
    assert_eq!(f.st.identities, want);
    assert_eq!(super::read_identities(f.st.store()).unwrap(), want);
    let reopened = MqttState::open(f.st.store().clone(), Arc::new(Recorder::default())).unwrap();
    assert_eq!(reopened.identities, want);
}

#[test]
fn offline_queue_limit_drops_beyond_max_offline_messages() {
    let mut f = Fixture::new();
    f.apply(vec![Command::Configure(ClusterSettings {
        max_offline_messages: 3,
        ..Default::default()
    })]);
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "t", 1);
    f.disconnect("s", e, false, 2000);
    f.apply((0..10).map(|_| publish("p", 0, msg("t", 1, "p"))).collect());
    assert_eq!(f.st.queued_count(), 3);
    assert_eq!(f.st.stats.dropped_offline_limit, 7);
    let info = &f.st.session_info(Some("s"))[0];
    assert_eq!((info.queued, info.dropped_offline_limit), (3, 7));
}

/// Rows of `table` in the fixture's store.
fn rows(f: &Fixture, table: Table) -> usize {
    let mut n = 0;
    f.st.store()
        .for_each(table, |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
    n
}

fn ack(client: &str, epoch: u64, seqs: Vec<u64>) -> Command {
    Command::Ack(Ack {
        client_id: client.into(),
        epoch,
        seqs,
    })
}

#[test]
fn a_message_queued_for_many_sessions_is_stored_once_and_deleted_with_its_last_reference() {
    let mut f = Fixture::new();
    let epochs: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|c| {
            let e = f.register(c, NEVER, None);
            f.subscribe(c, e, "t", 1);
            e
        })
        .collect();
    f.apply(vec![publish("p", 0, msg("t", 1, "p"))]);
    assert_eq!(f.st.queued_count(), 3);
    assert_eq!((rows(&f, Table::Messages), rows(&f, Table::Queues)), (1, 3));
    f.apply(vec![
        ack("a", epochs[0], vec![0]),
        ack("b", epochs[1], vec![0]),
    ]);
    assert_eq!((rows(&f, Table::Messages), rows(&f, Table::Queues)), (1, 1));
    f.apply(vec![ack("c", epochs[2], vec![0])]);
    assert_eq!(f.st.queued_count(), 0);
    assert_eq!(
        (
            rows(&f, Table::Messages),
            rows(&f, Table::MessageRefs),
            rows(&f, Table::Queues)
        ),
        (0, 0, 0)
    );
}

#[test]
fn an_item_queued_and_acked_in_one_batch_leaves_nothing_behind() {
    let mut f = Fixture::new();
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "t", 1);
    f.apply(vec![
        publish("p", 0, msg("t", 1, "p")),
        publish("p", 0, msg("t", 1, "p")),
        ack("s", e, vec![0]),
    ]);
    assert_eq!(f.st.queued_count(), 1);
    assert_eq!((rows(&f, Table::Messages), rows(&f, Table::Queues)), (1, 1));
    let info = &f.st.session_info(Some("s"))[0];
    assert_eq!((info.queued, info.queued_bytes), (1, 1));
}

#[test]
fn wills_fired_by_one_command_keep_their_own_bodies_in_the_queue() {
    let mut f = Fixture::new();
    let e = f.register("watcher", NEVER, None);
    f.subscribe("watcher", e, "will/#", 1);
    f.disconnect("watcher", e, false, 1500);
    for c in ["w1", "w2"] {
        let will = Will {
            msg: msg(&format!("will/{c}"), 1, c),
            expiry_s: None,
            delay_s: 0,
        };
        f.register(c, 60, Some(will));
    }
    // One NodeRestarted command ends both connections and fires both wills.
    f.apply(vec![Command::NodeRestarted(NodeRestarted {
        node: 1,
        now_ms: 2000,
    })]);
    let reopened = MqttState::open(f.st.store().clone(), Arc::new(Recorder::default())).unwrap();
    drop(reopened);
    let view = crate::view::StateView::new(f.st.store().clone());
    let topics: Vec<String> = view
        .queue_page("watcher", None, 10, 1 << 20)
        .unwrap()
        .items
        .iter()
        .map(|d| d.msg.topic.clone())
        .collect();
    assert_eq!(topics, ["will/w1", "will/w2"]);
}

#[test]
fn a_publish_that_would_pass_a_sessions_byte_quota_is_refused_and_changes_nothing() {
    let mut f = Fixture::new();
    f.apply(vec![Command::Configure(ClusterSettings {
        max_queue_bytes: 2,
        ..Default::default()
    })]);
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "t", 2);
    f.disconnect("s", e, false, 2000);
    let (r, _) = f.apply(vec![
        publish("p", 1, msg("t", 2, "p")),
        publish("p", 2, msg("t", 2, "p")),
        publish("p", 3, msg("t", 2, "p")),
    ]);
    assert!(matches!(r[0], CmdResult::Published { .. }));
    assert!(matches!(r[1], CmdResult::Published { .. }));
    assert_eq!(r[2], CmdResult::QuotaExceeded);
    assert_eq!(f.st.queued_count(), 2);
    assert_eq!(f.st.stats.refused_quota, 1);
    // The refused QoS 2 publish recorded no packet id: a resend is new.
    let (r, _) = f.apply(vec![Command::Release(Release {
        client_id: "p".into(),
        packet_id: 3,
    })]);
    assert_eq!(r[0], CmdResult::Released { found: false });
    // QoS 0 is not queued, so no quota applies to it.
    let (r, _) = f.apply(vec![publish("p", 0, msg("t", 0, "p"))]);
    assert!(matches!(r[0], CmdResult::Published { .. }));
}

#[test]
fn a_data_directory_of_the_older_format_is_refused_with_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // What format 1 wrote: progress without a format row.
    let mut b = raftmq_storage::StateBatch::default();
    let applied: Option<crate::types::LogId> =
        Some(openraft::LogId::new(CommittedLeaderId::new(1, 1), 7));
    b.put(
        Table::Meta,
        raftmq_storage::keys::meta_key("last_applied"),
        crate::error::encode(&applied).unwrap(),
    );
    store.write_state(b).unwrap();
    let err = MqttState::open(store, Arc::new(Recorder::default())).err();
    assert!(
        matches!(
            err,
            Some(crate::error::RaftError::Format { found: 1, wants: 2 })
        ),
        "{err:?}"
    );
}

#[test]
fn a_delivery_event_is_emitted_after_its_item_is_readable() {
    /// Reads the announced item back from RocksDB when the event arrives.
    struct ReadsBack(Store, Mutex<Vec<bool>>);
    impl EventSink for ReadsBack {
        fn emit(&self, ev: ApplyEvent) {
            if let ApplyEvent::Deliver {
                client_id,
                delivery,
                ..
            } = ev
            {
                let view = crate::view::StateView::new(self.0.clone());
                let page = view.queue_page(&client_id, delivery.seq, 1, 1).unwrap();
                self.1
                    .lock()
                    .push(page.items.first().and_then(|d| d.seq) == delivery.seq);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sink = Arc::new(ReadsBack(store.clone(), Mutex::new(Vec::new())));
    let mut f = Fixture {
        _dir: dir,
        st: MqttState::open(store, sink.clone()).unwrap(),
        sink: Arc::new(Recorder::default()),
        index: 0,
    };
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "t", 1);
    f.apply(vec![publish("p", 0, msg("t", 1, "p"))]);
    assert_eq!(*sink.1.lock(), [true]);
}

#[test]
fn queue_pages_start_at_the_head_after_in_order_acks() {
    let mut f = Fixture::new();
    let e = f.register("s", NEVER, None);
    f.subscribe("s", e, "t", 1);
    f.apply((0..6).map(|_| publish("p", 0, msg("t", 1, "p"))).collect());
    f.apply(vec![ack("s", e, vec![0, 1, 3])]);
    let view = crate::view::StateView::new(f.st.store().clone());
    let seqs = |from| -> Vec<u64> {
        view.queue_page("s", from, 10, 1 << 20)
            .unwrap()
            .items
            .iter()
            .filter_map(|d| d.seq)
            .collect()
    };
    assert_eq!(seqs(None), [2, 4, 5]);
    assert_eq!(seqs(Some(5)), [5]);
    assert_eq!(f.st.session_info(Some("s"))[0].queued, 3);
    let page = view.queue_page("s", None, 2, 1 << 20).unwrap();
    assert_eq!((page.items.len(), page.more), (2, true));
    // A page cut by its byte budget says so too (each payload is 1 byte).
    let page = view.queue_page("s", None, 10, 2).unwrap();
    assert_eq!((page.items.len(), page.more), (2, true));
    let page = view.queue_page("s", None, 10, 1 << 20).unwrap();
    assert_eq!((page.items.len(), page.more), (3, false));
}

#[test]
fn delayed_will_fires_on_tick_not_before() {
    let mut f = Fixture::new();
    let e = f.register("watcher", 0, None);
    f.subscribe("watcher", e, "will/#", 0);
    let will = Will {
        msg: msg("will/w", 0, "w"),
        expiry_s: None,
        delay_s: 5,
    };
    let ew = f.register("w", 60, Some(will));
    f.disconnect("w", ew, true, 10_000);
    assert_eq!(f.st.next_deadline(), Some(15_000));
    f.apply(vec![Command::Tick(Tick { now_ms: 14_999 })]);
    assert!(f.delivered("watcher").is_empty());
    f.apply(vec![Command::Tick(Tick { now_ms: 15_000 })]);
    assert_eq!(f.delivered("watcher").len(), 1);
}

#[test]
fn apply_is_deterministic_across_replicas() {
    let script = |f: &mut Fixture| {
        let e = f.register("a", NEVER, None);
        let eb = f.register("b", NEVER, None);
        f.apply(vec![
            Command::Subscribe(Subscribe {
                client_id: "a".into(),
                epoch: e,
                filters: vec![("$share/g/t/+".into(), SubOpts::with_qos(1))],
            }),
            Command::Subscribe(Subscribe {
                client_id: "b".into(),
                epoch: eb,
                filters: vec![("$share/g/t/+".into(), SubOpts::with_qos(1))],
            }),
        ]);
        f.apply(
            (0..20)
                .map(|i| publish("p", 0, msg(&format!("t/{i}"), 1, "p")))
                .collect(),
        );
        // One publish per entry, as a publisher waiting for each ack makes.
        for i in 0..20 {
            f.apply(vec![publish("p", 0, msg(&format!("t/{i}"), 1, "p"))]);
        }
        f.st.snapshot_rows().unwrap()
    };
    let (mut x, mut y) = (Fixture::new(), Fixture::new());
    let (rx, ry) = (script(&mut x), script(&mut y));
    assert_eq!(rx, ry);
    // The shared group spread the 40 messages over both members.
    let (a, b) = (x.delivered("a").len(), x.delivered("b").len());
    assert_eq!(a + b, 40);
    assert!(a >= 8 && b >= 8, "a={a} b={b}");
}

#[test]
fn a_resent_command_is_applied_once_and_answers_duplicate() {
    let mut f = Fixture::new();
    let e = f.register("sub", 3600, None);
    f.subscribe("sub", e, "t", 1);
    let p = publish("pub", 0, msg("t", 1, "pub"));
    let first = f.apply_numbered(7, 0, vec![(100, p.clone())]);
    assert!(
        matches!(first[0], CmdResult::Published { matched: 1, .. }),
        "{first:?}"
    );
    // The same command again (a retry after a leader change).
    let again = f.apply_numbered(7, 0, vec![(100, p.clone())]);
    assert_eq!(again, vec![CmdResult::Duplicate]);
    assert_eq!(f.delivered("sub").len(), 1, "delivered once");
    // The same sequence number from another origin is another command.
    let other = f.apply_numbered(8, 0, vec![(100, p)]);
    assert!(matches!(other[0], CmdResult::Published { .. }));
    assert_eq!(f.delivered("sub").len(), 2);
}

#[test]
fn a_resent_earlier_batch_committed_after_a_later_one_still_applies() {
    let mut f = Fixture::new();
    let e = f.register("sub", 3600, None);
    f.subscribe("sub", e, "#", 1);
    let p = |i: u8| publish("pub", 0, msg(&format!("t{i}"), 1, "pub"));
    let later = f.apply_numbered(7, 10, vec![(12, p(2)), (13, p(3))]);
    assert!(later
        .iter()
        .all(|r| matches!(r, CmdResult::Published { .. })));
    let earlier = f.apply_numbered(7, 10, vec![(10, p(0)), (11, p(1))]);
    assert!(
        earlier
            .iter()
            .all(|r| matches!(r, CmdResult::Published { .. })),
        "not mistaken for duplicates: {earlier:?}"
    );
    assert_eq!(f.delivered("sub").len(), 4);
    // Once the proposer's floor passes them, old ids count as seen and
    // the applied set is pruned.
    let late = f.apply_numbered(7, 14, vec![(11, p(1))]);
    assert_eq!(late, vec![CmdResult::Duplicate]);
    assert_eq!(f.delivered("sub").len(), 4);
}

#[test]
fn commands_of_a_taken_over_or_ended_connection_are_stale() {
    let mut f = Fixture::new();
    let old = f.register("c", NEVER, None);
    let new = f.register("c", NEVER, None);
    assert_ne!(old, new);
    let (r, _) = f.apply(vec![
        Command::Subscribe(Subscribe {
            client_id: "c".into(),
            epoch: old,
            filters: vec![("t".into(), SubOpts::with_qos(1))],
        }),
        Command::Unsubscribe(Unsubscribe {
            client_id: "c".into(),
            epoch: old,
            filters: vec!["t".into()],
        }),
        Command::Received(Received {
            client_id: "c".into(),
            epoch: old,
            seqs: vec![0],
        }),
        Command::Disconnect(Disconnect {
            client_id: "c".into(),
            epoch: old,
            publish_will: false,
            new_expiry_s: None,
            now_ms: 2000,
        }),
        Command::Subscribe(Subscribe {
            client_id: "nobody".into(),
            epoch: new,
            filters: vec![("t".into(), SubOpts::with_qos(1))],
        }),
    ]);
    assert_eq!(r, vec![CmdResult::Stale; 5]);
    assert_eq!(f.st.subscription_count(), 0);
    assert_eq!(f.st.session_info(Some("c"))[0].node, Some(1));

    // The current epoch, once its connection has ended: its session still
    // takes subscriptions, but a second Disconnect is stale.
    f.disconnect("c", new, false, 3000);
    let (r, _) = f.apply(vec![
        Command::Disconnect(Disconnect {
            client_id: "c".into(),
            epoch: new,
            publish_will: false,
            new_expiry_s: None,
            now_ms: 4000,
        }),
        Command::Subscribe(Subscribe {
            client_id: "c".into(),
            epoch: new,
            filters: vec![("t".into(), SubOpts::with_qos(1))],
        }),
    ]);
    assert_eq!(r[0], CmdResult::Stale);
    assert!(matches!(r[1], CmdResult::Subscribed { .. }), "{r:?}");
}

fn guarded_publish(client: &str, epoch: u64, pid: u16, m: Message) -> Command {
    Command::GuardedPublish(Guarded {
        epoch,
        cmd: Publish {
            client_id: client.into(),
            packet_id: pid,
            msg: m.into(),
        },
    })
}

#[test]
fn a_publish_from_a_taken_over_connection_is_stale_and_not_routed() {
    let mut f = Fixture::new();
    let s = f.register("s", NEVER, None);
    f.subscribe("s", s, "t", 1);
    let old = f.register("p", NEVER, None);
    let new = f.register("p", NEVER, None);
    let (r, _) = f.apply(vec![
        guarded_publish("p", old, 0, msg("t", 1, "p")),
        guarded_publish("p", new, 0, msg("t", 1, "p")),
    ]);
    assert_eq!(r[0], CmdResult::Stale);
    assert_eq!(
        r[1],
        CmdResult::Published {
            duplicate: false,
            matched: 1
        }
    );
    assert_eq!(
        f.delivered("s").len(),
        1,
        "only the live connection's publish"
    );
}

#[test]
fn a_qos2_publish_that_reaches_the_log_after_its_resend_was_released_is_not_routed_again() {
    // The first attempt went to a node that could not commit; the client
    // reconnected (a new epoch) and resent it, which was routed and
    // released. The first attempt, committed late, must not route it again.
    let mut f = Fixture::new();
    let s = f.register("s", NEVER, None);
    f.subscribe("s", s, "t", 2);
    let first = f.register("p", NEVER, None);
    let second = f.register("p", NEVER, None);
    let (r, _) = f.apply(vec![
        guarded_publish("p", second, 7, msg("t", 2, "p")),
        Command::GuardedRelease(Guarded {
            epoch: second,
            cmd: Release {
                client_id: "p".into(),
                packet_id: 7,
            },
        }),
        guarded_publish("p", first, 7, msg("t", 2, "p")),
    ]);
    assert_eq!(r[1], CmdResult::Released { found: true });
    assert_eq!(r[2], CmdResult::Stale);
    assert_eq!(f.delivered("s").len(), 1);
}

#[test]
fn a_release_from_a_taken_over_connection_keeps_the_packet_id() {
    let mut f = Fixture::new();
    let s = f.register("s", NEVER, None);
    f.subscribe("s", s, "t", 2);
    let old = f.register("p", NEVER, None);
    let (r, _) = f.apply(vec![guarded_publish("p", old, 3, msg("t", 2, "p"))]);
    assert!(matches!(
        r[0],
        CmdResult::Published {
            duplicate: false,
            ..
        }
    ));
    let new = f.register("p", NEVER, None);
    let (r, _) = f.apply(vec![
        Command::GuardedRelease(Guarded {
            epoch: old,
            cmd: Release {
                client_id: "p".into(),
                packet_id: 3,
            },
        }),
        guarded_publish("p", new, 3, msg("t", 2, "p")),
    ]);
    assert_eq!(r[0], CmdResult::Stale);
    assert_eq!(
        r[1],
        CmdResult::Published {
            duplicate: true,
            matched: 0
        },
        "the resend on the new connection is still recognised"
    );
    assert_eq!(f.delivered("s").len(), 1);
}

#[test]
fn a_large_queue_of_an_ended_session_is_reclaimed_a_bounded_amount_per_entry() {
    let mut f = Fixture::new();
    let e = f.register("big", NEVER, None);
    f.subscribe("big", e, "t", 1);
    f.disconnect("big", e, false, 2000);
    f.apply(
        (0..1100)
            .map(|_| publish("p", 0, msg("t", 1, "p")))
            .collect(),
    );
    assert_eq!(rows(&f, Table::Queues), 1100);
    // A clean start ends the session: its queue is set aside, and each
    // entry deletes at most 256 of its items.
    let (r, _) = f.apply(vec![Command::Register(Register {
        client_id: "big".into(),
        node: 1,
        clean_start: true,
        expiry_s: NEVER,
        will: None,
        now_ms: 3000,
    })]);
    let CmdResult::Registered { epoch: e2, .. } = r[0] else {
        panic!("{r:?}")
    };
    assert_eq!(f.st.queued_count(), 0);
    assert_eq!(rows(&f, Table::Queues), 1100 - 256);
    // The new session's queue starts after the old one: they never meet.
    f.subscribe("big", e2, "t", 1);
    f.apply(vec![publish("p", 0, msg("t", 1, "p"))]);
    let view = crate::view::StateView::new(f.st.store().clone());
    let page = view.queue_page("big", None, 10, 1 << 20).unwrap();
    assert_eq!(
        page.items.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [Some(1100)]
    );
    for _ in 0..3 {
        f.apply(vec![Command::Tick(Tick { now_ms: 4000 })]);
    }
    assert_eq!(f.st.reclaim_pending(), 0);
    assert_eq!(rows(&f, Table::Queues), 1);
    assert_eq!(rows(&f, Table::Messages), 1, "only the new item's message");
    // Reopening finds the same: nothing set aside, one item queued.
    let reopened = MqttState::open(f.st.store().clone(), Arc::new(Recorder::default())).unwrap();
    assert_eq!(
        (reopened.reclaim_pending(), reopened.queued_count()),
        (0, 1)
    );
}

/// The fan-out events a batch emitted.
fn fanouts(f: &Fixture) -> Vec<crate::state::Fanout> {
    f.sink
        .0
        .lock()
        .iter()
        .filter_map(|e| match e {
            ApplyEvent::Fanout(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_message_for_live_sessions_is_one_fanout_with_each_sessions_epoch_and_qos() {
    let mut f = Fixture::new();
    let a = f.register("a", 0, None);
    let b = f.register("b", 0, None);
    let p = f.register("p", NEVER, None);
    f.subscribe("a", a, "t", 1);
    f.subscribe("b", b, "t", 0);
    f.subscribe("p", p, "t", 1);
    f.sink.0.lock().clear();
    f.apply(vec![publish("x", 0, msg("t", 1, "x"))]);
    let fanouts = fanouts(&f);
    assert_eq!(fanouts.len(), 1);
    let live: Vec<(String, u64, u8)> = fanouts[0]
        .targets()
        .map(|(c, epoch, t)| (c.to_string(), epoch, fanouts[0].delivery(t).qos))
        .collect();
    assert_eq!(live, vec![("a".into(), a, 1), ("b".into(), b, 0)]);
    // The persistent session queues its copy, announced with its sequence.
    assert!(f.sink.0.lock().iter().any(|e| matches!(
        e,
        ApplyEvent::Deliver { client_id, delivery, .. } if &**client_id == "p" && delivery.seq == Some(0)
    )));
}

#[test]
fn a_topics_messages_go_to_the_same_sessions_until_one_of_them_goes_offline() {
    // Persistent sessions subscribed at QoS 0: one that goes offline keeps
    // its subscription (the topic's targets do not change) but no longer
    // takes the topic's messages live.
    let mut f = Fixture::new();
    let epochs: Vec<u64> = (0..20)
        .map(|i| {
            let c = format!("s{i:02}");
            let e = f.register(&c, NEVER, None);
            f.subscribe(&c, e, "t", 0);
            e
        })
        .collect();
    f.sink.0.lock().clear();
    f.apply(vec![
        publish("x", 0, msg("t", 1, "x")),
        publish("x", 0, msg("t", 1, "x")),
        Command::Disconnect(Disconnect {
            client_id: "s00".into(),
            epoch: epochs[0],
            publish_will: false,
            new_expiry_s: None,
            now_ms: 1000,
        }),
        publish("x", 0, msg("t", 1, "x")),
    ]);
    let fanouts = fanouts(&f);
    assert_eq!(fanouts.len(), 3);
    assert!(fanouts[0].same_sessions(&fanouts[1]));
    assert!(!fanouts[1].same_sessions(&fanouts[2]));
    assert_eq!(fanouts[2].targets().count(), 19);
}
