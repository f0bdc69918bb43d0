//! A small async MQTT 3.1.1 / 5.0 client whose every outcome is explicit.
//!
//! The harness records each operation as ok, definitely failed or unknown,
//! so this client never retries, reconnects or resends on its own: a
//! publish either gets its acknowledgement ([`Ok`]), a failure reason code
//! from the broker ([`MqttError::Refused`], the only definite failure, see
//! [`MqttError::is_definite`]), or ends unknown (timeout, connection lost).
//! Resending is the caller's choice: pick the packet id first
//! ([`Client::next_pkid`]), then publish again with `dup` set.
//!
//! - [`codec`]: packets and their wire encoding.
//! - [`client`]: [`Client`], the handle, and the task that owns the socket.

pub mod client;
pub mod codec;

pub use client::{Client, Connack, ConnectOpts, Message, MqttError, SessionState};
pub use codec::{Publish, Version};
