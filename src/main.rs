//! The `raftmq` command: `start` runs a node; the other subcommands talk to a
//! running node's HTTP admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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
    Start(StartArgs),
    /// Cluster membership (VerneMQ syntax).
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Start three local nodes already joined into one cluster, for trying
    /// raftmq out. Ctrl-C (or SIGTERM) stops them, each gracefully.
    DevCluster {
        /// Parent directory of the nodes' data directories.
        #[arg(long, default_value = "./raftmq-dev")]
        dir: PathBuf,
        /// MQTT port of node 1; nodes 2 and 3 use the next two.
        #[arg(long, default_value_t = 1883)]
        mqtt_port: u16,
        /// HTTP port of node 1; nodes 2 and 3 use the next two.
        #[arg(long, default_value_t = 8888)]
        http_port: u16,
        /// Cluster port of node 1; nodes 2 and 3 use the next two.
        #[arg(long, default_value_t = 44053)]
        cluster_port: u16,
        /// Extra TOML config file given to every node.
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
enum ClusterCmd {
    /// Make the node at --node join a cluster: `discovery-node=ADDR`, the
    /// cluster address of any member. The node must be new (started with an
    /// empty data directory and --join, or still waiting to join).
    Join {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
        /// `discovery-node=ADDR`
        discovery: String,
    },
    /// Remove a node from the cluster: `node=ID`. Also removes a dead node.
    Leave {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
        /// `node=ID`
        target: String,
        /// Disconnect the node's clients (they can resume on any other node).
        #[arg(short = 'k', long = "kill")]
        kill: bool,
    },
    /// Members: id, addresses, voter or learner, leader, match index,
    /// reachability.
    Show {
        #[arg(long, default_value = "127.0.0.1:8888")]
        node: String,
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
        Cmd::Start(args) => start(args),
        Cmd::Cluster {
            cmd: ClusterCmd::Join { node, discovery },
        } => (|| {
            let d = kv(&Some(discovery), "discovery-node")?
                .unwrap_or_default()
                .to_string();
            let v = cli::post(
                &node,
                &format!("/api/v1/cluster/join?discovery-node={}", enc(&d)),
            )?;
            cli::print_text(&v);
            if v.get("restarting").and_then(|r| r.as_bool()) == Some(true) {
                cli::wait_healthy(&node, std::time::Duration::from_secs(60))?;
                println!("the node joined the cluster and is serving");
            }
            Ok(())
        })(),
        Cmd::Cluster {
            cmd: ClusterCmd::Leave { node, target, kill },
        } => (|| {
            let id = kv(&Some(target), "node")?.unwrap_or_default().to_string();
            let id: u64 = id
                .parse()
                .map_err(|_| anyhow::anyhow!("node=ID needs a numeric node id, got `{id}`"))?;
            cli::post(
                &node,
                &format!("/api/v1/cluster/leave?node={id}&kill={kill}"),
            )
            .map(|v| cli::print_text(&v))
        })(),
        Cmd::Cluster {
            cmd: ClusterCmd::Show { node },
        } => cli::get(&node, "/api/v1/cluster/show").map(|v| cli::print_table(&v)),
        Cmd::DevCluster {
            dir,
            mqtt_port,
            http_port,
            cluster_port,
            config,
        } => raftmq::devcluster::run(raftmq::devcluster::Ports {
            dir,
            mqtt: mqtt_port,
            http: http_port,
            cluster: cluster_port,
            config,
        }),
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

#[derive(Args)]
struct StartArgs {
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
    /// Inter-node (cluster) address.
    #[arg(long)]
    cluster: Option<SocketAddr>,
    /// Join the cluster of this member (its --cluster address) when the
    /// data directory is new.
    #[arg(long)]
    join: Option<String>,
    /// The cluster secret (distributed_cookie); also RAFTMQ_COOKIE.
    #[arg(long, env = "RAFTMQ_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn start(a: StartArgs) -> anyhow::Result<()> {
    let mut s = Settings::default();
    if let Some(path) = &a.config {
        s.load_file(path)?;
    }
    if let Some(v) = a.node_id {
        anyhow::ensure!(v >= 1, "--node-id must be >= 1");
        s.node_id = v;
    }
    if let Some(v) = a.data_dir {
        s.data_dir = v;
    }
    if let Some(v) = a.mqtt {
        s.mqtt_addr = v;
    }
    if let Some(v) = a.http {
        s.http_addr = v;
    }
    if let Some(v) = a.cluster {
        s.cluster_addr = v;
    }
    if let Some(v) = a.join {
        s.join = Some(v);
    }
    if let Some(v) = a.cookie {
        anyhow::ensure!(!v.is_empty(), "--cookie must not be empty");
        s.distributed_cookie = v;
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
    let r = rt.block_on(raftmq::server::run(s));
    // The node has stopped (or gave up stopping, which it logged): whatever
    // task is left does not hold the exit back.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    r
}
