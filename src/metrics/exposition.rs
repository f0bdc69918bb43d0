//! Reading the Prometheus text `/metrics` renders back into samples, and
//! VerneMQ's mapping of a sample to its `$SYS` topic. `$SYS` and `raftmq
//! metrics show` both start from the rendered text, so they carry exactly
//! the series `/metrics` has.
//!
//! The mapping: drop the `raftmq_` prefix and a counter's `_total` suffix,
//! turn every `_` into a topic level, then add each label's value as one
//! more level, in the order the labels are rendered (`/`, `+`, `#` in a
//! value become `_`). So `raftmq_mqtt_publish_received_total{qos="1"}` is
//! `mqtt/publish/received/1` and a histogram's `_sum` and `_count` are
//! `.../sum` and `.../count`; its `_bucket` series have no topic.

/// One sample line: series name, labels in order, value as rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: String,
    /// The `# TYPE` of its family (`counter`, `gauge`, `histogram`, ...).
    pub kind: String,
}

/// The samples of a text exposition, in order. Lines that do not parse are
/// skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut kind = String::new();
    let mut family = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            family = it.next().unwrap_or_default().to_string();
            kind = it.next().unwrap_or_default().to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(mut s) = sample(line) {
            s.kind = if s.name.starts_with(&family) {
                kind.clone()
            } else {
                String::new()
            };
            out.push(s);
        }
    }
    out
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.to_string();
    Some(Sample {
        name,
        labels,
        value,
        kind: String::new(),
    })
}

impl Sample {
    /// The sample as `/metrics` shows it: `name{k="v",...}`.
    pub fn series(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }

    /// Its `$SYS` topic below `$SYS/<node>/` (see the module docs); `None`
    /// for a histogram bucket.
    pub fn sys_topic(&self) -> Option<String> {
        if self.kind == "histogram" && self.name.ends_with("_bucket") {
            return None;
        }
        let name = self.name.strip_prefix("raftmq_").unwrap_or(&self.name);
        let name = match self.kind.as_str() {
            "counter" => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let mut topic = name.replace('_', "/");
        for (_, v) in &self.labels {
            topic.push('/');
            topic.extend(v.chars().map(|c| match c {
                '/' | '+' | '#' => '_',
                c => c,
            }));
        }
        Some(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP raftmq_mqtt_publish_received PUBLISH packets received.
# TYPE raftmq_mqtt_publish_received counter
raftmq_mqtt_publish_received_total{qos=\"1\"} 7
# TYPE raftmq_mqtt_connack_sent counter
raftmq_mqtt_connack_sent_total{reason_code=\"not_authorized\"} 3
# TYPE raftmq_sessions gauge
raftmq_sessions 2
# TYPE raftmq_raft_commit_seconds histogram
raftmq_raft_commit_seconds_sum 0.25
raftmq_raft_commit_seconds_count 4
raftmq_raft_commit_seconds_bucket{le=\"0.001\"} 1
# TYPE raftmq_raft_replication_lag_entries gauge
raftmq_raft_replication_lag_entries{peer=\"2\",odd=\"a/b+c#, \\\"q\\\"\"} 5
# EOF
";

    fn topics() -> Vec<Option<String>> {
        parse(TEXT).iter().map(Sample::sys_topic).collect()
    }

    #[test]
    fn a_counter_loses_the_prefix_and_total_and_its_underscores_become_levels() {
        assert_eq!(topics()[0].as_deref(), Some("mqtt/publish/received/1"));
    }

    #[test]
    fn a_label_value_becomes_one_more_level() {
        assert_eq!(
            topics()[1].as_deref(),
            Some("mqtt/connack/sent/not_authorized")
        );
    }

    #[test]
    fn a_gauge_without_labels_is_its_name_in_levels() {
        assert_eq!(topics()[2].as_deref(), Some("sessions"));
    }

    #[test]
    fn a_histogram_publishes_its_sum_and_count_and_not_its_buckets() {
        assert_eq!(topics()[3].as_deref(), Some("raft/commit/seconds/sum"));
        assert_eq!(topics()[4].as_deref(), Some("raft/commit/seconds/count"));
        assert_eq!(topics()[5], None);
    }

    #[test]
    fn labels_keep_their_order_and_wildcards_or_slashes_in_values_become_underscores() {
        let s = &parse(TEXT)[6];
        assert_eq!(
            s.labels,
            vec![
                ("peer".to_string(), "2".to_string()),
                ("odd".to_string(), "a/b+c#, \"q\"".to_string())
            ]
        );
        assert_eq!(
            s.sys_topic().as_deref(),
            Some("raft/replication/lag/entries/2/a_b_c_, \"q\"")
        );
    }

    #[test]
    fn a_sample_renders_back_as_the_series_it_was_read_from() {
        let lines: Vec<&str> = TEXT
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s))
            .collect();
        let series: Vec<String> = parse(TEXT).iter().map(Sample::series).collect();
        assert_eq!(series, lines);
    }

    #[test]
    fn samples_carry_their_value_and_family_type() {
        let s = parse(TEXT);
        assert_eq!((s[0].value.as_str(), s[0].kind.as_str()), ("7", "counter"));
        assert_eq!(
            (s[4].value.as_str(), s[4].kind.as_str()),
            ("4", "histogram")
        );
        assert_eq!(s[2].kind, "gauge");
    }
}
