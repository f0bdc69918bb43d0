//! `raftmq metrics show [--admin ADDR] [--json]` (VerneMQ's `vmq-admin
//! metrics show`): every series of a node's `/metrics`, one per line as
//! `type.series = value`, or a JSON array of `{name, type, labels, value}`.
//! Histogram buckets are left out (their `_sum` and `_count` are shown), as
//! in `$SYS`.

use super::exposition::{self, Sample};

/// Prints a node's `/metrics` text: one `type.series = value` line per
/// sample, or with `json` a JSON array.
pub fn print(text: &str, json: bool) -> anyhow::Result<()> {
    let samples = shown(text);
    if json {
        let rows: Vec<serde_json::Value> = samples.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for s in samples {
            println!("{}", line(&s));
        }
    }
    Ok(())
}

/// The samples shown: all but histogram buckets.
fn shown(text: &str) -> Vec<Sample> {
    exposition::parse(text)
        .into_iter()
        .filter(|s| s.sys_topic().is_some())
        .collect()
}

fn line(s: &Sample) -> String {
    format!("{}.{} = {}", s.kind, s.series(), s.value)
}

fn to_json(s: &Sample) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = s
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let value = match s.value.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => serde_json::Value::from(f as i64),
        Ok(f) => serde_json::Number::from_f64(f).map_or_else(
            || serde_json::Value::String(s.value.clone()),
            serde_json::Value::Number,
        ),
        Err(_) => serde_json::Value::String(s.value.clone()),
    };
    serde_json::json!({"name": s.name, "type": s.kind, "labels": labels, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE raftmq_mqtt_connack_sent counter
raftmq_mqtt_connack_sent_total{reason_code=\"not_authorized\"} 3
# TYPE raftmq_raft_commit_seconds histogram
raftmq_raft_commit_seconds_sum 0.5
raftmq_raft_commit_seconds_count 4
raftmq_raft_commit_seconds_bucket{le=\"0.001\"} 1
";

    #[test]
    fn each_series_is_one_line_with_its_type_and_value() {
        let lines: Vec<String> = shown(TEXT).iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "counter.raftmq_mqtt_connack_sent_total{reason_code=\"not_authorized\"} = 3",
                "histogram.raftmq_raft_commit_seconds_sum = 0.5",
                "histogram.raftmq_raft_commit_seconds_count = 4",
            ]
        );
    }

    #[test]
    fn json_rows_carry_labels_as_an_object_and_values_as_numbers() {
        let rows: Vec<serde_json::Value> = shown(TEXT).iter().map(to_json).collect();
        assert_eq!(
            rows[0],
            serde_json::json!({
                "name": "raftmq_mqtt_connack_sent_total",
                "type": "counter",
                "labels": {"reason_code": "not_authorized"},
                "value": 3
            })
        );
        assert_eq!(rows[1]["value"], serde_json::json!(0.5));
    }
}
