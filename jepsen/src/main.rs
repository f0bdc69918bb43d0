//! `raftmq-jepsen`: list the bundled scenarios, or run one (or all) against
//! a fresh three-node cluster in network namespaces and write a report per
//! run. Exit status: 0 every run valid, 1 a violation found, 2 a run could
//! not be done, 3 a negative control found no violation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use raftmq_jepsen::run::{self, RunOpts};
use raftmq_jepsen::scenario::{self, Scenario, SCENARIOS};
use raftmq_jepsen::summary::Summary;

#[derive(Parser)]
#[command(
    name = "raftmq-jepsen",
    version,
    about = "Partition, kill and pause scenarios against a real raftmq cluster. Needs root (network namespaces, iptables)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Prints every scenario, one line each.
    List,
    /// Runs scenarios and writes one report directory per run.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario to run (see `list`); repeatable.
    #[arg(long = "scenario", required_unless_present = "all")]
    scenarios: Vec<String>,
    /// Every scenario except the negative controls.
    #[arg(long)]
    all: bool,
    /// Seconds of faults per run.
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// QoS 1 and QoS 2 publishes a second, over all publishers.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seed of the fault schedule and the workloads' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Runs per scenario, with seeds seed, seed+1, ...
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Where the reports go: one directory per run inside.
    #[arg(long, default_value = "jepsen-runs")]
    out: PathBuf,
    /// The raftmq binary (default: $RAFTMQ_BIN, else `raftmq` beside this program).
    #[arg(long, env = "RAFTMQ_BIN")]
    binary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in SCENARIOS {
                println!("{:width$}  {}", s.name, s.description);
            }
            ExitCode::SUCCESS
        }
        Cmd::Run(args) => match run_all(args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("raftmq-jepsen: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

fn run_all(args: RunArgs) -> anyhow::Result<u8> {
    let chosen: Vec<&'static Scenario> = if args.all {
        SCENARIOS.iter().filter(|s| s.must_fail.is_none()).collect()
    } else {
        args.scenarios
            .iter()
            .map(|n| {
                scenario::find(n).ok_or_else(|| {
                    anyhow::anyhow!("unknown scenario `{n}` (`raftmq-jepsen list` shows them)")
                })
            })
            .collect::<Result<_, _>>()?
    };
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("raftmq"))
            .ok_or_else(|| anyhow::anyhow!("cannot find the raftmq binary: pass --binary"))?,
    };
    if !binary.exists() {
        anyhow::bail!(
            "{} does not exist: pass --binary or set RAFTMQ_BIN",
            binary.display()
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let mut summary = Summary::default();
    for s in chosen {
        for k in 0..args.runs {
            let seed = seed + k;
            let opts = RunOpts {
                binary: binary.clone(),
                time_limit: args.time_limit,
                rate: args.rate,
                seed,
                out: args.out.join(format!("{}-seed{seed}", s.name)),
            };
            let outcome = rt.block_on(run::run(s, &opts))?;
            println!("{}", summary.add(s, seed, &outcome));
        }
    }
    summary.write(&args.out)?;
    println!("\n{}", summary.table());
    Ok(summary.exit_code())
}
