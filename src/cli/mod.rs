//! The admin commands: thin clients of a node's HTTP API (`/api/v1`), in
//! VerneMQ's `vmq-admin` style. Every command takes `--admin ADDR` (the
//! node's HTTP address; also `RAFTMQ_ADMIN`) and `--json`, and prints a table
//! (or with `--json` the API's answer).
//!
//! Layout:
//! - `client`: the HTTP call and its errors.
//! - `output`: tables, records and `--json`.
//! - `cluster`, `listener`, `metrics`, `session`, `retain`, `settings`
//!   (`set`, `show`), `status`, `access` (`user`, `acl`, `api-key`): one
//!   command group each.
//!
//! Every command sends an admin API key when given one: `--api-key KEY`,
//! `RAFTMQ_API_KEY`, or `--api-key-file PATH` / `RAFTMQ_API_KEY_FILE`.

pub mod access;
pub mod client;
pub mod cluster;
pub mod listener;
pub mod metrics;
pub mod output;
pub mod retain;
pub mod session;
pub mod settings;
pub mod status;

use anyhow::bail;
use clap::Args;

pub use client::Admin;
pub use output::Output;

/// The default HTTP address of a node's admin API.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8888";

/// Which node to ask and how to print its answer; every admin command has
/// these options.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// HTTP address of the node to ask.
    #[arg(long, env = "RAFTMQ_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: String,
    /// Print the API's answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The admin API key to send (needed once the cluster has one).
    #[arg(long, env = "RAFTMQ_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A file holding the admin API key (its first line), used when no
    /// `--api-key` is given.
    #[arg(long, env = "RAFTMQ_API_KEY_FILE", value_parser = read_key_file)]
    pub api_key_file: Option<String>,
}

/// The key in a key file: its first line, trimmed.
fn read_key_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if key.is_empty() {
        return Err(format!("{path} holds no key"));
    }
    Ok(key)
}

impl Target {
    pub fn admin(&self) -> Admin {
        let key = self.api_key.clone().or_else(|| self.api_key_file.clone());
        Admin::new(self.admin.clone()).with_api_key(key)
    }

    pub fn output(&self) -> Output {
        Output { json: self.json }
    }
}

/// VerneMQ-style `key=value` arguments, each key one of `allowed`; an
/// unknown key or a word without `=` is an error naming what is allowed.
pub fn pairs(args: &[String], allowed: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if allowed.contains(&k) => Ok((k.to_string(), v.to_string())),
            Some((k, _)) => bail!(
                "unknown option `{k}`; expected {}",
                allowed
                    .iter()
                    .map(|k| format!("{k}=…"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => bail!("expected `key=value`, got `{a}`"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pairs_are_split_and_unknown_keys_are_errors() {
        let ok = pairs(&["client_id=a=b".into()], &["client_id"]).unwrap();
        assert_eq!(ok, vec![("client_id".to_string(), "a=b".to_string())]);
        let e = pairs(&["clientid=a".into()], &["client_id", "limit"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown option `clientid`; expected client_id=…, limit=…"
        );
        assert!(pairs(&["a".into()], &["client_id"]).is_err());
    }
}
