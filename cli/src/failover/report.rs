//! The report of one fault: `report.json`, `report.md` and `timeline.svg`
//! under `<reports_dir>/<timestamp>-<mode>/`.
//!
//! The SVG is written by hand: a bar chart with a few lines and labels is
//! ~100 lines of text, where a plotting crate would add a dependency tree to
//! build on 2 cores for no better picture.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::fault::{Event, Tick};
use super::measure::Measures;
use super::verify::Check;
use super::workload::{ApiRecords, Attempt, LedgerRecords};
use super::Fault;

/// Bin width of the timeline.
pub const BIN_MS: u64 = 100;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Bin {
    pub t_ms: u64,
    pub ok: u32,
    pub failed: u32,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Fault,
    pub run_id: String,
    pub started_at: String,
    pub old_leader: String,
    pub threshold_ms: u64,
    pub passed: bool,
    pub measures: Measures,
    pub checks: Vec<Check>,
    pub events: Vec<Event>,
    /// Ledger writes per 100 ms, by completion time.
    pub bins: Vec<Bin>,
    /// Every failed ledger attempt.
    pub failed_writes: Vec<Attempt>,
    /// A few error messages, to explain the kinds.
    pub error_samples: Vec<String>,
    pub api_setup_errors: Vec<String>,
    /// Observer ticks taken.
    pub observer_ticks: usize,
    /// Where the report was written.
    pub dir: Option<PathBuf>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Fault,
        run_id: &str,
        started: time::OffsetDateTime,
        old_leader: &str,
        threshold_ms: u64,
        events: Vec<Event>,
        measures: Measures,
        checks: Vec<Check>,
        ledger: &LedgerRecords,
        api: Option<&ApiRecords>,
        ticks: &[Tick],
    ) -> Report {
        Report {
            mode,
            run_id: run_id.into(),
            started_at: started
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            old_leader: old_leader.into(),
            threshold_ms,
            passed: checks.iter().all(|c| c.passed),
            measures,
            checks,
            events,
            bins: bins(&ledger.attempts),
            failed_writes: ledger
                .attempts
                .iter()
                .filter(|a| !a.ok())
                .cloned()
                .collect(),
            error_samples: ledger.samples.clone(),
            api_setup_errors: api.map(|a| a.setup_errors.clone()).unwrap_or_default(),
            observer_ticks: ticks.len(),
            dir: None,
        }
    }
}

/// Ledger attempts per 100 ms bin, by completion time.
pub fn bins(attempts: &[Attempt]) -> Vec<Bin> {
    let end = attempts.iter().map(|a| a.end_ms).max().unwrap_or(0);
    let mut out: Vec<Bin> = (0..=end / BIN_MS)
        .map(|i| Bin {
            t_ms: i * BIN_MS,
            ..Bin::default()
        })
        .collect();
    for a in attempts {
        let bin = &mut out[(a.end_ms / BIN_MS) as usize];
        if a.ok() {
            bin.ok += 1;
        } else {
            bin.failed += 1;
        }
    }
    out
}

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{v} ms")).unwrap_or_else(|| "—".into())
}

/// A few lines for the terminal.
pub fn summary(r: &Report) -> String {
    let m = &r.measures;
    let mut s = format!(
        "{}: {} — leader {} -> {}; detect {}, writable {}, write outage {} ms (threshold {} ms), \
         catch-up {}, rejoin {}; {} writes acknowledged, {} failed",
        r.mode.name(),
        if r.passed { "PASS" } else { "FAIL" },
        m.old_leader,
        m.new_leader.as_deref().unwrap_or("none"),
        ms(m.detect_ms),
        ms(m.writable_ms),
        m.write_outage_ms,
        r.threshold_ms,
        ms(m.catch_up_ms),
        ms(m.rejoin_ms),
        m.writes_acknowledged,
        m.writes_failed
    );
    for c in r.checks.iter().filter(|c| !c.passed) {
        let _ = write!(s, "\n  FAILED {}: {}", c.name, c.detail);
    }
    if let Some(dir) = &r.dir {
        let _ = write!(s, "\n  report: {}", dir.display());
    }
    s
}

pub fn markdown(r: &Report) -> String {
    let m = &r.measures;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Failover test: {} — {}\n",
        r.mode.name(),
        if r.passed { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(
        s,
        "Run `{}`, started {}. Leader before: **{}**, after: **{}**.\n",
        r.run_id,
        r.started_at,
        m.old_leader,
        m.new_leader.as_deref().unwrap_or("none")
    );
    let _ = writeln!(s, "![timeline](timeline.svg)\n");
    let _ = writeln!(
        s,
        "## Measures\n\n| measure | value | threshold |\n|---|---|---|"
    );
    let rows: Vec<(&str, String, String)> = vec![
        ("time to detect", ms(m.detect_ms), String::new()),
        (
            "new leader accepts writes",
            ms(m.writable_ms),
            String::new(),
        ),
        (
            "write outage (write port)",
            format!("{} ms", m.write_outage_ms),
            format!("{} ms", r.threshold_ms),
        ),
        ("outage through the API", ms(m.api_outage_ms), String::new()),
        ("replica catch-up", ms(m.catch_up_ms), String::new()),
        ("old leader rejoined", ms(m.rejoin_ms), String::new()),
        (
            "ledger writes acknowledged / failed",
            format!("{} / {}", m.writes_acknowledged, m.writes_failed),
            String::new(),
        ),
    ];
    for (name, value, threshold) in rows {
        let _ = writeln!(s, "| {name} | {value} | {threshold} |");
    }
    let _ = writeln!(
        s,
        "\nTimes are from the fault (run clock at {} ms).\n",
        m.fault_at_ms
    );
    let _ = writeln!(s, "## Checks\n\n| check | result | detail |\n|---|---|---|");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            c.name,
            if c.passed { "pass" } else { "**FAIL**" },
            c.detail.replace('|', "\\|")
        );
    }
    let _ = writeln!(s, "\n## Errors\n\n| kind | count |\n|---|---|");
    let mut all: BTreeMap<String, usize> = m
        .errors
        .iter()
        .map(|(k, v)| (format!("ledger: {k}"), *v))
        .collect();
    all.extend(m.api_answers.iter().map(|(k, v)| (format!("api: {k}"), *v)));
    for (k, v) in all {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "\n## Events\n\n| t (ms) | kind | detail |\n|---|---|---|"
    );
    for e in &r.events {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            e.t_ms,
            e.kind,
            e.label.replace('|', "\\|")
        );
    }
    for (t, l) in &m.leader_changes {
        let _ = writeln!(s, "| {t} | leader | {} |", l.as_deref().unwrap_or("none"));
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Ok (green, up) and failed (red, down) writes per 100 ms, leader changes
/// (blue lines) and fault marks (orange lines).
pub fn svg(r: &Report) -> String {
    let (width, height) = (1000.0_f64, 400.0_f64);
    let (left, right, top, bottom) = (50.0, 20.0, 30.0, 40.0);
    let plot_w = width - left - right;
    let mid = top + (height - top - bottom) * 0.7;
    let end_ms = r
        .bins
        .last()
        .map(|b| b.t_ms + BIN_MS)
        .unwrap_or(BIN_MS)
        .max(1);
    let peak = r
        .bins
        .iter()
        .map(|b| b.ok.max(b.failed))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let up = mid - top;
    let down = height - bottom - mid;
    let x = |t: u64| left + plot_w * t as f64 / end_ms as f64;
    let bar_w = (plot_w * BIN_MS as f64 / end_ms as f64).max(0.5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="16" font-size="13">{} — ledger writes per {BIN_MS} ms (green ok, red failed)</text>"#,
        escape(r.mode.name())
    );
    for b in &r.bins {
        if b.ok > 0 {
            let h = up * b.ok as f64 / peak;
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{bar_w:.2}" height="{h:.1}" fill="#2e9d4a"/>"##,
                x(b.t_ms),
                mid - h
            );
        }
        if b.failed > 0 {
            let h = down * b.failed as f64 / peak;
            let _ = writeln!(
                s,
                r##"<rect x="{:.1}" y="{mid:.1}" width="{bar_w:.2}" height="{h:.1}" fill="#d0342c"/>"##,
                x(b.t_ms)
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#333"/>"##,
        width - right
    );
    let _ = writeln!(
        s,
        r##"<text x="4" y="{:.1}">{peak}</text><text x="4" y="{mid:.1}">0</text>"##,
        top + 10.0
    );
    // Seconds along the bottom.
    let step = if end_ms > 60_000 { 10_000 } else { 5_000 };
    let mut t = 0;
    while t <= end_ms {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} s</text>"##,
            x(t),
            height - bottom + 15.0,
            t / 1000
        );
        t += step;
    }
    let mut label_row = 0;
    let mut mark = |s: &mut String, t: u64, color: &str, label: &str| {
        let lx = x(t.min(end_ms));
        let ly = top + 12.0 + 12.0 * (label_row % 4) as f64;
        label_row += 1;
        let _ = writeln!(
            s,
            r##"<line x1="{lx:.1}" y1="{top}" x2="{lx:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="4 2"/>"##,
            height - bottom
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{ly:.1}" fill="{color}">{}</text>"##,
            lx + 3.0,
            escape(label)
        );
    };
    for e in &r.events {
        if matches!(
            e.kind.as_str(),
            "fault" | "resume" | "release" | "restart" | "probe"
        ) {
            mark(
                &mut s,
                e.t_ms,
                "#e07b00",
                &format!("{}: {}", e.kind, e.label),
            );
        }
    }
    for (t, l) in &r.measures.leader_changes {
        mark(
            &mut s,
            *t,
            "#1f5fbf",
            &format!("leader {}", l.as_deref().unwrap_or("none")),
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn timestamp(r: &Report) -> String {
    r.started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == 'T')
        .take(18)
        .collect()
}

/// Writes the three files; records the directory in the report.
pub fn write(r: &mut Report, reports_dir: &Path) -> Result<PathBuf> {
    let dir = reports_dir.join(format!("{}-{}", timestamp(r), r.mode.name()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    r.dir = Some(dir.clone());
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    std::fs::write(dir.join("timeline.svg"), svg(r))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_fall_into_100_ms_bins_by_completion() {
        let a = |end: u64, outcome: &str| Attempt {
            seq: 0,
            writer: 0,
            start_ms: 0,
            end_ms: end,
            outcome: outcome.into(),
        };
        let b = bins(&[a(5, "ok"), a(99, "ok"), a(100, "timeout"), a(250, "ok")]);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].ok, b[0].failed), (2, 0));
        assert_eq!((b[1].ok, b[1].failed), (0, 1));
        assert_eq!((b[2].t_ms, b[2].ok), (200, 1));
    }
}
