//! Value parsers for the node's config keys: booleans, bounded integers,
//! sizes with units, strings and addresses. Each error says what was
//! expected. (The cluster-wide keys' parser is the raft crate's.)

use std::net::SocketAddr;

pub(super) fn boolean(v: &toml::Value) -> Result<bool, String> {
    match v {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(s) if s == "on" => Ok(true),
        toml::Value::String(s) if s == "off" => Ok(false),
        other => Err(format!(
            "expected true/false or \"on\"/\"off\", got {other}"
        )),
    }
}

pub(super) fn uint(v: &toml::Value, min: u64, max: u64) -> Result<u64, String> {
    match v.as_integer() {
        Some(i) if i >= 0 && (i as u64) >= min && (i as u64) <= max => Ok(i as u64),
        Some(i) => Err(format!("{i} is out of range {min}..={max}")),
        None => Err(format!("expected an integer, got {v}")),
    }
}

pub(super) const MIB: u64 = 1024 * 1024;

/// A size in bytes, at least `min`: an integer, or a string with RabbitMQ's
/// units (see [`parse_bytes`]).
pub(super) fn bytes(v: &toml::Value, min: u64) -> Result<u64, String> {
    let n = match v {
        toml::Value::Integer(i) => {
            u64::try_from(*i).map_err(|_| format!("{i} is negative; expected a size in bytes"))?
        }
        toml::Value::String(s) => parse_bytes(s).ok_or(format!(
            "`{s}` is not a size (bytes, or a number with a unit: kB, MB, GB (powers of 1000) or k, kiB, M, MiB, G, GiB (powers of 1024))"
        ))?,
        other => return Err(format!("expected a size (\"500MB\", \"1GB\" or bytes), got {other}")),
    };
    if n < min {
        return Err(format!("{n} bytes is below the minimum of {min}"));
    }
    Ok(n)
}

/// Bytes from a number and an optional unit, as RabbitMQ reads its
/// memory and disk sizes: `kB`, `MB`, `GB`, `TB` are powers of 1000; `k`,
/// `kiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` powers of 1024; none (or `B`)
/// is bytes. Space between number and unit is allowed.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "k" | "K" | "kiB" | "KiB" => 1024,
        "M" | "MiB" => 1024_u64.pow(2),
        "G" | "GiB" => 1024_u64.pow(3),
        "T" | "TiB" => 1024_u64.pow(4),
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(super) fn string(v: &toml::Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or(format!("expected a string, got {v}"))
}

pub(super) fn addr(v: &toml::Value) -> Result<SocketAddr, String> {
    let s = string(v)?;
    s.parse()
        .map_err(|e| format!("`{s}` is not an address (ip:port): {e}"))
}
