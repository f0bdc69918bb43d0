//! `raftmq user add|delete|list|hash`, `raftmq acl show|load` and
//! `raftmq api-key create|show|add|delete`: clients of `/api/v1/user`,
//! `/api/v1/acl` and `/api/v1/api-key`. A password is hashed here (argon2id)
//! and only its hash is sent, so it never leaves this process in the clear.
//! The ACL is a file of rule lines; `acl load FILE` replicates its content
//! to every node (load it again to reload).

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use super::Target;
use crate::auth::password;

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user, or change its password (through the log: every node).
    Add(UserAdd),
    /// Delete a user.
    Delete(UserName),
    /// List the cluster's users and the asked node's own (config file).
    List(TargetOnly),
    /// Print the argon2 hash of a password, for a password file
    /// (`name:HASH`). Asks no node.
    Hash(PasswordArg),
}

#[derive(Args, Debug)]
pub struct PasswordArg {
    /// The password (else read from the first line of standard input).
    #[arg(long)]
    password: Option<String>,
}

#[derive(Args, Debug)]
pub struct UserAdd {
    name: String,
    #[command(flatten)]
    password: PasswordArg,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct UserName {
    name: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub struct TargetOnly {
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Print the ACL's rules.
    Show(TargetOnly),
    /// Replace the ACL with the rules of FILE, on every node (the rules are
    /// checked first; a bad line changes nothing).
    Load(AclLoad),
}

#[derive(Args, Debug)]
pub struct AclLoad {
    file: std::path::PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCmd {
    /// Make a new random key and print it (only its digest is stored: this
    /// is the one time it is shown).
    Create(TargetOnly),
    /// List the keys by digest.
    Show(TargetOnly),
    /// Add a key of your own (at least 16 printable characters).
    Add(KeyArg),
    /// Delete a key.
    Delete(KeyArg),
}

#[derive(Args, Debug)]
pub struct KeyArg {
    key: String,
    #[command(flatten)]
    target: Target,
}

impl PasswordArg {
    fn read(&self) -> anyhow::Result<String> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("no password: give --password or one line on standard input");
        }
        Ok(p)
    }
}

fn hash(p: &PasswordArg) -> anyhow::Result<String> {
    Ok(password::hash(p.read()?.as_bytes())?)
}

pub fn run_user(cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add(a) => {
            let h = hash(&a.password)?;
            let v = a
                .target
                .admin()
                .post("/api/v1/user/add", &[("name", a.name), ("hash", h)])?;
            a.target.output().print(&v);
        }
        UserCmd::Delete(a) => {
            let v = a
                .target
                .admin()
                .post("/api/v1/user/delete", &[("name", a.name)])?;
            a.target.output().print(&v);
        }
        UserCmd::List(a) => {
            let v = a.target.admin().get("/api/v1/user/list", &[])?;
            a.target.output().print(&v);
        }
        UserCmd::Hash(p) => println!("{}", hash(&p)?),
    }
    Ok(())
}

pub fn run_acl(cmd: AclCmd) -> anyhow::Result<()> {
    match cmd {
        AclCmd::Show(a) => {
            let v = a.target.admin().get("/api/v1/acl/show", &[])?;
            if a.target.json {
                a.target.output().print(&v);
            } else {
                print!("{}", v["rules"].as_str().unwrap_or(""));
                eprintln!(
                    "({} rule(s), set {}; acl_nomatch = {} on the node asked)",
                    v["rule_count"],
                    v["set"].as_str().unwrap_or("never"),
                    v["acl_nomatch"].as_str().unwrap_or("?")
                );
            }
        }
        AclCmd::Load(a) => {
            let rules = std::fs::read_to_string(&a.file)
                .with_context(|| format!("reading {}", a.file.display()))?;
            let v = a
                .target
                .admin()
                .post_json("/api/v1/acl/load", &json!({ "rules": rules }))?;
            a.target.output().print(&v);
        }
    }
    Ok(())
}

pub fn run_api_key(cmd: ApiKeyCmd) -> anyhow::Result<()> {
    let (target, v) = match cmd {
        ApiKeyCmd::Create(a) => {
            let v = a.target.admin().post("/api/v1/api-key/create", &[])?;
            if !a.target.json {
                println!("{}", v["key"].as_str().unwrap_or(""));
                return Ok(());
            }
            (a.target, v)
        }
        ApiKeyCmd::Show(a) => {
            let v = a.target.admin().get("/api/v1/api-key/show", &[])?;
            (a.target, v)
        }
        ApiKeyCmd::Add(a) => {
            let v = a
                .target
                .admin()
                .post_json("/api/v1/api-key/add", &json!({ "key": a.key }))?;
            (a.target, v)
        }
        ApiKeyCmd::Delete(a) => {
            let v = a
                .target
                .admin()
                .post_json("/api/v1/api-key/delete", &json!({ "key": a.key }))?;
            (a.target, v)
        }
    };
    target.output().print(&v);
    Ok(())
}
