//! The MQTT listeners with real clients and real processes: TLS and mTLS
//! (paho, mosquitto), WebSocket and WSS (MQTT.js in node and in headless
//! Chromium), PROXY protocol v1 and v2, the per-listener limits, the
//! connect timeout, certificate reload and `raftmq listener`.
//!
//! Each test starts its own broker with the listeners it needs on free
//! ports. Helpers here: the config sections, a blocking client that can
//! send bytes before its CONNECT, a TLS client, and metric reads.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod certs;
mod limits;
mod proxy;
mod tls;
mod ws;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;

/// A `[listener.KIND.NAME]` section on 127.0.0.1:`port` with `opts`
/// (values already TOML: use [`q`] for strings).
pub fn section(id: &str, port: u16, opts: &[(&str, String)]) -> String {
    let mut s = format!("[listener.{id}]\naddress = \"127.0.0.1:{port}\"\n");
    for (k, v) in opts {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// A TOML string.
pub fn q(s: impl AsRef<str>) -> String {
    format!("{:?}", s.as_ref())
}

/// The value of a counter series in the node's `/metrics` (0 if absent).
pub fn metric(b: &Broker, series: &str) -> u64 {
    let (_, text) = http_get(b.http_port, "/metrics", WAIT).expect("GET /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Connections `listener` closed before MQTT for `reason`.
pub fn refused(b: &Broker, listener: &str, reason: &str) -> u64 {
    metric(
        b,
        &format!(
            "raftmq_listener_connections_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        ),
    )
}

/// What came back on a connection after its CONNECT.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a test value, one at a time
pub enum Answer {
    ConnAck(ConnAck),
    /// Closed without an answer.
    Closed,
}

/// A blocking plain-TCP MQTT connection that may send bytes (a PROXY
/// header) before its CONNECT.
pub struct Plain {
    pub stream: TcpStream,
    proto: Protocol,
    buf: BytesMut,
}

impl Plain {
    pub fn open(port: u16, proto: Protocol) -> Plain {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Plain {
            stream,
            proto,
            buf: BytesMut::new(),
        }
    }

    /// Writes `bytes`; a connection the broker already closed shows in
    /// the next [`recv`](Self::recv).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        encode(p, self.proto, &mut out).expect("encode");
        self.send_raw(&out);
    }

    /// The next packet, or `None` when the broker closed first (or after
    /// `timeout`, which panics).
    pub fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = decode(&mut self.buf, self.proto, usize::MAX).expect("decode") {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer within {timeout:?}");
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends `connect` and reads the answer.
    pub fn connect(&mut self, connect: Connect) -> Answer {
        self.send(&Packet::Connect(Box::new(connect)));
        match self.recv(WAIT) {
            Some(Packet::ConnAck(a)) => Answer::ConnAck(a),
            None => Answer::Closed,
            Some(other) => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Reads until the broker closes; the time it took and the bytes read.
    pub fn until_closed(&mut self, limit: Duration) -> (Duration, usize) {
        let start = Instant::now();
        let mut n = 0;
        self.stream.set_read_timeout(Some(limit)).expect("timeout");
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (start.elapsed(), n),
                Ok(k) => n += k,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("still open after {limit:?}")
                }
                Err(_) => return (start.elapsed(), n),
            }
        }
    }
}

/// An accepted MQTT 3.1.1 connection on `port`, or why not.
pub fn v3_ok(port: u16, client_id: &str) -> Result<Plain, String> {
    let mut c = Plain::open(port, Protocol::V311);
    match c.connect(v3_connect(client_id, true)) {
        Answer::ConnAck(a) if a.code == 0 => Ok(c),
        other => Err(format!("{other:?}")),
    }
}

/// A rustls client trusting `ca` (and presenting `client` = (cert, key)).
pub fn tls_client(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            b.with_client_auth_cert(certs, key).expect("client cert")
        }
    };
    Arc::new(config)
}

/// The subject CN of the certificate the TLS listener on `port` presents
/// to a new connection.
pub fn server_cn(port: u16, config: Arc<rustls::ClientConfig>) -> String {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("TLS handshake");
    }
    let der = conn.peer_certificates().expect("server certificate")[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    cn
}

/// The directory holding MQTT.js and puppeteer-core (`scripts/npm-deps`
/// installs them when missing).
pub fn npm_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/npm-deps");
        let out = run_cmd(
            std::process::Command::new("bash").arg(script),
            Duration::from_secs(300),
        );
        assert!(out.success(), "scripts/npm-deps: {}", out.stderr);
        PathBuf::from(out.stdout.trim())
    })
    .clone()
}

/// Runs `node tests/js/SCRIPT ARGS…` with the npm packages on its path.
pub fn node(script: &str, args: &[&str], timeout: Duration) -> CmdOutput {
    let js = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js")
        .join(script);
    run_cmd(
        std::process::Command::new("node")
            .env("NODE_PATH", npm_dir().join("node_modules"))
            .arg(js)
            .args(args),
        timeout,
    )
}
