//! A TOML config file as keys: nested tables become dotted names (TOML reads
//! `listener.vmq.clustering = …` as nested tables), and each key's line is
//! found for error messages.

/// Keys whose value is itself a table; they are not flattened.
const TABLE_KEYS: [&str; 1] = ["users"];

/// Every (dotted key, value) of `table`, nested tables flattened.
pub(super) fn flatten(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    flatten_into("", table, &mut out);
    out
}

fn flatten_into(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !TABLE_KEYS.contains(&key.as_str()) => {
                flatten_into(&key, t, out)
            }
            v => out.push((key, v)),
        }
    }
}

/// A dotted name as written (`a . "b"`) in its plain form (`a.b`).
fn plain(name: &str) -> String {
    name.split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// The 1-based line where `key` (a dotted name) is given: a `name = value`
/// line under its `[table]` header, or the header of a table-valued key.
/// Failing that, the first line that names its first part; 0 if none does.
pub(super) fn line_of(text: &str, key: &str) -> usize {
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[').filter(|h| !h.starts_with('[')) {
            section = plain(h.split(']').next().unwrap_or(""));
            if section == key {
                return i + 1;
            }
            continue;
        }
        let Some((name, _)) = l.split_once('=') else {
            continue;
        };
        let name = plain(name);
        let full = if section.is_empty() {
            name
        } else {
            format!("{section}.{name}")
        };
        if full == key {
            return i + 1;
        }
    }
    let first = key.split('.').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('[');
            l.starts_with(first) && l[first.len()..].starts_with(['.', ' ', '=', ']'])
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        flatten(text.parse().unwrap())
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn dotted_keys_and_tables_flatten_to_one_name_but_users_stays_a_table() {
        let text = "listener.vmq.clustering = \"127.0.0.1:1\"\n[listener.tcp]\ndefault = \"127.0.0.1:2\"\n[users]\nalice = \"x\"\n";
        assert_eq!(
            keys(text),
            ["listener.tcp.default", "listener.vmq.clustering", "users"]
        );
    }

    #[test]
    fn a_key_is_found_on_its_line_under_its_table() {
        let text = "a = 1\n\n[listener.tcp]\ndefault = \"x\"\n[listener . \"vmq\"]\n clustering = \"y\"\n[users]\nbob = \"p\"\n";
        assert_eq!(line_of(text, "a"), 1);
        assert_eq!(line_of(text, "listener.tcp.default"), 4);
        assert_eq!(line_of(text, "listener.vmq.clustering"), 6);
        assert_eq!(line_of(text, "users"), 7);
        assert_eq!(line_of("x.y = 1\n", "x.y"), 1);
    }
}
