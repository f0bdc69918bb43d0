//! The summary of several runs: one row per run (scenario, seed, operations,
//! faults, every checker's counts), printed as a Markdown table and saved as
//! `summary.md` and `summary.json` beside the runs.

use std::path::Path;

use serde::Serialize;

use crate::run::Outcome;
use crate::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub seed: u64,
    pub operations: usize,
    pub faults: usize,
    /// Seconds from the final heal until every node answered `/health` 200
    /// (None: not within the limit).
    pub recovery_s: Option<f64>,
    pub valid: bool,
    pub passed: bool,
    pub control: bool,
    pub checks: Vec<CheckCounts>,
    pub dir: String,
}

/// One checker's verdict in a row: its name, whether valid, its counts.
pub type CheckCounts = (String, bool, Vec<(String, u64)>);

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub rows: Vec<Row>,
}

/// The counts worth a column in the table, per checker.
const COLUMNS: &[(&str, &[&str])] = &[
    (
        "queue",
        &[
            "acknowledged",
            "lost",
            "recovered",
            "unexpected",
            "duplicated",
        ],
    ),
    (
        "exactly-once",
        &[
            "acknowledged",
            "lost",
            "recovered",
            "unexpected",
            "duplicated",
        ],
    ),
    ("sessions", &["connections", "overlapping-pairs"]),
    ("register", &["writes", "reads", "nonlinearizable-keys"]),
    ("subscriptions", &["subscriptions", "lost"]),
    (
        "convergence",
        &["session-differences", "retained-differences", "unanswered"],
    ),
];

impl Summary {
    /// Adds a run; returns its one-line summary.
    pub fn add(&mut self, s: &Scenario, seed: u64, o: &Outcome) -> String {
        let row = Row {
            scenario: s.name.to_string(),
            seed,
            operations: o.tally.operations,
            faults: o.tally.faults,
            recovery_s: o.tally.recovery_s,
            valid: o.valid,
            passed: o.passed,
            control: s.must_fail.is_some(),
            checks: o
                .verdicts
                .iter()
                .map(|v| {
                    (
                        v.checker.clone(),
                        v.valid,
                        v.counts.iter().map(|(k, n)| (k.clone(), *n)).collect(),
                    )
                })
                .collect(),
            dir: o.dir.display().to_string(),
        };
        let line = format!(
            "{} seed {}: {} ({} operations, {} faults; {})",
            row.scenario,
            seed,
            match (row.valid, row.control) {
                (true, false) => "valid",
                (false, false) => "INVALID",
                (false, true) => "INVALID, as this negative control must be",
                (true, true) => "valid: THIS NEGATIVE CONTROL FOUND NOTHING",
            },
            row.operations,
            row.faults,
            o.verdicts
                .iter()
                .map(crate::check::summary_line)
                .collect::<Vec<_>>()
                .join("; ")
        );
        self.rows.push(row);
        line
    }

    /// The exit status: 0 when every run was valid, 1 when any found a
    /// violation (a negative control always should), 3 when a negative
    /// control found none (the checkers could not fail).
    pub fn exit_code(&self) -> u8 {
        if self.rows.iter().any(|r| r.control && r.valid) {
            3
        } else if self.rows.iter().any(|r| !r.valid) {
            1
        } else {
            0
        }
    }

    /// A Markdown table, one row per run.
    pub fn table(&self) -> String {
        let mut head = vec![
            "scenario",
            "seed",
            "result",
            "ops",
            "faults",
            "heal→healthy s",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for (checker, counts) in COLUMNS {
            for c in *counts {
                head.push(format!("{checker} {c}"));
            }
        }
        let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for r in &self.rows {
            let mut cells = vec![
                r.scenario.clone(),
                r.seed.to_string(),
                match (r.valid, r.control) {
                    (true, false) => "valid".into(),
                    (false, false) => "INVALID".into(),
                    (false, true) => "invalid, as the control must be".into(),
                    (true, true) => "CONTROL FOUND NOTHING".into(),
                },
                r.operations.to_string(),
                r.faults.to_string(),
                r.recovery_s
                    .map_or("not healthy".into(), |s| format!("{s:.1}")),
            ];
            for (checker, counts) in COLUMNS {
                let found = r.checks.iter().find(|(c, _, _)| c == checker);
                for c in *counts {
                    cells.push(
                        found
                            .and_then(|(_, _, cs)| cs.iter().find(|(k, _)| k == c))
                            .map_or("-".into(), |(_, n)| n.to_string()),
                    );
                }
            }
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// Writes `summary.md` and `summary.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.md"), self.table())?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("summary.json"), json)
    }
}
