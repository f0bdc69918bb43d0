//! Tests of the client: against a real mosquitto ([`mosquitto`]) and against
//! scripted fake brokers ([`fake_broker`]), with the helpers both use.

use std::net::SocketAddr;

use super::{Client, Connack, ConnectOpts, SessionState, Version};

mod fake_broker;
mod mosquitto;

pub(super) fn opts(addr: SocketAddr, id: &str, v: Version, clean: bool) -> ConnectOpts {
    let mut o = ConnectOpts::new(addr, id, v);
    o.clean = clean;
    o
}

pub(super) async fn connect(
    addr: SocketAddr,
    id: &str,
    v: Version,
    clean: bool,
) -> (Client, Connack) {
    Client::connect(&opts(addr, id, v, clean), SessionState::new())
        .await
        .expect("connect")
}
