//! What each packet from the client does: publishes are checked (message
//! rate, ACL) and proposed (or refused before proposing, while the disk
//! alarm is raised),
//! subscriber acks advance the outbound window (and are committed in
//! batches), subscriptions are proposed, DISCONNECT ends the loop.

use std::sync::Arc;

use raftmq_raft::command as cmd;
use raftmq_raft::trie::{split_shared, valid_filter};
use raftmq_raft::{CmdResult, Command, Message};
use tracing::warn;

use super::netsplit::Op;
use super::replies::Reply;
use super::{convert, Conn, Exit};
use crate::codec::{self, reason, Disconnect, Packet, Publish, Subscribe, Unsubscribe};
use crate::resources::{disk_cost, Limit};
use crate::session::AckEffect;

impl Conn {
    /// Handles one packet, read at `now` (ms); `Err` ends the connection.
    pub(super) async fn on_packet(&mut self, p: Packet, now: u64) -> Result<(), Exit> {
        match p {
            Packet::Publish(p) => self.on_publish(p, now).await,
            p @ (Packet::PubAck(_) | Packet::PubComp(_) | Packet::PingReq) => {
                self.on_packet_now(&p, now);
                Ok(())
            }
            Packet::PubRec(r) => {
                let failed = r.reason >= 0x80;
                match self.outbound.pubrec(r.packet_id, failed, &mut self.io) {
                    AckEffect::None => Ok(()),
                    effect => self.on_ack_effect(effect, now).await,
                }
            }
            Packet::PubRel(r) => {
                self.inbound.qos2_done(r.packet_id);
                let release = cmd::Release {
                    client_id: self.client_id.to_string(),
                    packet_id: r.packet_id,
                };
                let reply = Reply::PubComp(r.packet_id);
                if self.accepts_locally(Op::Publish, &r.properties.user_properties) {
                    // Not guarded, as the publish it releases is not: both
                    // apply when quorum returns, whoever holds the session.
                    return self.submit_local(Command::Release(release), reply).await;
                }
                let command = Command::GuardedRelease(cmd::Guarded {
                    epoch: self.epoch,
                    cmd: release,
                });
                self.submit(command, reply).await
            }
            Packet::Subscribe(s) => self.on_subscribe(s).await,
            Packet::Unsubscribe(u) => self.on_unsubscribe(u).await,
            Packet::Disconnect(d) => Err(self.on_disconnect(d)),
            Packet::Connect(_) => Err(Exit::error(reason::PROTOCOL_ERROR, "second CONNECT")),
            Packet::Auth(_) => Err(Exit::error(
                reason::PROTOCOL_ERROR,
                "AUTH without enhanced authentication",
            )),
            other => Err(Exit::error(
                reason::PROTOCOL_ERROR,
                format!("unexpected packet from client: {}", packet_name(&other)),
            )),
        }
    }

    /// Handles a packet that needs nothing awaited: a subscriber's PUBACK or
    /// PUBCOMP, or a PINGREQ; false for any other packet, which is
    /// [`on_packet`](Self::on_packet)'s. A subscriber's connection reads
    /// little else, and these go without building the handlers' future,
    /// and without moving the packet (a `Packet` is as large as a PUBLISH).
    pub(super) fn on_packet_now(&mut self, p: &Packet, now: u64) -> bool {
        let settled = match p {
            Packet::PubAck(r) => self.outbound.puback(r.packet_id),
            Packet::PubComp(r) => self.outbound.pubcomp(r.packet_id),
            Packet::PingReq => {
                self.io.push(Packet::PingResp);
                return true;
            }
            _ => return false,
        };
        self.settled(settled, now);
        true
    }

    /// A subscriber's acknowledgement moved the outbound window: the queue
    /// item it settled (if durable) is committed with the turn's others, and
    /// what waited for room goes out.
    fn settled(&mut self, seq: Option<u64>, now: u64) {
        self.acks.extend(seq);
        self.outbound.fill(now, &mut self.io, &mut self.acks);
    }

    /// A subscriber's PUBREC moved the outbound window.
    async fn on_ack_effect(&mut self, effect: AckEffect, now: u64) -> Result<(), Exit> {
        match effect {
            AckEffect::None => self.settled(None, now),
            AckEffect::Commit(seq) => self.settled(Some(seq), now),
            AckEffect::CommitReceived(seq, pid) => {
                let command = Command::Received(cmd::Received {
                    client_id: self.client_id.to_string(),
                    epoch: self.epoch,
                    seqs: vec![seq],
                });
                return self.submit(command, Reply::PubRel(pid)).await;
            }
        }
        Ok(())
    }

    async fn on_publish(&mut self, p: Publish, now: u64) -> Result<(), Exit> {
        self.broker.metrics.messages_received.inc();
        self.within_rate()?;
        let (qos, packet_id) = (p.qos as u8, p.packet_id);
        let continuing = qos == 2 && self.inbound.qos2_open(packet_id);
        let Some(msg) = self.inbound.accept(p, &self.client_id, now)? else {
            self.ack_publish(qos, packet_id, reason::NOT_AUTHORIZED);
            return Ok(());
        };
        if !self.may_publish(&msg.topic) {
            return self.publish_denied(&msg.topic, qos, packet_id);
        }
        if let Some(limit) = self.refusal(&msg, packet_id, continuing) {
            if qos == 0 {
                // No acknowledgement to withhold: dropped, and counted.
                self.broker.metrics.refused(limit, 0);
            } else {
                let reply = Reply::Refused {
                    pid: packet_id,
                    qos,
                    limit,
                };
                self.replies.push_ready(reply, Ok(CmdResult::QuotaExceeded));
            }
            return Ok(());
        }
        if self.broker.node.in_netsplit() {
            return self.publish_in_netsplit(msg, packet_id).await;
        }
        match (msg.qos, msg.retain) {
            (0, false) => {
                crate::router::route_qos0(&self.broker, Arc::new(msg));
                Ok(())
            }
            (0, true) => {
                // A retained QoS 0 publish changes state: it goes through the log.
                let command = self.publish_command(msg, 0);
                let _ = self.broker.node.submit_forget(command).await;
                Ok(())
            }
            (1, _) => {
                let command = self.publish_command(msg, 0);
                self.submit(command, Reply::PubAck(packet_id)).await
            }
            _ => {
                let command = self.publish_command(msg, packet_id);
                self.submit(command, Reply::PubRec(packet_id)).await
            }
        }
    }

    /// The limit that refuses this publish before it is proposed, if any:
    /// the disk alarm, while it is raised, refuses every new publish, and
    /// between two readings of the free space one that would store more than
    /// the headroom left. A QoS 2 PUBLISH whose packet id is already recorded
    /// (a resend, on this connection or after a reconnect) stores nothing
    /// new and goes on, so the client is never told "refused" about a
    /// message that was stored.
    fn refusal(&self, msg: &Message, packet_id: u16, continuing: bool) -> Option<Limit> {
        let disk = &self.broker.disk;
        let stores = msg.qos > 0 || msg.retain;
        let admitted = if stores {
            disk.admit(disk_cost(message_size(msg)))
        } else {
            !disk.raised()
        };
        if admitted {
            return None;
        }
        if msg.qos == 2 {
            let recorded = continuing
                || match self
                    .broker
                    .node
                    .inbound_qos2_recorded(&self.client_id, packet_id)
                {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, packet_id, "cannot read the inbound QoS 2 state; the publish is refused as new");
                        false
                    }
                };
            if recorded {
                return None;
            }
        }
        Some(Limit::DiskFreeLimit)
    }

    /// A publish while this node is in netsplit. With
    /// `allow_publish_during_netsplit` on it is accepted locally: a QoS 1/2
    /// (or retained) publish is written to this node's disk, acknowledged,
    /// and committed when quorum returns, whoever holds the session then
    /// (not guarded: it was acknowledged); QoS 0 goes to this side's
    /// subscribers. Off: QoS 0 is dropped and counted; QoS 1/2 waits
    /// `netsplit_wait` for quorum and is then refused, finally.
    async fn publish_in_netsplit(&mut self, msg: Message, packet_id: u16) -> Result<(), Exit> {
        let qos = msg.qos;
        if !self.accepts_locally(Op::Publish, &msg.props.user_properties) {
            if qos == 0 {
                self.broker.metrics.refused(Limit::Netsplit, 0);
                return Ok(());
            }
            let command = self.publish_command(msg, if qos == 2 { packet_id } else { 0 });
            let reply = if qos == 1 {
                Reply::PubAck(packet_id)
            } else {
                Reply::PubRec(packet_id)
            };
            return self.submit(command, reply).await;
        }
        if qos == 0 && !msg.retain {
            crate::router::route_qos0(&self.broker, Arc::new(msg));
            return Ok(());
        }
        let command = Command::Publish(cmd::Publish {
            client_id: self.client_id.clone(),
            packet_id: if qos == 2 { packet_id } else { 0 },
            msg: Arc::new(msg),
        });
        let reply = match qos {
            0 => {
                let _ = self.broker.node.submit_local(command).await;
                return Ok(());
            }
            1 => Reply::PubAck(packet_id),
            _ => Reply::PubRec(packet_id),
        };
        self.submit_local(command, reply).await
    }

    /// `packet_id` is kept for QoS 2 only: apply recognises a resent PUBLISH
    /// by it. Guarded by the connection's epoch: once the session is taken
    /// over, the publish is not applied.
    fn publish_command(&self, msg: raftmq_raft::Message, packet_id: u16) -> Command {
        Command::GuardedPublish(cmd::Guarded {
            epoch: self.epoch,
            cmd: cmd::Publish {
                client_id: self.client_id.clone(),
                packet_id,
                msg: Arc::new(msg),
            },
        })
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Exit> {
        let v5 = self.v5();
        let sub_id = s.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut filters = Vec::new();
        for f in s.filters {
            let (group, _) = split_shared(&f.filter);
            if group.is_some() && f.options.no_local && v5 {
                return Err(Exit::error(
                    reason::PROTOCOL_ERROR,
                    "no local on a shared subscription",
                ));
            }
            if !valid_filter(&f.filter) {
                codes.push(Some(if v5 {
                    reason::TOPIC_FILTER_INVALID
                } else {
                    reason::UNSPECIFIED_ERROR
                }));
                continue;
            }
            if !self.may_subscribe(&f.filter) {
                self.broker.metrics.acl_denied.inc();
                codes.push(Some(if v5 {
                    reason::NOT_AUTHORIZED
                } else {
                    reason::UNSPECIFIED_ERROR
                }));
                continue;
            }
            codes.push(None);
            filters.push((f.filter, convert::sub_opts(f.options, sub_id)));
        }
        if filters.is_empty() {
            let reason_codes = codes
                .into_iter()
                .map(|c| c.unwrap_or(reason::UNSPECIFIED_ERROR))
                .collect();
            self.io.push(Packet::SubAck(codec::SubAck {
                packet_id: s.packet_id,
                reason_codes,
                ..Default::default()
            }));
            return Ok(());
        }
        let command = Command::Subscribe(cmd::Subscribe {
            client_id: self.client_id.to_string(),
            epoch: self.epoch,
            filters: filters.clone(),
        });
        let reply = Reply::SubAck {
            pid: s.packet_id,
            codes,
            filters,
        };
        if self.accepts_locally(Op::Subscribe, &s.properties.user_properties) {
            return self.submit_local(command, reply).await;
        }
        self.submit(command, reply).await
    }

    async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Result<(), Exit> {
        let reply = Reply::UnsubAck {
            pid: u.packet_id,
            codes: vec![None; u.filters.len()],
        };
        let local = self.accepts_locally(Op::Unsubscribe, &u.user_properties);
        let command = Command::Unsubscribe(cmd::Unsubscribe {
            client_id: self.client_id.to_string(),
            epoch: self.epoch,
            filters: u.filters,
        });
        if local {
            return self.submit_local(command, reply).await;
        }
        self.submit(command, reply).await
    }

    /// The client ends the connection, possibly changing its session expiry.
    fn on_disconnect(&mut self, d: Disconnect) -> Exit {
        if let Some(e) = d.properties.session_expiry_interval {
            if self.expiry_s == 0 && e != 0 {
                return Exit::error(
                    reason::PROTOCOL_ERROR,
                    "session expiry set at DISCONNECT after 0 at CONNECT",
                );
            }
            self.new_expiry_s = Some(e);
        }
        Exit::Client {
            will: self.v5() && d.reason == reason::DISCONNECT_WITH_WILL_MESSAGE,
        }
    }
}

/// The bytes of a message that are stored: payload, topic, publisher and
/// properties.
fn message_size(msg: &Message) -> u64 {
    let p = &msg.props;
    let props = p.content_type.as_ref().map_or(0, String::len)
        + p.response_topic.as_ref().map_or(0, String::len)
        + p.correlation_data.as_ref().map_or(0, |d| d.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    (msg.payload.len() + msg.topic.len() + msg.publisher.len() + props) as u64
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::ConnAck(_) => "CONNACK",
        Packet::SubAck(_) => "SUBACK",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingResp => "PINGRESP",
        _ => "packet",
    }
}
