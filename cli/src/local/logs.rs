//! `shopctl logs local <component>`: the last lines of a component's log, optionally
//! followed as it grows.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::topology::Topology;

/// Extra logs that are not components but worth reading.
const OTHER_LOGS: &[&str] = &["supervisor", "database", "migrate", "seed"];

/// The last `n` lines of a text.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let mut all: Vec<&str> = text.lines().collect();
    all.drain(..all.len().saturating_sub(n));
    all
}

pub fn run(topology: &Topology, component: &str, lines: usize, follow: bool) -> Result<()> {
    let names = topology.component_names();
    if !names.iter().any(|n| n == component) && !OTHER_LOGS.contains(&component) {
        bail!(
            "unknown component `{component}`\n  valid: {}, {}",
            names.join(", "),
            OTHER_LOGS.join(", ")
        );
    }
    let path = topology.log_file(component);
    let mut file = std::fs::File::open(&path).with_context(|| {
        format!(
            "{} has no log yet ({}); has `shopctl up {}` started it?",
            component,
            path.display(),
            topology.env
        )
    })?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let mut out = std::io::stdout().lock();
    for line in last_lines(&text, lines) {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut position = file.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if length < position {
            // Truncated or replaced: start over from its beginning.
            file = std::fs::File::open(&path)?;
            position = 0;
        }
        file.seek(SeekFrom::Start(position))?;
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        position += chunk.len() as u64;
        out.write_all(&chunk)?;
        out.flush()?;
    }
}
