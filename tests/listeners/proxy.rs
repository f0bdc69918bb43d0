//! `proxy_protocol` listeners: the client address a PROXY v1 or v2 header
//! gives is the one `session show` lists; a connection without the header
//! is closed.

use crate::common::*;
use crate::{refused, section, Answer, Plain};

fn proxied_broker() -> (Broker, u16) {
    let port = free_port();
    let b = Broker::start_with_config(&section(
        "tcp.behind_lb",
        port,
        &[("proxy_protocol", "true".into())],
    ));
    (b, port)
}

/// Connects `client_id` after `header`; returns the peer `session show`
/// lists for it.
fn peer_after(b: &Broker, port: u16, header: &[u8], client_id: &str) -> String {
    let mut c = Plain::open(port, Protocol::V311);
    c.send_raw(header);
    match c.connect(v3_connect(client_id, true)) {
        Answer::ConnAck(a) => assert_eq!(a.code, 0),
        Answer::Closed => panic!("closed"),
    }
    let out = b.cli(&["session", "show", "--client_id", client_id, "--json"]);
    out.assert_success("session show");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["table"][0]["peer"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_proxy_v1_header_makes_its_source_the_client_address() {
    let (b, port) = proxied_broker();
    let peer = peer_after(
        &b,
        port,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 1883\r\n",
        "v1-client",
    );
    assert_eq!(peer, "203.0.113.7:51234");
}

#[test]
fn a_proxy_v2_header_makes_its_source_the_client_address() {
    let (b, port) = proxied_broker();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([0x21, 0x21, 0, 36]); // v2 PROXY, TCP over IPv6, 36 bytes
    let src: std::net::Ipv6Addr = "2001:db8::42".parse().unwrap();
    h.extend(src.octets());
    h.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend(40000u16.to_be_bytes());
    h.extend(1883u16.to_be_bytes());
    let peer = peer_after(&b, port, &h, "v2-client");
    assert_eq!(peer, "[2001:db8::42]:40000");
}

#[test]
fn a_connection_without_the_header_is_closed_on_a_proxy_listener() {
    let (b, port) = proxied_broker();
    let mut c = Plain::open(port, Protocol::V311);
    assert_eq!(c.connect(v3_connect("direct", true)), Answer::Closed);
    assert!(wait_until(WAIT, || refused(
        &b,
        "tcp.behind_lb",
        "proxy_protocol"
    ) == 1));
    // The plain listener next to it shows the socket's own address.
    let mut d = Plain::open(b.mqtt_port, Protocol::V311);
    let local = d.stream.local_addr().unwrap().to_string();
    assert!(matches!(
        d.connect(v3_connect("plain", true)),
        Answer::ConnAck(_)
    ));
    let out = b.cli(&["session", "show", "--client_id", "plain", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["table"][0]["peer"], serde_json::json!(local));
}
