//! Test harness shared by every integration test binary: declares its parts
//! and re-exports them, with the `raftmq::codec` types, so that a test needs
//! only `use common::*`.
//!
//! * [`broker`]: [`Broker`], one broker process under test.
//! * [`backlog`]: numbered QoS 1 messages published fast ([`publish_numbered`])
//!   and checked for loss on a subscriber ([`drain_numbered`], [`Deliveries`]).
//! * [`cluster`]: [`Cluster`], several brokers joined into one Raft cluster.
//! * [`raw_client`]: [`RawClient`], a blocking MQTT client for exact protocol
//!   checks and malformed input; [`packets`]: the packets it sends.
//! * [`external`]: third-party clients (mosquitto, python paho-mqtt).
//! * [`process`]: child processes ([`run_cmd`], [`BgProcess`]); [`http`]:
//!   [`http_get`] for the admin API.
//! * [`unique`]: names and ports; [`wait`]: time bounds and [`wait_until`].
//! * [`tmpfs`]: [`TmpfsBroker`], a broker on a small tmpfs of its own (root).
//!
//! Every wait in here has a deadline; nothing blocks forever.

// Each test binary uses a different subset of the harness and its re-exports.
#![allow(dead_code, unused_imports)]

mod backlog;
mod broker;
mod cluster;
mod external;
mod http;
mod packets;
mod process;
mod raw_client;
mod tmpfs;
mod unique;
mod wait;

pub use backlog::*;
pub use broker::*;
pub use cluster::*;
pub use external::*;
pub use http::*;
pub use packets::*;
pub use process::*;
pub use raw_client::*;
pub use tmpfs::*;
pub use unique::*;
pub use wait::*;

pub use raftmq::codec::{
    decode, encode, AckProperties, ConnAck, Connect, ConnectProperties, Disconnect,
    DisconnectProperties, LastWill, Packet, Protocol, PubResp, Publish, PublishProperties, QoS,
    SubAck, SubOptions, Subscribe, SubscribeFilter, SubscribeProperties, UnsubAck, Unsubscribe,
    WillProperties,
};
