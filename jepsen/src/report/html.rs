//! Renders the report's `index.html`: one self-contained page (inline CSS,
//! no script, no external URL) with the verdict, the run, the checkers, the
//! plots, the faults and the operation counts. All text is escaped.

use std::fmt::Write;

use super::{check_file, op_counts, RunInfo, Summary};
use crate::check::Verdict;

const CSS: &str = "
body { font-family: 'DejaVu Sans', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1260px; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.banner { font-size: 2.6em; font-weight: bold; color: #fff; padding: 0.3em 0.6em; border-radius: 6px; margin: 0.5em 0; }
.valid { background: #2ca02c; }
.invalid { background: #d62728; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.yes { color: #2ca02c; font-weight: bold; }
.no { color: #d62728; font-weight: bold; }
.count { display: inline-block; margin-right: 1em; white-space: nowrap; }
details { margin: 0.4em 0; }
summary { cursor: pointer; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; white-space: pre-wrap; }
img { display: block; max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
";

/// Escapes text for HTML element content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "<span class=\"yes\">valid</span>"
    } else {
        "<span class=\"no\">INVALID</span>"
    }
}

/// The page. (`write!` to a String cannot fail; its results are ignored.)
pub(super) fn index(info: &RunInfo, verdicts: &[Verdict], s: &Summary) -> String {
    let mut h = String::new();
    let title = format!("raftmq jepsen: {}", info.scenario);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    if !info.description.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", esc(&info.description));
    }
    let (class, word) = if info.valid {
        ("valid", "VALID")
    } else {
        ("invalid", "INVALID")
    };
    let _ = writeln!(h, "<div class=\"banner {class}\">{word}</div>");

    // The run.
    let _ = writeln!(h, "<h2>Run</h2>\n<table>");
    let rows = [
        ("scenario", info.scenario.clone()),
        ("seed", info.seed.to_string()),
        ("time limit", format!("{} s", info.time_limit_s)),
        ("rate", format!("{} ops/s", info.rate)),
        ("duration", format!("{:.1} s", info.duration_s)),
        ("raftmq version", info.raftmq_version.clone()),
        ("started", info.started.clone()),
    ];
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    let _ = writeln!(h, "</table>");

    // The checkers.
    let _ = writeln!(h, "<h2>Checkers</h2>");
    if verdicts.is_empty() {
        let _ = writeln!(h, "<p>No checker ran.</p>");
    } else {
        let _ = writeln!(
            h,
            "<table>\n<tr><th>checker</th><th>verdict</th><th>counts</th></tr>"
        );
        for v in verdicts {
            let _ = write!(
                h,
                "<tr><td><a href=\"checks/{}\">{}</a></td><td>{}</td><td>",
                esc(&check_file(&v.checker)),
                esc(&v.checker),
                yes_no(v.valid)
            );
            for (k, n) in &v.counts {
                let _ = write!(h, "<span class=\"count\">{} <b>{n}</b></span>", esc(k));
            }
            let _ = writeln!(h, "</td></tr>");
        }
        let _ = writeln!(h, "</table>");
        for v in verdicts {
            let open = if v.valid { "" } else { " open" };
            let _ = writeln!(
                h,
                "<details{open}><summary>{}: {} example{}</summary>",
                esc(&v.checker),
                v.examples.len(),
                if v.examples.len() == 1 { "" } else { "s" }
            );
            if v.examples.is_empty() {
                let _ = writeln!(h, "<p>None.</p>");
            }
            for e in &v.examples {
                let _ = writeln!(h, "<pre>{}</pre>", esc(e));
            }
            let _ = writeln!(h, "</details>");
        }
    }

    // The plots.
    let _ = writeln!(h, "<h2>Plots</h2>");
    for (file, alt) in [
        ("latency.png", "latency of client operations over time"),
        ("throughput.png", "operations and deliveries per second"),
        ("roles.png", "node roles over time"),
    ] {
        let _ = writeln!(h, "<img src=\"{file}\" alt=\"{alt}\" width=\"1200\">");
    }

    // The faults.
    let _ = writeln!(h, "<h2>Faults</h2>");
    if s.faults.is_empty() {
        let _ = writeln!(h, "<p>No fault was injected.</p>");
    } else {
        let _ = writeln!(
            h,
            "<table>\n<tr><th>fault</th><th>nodes</th><th>detail</th>\
             <th>start (s)</th><th>end (s)</th></tr>"
        );
        for f in &s.faults {
            let nodes: Vec<String> = f.nodes.iter().map(u64::to_string).collect();
            let end = match (f.healed, f.other_end) {
                (Some(t), _) => format!("{t:.3}"),
                (None, Some(kind)) => format!("not healed (heal: {kind:?})"),
                (None, None) => "not healed".to_string(),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td>\
                 <td class=\"num\">{}</td></tr>",
                esc(&f.name),
                esc(&nodes.join(", ")),
                esc(&f.detail),
                f.start,
                esc(&end)
            );
        }
        let _ = writeln!(h, "</table>");
    }

    // The operations.
    let _ = writeln!(h, "<h2>Operations</h2>");
    let counts = op_counts(s);
    if counts.is_empty() {
        let _ = writeln!(h, "<p>No client operation.</p>");
    } else {
        let _ = writeln!(
            h,
            "<table>\n<tr><th>workload</th><th>ok</th><th>fail</th><th>info</th>\
             <th>of which open</th><th>total</th><th>deliveries</th></tr>"
        );
        let mut total = [0u64; 4];
        let mut deliveries = 0;
        for (w, (c, d)) in &counts {
            row(&mut h, &esc(w), c, *d);
            for (t, n) in total.iter_mut().zip(c) {
                *t += n;
            }
            deliveries += d;
        }
        row(&mut h, "<b>all</b>", &total, deliveries);
        let _ = writeln!(h, "</table>");
    }

    // The notes.
    let _ = writeln!(h, "<h2>Notes</h2>");
    if info.notes.is_empty() && s.notes.is_empty() {
        let _ = writeln!(h, "<p>None.</p>");
    }
    if !info.notes.is_empty() {
        let _ = writeln!(h, "<ul>");
        for n in &info.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(h, "</ul>");
    }
    if !s.notes.is_empty() {
        let _ = writeln!(
            h,
            "<table>\n<tr><th>time (s)</th><th>note in the history</th></tr>"
        );
        for (t, n) in &s.notes {
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{t:.3}</td><td>{}</td></tr>",
                esc(n)
            );
        }
        let _ = writeln!(h, "</table>");
    }

    // The files.
    let _ = writeln!(
        h,
        "<h2>Files</h2>\n<ul>\n<li><a href=\"history.jsonl\">history.jsonl</a>: \
         every event of the run, one JSON object a line</li>\n\
         <li><a href=\"verdicts.json\">verdicts.json</a>: every checker's verdict</li>\n\
         <li><a href=\"run.json\">run.json</a>: the run's parameters</li>\n</ul>\n\
         </body>\n</html>"
    );
    h
}

/// One row of the operations table; `name` is already HTML.
fn row(h: &mut String, name: &str, c: &[u64; 4], deliveries: u64) {
    let _ = writeln!(
        h,
        "<tr><td>{name}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{deliveries}</td></tr>",
        c[0],
        c[1],
        c[2],
        c[3],
        c[0] + c[1] + c[2]
    );
}
