//! Client tests against a real broker: a Debian mosquitto started per test
//! on a free local port.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;

use super::{connect, opts};
use crate::mqtt::{Client, Connack, MqttError, Publish, SessionState, Version};

const VERSIONS: [Version; 2] = [Version::V311, Version::V5];

/// A Debian mosquitto on a free local port; killed on drop.
struct Mosquitto {
    child: Option<Child>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
            ),
        )
        .expect("write config");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let mut m = Mosquitto {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(m.addr).is_ok() {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        m.kill();
        panic!("mosquitto did not listen on {}", m.addr);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn connects_with_both_versions() {
    let broker = Mosquitto::start();
    for v in VERSIONS {
        let (client, ack) = connect(broker.addr, &format!("c-{v:?}"), v, true).await;
        assert_eq!(
            ack,
            Connack {
                session_present: false,
                code: 0
            }
        );
        assert_eq!(client.version(), v);
        client.disconnect().await;
    }
}

#[tokio::test]
async fn refused_connect_is_definite() {
    let broker = Mosquitto::start();
    // 3.1.1: an empty client id needs a clean session (code 2).
    let err = Client::connect(
        &opts(broker.addr, "", Version::V311, false),
        SessionState::new(),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, MqttError::Refused(2)), "{err:?}");
    assert!(err.is_definite());
}

#[tokio::test]
async fn round_trip_each_qos() {
    let broker = Mosquitto::start();
    for v in VERSIONS {
        let topic = format!("rt/{v:?}");
        let (mut sub, _) = connect(broker.addr, &format!("sub-{v:?}"), v, true).await;
        assert_eq!(sub.subscribe(&topic, 2).await.expect("subscribe"), 2);
        let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
        for qos in 0..=2u8 {
            let payload = format!("m{qos}");
            publ.publish(Publish::new(topic.clone(), payload.clone(), qos))
                .await
                .expect("publish");
            let m = sub
                .recv_timeout(Duration::from_secs(5))
                .await
                .expect("recv")
                .expect("a message");
            assert_eq!(m.topic, topic);
            assert_eq!(m.payload, payload.as_bytes());
            assert_eq!(m.qos, qos);
            assert!(!m.retain && !m.dup);
        }
        sub.unsubscribe(&topic).await.expect("unsubscribe");
        publ.publish(Publish::new(topic.clone(), "after", 1))
            .await
            .expect("publish after unsubscribe");
        assert_eq!(
            sub.recv_timeout(Duration::from_millis(200))
                .await
                .expect("recv"),
            None
        );
        assert!(sub.session().unreleased_inbound().is_empty());
        publ.disconnect().await;
        sub.disconnect().await;
    }
}

#[tokio::test]
async fn persistent_session_gets_offline_messages() {
    let broker = Mosquitto::start();
    for v in VERSIONS {
        let topic = format!("ps/{v:?}");
        let id = format!("persistent-{v:?}");
        let state = SessionState::new();
        let o = opts(broker.addr, &id, v, false);
        let (mut sub, ack) = Client::connect(&o, state.clone()).await.expect("connect");
        assert!(!ack.session_present);
        sub.subscribe(&topic, 2).await.expect("subscribe");
        sub.disconnect().await;

        let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
        publ.publish(Publish::new(topic.clone(), "one", 1))
            .await
            .expect("qos 1");
        publ.publish(Publish::new(topic.clone(), "two", 2))
            .await
            .expect("qos 2");
        publ.disconnect().await;

        let (mut sub, ack) = Client::connect(&o, state.clone()).await.expect("reconnect");
        assert!(ack.session_present);
        let mut got = Vec::new();
        while let Some(m) = sub
            .recv_timeout(Duration::from_millis(500))
            .await
            .expect("recv")
        {
            got.push((m.payload, m.qos));
        }
        got.sort();
        assert_eq!(
            got,
            vec![(Bytes::from("one"), 1), (Bytes::from("two"), 2)],
            "{v:?}"
        );
        assert!(state.unreleased_inbound().is_empty());
        sub.disconnect().await;
    }
}

#[tokio::test]
async fn dead_broker_gives_closed_not_refused() {
    let mut broker = Mosquitto::start();
    for v in VERSIONS {
        let (mut sub, _) = connect(broker.addr, &format!("sub-{v:?}"), v, true).await;
        sub.subscribe("dead/#", 1).await.expect("subscribe");
        let (mut publ, _) = connect(broker.addr, &format!("pub-{v:?}"), v, true).await;
        publ.publish(Publish::new("dead/1", "x", 1))
            .await
            .expect("publish");
        sub.recv().await.expect("delivered");
        broker.kill();
        for qos in [1, 2] {
            let err = publ
                .publish(Publish::new("dead/2", "y", qos))
                .await
                .expect_err("broker is dead");
            assert!(matches!(err, MqttError::Closed(None)), "{v:?} {err:?}");
            assert!(!err.is_definite());
        }
        assert!(matches!(sub.recv().await, Err(MqttError::Closed(None))));
        assert!(matches!(
            sub.subscribe("x", 1).await,
            Err(MqttError::Closed(None))
        ));
        broker = Mosquitto::start();
    }
}

#[tokio::test]
async fn recv_timeout_is_none_when_idle() {
    let broker = Mosquitto::start();
    for v in VERSIONS {
        let (mut c, _) = connect(broker.addr, &format!("idle-{v:?}"), v, true).await;
        c.subscribe("idle/#", 1).await.expect("subscribe");
        let started = std::time::Instant::now();
        assert_eq!(
            c.recv_timeout(Duration::from_millis(300))
                .await
                .expect("recv"),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        c.disconnect().await;
    }
}
