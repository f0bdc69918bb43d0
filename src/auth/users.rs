//! The node's own users, read at start: the config file's `[users]` table
//! (`name = "password"`, or `name = "$argon2…"`) and the `password_file`
//! (`name:$argon2…` or `name:password` lines, `#` comments). Plain passwords
//! are hashed as they are read, so no plaintext is kept in memory after
//! start. These users are this node's only; the replicated ones
//! (`raftmq user add`) are the cluster's, and win when a name is in both.

use std::collections::BTreeMap;
use std::path::Path;

use super::password;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("password file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("password file {path}, line {line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("user `{user}`: {message}")]
    Hash { user: String, message: String },
}

/// A stored password as written: an argon2 hash is kept, a plain one
/// hashed.
fn stored(user: &str, text: &str) -> Result<String, UsersError> {
    let err = |message: String| UsersError::Hash {
        user: user.to_string(),
        message,
    };
    if text.starts_with("$argon2") {
        password::check_phc(text).map_err(|e| err(e.to_string()))?;
        return Ok(text.to_string());
    }
    if text.starts_with("$6$") || text.starts_with("$7$") {
        return Err(err(
            "mosquitto_passwd hashes (SHA-512/PBKDF2) are not read; give the plain password (hashed at load) or an argon2 hash (`raftmq user hash`)".into(),
        ));
    }
    password::hash(text.as_bytes()).map_err(|e| err(e.to_string()))
}

/// The `[users]` table's users, hashed.
pub fn from_table(
    users: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, UsersError> {
    users
        .iter()
        .map(|(u, p)| Ok((u.clone(), stored(u, p)?)))
        .collect()
}

/// A password file's users, hashed.
pub fn from_file(path: &Path) -> Result<BTreeMap<String, String>, UsersError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
        path: p.clone(),
        source,
    })?;
    parse(&text, &p)
}

fn parse(text: &str, path: &str) -> Result<BTreeMap<String, String>, UsersError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((user, pass)) = l
            .split_once(':')
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        else {
            return Err(UsersError::Line {
                path: path.to_string(),
                line: i + 1,
                message: "expected `user:password` or `user:$argon2…`".into(),
            });
        };
        out.insert(user.to_string(), stored(user, pass)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_holds_hashes_and_plain_passwords_hashed_at_load() {
        let h = password::hash(b"one").unwrap();
        let text = format!("# users\nann:{h}\nbob:two\n\n");
        let users = parse(&text, "f").unwrap();
        assert_eq!(users["ann"], h);
        assert!(users["bob"].starts_with("$argon2id$"));
        assert!(password::verify(&users["bob"], b"two"));
    }

    #[test]
    fn a_bad_line_or_a_foreign_hash_is_an_error_naming_it() {
        let e = parse("ann\n", "f").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("ann:$7$101$abc$def\n", "f").unwrap_err().to_string();
        assert!(e.contains("mosquitto_passwd"), "{e}");
    }
}
