//! `ssl` listeners: TLS with paho and mosquitto, mTLS with client
//! certificates, refusals of untrusted or missing client certificates,
//! certificate reload without a restart, and 10,000 TLS connections that
//! leave no descriptors or memory behind.

use std::time::Duration;

use crate::certs::Certs;
use crate::common::*;
use crate::{q, refused, section, server_cn, tls_client};

/// A broker with `ssl.secure` (server certificate only) and `ssl.mutual`
/// (client certificate required, its CN the user name).
struct Tls {
    b: Broker,
    certs: Certs,
    secure: u16,
    mutual: u16,
}

fn tls_broker() -> Tls {
    let certs = Certs::make();
    let (secure, mutual) = (free_port(), free_port());
    let files = [
        ("certfile", q(certs.p("server.pem"))),
        ("keyfile", q(certs.p("server.key"))),
    ];
    let mut mtls = files.to_vec();
    mtls.extend([
        ("cafile", q(certs.p("ca.pem"))),
        ("require_certificate", "true".into()),
        ("use_identity_as_username", "true".into()),
    ]);
    let config = section("ssl.secure", secure, &files) + &section("ssl.mutual", mutual, &mtls);
    let b = Broker::start_with_config(&config);
    Tls {
        b,
        certs,
        secure,
        mutual,
    }
}

fn mosquitto_tls(port: u16, certs: &Certs, client: Option<&str>, topic: &str) -> CmdOutput {
    let mut args = vec![
        "--cafile".to_string(),
        certs.p("ca.pem"),
        "-q".into(),
        "1".into(),
        "-t".into(),
        topic.into(),
        "-m".into(),
        "over mtls".into(),
    ];
    if let Some(c) = client {
        args.extend([
            "--cert".into(),
            certs.p(&format!("{c}.pem")),
            "--key".into(),
            certs.p(&format!("{c}.key")),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mosquitto_pub(port, &args)
}

#[test]
fn paho_publishes_and_receives_over_tls() {
    let t = tls_broker();
    let out = python(
        "tls_pubsub.py",
        &[
            "--port",
            &t.secure.to_string(),
            "--cafile",
            &t.certs.p("ca.pem"),
        ],
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok: the message arrived over TLS"));
}

#[test]
fn paho_with_a_client_certificate_publishes_and_receives_over_mtls() {
    let t = tls_broker();
    let out = python(
        "tls_pubsub.py",
        &[
            "--port",
            &t.mutual.to_string(),
            "--protocol",
            "5",
            "--cafile",
            &t.certs.p("ca.pem"),
            "--certfile",
            &t.certs.p("client.pem"),
            "--keyfile",
            &t.certs.p("client.key"),
        ],
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn mosquitto_with_a_trusted_client_certificate_delivers_over_mtls() {
    let t = tls_broker();
    let topic = unique("mtls/mosq").replace('-', "/");
    let ca = t.certs.p("ca.pem");
    let (cert, key) = (t.certs.p("client.pem"), t.certs.p("client.key"));
    let mut sub = MosqSub::start(
        t.mutual,
        &[
            "--cafile", &ca, "--cert", &cert, "--key", &key, "-q", "1", "-t", &topic,
        ],
    );
    mosquitto_tls(t.mutual, &t.certs, Some("client"), &topic).assert_success("mosquitto_pub");
    let got = sub.messages(1, WAIT);
    assert_eq!(got.len(), 1, "{}", sub.proc.describe());
    assert_eq!(got[0].payload, "over mtls");
}

#[test]
fn an_untrusted_client_certificate_is_refused() {
    let t = tls_broker();
    let out = mosquitto_tls(t.mutual, &t.certs, Some("rogue"), "t/rogue");
    assert!(!out.success(), "a certificate from another CA was accepted");
    assert!(wait_until(WAIT, || refused(
        &t.b,
        "ssl.mutual",
        "tls_handshake"
    ) >= 1));
    // The trusted one on the same listener works (the refusal is the
    // certificate's, not the listener's).
    mosquitto_tls(t.mutual, &t.certs, Some("client"), "t/ok").assert_success("trusted");
}

#[test]
fn a_client_without_a_certificate_is_refused_where_one_is_required() {
    let t = tls_broker();
    let out = mosquitto_tls(t.mutual, &t.certs, None, "t/none");
    assert!(
        !out.success(),
        "a client without a certificate was accepted"
    );
    // Without require_certificate the same client is served.
    mosquitto_tls(t.secure, &t.certs, None, "t/none").assert_success("server-only TLS");
}

#[test]
fn a_renewed_certificate_is_used_by_the_next_connection_without_a_restart() {
    let t = tls_broker();
    let client = tls_client(&t.certs.path("ca.pem"), None);
    assert_eq!(server_cn(t.secure, client.clone()), "localhost");
    t.certs.another_server("renewed", "renewed.example");
    // Replaced the way certificate renewals do: new files renamed over the
    // old ones.
    for ext in ["key", "pem"] {
        std::fs::rename(
            t.certs.path(&format!("renewed.{ext}")),
            t.certs.path(&format!("server.{ext}")),
        )
        .expect("rename");
    }
    let mut cn = String::new();
    let renewed = wait_until(Duration::from_secs(10), || {
        cn = server_cn(t.secure, client.clone());
        cn == "renewed.example"
    });
    assert!(renewed, "still served {cn}");
}

#[test]
fn listener_reload_rereads_the_certificates_and_names_the_listeners() {
    let t = tls_broker();
    let out = t.b.cli(&["listener", "reload", "--json"]);
    out.assert_success("listener reload");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        v["reloaded"],
        serde_json::json!(["ssl.mutual", "ssl.secure"])
    );
    // A broken key file: the reload fails, names the file, and the
    // certificate in use stays.
    std::fs::write(t.certs.path("server.key"), "not a key").expect("write");
    let out = t.b.cli(&["listener", "reload"]);
    assert!(!out.success());
    assert!(out.stderr.contains("server.key"), "{}", out.stderr);
    let client = tls_client(&t.certs.path("ca.pem"), None);
    assert_eq!(server_cn(t.secure, client), "localhost");
}

/// Open descriptors and resident memory of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    (fds, rss_kb * 1024)
}

/// `n` TLS connections, 32 at a time: each completes the TLS handshake,
/// sends a CONNECT, reads the CONNACK and drops the socket. Returns how
/// many got an accepting CONNACK, and the failures' errors.
fn churn(
    port: u16,
    config: std::sync::Arc<rustls::ClientConfig>,
    n: usize,
    tag: &str,
) -> (usize, Vec<String>) {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let connector = tokio_rustls::TlsConnector::from(config);
    rt.block_on(async {
        let one = |i: usize| {
            let connector = connector.clone();
            let id = format!("{tag}-{i}");
            async move {
                let e = |what: &str, e: std::io::Error| format!("{what}: {e}");
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|x| e("connect", x))?;
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let mut s = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|x| e("handshake", x))?;
                let mut out = bytes::BytesMut::new();
                let c = Packet::Connect(Box::new(v3_connect(&id, true)));
                encode(&c, Protocol::V311, &mut out).expect("encode");
                s.write_all(&out).await.map_err(|x| e("write", x))?;
                // rustls buffers what the socket did not take at once.
                s.flush().await.map_err(|x| e("flush", x))?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await.map_err(|x| e("read", x))?;
                if ack == [0x20, 0x02, 0x00, 0x00] {
                    Ok(())
                } else {
                    Err(format!("CONNACK {ack:?}"))
                }
            }
        };
        let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
            .map(|i| async move {
                tokio::time::timeout(Duration::from_secs(30), one(i))
                    .await
                    .unwrap_or_else(|_| Err("timeout".into()))
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        (ok, results.into_iter().filter_map(Result::err).collect())
    })
}

#[test]
fn ten_thousand_tls_connections_leave_no_descriptors_and_bounded_memory() {
    let t = tls_broker();
    let pid = t.b.pid().expect("pid");
    let client = tls_client(&t.certs.path("ca.pem"), None);
    let settled = |b: &Broker| {
        wait_until(Duration::from_secs(60), || {
            crate::metric(b, "raftmq_connections_current") == 0
        })
    };
    // Warm up: the runtime's threads, the allocator's arenas, RocksDB's
    // memtable.
    let (warm, errors) = churn(t.secure, client.clone(), 1_000, "warm");
    assert_eq!(warm, 1_000, "{errors:?}");
    assert!(settled(&t.b));
    let (fd0, rss0) = fds_and_rss(pid);
    let (ok, errors) = churn(t.secure, client, 10_000, "churn");
    assert!(settled(&t.b), "connections still open");
    let (fd1, rss1) = fds_and_rss(pid);
    println!(
        "10,000 TLS connections ({ok} with CONNACK): fds {fd0} -> {fd1}, RSS {} -> {} MiB",
        rss0 >> 20,
        rss1 >> 20
    );
    assert_eq!(
        ok, 10_000,
        "every connection was served; failures: {errors:?}"
    );
    assert!(fd1 <= fd0 + 8, "descriptors grew: {fd0} -> {fd1}");
    assert!(
        rss1 <= rss0 + (128 << 20),
        "RSS grew by more than 128 MiB: {} -> {} MiB",
        rss0 >> 20,
        rss1 >> 20
    );
}
