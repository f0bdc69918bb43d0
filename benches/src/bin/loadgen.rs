//! `loadgen`: MQTT load generator for raftmq and any other broker.
//! Run `loadgen --help` for the modes and what each one measures.

#[path = "../loadgen/mod.rs"]
mod loadgen;

use clap::Parser;

fn main() {
    let cli = match loadgen::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version exit 0; bad arguments are fatal (1), keeping 2
            // for "the run completed with errors".
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                loadgen::EXIT_FATAL
            } else {
                0
            });
        }
    };
    std::process::exit(loadgen::main_with(cli));
}
