//! How an admin command prints a node's answer: a table (aligned columns for
//! a list, `key  value` lines for a record), a sentence, or with `--json` the
//! answer itself.

use serde_json::Value;

/// Where and how answers are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints an answer: `--json` as it came; a `table` as columns, then the
    /// answer's other fields as `key  value` lines; a `text` as is; any other
    /// object as `key  value` lines.
    pub fn print(&self, v: &Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            return;
        }
        if let Some(rows) = v.get("table").and_then(|t| t.as_array()) {
            print!("{}", columns(rows));
            let mut rest = v.clone();
            if let Some(o) = rest.as_object_mut() {
                o.remove("table");
                if !o.is_empty() {
                    println!();
                    print!("{}", record(&rest));
                }
            }
        } else if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            println!("{t}");
        } else {
            print!("{}", record(v));
        }
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    }
}

/// Rows as aligned columns, in the first row's key order.
fn columns(rows: &[Value]) -> String {
    if rows.is_empty() {
        return "(none)\n".into();
    }
    let cols: Vec<String> = rows[0]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r.get(c)).chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        let l = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        format!("{}\n", l.trim_end())
    };
    let mut out = line(cols.clone());
    for r in rows {
        out.push_str(&line(cols.iter().map(|c| cell(r.get(c))).collect()));
    }
    out
}

/// An object as `key  value` lines, keys aligned.
fn record(v: &Value) -> String {
    let Some(o) = v.as_object() else {
        return format!("{v}\n");
    };
    let w = o.keys().map(|k| k.len()).max().unwrap_or(0);
    o.iter()
        .map(|(k, v)| format!("{k:<w$}  {}\n", cell(Some(v))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_print_as_aligned_columns_with_a_dash_for_null() {
        let t = columns(&[
            json!({"client_id": "a", "peer": null}),
            json!({"client_id": "long-name", "peer": "127.0.0.1:5"}),
        ]);
        assert_eq!(t, "client_id  peer\na          -\nlong-name  127.0.0.1:5\n");
    }

    #[test]
    fn an_empty_list_says_none() {
        assert_eq!(columns(&[]), "(none)\n");
    }

    #[test]
    fn a_record_prints_one_aligned_line_per_key() {
        let r = record(&json!({"node_id": 1, "in_quorum": true}));
        assert_eq!(r, "node_id    1\nin_quorum  true\n");
    }
}
