//! Third-party MQTT clients run as processes: the mosquitto command-line
//! clients and python scripts on paho-mqtt (`tests/py/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::{run_cmd, BgProcess, CmdOutput};

// ---------------------------------------------------------------------------
// mosquitto_pub / mosquitto_sub
// ---------------------------------------------------------------------------

/// Runs `mosquitto_pub -h 127.0.0.1 -p PORT ARGS...` (10 s bound).
pub fn mosquitto_pub(port: u16, args: &[&str]) -> CmdOutput {
    run_cmd(
        Command::new("mosquitto_pub")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .args(args),
        Duration::from_secs(10),
    )
}

/// One message as printed by [`MosqSub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosqMsg {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// `%P`: user properties as `k:v` separated by spaces (MQTT 5 only).
    pub user_props: String,
    /// `%C` content type, `%R` response topic, `%E` message expiry.
    pub content_type: String,
    pub response_topic: String,
    pub expiry: String,
    pub payload: String,
}

/// A running `mosquitto_sub` that has received its SUBACK.
pub struct MosqSub {
    pub proc: BgProcess,
}

const MOSQ_FORMAT: &str = "MSG\u{1}%t\u{1}%q\u{1}%r\u{1}%P\u{1}%C\u{1}%R\u{1}%E\u{1}%p";

impl MosqSub {
    /// Starts `mosquitto_sub -d -F ... ARGS` and waits (10 s) for its SUBACK.
    pub fn start(port: u16, args: &[&str]) -> MosqSub {
        // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe.
        let mut proc = BgProcess::spawn(
            Command::new("stdbuf")
                .arg("-oL")
                .arg("mosquitto_sub")
                .arg("-h")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(port.to_string())
                .arg("-d")
                .arg("-F")
                .arg(MOSQ_FORMAT)
                .args(args),
        );
        if proc
            .wait_for_line(Duration::from_secs(10), |l| l.starts_with("Subscribed"))
            .is_none()
        {
            panic!("mosquitto_sub did not subscribe: {}", proc.describe());
        }
        MosqSub { proc }
    }

    /// Waits (bounded) for `n` messages; returns what arrived (maybe fewer).
    pub fn messages(&mut self, n: usize, timeout: Duration) -> Vec<MosqMsg> {
        let deadline = Instant::now() + timeout;
        let mut out = self.parsed();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || self
                    .proc
                    .wait_for_line(left, |l| l.starts_with("MSG\u{1}"))
                    .is_none()
            {
                break;
            }
            out = self.parsed();
        }
        out
    }

    fn parsed(&mut self) -> Vec<MosqMsg> {
        self.proc
            .drain()
            .iter()
            .filter_map(|l| l.strip_prefix("MSG\u{1}"))
            .map(|rest| {
                let f: Vec<&str> = rest.splitn(8, '\u{1}').collect();
                let g = |i: usize| f.get(i).copied().unwrap_or("").to_string();
                MosqMsg {
                    topic: g(0),
                    qos: g(1).parse().unwrap_or(255),
                    retain: g(2) == "1",
                    user_props: g(3),
                    content_type: g(4),
                    response_topic: g(5),
                    expiry: g(6),
                    payload: g(7),
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Python (paho-mqtt)
// ---------------------------------------------------------------------------

/// A python3 that can `import paho.mqtt.client`: `$RAFTMQ_PYTHON`, else
/// `python3` on PATH, else Debian's `/usr/bin/python3`.
pub fn python_interpreter() -> PathBuf {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("RAFTMQ_PYTHON") {
            candidates.push(p.into());
        }
        candidates.push("python3".into());
        candidates.push("/usr/bin/python3".into());
        candidates.into_iter().find(|py| {
            run_cmd(
                Command::new(py).arg("-c").arg("import paho.mqtt.client"),
                Duration::from_secs(20),
            )
            .success()
        })
    })
    .clone()
    .expect("no python3 with paho-mqtt (install python3-paho-mqtt, or set RAFTMQ_PYTHON)")
}

pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
        .join(name)
}

/// Runs `python3 tests/py/<script> ARGS...`, bounded by `timeout`.
pub fn python(script: &str, args: &[&str], timeout: Duration) -> CmdOutput {
    run_cmd(
        Command::new(python_interpreter())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-u")
            .arg(py_script(script))
            .args(args),
        timeout,
    )
}
