//! Client tests against scripted fake brokers (no mosquitto needed):
//! timeouts, v5 reason codes, DISCONNECT, resumed QoS 2 in both directions,
//! and keep alive.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{connect, opts};
use crate::mqtt::codec::{self, Packet, MAX_PACKET};
use crate::mqtt::connection::frame;
use crate::mqtt::{Client, MqttError, Publish, SessionState, Version};

/// The broker side of one scripted connection (no mosquitto needed).
struct Fake {
    stream: TcpStream,
    buf: BytesMut,
    v: Version,
}

impl Fake {
    async fn accept(l: &TcpListener, v: Version, session_present: bool) -> Fake {
        let (stream, _) = l.accept().await.expect("accept");
        let mut f = Fake {
            stream,
            buf: BytesMut::new(),
            v,
        };
        assert!(matches!(f.read().await, Some(Packet::Connect { .. })));
        f.send(Packet::Connack {
            session_present,
            code: 0,
            server_keep_alive: None,
        })
        .await;
        f
    }

    /// The next packet; None at EOF.
    async fn read(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = codec::decode(&mut self.buf, self.v, MAX_PACKET).expect("decode") {
                return Some(p);
            }
            if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, p: Packet) {
        let bytes = frame(&p, self.v).expect("encode");
        self.stream.write_all(&bytes).await.expect("write");
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

#[tokio::test]
async fn silent_server_times_out() {
    let (l, addr) = listener().await;
    let mut o = opts(addr, "c", Version::V5, true);
    o.timeout = Duration::from_millis(200);
    let err = Client::connect(&o, SessionState::new())
        .await
        .err()
        .expect("timeout");
    assert!(matches!(err, MqttError::Timeout), "{err:?}");
    drop(l);

    // Connected, but the broker never acknowledges.
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let mut f = Fake::accept(&l, Version::V311, false).await;
        while f.read().await.is_some() {}
    });
    let (mut c, _) = connect(addr, "c", Version::V311, true).await;
    c.set_op_timeout(Duration::from_millis(200));
    let err = c
        .publish(Publish::new("t", "x", 1))
        .await
        .expect_err("timeout");
    assert!(matches!(err, MqttError::Timeout), "{err:?}");
    drop(c);
    broker.await.expect("fake broker");
}

#[tokio::test]
async fn v5_reason_codes_and_disconnect() {
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let v = Version::V5;
        let mut f = Fake::accept(&l, v, false).await;
        let mut answers = [0x10u8, 0x87].into_iter();
        loop {
            match f.read().await {
                Some(Packet::Publish(Publish {
                    qos: 1,
                    pkid: Some(pkid),
                    ..
                })) => {
                    let reason = answers.next().expect("two QoS 1 publishes");
                    f.send(Packet::Puback { pkid, reason }).await;
                }
                Some(Packet::Publish(Publish {
                    qos: 2,
                    pkid: Some(pkid),
                    dup,
                    ..
                })) => {
                    assert_eq!(pkid, 77);
                    assert!(!dup);
                    f.send(Packet::Pubrec { pkid, reason: 0 }).await;
                }
                // Lose the connection between PUBREC and PUBCOMP.
                Some(Packet::Pubrel { .. }) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(f);
        // Second connection: PUBREL is resumed; then DISCONNECT 0x8E.
        let mut f = Fake::accept(&l, v, true).await;
        assert_eq!(
            f.read().await,
            Some(Packet::Pubrel {
                pkid: 77,
                reason: 0
            })
        );
        f.send(Packet::Pubcomp {
            pkid: 77,
            reason: 0,
        })
        .await;
        assert!(matches!(f.read().await, Some(Packet::Publish(_))));
        f.send(Packet::Disconnect { reason: 0x8E }).await;
    });
    let state = SessionState::new();
    let o = opts(addr, "c", Version::V5, false);
    let (mut c, _) = Client::connect(&o, state.clone()).await.expect("connect");
    // 0x10 "no matching subscribers" is success; 0x87 is a refusal.
    c.publish(Publish::new("t", "a", 1))
        .await
        .expect("0x10 is success");
    let err = c
        .publish(Publish::new("t", "b", 1))
        .await
        .expect_err("refused");
    assert!(matches!(err, MqttError::Refused(0x87)) && err.is_definite());
    let mut p = Publish::new("t", "c", 2);
    p.pkid = Some(77);
    let err = c.publish(p).await.expect_err("interrupted");
    assert!(matches!(err, MqttError::AfterPubrec), "{err:?}");
    drop(c);

    let (mut c, ack) = Client::connect(&o, state).await.expect("reconnect");
    assert!(ack.session_present);
    c.release(77).await.expect("release");
    let err = c
        .publish(Publish::new("t", "d", 1))
        .await
        .expect_err("closed");
    assert!(matches!(err, MqttError::Closed(Some(0x8E))), "{err:?}");
    assert!(!err.is_definite());
    broker.await.expect("fake broker");
}

#[tokio::test]
async fn inbound_qos2_resent_after_reconnect_is_delivered_once() {
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let v = Version::V311;
        let publish = |dup| {
            Packet::Publish(Publish {
                topic: "q2".into(),
                payload: Bytes::from("once"),
                qos: 2,
                retain: false,
                pkid: Some(7),
                dup,
            })
        };
        let mut f = Fake::accept(&l, v, false).await;
        f.send(publish(false)).await;
        assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
        drop(f); // the connection breaks before PUBREL
        let mut f = Fake::accept(&l, v, true).await;
        f.send(publish(true)).await;
        assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
        f.send(Packet::Pubrel { pkid: 7, reason: 0 }).await;
        assert_eq!(f.read().await, Some(Packet::Pubcomp { pkid: 7, reason: 0 }));
        // After release the id is free: a new message with it is new.
        f.send(publish(false)).await;
        assert_eq!(f.read().await, Some(Packet::Pubrec { pkid: 7, reason: 0 }));
        f.send(Packet::Pubrel { pkid: 7, reason: 0 }).await;
        assert_eq!(f.read().await, Some(Packet::Pubcomp { pkid: 7, reason: 0 }));
        f.send(Packet::Publish(Publish::new("q2", "done", 0))).await;
        assert_eq!(f.read().await, Some(Packet::Disconnect { reason: 0 }));
    });
    let state = SessionState::new();
    let o = opts(addr, "c", Version::V311, false);
    let (mut c, _) = Client::connect(&o, state.clone()).await.expect("connect");
    let m = c.recv().await.expect("first delivery");
    assert_eq!((m.payload.as_ref(), m.qos, m.dup), (&b"once"[..], 2, false));
    assert!(matches!(c.recv().await, Err(MqttError::Closed(None))));
    assert_eq!(state.unreleased_inbound(), vec![7]);

    let (mut c, ack) = Client::connect(&o, state.clone()).await.expect("reconnect");
    assert!(ack.session_present);
    let m = c.recv().await.expect("the next, new message");
    assert!(!m.dup, "the DUP re-send was not delivered again");
    assert_eq!(c.recv().await.expect("done").payload, "done");
    c.disconnect().await;
    broker.await.expect("fake broker");
    assert!(state.unreleased_inbound().is_empty());
}

#[tokio::test]
async fn unanswered_pings_close_the_connection() {
    let (l, addr) = listener().await;
    let broker = tokio::spawn(async move {
        let mut f = Fake::accept(&l, Version::V5, false).await;
        // Answer the first PINGREQ, then go silent (a paused broker).
        assert_eq!(f.read().await, Some(Packet::Pingreq));
        f.send(Packet::Pingresp).await;
        assert_eq!(f.read().await, Some(Packet::Pingreq));
        while f.read().await.is_some() {}
    });
    let mut o = opts(addr, "c", Version::V5, true);
    o.keep_alive = 1;
    let (mut c, _) = Client::connect(&o, SessionState::new())
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    assert!(matches!(c.recv().await, Err(MqttError::Closed(None))));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    broker.await.expect("fake broker");
}
