//! `ws` and `wss` listeners: MQTT.js from node over both, MQTT.js in a
//! headless Chromium page over ws://, and the upgrade's refusals (a path
//! other than /mqtt, no `mqtt` subprotocol).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::certs::Certs;
use crate::common::*;
use crate::{node, npm_dir, q, section};

#[test]
fn mqtt_js_publishes_and_receives_over_ws() {
    let port = free_port();
    let _b = Broker::start_with_config(&section("ws.default", port, &[]));
    let url = format!("ws://127.0.0.1:{port}/mqtt");
    let out = node(
        "ws_pubsub.js",
        &[&url, &unique("js/ws")],
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "received hello over ws");
}

#[test]
fn mqtt_js_publishes_and_receives_over_wss() {
    let certs = Certs::make();
    let port = free_port();
    let config = section(
        "wss.default",
        port,
        &[
            ("certfile", q(certs.p("server.pem"))),
            ("keyfile", q(certs.p("server.key"))),
        ],
    );
    let _b = Broker::start_with_config(&config);
    let url = format!("wss://127.0.0.1:{port}/mqtt");
    let out = node(
        "ws_pubsub.js",
        &[&url, &unique("js/wss"), &certs.p("ca.pem")],
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "received hello over wss");
}

#[test]
fn a_browser_page_subscribes_over_ws_and_shows_a_message_published_over_tcp() {
    let port = free_port();
    let b = Broker::start_with_config(&section("ws.default", port, &[]));
    let dir = tempfile::tempdir().expect("tempdir");
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    std::fs::copy(js.join("page.html"), dir.path().join("page.html")).expect("page");
    std::fs::copy(
        npm_dir().join("node_modules/mqtt/dist/mqtt.min.js"),
        dir.path().join("mqtt.min.js"),
    )
    .expect("mqtt.min.js");
    let topic = unique("browser/ws");
    let page = format!(
        "file://{}/page.html?port={port}&topic={topic}",
        dir.path().display()
    );
    // Where the screenshot goes: RAFTMQ_BROWSER_SCREENSHOT, else the tempdir.
    let shot = std::env::var("RAFTMQ_BROWSER_SCREENSHOT")
        .unwrap_or_else(|_| dir.path().join("browser-ws.png").display().to_string());
    let profile = dir.path().join("profile");
    let out = node(
        "browser_ws.js",
        &[
            &page,
            &b.mqtt_port.to_string(),
            &topic,
            &shot,
            &profile.display().to_string(),
        ],
        Duration::from_secs(90),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.trim(), "title received: hello browser");
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

/// Sends an HTTP upgrade request for `path`, offering `protocol`; returns
/// the status line.
fn upgrade(port: u16, path: &str, protocol: Option<&str>) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let proto = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    text.lines().next().unwrap_or_default().to_string()
        + if text
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: mqtt")
        {
            " [mqtt]"
        } else {
            ""
        }
}

#[test]
fn the_upgrade_needs_the_mqtt_path_and_subprotocol() {
    let port = free_port();
    let _b = Broker::start_with_config(&section("ws.default", port, &[]));
    assert_eq!(
        upgrade(port, "/mqtt", Some("mqtt")),
        "HTTP/1.1 101 Switching Protocols [mqtt]"
    );
    assert!(upgrade(port, "/other", Some("mqtt")).starts_with("HTTP/1.1 404"));
    assert!(upgrade(port, "/mqtt", None).starts_with("HTTP/1.1 400"));
}
