//! Log commands: every replicated state change of the broker, and the values
//! they carry. Commands hold everything apply needs (including timestamps), so
//! apply never reads a clock.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Decoding the shared values a PUBLISH carries straight into their `Arc`.
/// serde's own `Arc<T>` decodes a `Box<T>` and then copies it into a second
/// allocation; these allocate once. (Encoding is serde's: the value itself.)
mod shared {
    use std::fmt;
    use std::sync::Arc;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::Deserialize;

    use super::Message;

    /// An `Arc<str>` from the string, borrowed from the input where the
    /// decoder can (bincode from a slice): one allocation, one copy.
    pub fn str<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        struct ArcStr;
        impl Visitor<'_> for ArcStr {
            type Value = Arc<str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Arc<str>, E> {
                Ok(Arc::from(v))
            }
        }
        d.deserialize_str(ArcStr)
    }

    /// An `Arc<Message>` built around the decoded message.
    pub fn message<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Message>, D::Error> {
        Message::deserialize(d).map(Arc::new)
    }
}

/// "Never" for expiry intervals, as in MQTT 5.
pub const NEVER: u32 = u32::MAX;

/// MQTT 5 properties that travel with a message unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgProps {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

/// An application message as stored and routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Client id of the publisher (for no-local); shared with its
    /// connection, encoded as the string itself.
    #[serde(deserialize_with = "shared::str")]
    pub publisher: Arc<str>,
    pub props: MsgProps,
    /// Wall-clock ms when the broker accepted it.
    pub created_ms: u64,
    /// Absolute expiry (ms) from the message expiry interval, if any.
    pub expires_ms: Option<u64>,
}

impl Message {
    /// A message the broker itself publishes (`$SYS`): QoS 0, no publisher,
    /// no properties, no expiry.
    pub fn system(topic: String, value: String, retain: bool, now_ms: u64) -> Message {
        Message {
            topic,
            payload: Bytes::from(value.into_bytes()),
            qos: 0,
            retain,
            publisher: Arc::from(""),
            props: MsgProps::default(),
            created_ms: now_ms,
            expires_ms: None,
        }
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        matches!(self.expires_ms, Some(e) if e <= now_ms)
    }
}

/// A last will: the message and its delay interval in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Will {
    pub msg: Message,
    /// MQTT 5 will expiry interval in seconds, applied when it is published.
    pub expiry_s: Option<u32>,
    pub delay_s: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOpts {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub sub_id: Option<u32>,
}

impl SubOpts {
    /// A plain subscription at `qos`: no flags, no identifier.
    pub fn with_qos(qos: u8) -> SubOpts {
        SubOpts {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            sub_id: None,
        }
    }
}

/// The first six cluster-wide settings, as [`Command::Configure`] carries
/// them and the Meta table's "settings" row stores them (a storage format:
/// never add fields). Every cluster-wide key, these included, is changed by
/// [`Command::SetSettings`] and held by [`crate::settings::ClusterConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Outgoing QoS 1/2 window per session (0 = unlimited).
    pub max_inflight_messages: u32,
    /// Queued for an online session beyond its window (-1 = unlimited).
    pub max_online_messages: i64,
    /// QoS 1/2 queued for an offline persistent session (-1 = unlimited).
    pub max_offline_messages: i64,
    pub suppress_lwt_on_session_takeover: bool,
    /// Upper bound on will delay in seconds (NEVER = no bound).
    pub max_last_will_delay: u32,
    /// Per-session quota: payload bytes a persistent session's queue may
    /// hold (-1 = unlimited). A QoS 1/2 publish that would be queued for a
    /// session at its quota is refused before it is acknowledged.
    pub max_queue_bytes: i64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            max_inflight_messages: 20,
            max_online_messages: -1,
            max_offline_messages: -1,
            suppress_lwt_on_session_takeover: false,
            max_last_will_delay: NEVER,
            max_queue_bytes: -1,
        }
    }
}

/// Every replicated state change. Each variant wraps a struct of the same
/// name. On the wire and in the log (bincode), a newtype variant wrapping a
/// struct is encoded exactly like a struct variant with those fields: the
/// variant index, then the fields in order. So variant order, field order and
/// field types here are a storage format: never reorder or retype them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Register(Register),
    Disconnect(Disconnect),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Publish(Publish),
    Release(Release),
    Ack(Ack),
    Received(Received),
    Tick(Tick),
    NodeRestarted(NodeRestarted),
    /// Cluster-wide settings change.
    Configure(ClusterSettings),
    /// A publish from the connection of a session epoch: applied only while
    /// that epoch is the session's. ([`Command::Publish`] is what entries
    /// written before publishes carried their epoch hold.)
    GuardedPublish(Guarded<Publish>),
    /// A PUBREL from the connection of a session epoch, guarded the same way.
    GuardedRelease(Guarded<Release>),
    /// `session disconnect`, from any node.
    AdminDisconnect(AdminDisconnect),
    /// Cluster-wide settings changed by key (`raftmq set`, or the config
    /// file of the node that bootstraps the cluster).
    SetSettings(SetSettings),
    /// The data-directory identity a member presented (docs/design.md §4):
    /// recorded so every leader refuses another directory under its id.
    Identify(Identify),
    /// A registration accepted during a netsplit, committed when quorum
    /// returned (`allow_register_during_netsplit`).
    RegisterHeld(RegisterHeld),
    /// An MQTT user added, or its password changed (`raftmq user add`).
    SetUser(SetUser),
    /// An MQTT user deleted (`raftmq user delete`).
    DeleteUser(DeleteUser),
    /// The ACL replaced as a whole (`raftmq acl load`).
    SetAcl(SetAcl),
    /// An admin API key added (`raftmq api-key create|add`).
    AddApiKey(AddApiKey),
    /// An admin API key deleted (`raftmq api-key delete`).
    DeleteApiKey(DeleteApiKey),
}

/// An MQTT user and the argon2 PHC string of its password (salt and
/// parameters inside). The password itself never enters the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUser {
    pub name: String,
    pub hash: String,
    pub now_ms: u64,
}

/// Deletes an MQTT user; [`CmdResult::Missing`] if there was none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUser {
    pub name: String,
}

/// The ACL's rule lines, as text (the broker parses and checks them before
/// proposing; apply stores them as they are). Empty: no rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAcl {
    pub rules: String,
    pub now_ms: u64,
}

/// An admin API key, as the hex SHA-256 digest of the key (the key itself
/// never enters the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddApiKey {
    pub digest: String,
    pub now_ms: u64,
}

/// Deletes an admin API key by digest; [`CmdResult::Missing`] if there was
/// none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteApiKey {
    pub digest: String,
}

/// `session disconnect`: the client's connection, on whatever node, ends as
/// an administrative action (MQTT 5 DISCONNECT 0x98; the will is published,
/// as for any close the client did not ask for). With `cleanup` the session
/// ends too (subscriptions and queue deleted), connected or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDisconnect {
    pub client_id: String,
    pub cleanup: bool,
    pub now_ms: u64,
}

/// Cluster-wide settings changed by key, each value as text that
/// [`crate::settings::ClusterConfig::set`] reads. Applied all or nothing: a
/// pair apply cannot read refuses the whole command
/// ([`CmdResult::SettingsRefused`]). Keys and values are strings so that
/// new keys need no new log format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSettings {
    pub changes: Vec<(String, String)>,
    /// The config file that supplied the values when its node bootstrapped
    /// the cluster; `None` for an operator's `set`.
    pub bootstrap_file: Option<String>,
    pub now_ms: u64,
}

/// A command that a connection proposed for its session epoch. Once the
/// client id has registered again (a takeover) it is stale and changes
/// nothing: a superseded connection whose node has not yet learnt of the
/// takeover, or a proposal that reaches the log only after its connection
/// gave up on it, cannot act for the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guarded<T> {
    pub epoch: u64,
    pub cmd: T,
}

/// CONNECT accepted: registers the client on `node` and starts a new session
/// epoch (the log index of this entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub client_id: String,
    pub node: u64,
    pub clean_start: bool,
    /// Session expiry in seconds after disconnect (0 = ends at disconnect,
    /// NEVER = never).
    pub expiry_s: u32,
    /// Boxed: inline, the will (a whole message) made this the largest
    /// variant, and every command as large as it (288 bytes, moved at each
    /// channel send, batch push and decode); boxed, a command takes 64.
    /// serde encodes a `Box<T>` as the `T`: the log format is unchanged.
    pub will: Option<Box<Will>>,
    pub now_ms: u64,
}

/// A registration a node accepted while in netsplit
/// (`allow_register_during_netsplit`), proposed when quorum returned. Its
/// epoch was chosen by that node (see [`held_epoch`]), so that its
/// connection could work at once. The newer registration of a client id
/// wins: if the client id registered later than `reg.now_ms` (on the other
/// side of the split), this one changes nothing and its connection is
/// closed as taken over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterHeld {
    pub reg: Register,
    pub epoch: u64,
}

/// The session epoch of a registration held during a netsplit: the top bit
/// set (a log-derived epoch, `index << 16 | position`, never has it), then
/// the node and its proposer's sequence number, so no two collide.
pub fn held_epoch(node: u64, seq: u64) -> u64 {
    (1 << 63) | ((node & 0x7fff) << 48) | (seq & ((1 << 48) - 1))
}

/// Was this epoch chosen for a registration held during a netsplit?
pub fn is_held_epoch(epoch: u64) -> bool {
    epoch >> 63 == 1
}

/// The connection of `epoch` ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    pub client_id: String,
    pub epoch: u64,
    pub publish_will: bool,
    /// MQTT 5 DISCONNECT may change the session expiry.
    pub new_expiry_s: Option<u32>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    pub client_id: String,
    pub epoch: u64,
    pub filters: Vec<(String, SubOpts)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    pub client_id: String,
    pub epoch: u64,
    pub filters: Vec<String>,
}

/// A QoS 1/2 publish, or a retained publish of any QoS. `packet_id` is the
/// inbound QoS 2 packet id (0 otherwise), for duplicate detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Shared with the connection that proposes it (a PUBLISH costs no copy
    /// of its client id); encoded as the string itself.
    #[serde(deserialize_with = "shared::str")]
    pub client_id: Arc<str>,
    pub packet_id: u16,
    /// Shared: apply hands the message on to its targets without copying
    /// it; encoded as the message itself.
    #[serde(deserialize_with = "shared::message")]
    pub msg: Arc<Message>,
}

/// PUBREL from a publisher: forget the inbound QoS 2 packet id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub client_id: String,
    pub packet_id: u16,
}

/// PUBACK / PUBCOMP from a subscriber: drop these queue items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub client_id: String,
    pub epoch: u64,
    pub seqs: Vec<u64>,
}

/// PUBREC from a subscriber: these QoS 2 items are received; from now on only
/// PUBREL is resent for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub client_id: String,
    pub epoch: u64,
    pub seqs: Vec<u64>,
}

/// Time passed: fire due wills and expire sessions. Proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub now_ms: u64,
}

/// Member `node` runs on the data directory whose random identity is
/// `identity` (created with the directory, never regenerated). Proposed by
/// the leader when it accepts a join or a restarted member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identify {
    pub node: u64,
    pub identity: u128,
}

/// A node restarted, or left the cluster: every session it owned lost its
/// connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRestarted {
    pub node: u64,
    pub now_ms: u64,
}

/// A command with its proposer-assigned sequence number. With the request's
/// origin it is the command's id, so that apply can recognise a command that
/// was proposed twice (a retry after a leader change or a lost reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// 0 = no id (never deduplicated; tests and tools).
    pub seq: u64,
    pub cmd: Command,
}

/// The payload of one log entry: a batch of commands from one proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The node whose proposer numbered these commands.
    pub origin: u64,
    /// Every command of `origin` numbered below this has been resolved (its
    /// result reached the proposer), so apply may forget their ids.
    pub floor: u64,
    /// Shared: the proposer keeps the batch for a resend, openraft and the
    /// log cache hand the entry to apply and to each follower's
    /// replication, and none of them copies the commands (the encoding is
    /// a plain sequence, as before).
    pub cmds: Arc<Vec<Envelope>>,
}

/// One item of a session's queue, as handed to the connection that delivers
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Queue sequence for durable (persistent-session) items; packet ids are
    /// derived from it so they survive restarts.
    pub seq: Option<u64>,
    pub msg: Arc<Message>,
    pub qos: u8,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// QoS 2: PUBREC was recorded; resend PUBREL, not PUBLISH.
    pub received: bool,
}

impl Delivery {
    /// A delivery to a connected client that is not queued in the log (QoS 0,
    /// `$SYS`): no queue sequence.
    pub fn live(msg: Arc<Message>, qos: u8, retain: bool, sub_ids: Vec<u32>) -> Delivery {
        Delivery {
            seq: None,
            msg,
            qos,
            retain,
            sub_ids,
            received: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdResult {
    Registered {
        epoch: u64,
        session_present: bool,
    },
    Subscribed {
        /// Granted QoS or failure code per filter.
        codes: Vec<u8>,
        /// Retained messages to send after SUBACK.
        retained: Vec<Delivery>,
    },
    Unsubscribed {
        /// 0x00 success or 0x11 no subscription existed, per filter.
        codes: Vec<u8>,
    },
    Published {
        /// A resent QoS 2 publish whose packet id was already recorded.
        duplicate: bool,
        /// Number of subscribers matched (0 => MQTT 5 reason 0x10).
        matched: u32,
    },
    Released {
        /// false => MQTT 5 PUBCOMP reason 0x92 (packet id not found).
        found: bool,
    },
    Done,
    /// The command was for a session epoch that is no longer current.
    Stale,
    /// This command id was applied before (a retried proposal); its original
    /// result went to the first attempt.
    Duplicate,
    /// Refused, and nothing applied: storing it would exceed a resource
    /// limit (a session's `max_queue_bytes`). MQTT 5 PUBACK/PUBREC 0x97; an
    /// MQTT 3 connection is closed.
    QuotaExceeded,
    /// A [`Command::SetSettings`] that apply could not read (unknown key or
    /// bad value); nothing changed.
    SettingsRefused(String),
    /// A delete (user, API key) found nothing to delete.
    Missing,
}

/// The result of one log entry: one result per command, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub results: Vec<CmdResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{decode, encode};

    /// Commands are moved by value through the proposer's channel, its
    /// batches and every decode; a large variant makes every command that
    /// large (a will held inline made them 288 bytes).
    #[test]
    fn a_command_is_no_larger_than_a_few_words() {
        let size = std::mem::size_of::<Command>();
        assert!(size <= 80, "Command is {size} bytes");
    }

    /// `Command` as it was before its variants wrapped named structs: what
    /// existing logs and snapshots hold.
    #[derive(Serialize)]
    enum OldCommand {
        Register {
            client_id: String,
            node: u64,
            clean_start: bool,
            expiry_s: u32,
            will: Option<Will>,
            now_ms: u64,
        },
        Disconnect {
            client_id: String,
            epoch: u64,
            publish_will: bool,
            new_expiry_s: Option<u32>,
            now_ms: u64,
        },
        Subscribe {
            client_id: String,
            epoch: u64,
            filters: Vec<(String, SubOpts)>,
        },
        Unsubscribe {
            client_id: String,
            epoch: u64,
            filters: Vec<String>,
        },
        Publish {
            client_id: String,
            packet_id: u16,
            msg: Message,
        },
        Release {
            client_id: String,
            packet_id: u16,
        },
        Ack {
            client_id: String,
            epoch: u64,
            seqs: Vec<u64>,
        },
        Received {
            client_id: String,
            epoch: u64,
            seqs: Vec<u64>,
        },
        Tick {
            now_ms: u64,
        },
        NodeRestarted {
            node: u64,
            now_ms: u64,
        },
        Configure(ClusterSettings),
    }

    fn message() -> Message {
        Message {
            topic: "t/1".into(),
            payload: Bytes::from_static(b"payload"),
            qos: 2,
            retain: true,
            publisher: "p".into(),
            props: MsgProps {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..MsgProps::default()
            },
            created_ms: 1_700_000_000_000,
            expires_ms: Some(1_700_000_060_000),
        }
    }

    /// Each old-style value with the new value it must decode into.
    fn pairs() -> Vec<(OldCommand, Command)> {
        let will = Will {
            msg: message(),
            expiry_s: Some(30),
            delay_s: 5,
        };
        let opts = SubOpts {
            qos: 1,
            no_local: true,
            retain_as_published: false,
            retain_handling: 2,
            sub_id: Some(7),
        };
        vec![
            (
                OldCommand::Register {
                    client_id: "c".into(),
                    node: 3,
                    clean_start: true,
                    expiry_s: NEVER,
                    will: Some(will.clone()),
                    now_ms: 11,
                },
                Command::Register(Register {
                    client_id: "c".into(),
                    node: 3,
                    clean_start: true,
                    expiry_s: NEVER,
                    will: Some(Box::new(will)),
                    now_ms: 11,
                }),
            ),
            (
                OldCommand::Disconnect {
                    client_id: "c".into(),
                    epoch: 1 << 20,
                    publish_will: true,
                    new_expiry_s: Some(60),
                    now_ms: 12,
                },
                Command::Disconnect(Disconnect {
                    client_id: "c".into(),
                    epoch: 1 << 20,
                    publish_will: true,
                    new_expiry_s: Some(60),
                    now_ms: 12,
                }),
            ),
            (
                OldCommand::Subscribe {
                    client_id: "c".into(),
                    epoch: 5,
                    filters: vec![("a/+".into(), opts)],
                },
                Command::Subscribe(Subscribe {
                    client_id: "c".into(),
                    epoch: 5,
                    filters: vec![("a/+".into(), opts)],
                }),
            ),
            (
                OldCommand::Unsubscribe {
                    client_id: "c".into(),
                    epoch: 5,
                    filters: vec!["a/+".into(), "#".into()],
                },
                Command::Unsubscribe(Unsubscribe {
                    client_id: "c".into(),
                    epoch: 5,
                    filters: vec!["a/+".into(), "#".into()],
                }),
            ),
            (
                OldCommand::Publish {
                    client_id: "p".into(),
                    packet_id: 513,
                    msg: message(),
                },
                Command::Publish(Publish {
                    client_id: "p".into(),
                    packet_id: 513,
                    msg: message().into(),
                }),
            ),
            (
                OldCommand::Release {
                    client_id: "p".into(),
                    packet_id: 513,
                },
                Command::Release(Release {
                    client_id: "p".into(),
                    packet_id: 513,
                }),
            ),
            (
                OldCommand::Ack {
                    client_id: "c".into(),
                    epoch: 5,
                    seqs: vec![0, 300, u64::MAX],
                },
                Command::Ack(Ack {
                    client_id: "c".into(),
                    epoch: 5,
                    seqs: vec![0, 300, u64::MAX],
                }),
            ),
            (
                OldCommand::Received {
                    client_id: "c".into(),
                    epoch: 5,
                    seqs: vec![4],
                },
                Command::Received(Received {
                    client_id: "c".into(),
                    epoch: 5,
                    seqs: vec![4],
                }),
            ),
            (
                OldCommand::Tick { now_ms: 99 },
                Command::Tick(Tick { now_ms: 99 }),
            ),
            (
                OldCommand::NodeRestarted {
                    node: 2,
                    now_ms: 98,
                },
                Command::NodeRestarted(NodeRestarted {
                    node: 2,
                    now_ms: 98,
                }),
            ),
            (
                OldCommand::Configure(ClusterSettings::default()),
                Command::Configure(ClusterSettings::default()),
            ),
        ]
    }

    #[test]
    fn commands_written_before_the_named_structs_still_decode() {
        for (old, new) in pairs() {
            let bytes = encode(&old).unwrap();
            assert_eq!(decode::<Command>(&bytes).unwrap(), new);
            assert_eq!(encode(&new).unwrap(), bytes, "{new:?} encodes as before");
        }
    }

    #[test]
    fn a_message_shares_its_publisher_and_encodes_it_as_the_string_it_was() {
        /// `Message` as it was while its publisher was a `String`.
        #[derive(Serialize)]
        struct StringPublisher {
            topic: String,
            payload: Bytes,
            qos: u8,
            retain: bool,
            publisher: String,
            props: MsgProps,
            created_ms: u64,
            expires_ms: Option<u64>,
        }
        let m = message();
        let old = StringPublisher {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos,
            retain: m.retain,
            publisher: m.publisher.to_string(),
            props: m.props.clone(),
            created_ms: m.created_ms,
            expires_ms: m.expires_ms,
        };
        let bytes = encode(&old).unwrap();
        assert_eq!(decode::<Message>(&bytes).unwrap(), m);
        assert_eq!(encode(&m).unwrap(), bytes);
    }
}
