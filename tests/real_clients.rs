//! Third-party clients against the broker: mosquitto_pub / mosquitto_sub
//! (MQTT 3.1, 3.1.1 and 5) and python paho-mqtt (tests/py/*.py).

mod common;

use std::time::Duration;

use common::*;

fn port(b: &Broker) -> String {
    b.mqtt_port.to_string()
}

fn mosquitto_round_trip(version: &str, qos: &str) {
    let b = Broker::start();
    let t = unique("mosq/rt").replace('-', "/");
    let mut sub = MosqSub::start(b.mqtt_port, &["-V", version, "-q", qos, "-t", &t]);
    for i in 0..3 {
        mosquitto_pub(
            b.mqtt_port,
            &[
                "-V",
                version,
                "-q",
                qos,
                "-t",
                &t,
                "-m",
                &format!("msg-{i}"),
            ],
        )
        .assert_success("mosquitto_pub");
    }
    let got = sub.messages(3, WAIT);
    let seen: Vec<(String, u8)> = got.iter().map(|m| (m.payload.clone(), m.qos)).collect();
    let q: u8 = qos.parse().unwrap();
    assert_eq!(
        seen,
        vec![
            ("msg-0".into(), q),
            ("msg-1".into(), q),
            ("msg-2".into(), q)
        ],
        "{}",
        sub.proc.describe()
    );
    assert!(got.iter().all(|m| m.topic == t && !m.retain));
}

#[test]
fn mosquitto_clients_round_trip_qos0_over_311() {
    mosquitto_round_trip("mqttv311", "0");
}

#[test]
fn mosquitto_clients_round_trip_qos1_over_311() {
    mosquitto_round_trip("mqttv311", "1");
}

#[test]
fn mosquitto_clients_round_trip_qos2_over_311() {
    mosquitto_round_trip("mqttv311", "2");
}

#[test]
fn mosquitto_clients_round_trip_qos2_over_v5() {
    mosquitto_round_trip("mqttv5", "2");
}

#[test]
fn mosquitto_clients_round_trip_qos1_over_31() {
    mosquitto_round_trip("mqttv31", "1");
}

#[test]
fn mosquitto_clients_v5_pass_user_properties_and_publish_properties() {
    let b = Broker::start();
    let t = unique("mosq/props").replace('-', "/");
    let mut sub = MosqSub::start(b.mqtt_port, &["-V", "mqttv5", "-q", "1", "-t", &t]);
    mosquitto_pub(
        b.mqtt_port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            &t,
            "-m",
            "with props",
            "-D",
            "publish",
            "user-property",
            "k1",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "content-type",
            "text/x-test",
            "-D",
            "publish",
            "response-topic",
            "reply/to",
            "-D",
            "publish",
            "message-expiry-interval",
            "60",
        ],
    )
    .assert_success("mosquitto_pub");
    let got = sub.messages(1, WAIT);
    assert_eq!(got.len(), 1, "{}", sub.proc.describe());
    let m = &got[0];
    assert_eq!(m.payload, "with props");
    assert_eq!(m.user_props, "k1:v1 k2:v2");
    assert_eq!(m.content_type, "text/x-test");
    assert_eq!(m.response_topic, "reply/to");
    let expiry: u32 = m.expiry.parse().unwrap_or(0);
    assert!((58..=60).contains(&expiry), "expiry {:?}", m.expiry);
}

#[test]
fn mosquitto_sub_gets_the_retained_message_with_the_retain_flag() {
    let b = Broker::start();
    let t = unique("mosq/ret").replace('-', "/");
    mosquitto_pub(b.mqtt_port, &["-q", "1", "-r", "-t", &t, "-m", "retained!"])
        .assert_success("mosquitto_pub -r");
    let mut sub = MosqSub::start(b.mqtt_port, &["-q", "1", "-t", &t]);
    let got = sub.messages(1, WAIT);
    assert_eq!(got.len(), 1, "{}", sub.proc.describe());
    assert_eq!(got[0].payload, "retained!");
    assert!(got[0].retain);
}

#[test]
fn mosquitto_sub_persistent_session_gets_messages_published_while_offline() {
    let b = Broker::start();
    let t = unique("mosq/persist").replace('-', "/");
    let id = unique("mosqp");
    let p = port(&b);
    // Subscribe once (persistent), then exit.
    let first = run_cmd(
        std::process::Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-c",
            "-i",
            &id,
            "-q",
            "1",
            "-t",
            &t,
            "-E",
        ]),
        Duration::from_secs(10),
    );
    first.assert_success("mosquitto_sub -c -E");
    for i in 0..2 {
        mosquitto_pub(
            b.mqtt_port,
            &["-q", "1", "-t", &t, "-m", &format!("off-{i}")],
        )
        .assert_success("mosquitto_pub");
    }
    let out = run_cmd(
        std::process::Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-c",
            "-i",
            &id,
            "-q",
            "1",
            "-t",
            &t,
            "-C",
            "2",
            "-W",
            "8",
        ]),
        Duration::from_secs(10),
    );
    out.assert_success("mosquitto_sub -c -C 2");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        vec!["off-0", "off-1"]
    );
}

#[test]
fn mosquitto_sub_v5_with_empty_client_id_gets_an_assigned_id() {
    let b = Broker::start();
    let t = unique("mosq/assigned").replace('-', "/");
    // mosquitto_sub -V mqttv5 without -i sends an empty client id.
    let mut sub = MosqSub::start(b.mqtt_port, &["-V", "mqttv5", "-t", &t]);
    let lines = sub.proc.drain().to_vec();
    let connack = lines
        .iter()
        .find(|l| l.contains("received CONNACK"))
        .unwrap_or_else(|| panic!("no CONNACK line: {lines:?}"));
    assert!(connack.ends_with("(0)"), "{connack}");
    assert!(
        !connack.starts_with("Client (null)"),
        "no id assigned: {connack}"
    );
    mosquitto_pub(b.mqtt_port, &["-V", "mqttv5", "-t", &t, "-m", "hi"]).assert_success("pub");
    assert_eq!(sub.messages(1, WAIT).len(), 1);
}

#[test]
fn mosquitto_sub_wildcard_subscription_receives_matching_topics_only() {
    let b = Broker::start();
    let root = unique("mosq/wild").replace('-', "/");
    let filter = format!("{root}/+/temp");
    let mut sub = MosqSub::start(b.mqtt_port, &["-q", "1", "-t", &filter]);
    for (sub_topic, payload) in [
        ("a/temp", "1"),
        ("a/b/temp", "2"),
        ("b/temp", "3"),
        ("b/hum", "4"),
    ] {
        mosquitto_pub(
            b.mqtt_port,
            &[
                "-q",
                "1",
                "-t",
                &format!("{root}/{sub_topic}"),
                "-m",
                payload,
            ],
        )
        .assert_success("mosquitto_pub");
    }
    // Marker last: when it arrives, everything before it has been routed.
    mosquitto_pub(
        b.mqtt_port,
        &["-q", "1", "-t", &format!("{root}/z/temp"), "-m", "end"],
    )
    .assert_success("pub");
    let got: Vec<String> = sub
        .messages(3, WAIT)
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, vec!["1", "3", "end"]);
}

// ---------------------------------------------------------------------------
// paho-mqtt (python)
// ---------------------------------------------------------------------------

fn paho(script: &str, b: &Broker, extra: &[&str]) {
    let p = port(b);
    let mut args = vec!["--port", p.as_str()];
    args.extend_from_slice(extra);
    let out = python(script, &args, Duration::from_secs(40));
    out.assert_success(&format!("python3 tests/py/{script} {extra:?}"));
}

#[test]
fn paho_v311_qos_0_1_2_round_trip() {
    let b = Broker::start();
    paho("pubsub.py", &b, &["--protocol", "311"]);
}

#[test]
fn paho_v5_qos_0_1_2_round_trip() {
    let b = Broker::start();
    paho("pubsub.py", &b, &["--protocol", "5"]);
}

#[test]
fn paho_v31_qos_0_1_2_round_trip() {
    let b = Broker::start();
    paho("pubsub.py", &b, &["--protocol", "31", "--count", "9"]);
}

#[test]
fn paho_v5_publish_properties_pass_through() {
    let b = Broker::start();
    paho("properties.py", &b, &[]);
}

#[test]
fn paho_v311_persistent_session_resumes_with_offline_messages() {
    let b = Broker::start();
    paho("session.py", &b, &["--protocol", "311"]);
}

#[test]
fn paho_v5_persistent_session_resumes_with_offline_messages() {
    let b = Broker::start();
    paho("session.py", &b, &["--protocol", "5"]);
}

#[test]
fn paho_v311_will_only_on_abrupt_disconnect() {
    let b = Broker::start();
    paho("will.py", &b, &["--protocol", "311"]);
}

#[test]
fn paho_v5_will_only_on_abrupt_disconnect() {
    let b = Broker::start();
    paho("will.py", &b, &["--protocol", "5"]);
}

#[test]
fn paho_v311_retained_message_set_and_deleted() {
    let b = Broker::start();
    paho("retained.py", &b, &["--protocol", "311"]);
}

#[test]
fn paho_v5_shared_subscription_splits_messages() {
    let b = Broker::start();
    paho("shared.py", &b, &[]);
}
