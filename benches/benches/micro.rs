//! Micro-benchmarks of a message's cost on the hot path: the codec, topic
//! matching, log append with group commit, and apply.
//!
//! Run: `cargo bench -p raftmq-benches --bench micro`

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raftmq::codec::{self, Packet, Protocol, Publish, PublishProperties, QoS};
use raftmq_raft::command::{self, Command, Envelope, Message, MsgProps, Request, SubOpts};
use raftmq_raft::state::{ApplyEvent, EventSink, MqttState};
use raftmq_raft::trie::Trie;
use raftmq_raft::types::Entry;
use raftmq_storage::Store;

fn publish_packet() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "loadgen/17".into(),
        packet_id: 42,
        payload: Bytes::from(vec![7u8; 64]),
        properties: PublishProperties::default(),
    })
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for proto in [Protocol::V311, Protocol::V5] {
        let p = publish_packet();
        let mut wire = BytesMut::new();
        codec::encode(&p, proto, &mut wire).expect("encode");
        let wire = wire.freeze();
        g.bench_function(format!("decode_publish_64B_{proto:?}"), |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                codec::decode(&mut buf, proto, usize::MAX).expect("decode")
            })
        });
        let mut out = BytesMut::with_capacity(1 << 16);
        g.bench_function(format!("encode_publish_64B_{proto:?}"), |b| {
            b.iter(|| {
                out.clear();
                codec::encode(&p, proto, &mut out).expect("encode")
            })
        });
    }
    g.finish();
}

fn bench_trie(c: &mut Criterion) {
    let mut t = Trie::default();
    // 10,000 subscriptions: exact, `+` and `#` filters over 1,000 devices.
    for i in 0..1000 {
        let client: Arc<str> = Arc::from(format!("c{i}"));
        for f in [
            format!("site/{}/dev/{i}/temp", i % 10),
            format!("site/{}/dev/+/temp", i % 10),
            format!("site/{}/#", i % 10),
            format!("site/+/dev/{i}/+"),
            format!("other/{i}/x"),
        ] {
            t.insert(&f, &client, SubOpts::with_qos(1));
        }
        for f in [
            format!("a/{i}"),
            format!("b/{i}/#"),
            format!("c/+/{i}"),
            format!("d/{i}/e"),
            format!("$share/g/site/{}/dev/{i}/temp", i % 10),
        ] {
            t.insert(&f, &client, SubOpts::with_qos(0));
        }
    }
    let mut g = c.benchmark_group("trie");
    g.throughput(Throughput::Elements(1));
    g.bench_function("match_10k_subs", |b| {
        b.iter(|| {
            t.targets("site/3/dev/503/temp", "publisher", |m| {
                m.keys().next().cloned()
            })
            .len()
        })
    });
    g.finish();
}

fn bench_retained(c: &mut Criterion) {
    // 100,000 retained topics, as in a restart with 100k retained messages.
    let mut idx = raftmq_raft::retain::RetainedIndex::default();
    let mut topics = Vec::new();
    for i in 0..100_000u64 {
        let m = Arc::new(Message {
            topic: format!("site/{}/dev/{i}", i % 100),
            retain: true,
            ..msg(i)
        });
        topics.push(m.topic.clone());
        idx.insert(m);
    }
    let mut g = c.benchmark_group("retained");
    g.bench_function("trie_match_plus_filter_in_100k_(1000_hits)", |b| {
        b.iter(|| idx.matching("site/42/dev/+").len())
    });
    g.bench_function("trie_match_exact_filter_in_100k", |b| {
        b.iter(|| idx.matching("site/42/dev/4242").len())
    });
    g.bench_function("linear_scan_plus_filter_in_100k_(before)", |b| {
        b.iter(|| {
            topics
                .iter()
                .filter(|t| raftmq_raft::trie::filter_matches("site/42/dev/+", t))
                .count()
        })
    });
    g.finish();
}

struct NullSink;
impl EventSink for NullSink {
    fn emit(&self, _ev: ApplyEvent) {}
}

fn msg(i: u64) -> Message {
    Message {
        topic: format!("loadgen/{}", i % 16),
        payload: Bytes::from(vec![7u8; 64]),
        qos: 1,
        retain: false,
        publisher: format!("p{}", i % 16).into(),
        props: MsgProps::default(),
        created_ms: 1,
        expires_ms: None,
    }
}

fn entry(index: u64, cmds: Vec<Command>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            origin: 1,
            floor: 0,
            cmds: std::sync::Arc::new(
                cmds.into_iter()
                    .map(|cmd| Envelope { seq: 0, cmd })
                    .collect(),
            ),
        }),
    }
}

fn bench_log_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let cmds: Vec<Command> = (0..100)
        .map(|i| {
            Command::Publish(command::Publish {
                client_id: format!("p{i}").into(),
                packet_id: 0,
                msg: msg(i).into(),
            })
        })
        .collect();
    let bytes = raftmq_raft::error::encode(&entry(1, cmds)).expect("encode");
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(100));
    let mut index = 0u64;
    g.bench_function("append_entry_of_100_publishes_and_fsync", |b| {
        b.iter(|| {
            index += 1;
            store
                .append_log([(index, bytes.as_slice())])
                .expect("append");
            store.sync_wal().expect("sync");
        })
    });
    g.finish();
}

fn bench_apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut st = MqttState::open(store, Arc::new(NullSink)).expect("state");
    // One persistent subscriber and one clean subscriber on loadgen/+.
    let mut index = 1;
    for (client, expiry) in [("persistent", 3600), ("clean", 0)] {
        let reg = Command::Register(command::Register {
            client_id: client.into(),
            node: 1,
            clean_start: true,
            expiry_s: expiry,
            will: None,
            now_ms: 1,
        });
        st.apply_entries(vec![entry(index, vec![reg])])
            .expect("register");
        let epoch = index << 16;
        index += 1;
        let sub = Command::Subscribe(command::Subscribe {
            client_id: client.into(),
            epoch,
            filters: vec![("loadgen/+".into(), SubOpts::with_qos(1))],
        });
        st.apply_entries(vec![entry(index, vec![sub])])
            .expect("subscribe");
        index += 1;
    }
    let persistent_epoch = 1u64 << 16;
    let mut next_seq = 0u64;
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1000));
    // Each entry: 1000 QoS 1 publishes (queued durably for the persistent
    // subscriber, delivered to the clean one) and the persistent
    // subscriber's batched acks for them, so the queue stays bounded.
    g.bench_function("apply_1000_qos1_publishes_2_subscribers_with_acks", |b| {
        b.iter_batched(
            || {
                index += 1;
                let mut cmds: Vec<Command> = (0..1000)
                    .map(|i| {
                        Command::Publish(command::Publish {
                            client_id: "p".into(),
                            packet_id: 0,
                            msg: msg(i).into(),
                        })
                    })
                    .collect();
                cmds.push(Command::Ack(command::Ack {
                    client_id: "persistent".into(),
                    epoch: persistent_epoch,
                    seqs: (next_seq..next_seq + 1000).collect(),
                }));
                next_seq += 1000;
                entry(index, cmds)
            },
            |e| st.apply_entries(vec![e]).expect("apply"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_codec,
    bench_trie,
    bench_retained,
    bench_log_append,
    bench_apply
);
criterion_main!(benches);
