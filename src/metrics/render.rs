//! Builds the Prometheus registry from [`Metrics`], a [`Snapshot`] and the
//! Raft timings, and encodes it as text. Counters are counters (`_total`),
//! gauges are levels, latencies are histograms in seconds.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use raftmq_raft::metrics::TIMINGS;

use super::{DropLabels, Metrics, Snapshot};
use crate::resources::Limit;

fn gauge(v: u64) -> Gauge {
    let g: Gauge = Gauge::default();
    g.set(v.min(i64::MAX as u64) as i64);
    g
}

fn counter(v: u64) -> Counter {
    let c: Counter = Counter::default();
    c.inc_by(v);
    c
}

pub(super) fn render(m: &Metrics, s: &Snapshot) -> String {
    let mut r = Registry::with_prefix("raftmq");
    connections(&mut r, m, s);
    m.mqtt.register(&mut r);
    queues(&mut r, m, s);
    state(&mut r, s);
    raft(&mut r, s);
    resources(&mut r, m, s);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.push_str("# encoding failed\n");
    }
    out
}

fn connections(r: &mut Registry, m: &Metrics, s: &Snapshot) {
    r.register(
        "uptime_seconds",
        "Seconds since this node started",
        gauge(s.uptime_s),
    );
    r.register(
        "connections",
        "MQTT connections accepted",
        m.connections_total.clone(),
    );
    r.register(
        "connections_current",
        "Open MQTT connections (before and after CONNECT)",
        m.connections_current.clone(),
    );
    r.register(
        "clients_connected",
        "Clients connected to this node (CONNACK sent, not yet gone)",
        gauge(s.connected),
    );
    let counters = [
        (
            "messages_received",
            "PUBLISH packets accepted from clients",
            &m.messages_received,
        ),
        (
            "messages_sent",
            "PUBLISH packets sent to clients",
            &m.messages_sent,
        ),
        (
            "bytes_received",
            "Bytes read from MQTT sockets",
            &m.bytes_received,
        ),
        ("bytes_sent", "Bytes written to MQTT sockets", &m.bytes_sent),
        (
            "protocol_errors",
            "Connections closed for protocol errors",
            &m.protocol_errors,
        ),
        (
            "commit_failures",
            "Client operations refused because they could not commit",
            &m.commit_failures,
        ),
        (
            "retransmits",
            "PUBLISH/PUBREL resent (MQTT 3)",
            &m.retransmits,
        ),
        (
            "acl_denied",
            "PUBLISH packets and SUBSCRIBE filters the ACL denied",
            &m.acl_denied,
        ),
    ];
    for (name, help, c) in counters {
        r.register(name, help, c.clone());
    }
    r.register(
        "listener_connections_refused",
        "Connections a listener closed before MQTT, by listener and reason",
        m.listener_refused.clone(),
    );
}

fn queues(r: &mut Registry, m: &Metrics, s: &Snapshot) {
    r.register(
        "queue_message_in",
        "Messages handed to this node's connections for delivery (live and from session queues)",
        m.queue_in.clone(),
    );
    r.register(
        "queue_message_out",
        "Messages written to this node's clients (first sends, and resends after a reconnect)",
        m.queue_out.clone(),
    );
    r.register(
        "queue_message_expired",
        "Messages whose expiry passed before they were sent",
        m.queue_expired.clone(),
    );
    // One family for every drop: this node's connections' (online_limit,
    // packet_too_large, QoS 0 refused by disk_free_limit/max_queue_bytes)
    // and apply's queue limits (offline_limit, online_limit), which every
    // node applies and so counts alike.
    let drops: Family<DropLabels, Counter> = Family::default();
    for reason in [
        "offline_limit",
        "online_limit",
        "packet_too_large",
        Limit::DiskFreeLimit.name(),
        Limit::MaxQueueBytes.name(),
        Limit::Netsplit.name(),
    ] {
        let label = [("reason", reason)];
        let apply = match reason {
            "offline_limit" => s.state.apply.dropped_offline_limit,
            "online_limit" => s.state.apply.dropped_online_limit,
            _ => 0,
        };
        drops
            .get_or_create(&label)
            .inc_by(apply + m.queue_drop.get_or_create(&label).get());
    }
    r.register(
        "queue_message_drop",
        "Messages dropped, by reason: offline_limit/online_limit (max_offline_messages, max_online_messages), packet_too_large (the client's maximum packet size), disk_free_limit/max_queue_bytes (QoS 0 publishes refused by a resource limit)",
        drops,
    );
}

fn state(r: &mut Registry, s: &Snapshot) {
    let st = &s.state;
    let gauges = [
        ("sessions", "Sessions in the replicated state", st.sessions),
        ("subscriptions", "Subscriptions in the replicated state", st.subscriptions),
        ("retained_messages", "Retained messages", st.retained),
        ("queued_messages", "Messages in persistent session queues", st.queued),
        (
            "queue_items_reclaiming",
            "Items of ended sessions' large queues still being deleted (a bounded amount per log entry)",
            st.reclaiming,
        ),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, gauge(v));
    }
    let counters = [
        (
            "wills_published",
            "Will messages published (apply)",
            st.apply.wills_published,
        ),
        (
            "sessions_expired",
            "Sessions removed by expiry (apply)",
            st.apply.sessions_expired,
        ),
        (
            "raft_duplicate_commands",
            "Commands applied before and skipped (resent proposals; apply)",
            st.apply.duplicates,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, counter(v));
    }
}

fn raft(r: &mut Registry, s: &Snapshot) {
    let (n, rd) = (&s.node, &s.raft);
    let gauges = [
        ("raft_term", "Current Raft term", n.term),
        (
            "raft_is_leader",
            "1 if this node is the Raft leader",
            n.is_leader as u64,
        ),
        (
            "in_quorum",
            "1 if this node is part of a quorum (what /health reports)",
            n.in_quorum as u64,
        ),
        (
            "netsplit",
            "1 while this node is in netsplit: it cannot reach a quorum (see docs/consistency.md)",
            n.in_netsplit as u64,
        ),
        (
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            rd.last_log_index,
        ),
        (
            "raft_commit_index",
            "Index of the last committed log entry this node knows",
            rd.committed_index,
        ),
        (
            "raft_last_applied",
            "Index of the last applied log entry",
            s.state.last_applied,
        ),
        (
            "raft_apply_lag_entries",
            "Committed entries not yet applied on this node",
            rd.committed_index.saturating_sub(s.state.last_applied),
        ),
        (
            "raft_log_entries",
            "Entries in the Raft log (after purging)",
            n.log_entries,
        ),
        (
            "raft_snapshot_index",
            "Last log index covered by the snapshot",
            n.snapshot_index,
        ),
        ("raft_voters", "Voters in the membership", rd.voters),
        ("raft_learners", "Learners in the membership", rd.learners),
    ];
    for (name, help, v) in gauges {
        r.register(name, help, gauge(v));
    }
    let lag: Family<Vec<(String, String)>, Gauge> = Family::default();
    for (peer, entries) in &rd.replication_lag {
        lag.get_or_create(&vec![("peer".to_string(), peer.to_string())])
            .set(*entries as i64);
    }
    r.register(
        "raft_replication_lag_entries",
        "On the leader: log entries each other member is behind the leader's last log index",
        lag,
    );
    let counters = [
        (
            "raft_entries_proposed",
            "Log entries proposed by this node",
            n.proposed_entries,
        ),
        (
            "raft_commands_proposed",
            "Commands proposed by this node",
            n.proposed_commands,
        ),
        (
            "raft_batches_forwarded",
            "Command batches this node forwarded to the leader",
            n.forwarded,
        ),
        (
            "raft_batches_resent",
            "Command batches sent again after a leader change or a lost reply",
            n.resent,
        ),
        (
            "netsplit_detected",
            "Times this node entered netsplit",
            n.netsplit_detected,
        ),
        (
            "netsplit_resolved",
            "Times this node left netsplit",
            n.netsplit_resolved,
        ),
        (
            "commands_not_committed",
            "Client commands refused at their deadline without ever leaving this node (final)",
            n.commands_not_committed,
        ),
        (
            "commands_outcome_unknown",
            "Client commands sent to a leader whose result did not come back by their deadline",
            n.commands_outcome_unknown,
        ),
        (
            "peer_connects",
            "Inter-node connections dialled by this node",
            n.peer_connects,
        ),
        (
            "peer_refused",
            "Inter-node connections refused (wrong cookie or bad handshake), either side",
            n.peer_refused,
        ),
        (
            "snapshot_chunks_sent",
            "Snapshot chunks this node sent to other nodes (acknowledged)",
            n.snapshot_chunks_sent,
        ),
        (
            "snapshot_bytes_sent",
            "Snapshot bytes this node sent to other nodes (acknowledged chunks)",
            n.snapshot_bytes_sent,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, counter(v));
    }
    r.register(
        "raft_leader_changes",
        "Changes of the leader this node saw (to none included)",
        TIMINGS.leader_changes.clone(),
    );
    let t = &*TIMINGS;
    let histograms = [
        (
            "raft_commit_seconds",
            "Propose to applied, per batch this node proposed (seconds)",
            &t.commit,
        ),
        (
            "raft_wal_fsync_seconds",
            "One WAL sync making a group of log appends durable (seconds)",
            &t.fsync,
        ),
        (
            "raft_apply_batch_seconds",
            "Applying one batch of committed entries (seconds)",
            &t.apply_batch,
        ),
        (
            "raft_apply_batch_entries",
            "Entries in one applied batch",
            &t.apply_batch_entries,
        ),
        (
            "raft_forward_seconds",
            "A batch forwarded to the leader, until its reply (seconds; followers)",
            &t.forward,
        ),
        (
            "raft_snapshot_build_seconds",
            "Building one snapshot: write, sync, publish (seconds)",
            &t.snapshot_build,
        ),
    ];
    for (name, help, h) in histograms {
        r.register(name, help, h.clone());
    }
}

fn resources(r: &mut Registry, m: &Metrics, s: &Snapshot) {
    r.register(
        "publishes_refused",
        "Publishes refused before any acknowledgement by a resource limit (reason: disk_free_limit, max_queue_bytes); QoS 0 ones are dropped",
        m.publishes_refused.clone(),
    );
    let alarms: Family<[(&'static str, &'static str); 1], Gauge> = Family::default();
    alarms
        .get_or_create(&[("alarm", Limit::DiskFreeLimit.name())])
        .set(s.disk.raised as i64);
    r.register(
        "alarm",
        "1 while a resource alarm is raised (disk_free_limit: QoS 1/2 publishes refused on this node)",
        alarms,
    );
    if let Some(free) = s.disk.free_bytes {
        r.register(
            "disk_free_bytes",
            "Free bytes on the data directory's filesystem (last reading)",
            gauge(free),
        );
    }
    let mut gauges = vec![
        (
            "disk_free_limit_bytes",
            "disk_free_limit: below this many free bytes publishes are refused (0: never)",
            s.disk.limit_bytes,
        ),
        (
            "rocksdb_block_cache_bytes",
            "RocksDB's shared block cache in use, with the memtable memory the write buffer manager reserves in it",
            s.rocksdb.block_cache,
        ),
        (
            "rocksdb_memtable_bytes",
            "RocksDB memtables of every column family (rocksdb.cur-size-all-mem-tables)",
            s.rocksdb.memtables,
        ),
        (
            "rocksdb_block_cache_limit_bytes",
            "rocksdb_block_cache_size: the block cache's share of RocksDB's memory budget",
            s.rocksdb.block_cache_limit,
        ),
        (
            "rocksdb_write_buffer_limit_bytes",
            "rocksdb_write_buffer_size: the memtables' share of RocksDB's memory budget",
            s.rocksdb.write_buffer_limit,
        ),
        (
            "rocksdb_pending_compaction_bytes",
            "Bytes RocksDB estimates compaction still has to rewrite (rocksdb.estimate-pending-compaction-bytes, every column family)",
            s.raft.pending_compaction_bytes,
        ),
    ];
    let process = [
        (
            "process_resident_memory_bytes",
            "Resident memory of the raftmq process (/proc/self/statm)",
            s.resident_bytes,
        ),
        (
            "process_open_fds",
            "Open file descriptors of the raftmq process (/proc/self/fd)",
            s.open_fds,
        ),
        (
            "process_max_fds",
            "The process's limit on open file descriptors (RLIMIT_NOFILE)",
            s.max_fds,
        ),
    ];
    gauges.extend(process.into_iter().filter_map(|(n, h, v)| Some((n, h, v?))));
    for (name, help, v) in gauges {
        r.register(name, help, gauge(v));
    }
}
