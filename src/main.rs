//! The `raftmq` command: `start` runs a node, `dev-cluster` three; the
//! other subcommands talk to a running node's HTTP admin API (`src/cli/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use raftmq::cli;
use raftmq::config::Settings;
use tikv_jemallocator::Jemalloc;

/// jemalloc (see Cargo.toml for what it buys over the system allocator).
#[global_allocator]
static ALLOC: Jemalloc = Jemalloc;

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
        cmd: cli::cluster::ClusterCmd,
    },
    /// Start three local nodes joined into one cluster, for trying raftmq
    /// out; again on the same directory, it restarts them with their data.
    /// Ctrl-C (or SIGTERM) stops them, each gracefully.
    DevCluster {
        /// Parent directory of the nodes' data directories and logs.
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
    /// This node's status: id, leader, term, applied index, counts.
    Status {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Sessions.
    Session {
        #[command(subcommand)]
        cmd: cli::session::SessionCmd,
    },
    /// Retained messages.
    Retain {
        #[command(subcommand)]
        cmd: cli::retain::RetainCmd,
    },
    #[command(flatten)]
    Settings(cli::settings::SettingsCmd),
    /// Metrics (VerneMQ's `vmq-admin metrics show`).
    Metrics {
        #[command(subcommand)]
        cmd: cli::metrics::MetricsCmd,
    },
    /// MQTT users (replicated; passwords stored as argon2 hashes).
    User {
        #[command(subcommand)]
        cmd: cli::access::UserCmd,
    },
    /// The ACL (replicated rule lines).
    Acl {
        #[command(subcommand)]
        cmd: cli::access::AclCmd,
    },
    /// Admin API keys (replicated; stored as digests).
    ApiKey {
        #[command(subcommand)]
        cmd: cli::access::ApiKeyCmd,
    },
    /// MQTT listeners of a node (show, start, stop, certificate reload).
    Listener {
        #[command(subcommand)]
        cmd: cli::listener::ListenerCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Start(args) => start(args),
        Cmd::Cluster { cmd } => cli::cluster::run(cmd),
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
        Cmd::Status { target } => cli::status::run(target),
        Cmd::Session { cmd } => cli::session::run(cmd),
        Cmd::Retain { cmd } => cli::retain::run(cmd),
        Cmd::Settings(cmd) => cli::settings::run(cmd),
        Cmd::Metrics { cmd } => cli::metrics::run(cmd),
        Cmd::User { cmd } => cli::access::run_user(cmd),
        Cmd::Acl { cmd } => cli::access::run_acl(cmd),
        Cmd::ApiKey { cmd } => cli::access::run_api_key(cmd),
        Cmd::Listener { cmd } => cli::listener::run(cmd),
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
    /// What to log: a level (`debug`) or per-module directives
    /// (`info,raftmq_raft=debug`). Overrides RAFTMQ_LOG; the default is
    /// DEFAULT_LOG (see the README's Logs section).
    #[arg(long)]
    log_level: Option<String>,
}

/// The default log filter. openraft's replication reports each failed RPC
/// to an unreachable peer several times a second; raftmq's transport logs
/// the peer's state instead, once per change. Everything else of openraft
/// at WARN and above.
const DEFAULT_LOG: &str = "info,openraft=warn,openraft::replication=off,\
openraft::engine::handler::replication_handler=off,openraft::core::raft_core=error";

fn start(a: StartArgs) -> anyhow::Result<()> {
    let mut s = Settings::default();
    if let Some(path) = &a.config {
        s.load_file(path)?;
    }
    if let Some(v) = a.node_id {
        anyhow::ensure!(v >= 1, "--node-id must be >= 1");
        s.node_id = v;
        s.set_by_flag("node_id");
    }
    if let Some(v) = a.data_dir {
        s.data_dir = v;
        s.set_by_flag("data_dir");
    }
    if let Some(v) = a.mqtt {
        s.mqtt_addr = v;
        s.set_by_flag("mqtt");
    }
    if let Some(v) = a.http {
        s.http_addr = v;
        s.set_by_flag("http");
    }
    if let Some(v) = a.cluster {
        s.cluster_addr = v;
        s.set_by_flag("cluster");
    }
    if let Some(v) = a.join {
        s.join = Some(v);
        s.set_by_flag("join");
    }
    if let Some(v) = a.cookie {
        anyhow::ensure!(!v.is_empty(), "--cookie must not be empty");
        s.distributed_cookie = v;
        s.set_by_flag("distributed_cookie");
    }
    let filter = match a.log_level.or_else(|| std::env::var("RAFTMQ_LOG").ok()) {
        Some(f) => tracing_subscriber::EnvFilter::try_new(&f)
            .map_err(|e| anyhow::anyhow!("--log-level / RAFTMQ_LOG `{f}`: {e}"))?,
        None => tracing_subscriber::EnvFilter::new(DEFAULT_LOG),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
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
