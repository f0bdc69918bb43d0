//! The `raftmq` command: `start` runs a node; the other subcommands talk to a
//! running node's HTTP admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftmq::cli;
use raftmq::config::Settings;

#[derive(Parser)]
#[command(
    name = "raftmq",
    version,
    about = "A durability-first MQTT broker on a Raft log"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Start {
        /// Node id (>= 1).
        #[arg(long)]
        node_id: Option<u64>,
        /// Data directory (RocksDB and snapshots).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// MQTT listener address.
        #[arg(long)]
        mqtt: Option<SocketAddr>,
        /// HTTP admin address (/health, /metrics, /api/v1).
        #[arg(long)]
        http: Option<SocketAddr>,
        /// TOML config file; flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Node status.
    Status {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
    },
    /// Sessions.
    Session {
        #[command(subcommand)]
        cmd: SessionCmd,
    },
    /// Retained messages.
    Retain {
        #[command(subcommand)]
        cmd: RetainCmd,
    },
}

#[derive(Subcommand)]
enum SessionCmd {
    /// List sessions (all, or `client_id=ID`).
    Show {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
        /// `client_id=ID`
        filter: Option<String>,
    },
    /// Disconnect a client connected to this node: `client_id=ID`.
    Disconnect {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
        filter: String,
    },
}

#[derive(Subcommand)]
enum RetainCmd {
    /// List retained messages (all, or `topic=FILTER`).
    Show {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
        filter: Option<String>,
    },
}

fn kv<'a>(arg: &'a Option<String>, key: &str) -> anyhow::Result<Option<&'a str>> {
    match arg {
        None => Ok(None),
        Some(a) => match a.split_once('=') {
            Some((k, v)) if k == key => Ok(Some(v)),
            _ => anyhow::bail!("expected `{key}=VALUE`, got `{a}`"),
        },
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Start {
            node_id,
            data_dir,
            mqtt,
            http,
            config,
        } => start(node_id, data_dir, mqtt, http, config),
        Cmd::Status { node } => cli::get(&node, "/api/v1/status")
            .map(|v| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())),
        Cmd::Session {
            cmd: SessionCmd::Show { node, filter },
        } => (|| {
            let q = kv(&filter, "client_id")?
                .map(|c| format!("?client_id={}", enc(c)))
                .unwrap_or_default();
            cli::get(&node, &format!("/api/v1/session/show{q}")).map(|v| cli::print_table(&v))
        })(),
        Cmd::Session {
            cmd: SessionCmd::Disconnect { node, filter },
        } => (|| {
            let c = kv(&Some(filter), "client_id")?
                .unwrap_or_default()
                .to_string();
            cli::post(
                &node,
                &format!("/api/v1/session/disconnect?client_id={}", enc(&c)),
            )
            .map(|v| println!("{v}"))
        })(),
        Cmd::Retain {
            cmd: RetainCmd::Show { node, filter },
        } => (|| {
            let q = kv(&filter, "topic")?
                .map(|t| format!("?topic={}", enc(t)))
                .unwrap_or_default();
            cli::get(&node, &format!("/api/v1/retain/show{q}")).map(|v| cli::print_table(&v))
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftmq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(
    node_id: Option<u64>,
    data_dir: Option<PathBuf>,
    mqtt: Option<SocketAddr>,
    http: Option<SocketAddr>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut s = Settings::default();
    if let Some(path) = &config {
        s.load_file(path)?;
    }
    if let Some(v) = node_id {
        anyhow::ensure!(v >= 1, "--node-id must be >= 1");
        s.node_id = v;
    }
    if let Some(v) = data_dir {
        s.data_dir = v;
    }
    if let Some(v) = mqtt {
        s.mqtt_addr = v;
    }
    if let Some(v) = http {
        s.http_addr = v;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RAFTMQ_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(raftmq::server::run(s))
}
