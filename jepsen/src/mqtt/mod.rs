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
//! - [`client`]: [`Client`], the handle, and its connect options, CONNACK
//!   and messages.
//! - `error`: [`MqttError`], how an operation ended when it did not succeed.
//! - `session`: [`SessionState`], kept across the connections of one
//!   session.
//! - `connection`: the task that owns the socket (reader and writer).
//! - `acks`: the requests waiting for acknowledgements, shared by the
//!   handle and the task.

mod acks;
pub mod client;
pub mod codec;
mod connection;
mod error;
mod session;

#[cfg(test)]
mod tests;

pub use client::{Client, Connack, ConnectOpts, Message};
pub use codec::{Publish, Version};
pub use error::MqttError;
pub use session::SessionState;
