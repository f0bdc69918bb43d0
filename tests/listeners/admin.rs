//! `raftmq listener show|stop|start`: the listeners a node has, and
//! stopping and starting one while its connections stay.

use crate::common::*;
use crate::{section, v3_ok};

fn rows(b: &Broker) -> Vec<serde_json::Value> {
    let out = b.cli(&["listener", "show", "--json"]);
    out.assert_success("listener show");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["table"].as_array().cloned().unwrap_or_default()
}

fn row(b: &Broker, kind: &str, name: &str) -> serde_json::Value {
    rows(b)
        .into_iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("no listener {kind}.{name}"))
}

#[test]
fn listener_show_lists_every_listener_with_its_kind_address_status_and_options() {
    let (extra, ws) = (free_port(), free_port());
    let config = section("tcp.extra", extra, &[("max_connections", "10".into())])
        + &section("ws.web", ws, &[]);
    let b = Broker::start_with_config(&config);
    let _c = v3_ok(extra, "counted").expect("connect");
    let r = row(&b, "tcp", "extra");
    assert_eq!(r["address"], format!("127.0.0.1:{extra}"));
    assert_eq!(r["status"], "running");
    assert_eq!(r["connections"], 1);
    assert_eq!(r["options"], "max_connections=10");
    assert_eq!(row(&b, "ws", "web")["address"], format!("127.0.0.1:{ws}"));
    assert_eq!(
        row(&b, "tcp", "default")["address"],
        format!("127.0.0.1:{}", b.mqtt_port)
    );
    let table = b.cli(&["listener", "show"]);
    assert!(table.stdout.starts_with("name"), "{}", table.stdout);
}

#[test]
fn a_stopped_listener_refuses_new_connections_and_keeps_open_ones_until_started() {
    let port = free_port();
    let b = Broker::start_with_config(&section("tcp.extra", port, &[]));
    let mut open = v3_ok(port, "stays").expect("connect");
    b.cli(&["listener", "stop", "extra"]).assert_success("stop");
    assert_eq!(row(&b, "tcp", "extra")["status"], "stopped");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a stopped listener accepted a connection"
    );
    // The connection made before the stop still works.
    open.send(&Packet::PingReq);
    assert_eq!(open.recv(WAIT), Some(Packet::PingResp));
    b.cli(&["listener", "start", "tcp.extra"])
        .assert_success("start");
    assert_eq!(row(&b, "tcp", "extra")["status"], "running");
    assert!(v3_ok(port, "after-start").is_ok());
}

#[test]
fn an_unknown_listener_name_is_an_error() {
    let b = Broker::start();
    let out = b.cli(&["listener", "stop", "nope"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("no listener named `nope`"),
        "{}",
        out.stderr
    );
}
