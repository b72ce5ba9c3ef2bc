//! The smallest config changes that make an environment fit, each tried with the same
//! placement: a bigger instance type (its family first, then any of the catalog, smallest
//! first), more nodes (`min` for the baseline, `max` for the peak), or smaller requests of
//! the workloads that did not fit (`services.<name>.cpu` / `.memory`).

use serde::Serialize;

use super::allocatable;
use super::catalog;
use super::schedule::{place, Inputs, Scenario};

/// One change: set `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub key: String,
    pub value: String,
}

fn fits(inputs: &Inputs) -> bool {
    place(inputs, Scenario::Minimum).fits() && place(inputs, Scenario::Peak).fits()
}

/// Extra nodes tried before giving up on "more nodes".
const MORE_NODES: u32 = 30;

pub fn suggest(inputs: &Inputs) -> Vec<Suggestion> {
    let mut found = Vec::new();
    for (g, group) in inputs.groups.iter().enumerate() {
        let key = |field: &str| format!("eks.node_groups[{}].{field}", group.index);
        if let Some(t) = bigger_type(inputs, g) {
            found.push(Suggestion {
                key: key("instance_types"),
                value: format!("[\"{t}\"]"),
            });
        }
        let baseline_fits = |min: u32| {
            let mut trial = inputs.clone();
            trial.groups[g].min = min;
            trial.groups[g].max = trial.groups[g].max.max(min);
            place(&trial, Scenario::Minimum).fits()
        };
        let start = group.min;
        let min = (start + 1..=start + MORE_NODES).find(|&n| baseline_fits(n));
        let mut trial = inputs.clone();
        if let Some(min) = min.filter(|_| !baseline_fits(start)) {
            trial.groups[g].min = min;
            trial.groups[g].max = trial.groups[g].max.max(min);
            let value = if trial.groups[g].max > group.max {
                format!("{min} (and max = {min})")
            } else {
                min.to_string()
            };
            found.push(Suggestion {
                key: key("min"),
                value,
            });
        }
        if !place(&trial, Scenario::Peak).fits() {
            let max = trial.groups[g].max;
            if let Some(max) = (max + 1..=max + MORE_NODES).find(|&n| {
                let mut peak = trial.clone();
                peak.groups[g].max = n;
                place(&peak, Scenario::Peak).fits()
            }) {
                found.push(Suggestion {
                    key: key("max"),
                    value: max.to_string(),
                });
            }
        }
    }
    found.extend(smaller_requests(inputs));
    found
}

/// The smallest catalog type that fits when the group runs only it.
fn bigger_type(inputs: &Inputs, g: usize) -> Option<&'static str> {
    let current: Vec<&catalog::InstanceType> = inputs.groups[g]
        .instance_types
        .iter()
        .filter_map(|n| catalog::lookup(n))
        .collect();
    let families: Vec<&str> = current.iter().map(|t| t.family()).collect();
    let mut candidates: Vec<&catalog::InstanceType> = catalog::all().iter().collect();
    candidates.sort_by_key(|t| {
        (
            !families.contains(&t.family()),
            t.vcpus,
            t.memory_mib,
            t.name,
        )
    });
    candidates
        .into_iter()
        .filter(|t| !inputs.groups[g].instance_types.contains(&t.name))
        .find(|t| {
            let mut trial = inputs.clone();
            trial.groups[g].instance_types = vec![t.name];
            trial.groups[g].allocatable = allocatable::of(t);
            fits(&trial)
        })
        .map(|t| t.name)
}

/// For each config key of a workload that did not fit: the largest CPU or memory request
/// with which everything fits, when one exists.
fn smaller_requests(inputs: &Inputs) -> Vec<Suggestion> {
    let mut keys: Vec<(String, bool, bool)> = Vec::new();
    for scenario in [Scenario::Minimum, Scenario::Peak] {
        for u in place(inputs, scenario).unplaced {
            let Some(key) = &inputs.workloads[u.workload_index].config_key else {
                continue;
            };
            match keys.iter_mut().find(|(k, _, _)| k == key) {
                Some(entry) => {
                    entry.1 |= u.short.cpu;
                    entry.2 |= u.short.memory;
                }
                None => keys.push((key.clone(), u.short.cpu, u.short.memory)),
            }
        }
    }
    let mut found = Vec::new();
    for (key, cpu, memory) in keys {
        let with = |cpu_millis: Option<u64>, mib: Option<u64>| {
            let mut trial = inputs.clone();
            for w in trial
                .workloads
                .iter_mut()
                .filter(|w| w.config_key.as_deref() == Some(key.as_str()))
            {
                if let Some(c) = cpu_millis {
                    w.requests.cpu_millis = c;
                }
                if let Some(m) = mib {
                    w.requests.memory_bytes = m << 20;
                }
            }
            fits(&trial)
        };
        let current = inputs
            .workloads
            .iter()
            .find(|w| w.config_key.as_deref() == Some(key.as_str()))
            .map(|w| w.requests)
            .unwrap_or_default();
        if cpu {
            // In steps of 10m: the largest request that fits.
            if let Some(c) = largest(current.cpu_millis / 10, |steps| {
                with(Some(steps * 10), None)
            }) {
                found.push(Suggestion {
                    key: format!("{key}.cpu"),
                    value: format!("\"{}m\"", c * 10),
                });
            }
        }
        if memory {
            if let Some(m) = largest(current.memory_bytes >> 20, |mib| with(None, Some(mib))) {
                found.push(Suggestion {
                    key: format!("{key}.memory"),
                    value: format!("\"{m}Mi\""),
                });
            }
        }
    }
    found
}

/// The largest `n` in 1..below for which `fits(n)`, by bisection (fitting is taken as
/// monotone in the request), if even 1 fits.
fn largest(below: u64, fits: impl Fn(u64) -> bool) -> Option<u64> {
    if below <= 1 || !fits(1) {
        return None;
    }
    let (mut good, mut bad) = (1, below);
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if fits(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

#[cfg(test)]
mod tests {
    use super::super::schedule::tests::{inputs, one_per_node, workload};
    use super::*;

    #[test]
    fn suggests_a_bigger_type_more_nodes_or_smaller_requests() {
        // 3 nodes of 1 CPU; the stores take 700m of each, the app's 2 x 500m do not fit.
        let mut app = workload("app", 2, 500, 0);
        app.config_key = Some("services.app".into());
        let mut tight = inputs(
            3,
            1000,
            4,
            vec![one_per_node(workload("db", 3, 700, 1)), app],
        );
        tight.groups[0].instance_types = vec!["m6i.large"];
        let suggestions = suggest(&tight);
        let value = |key: &str| {
            suggestions
                .iter()
                .find(|s| s.key == key)
                .map(|s| s.value.clone())
                .unwrap_or_else(|| panic!("no {key} in {suggestions:?}"))
        };
        assert_eq!(
            value("eks.node_groups[0].instance_types"),
            "[\"m6i.xlarge\"]"
        );
        assert_eq!(value("eks.node_groups[0].min"), "4");
        assert_eq!(value("services.app.cpu"), "\"300m\"");
        // Each suggestion fits on its own.
        let mut four = tight.clone();
        four.groups[0].min = 4;
        assert!(fits(&four));
        let mut smaller = tight.clone();
        smaller.workloads[1].requests.cpu_millis = 300;
        assert!(fits(&smaller));
        smaller.workloads[1].requests.cpu_millis = 310;
        assert!(!fits(&smaller), "300m is the largest that fits");
    }

    #[test]
    fn nothing_to_suggest_when_it_fits() {
        let fine = inputs(3, 4000, 16, vec![workload("app", 2, 500, 1)]);
        assert!(fits(&fine));
        assert!(smaller_requests(&fine).is_empty());
    }
}
