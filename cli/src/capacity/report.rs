//! What `shopctl capacity` prints: per node, allocatable, requested and headroom, with
//! totals, for both scenarios; and, when something does not fit, the failure message the
//! preflight of render, plan and deploy prints too.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use super::connections::Budget;
use super::quantity::{show_cpu, show_memory};
use super::schedule::{Group, Placement};
use super::suggest::Suggestion;

/// Everything the check found about one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub env: String,
    /// `environments/staging.toml`: where the suggested keys are.
    pub file: String,
    pub fits: bool,
    pub groups: Vec<Group>,
    pub scenarios: Vec<Placement>,
    pub suggestions: Vec<Suggestion>,
    pub connections: Budget,
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{}%", part * 100 / whole)
}

/// The per-node tables of both scenarios.
pub fn table(a: &Assessment) -> String {
    let mut out = String::new();
    for placement in &a.scenarios {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY).set_header([
            "node",
            "zone",
            "allocatable cpu / memory / pods",
            "requested cpu / memory / pods",
            "headroom cpu / memory / pods",
        ]);
        let (mut alloc, mut req, mut pods, mut slots) = ((0, 0), (0, 0), 0, 0);
        for n in &placement.nodes {
            let free = n.free();
            t.add_row([
                n.name.clone(),
                n.zone.clone(),
                format!(
                    "{} / {} / {}",
                    show_cpu(n.allocatable.cpu_millis),
                    show_memory(n.allocatable.memory_bytes),
                    n.allocatable.pods
                ),
                format!(
                    "{} ({}) / {} ({}) / {}",
                    show_cpu(n.requested.cpu_millis),
                    percent(n.requested.cpu_millis, n.allocatable.cpu_millis),
                    show_memory(n.requested.memory_bytes),
                    percent(n.requested.memory_bytes, n.allocatable.memory_bytes),
                    n.pods.len()
                ),
                format!(
                    "{} / {} / {}",
                    show_cpu(free.cpu_millis),
                    show_memory(free.memory_bytes),
                    n.allocatable.pods.saturating_sub(n.pods.len() as u32)
                ),
            ]);
            alloc.0 += n.allocatable.cpu_millis;
            alloc.1 += n.allocatable.memory_bytes;
            req.0 += n.requested.cpu_millis;
            req.1 += n.requested.memory_bytes;
            pods += n.pods.len() as u32;
            slots += n.allocatable.pods;
        }
        t.add_row([
            "total".to_owned(),
            String::new(),
            format!("{} / {} / {slots}", show_cpu(alloc.0), show_memory(alloc.1)),
            format!(
                "{} ({}) / {} ({}) / {pods}",
                show_cpu(req.0),
                percent(req.0, alloc.0),
                show_memory(req.1),
                percent(req.1, alloc.1)
            ),
            format!(
                "{} / {} / {}",
                show_cpu(alloc.0.saturating_sub(req.0)),
                show_memory(alloc.1.saturating_sub(req.1)),
                slots.saturating_sub(pods)
            ),
        ]);
        out.push_str(&format!(
            "{}: {} ({}){}\n{t}\n",
            a.env,
            match placement.scenario {
                super::Scenario::Minimum => "minimum",
                super::Scenario::Peak => "peak",
            },
            placement.scenario.describe(),
            if placement.fits() {
                String::new()
            } else {
                format!(": {} pods do not fit", placement.unplaced.len())
            }
        ));
    }
    let b = &a.connections;
    out.push_str(&format!(
        "PostgreSQL connections: {} of max_connections {} ({})",
        b.needed(),
        b.max_connections,
        b.sum()
    ));
    out
}

/// `general-1: CPU: ...` reasons with the same text after the node's name, as one line each
/// naming the nodes (`general-1, general-3`, or `every node (3)`).
fn grouped(reasons: &[String]) -> Vec<(String, String)> {
    let mut groups: Vec<(Vec<&str>, &str)> = Vec::new();
    for reason in reasons {
        let (node, why) = reason.split_once(": ").unwrap_or(("", reason));
        match groups.iter_mut().find(|(_, w)| *w == why) {
            Some((nodes, _)) => nodes.push(node),
            None => groups.push((vec![node], why)),
        }
    }
    let single = groups.len() == 1 && reasons.len() > 1;
    groups
        .into_iter()
        .map(|(nodes, why)| {
            let who = if single {
                format!("every node ({})", nodes.len())
            } else {
                nodes.join(", ")
            };
            (who, why.to_owned())
        })
        .collect()
}

/// Why the environment does not fit, and what would.
pub fn failure(a: &Assessment) -> String {
    let groups: Vec<String> = a
        .groups
        .iter()
        .map(|g| {
            format!(
                "eks.node_groups[{}] {} ({}, min {}, max {})",
                g.index,
                g.name,
                g.instance_types.join(" / "),
                g.min,
                g.max
            )
        })
        .collect();
    let mut out = format!(
        "{}: the workloads do not fit the nodes of {}",
        a.env,
        groups.join(", ")
    );
    for placement in a.scenarios.iter().filter(|p| !p.fits()) {
        out.push_str(&format!(
            "\n  {} ({}): {} pods do not fit",
            match placement.scenario {
                super::Scenario::Minimum => "minimum",
                super::Scenario::Peak => "peak",
            },
            placement.scenario.describe(),
            placement.unplaced.len()
        ));
        for u in &placement.unplaced {
            out.push_str(&format!(
                "\n    {} ({}, {}) requests {} / {}:",
                u.pod,
                u.workload,
                u.source,
                show_cpu(u.requests.cpu_millis),
                show_memory(u.requests.memory_bytes)
            ));
            for (nodes, why) in grouped(&u.reasons) {
                out.push_str(&format!("\n      {nodes}: {why}"));
            }
        }
    }
    if a.suggestions.is_empty() {
        out.push_str(
            "\n  no single change of instance type, node count or request fits: change several",
        );
    } else {
        out.push_str(&format!("\n  any one of these changes in {} fits:", a.file));
        for s in &a.suggestions {
            out.push_str(&format!("\n    {} = {}", s.key, s.value));
        }
    }
    out.push_str("\n  (docs/k8s.md, \"Capacity\": the rules and what is not modelled)");
    out
}
