//! What happened, in numbers, from the records and the observer's ticks.
//! Every time is in ms on the run clock; the measures are relative to the fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fault::{Event, Tick};
use super::workload::{Attempt, Request};
use super::Fault;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measures {
    /// When the fault was injected (run clock).
    pub fault_at_ms: u64,
    pub old_leader: String,
    /// The leader after the fault (the old one when Patroni restarted it in place).
    pub new_leader: Option<String>,
    /// Leader as the nodes' /cluster named it, each change (run clock; None: no leader).
    pub leader_changes: Vec<(u64, Option<String>)>,
    /// Fault until Patroni showed it: leader key lost or moved, or the old
    /// leader's Patroni reporting its postgres not running.
    pub detect_ms: Option<u64>,
    /// Fault until the first acknowledged write after the leader moved (or,
    /// when it did not, after the failure was detected).
    pub writable_ms: Option<u64>,
    /// Longest time without an acknowledged ledger write around the fault.
    pub write_outage_ms: u64,
    /// Longest time without a successful API answer around the fault.
    pub api_outage_ms: Option<u64>,
    /// Fault until every replica showed lag 0 behind the new leader.
    pub catch_up_ms: Option<u64>,
    /// Fault until the old leader ran again (as a replica after a failover).
    pub rejoin_ms: Option<u64>,
    pub writes_acknowledged: usize,
    pub writes_failed: usize,
    /// Failed ledger writes by kind.
    pub errors: BTreeMap<String, usize>,
    /// API answers by status ("503+retry-after", "201", "timeout", ...).
    pub api_answers: BTreeMap<String, usize>,
    /// Observer ticks where two nodes were primaries that could acknowledge writes at once.
    pub dual_primary_ticks: usize,
    /// Observer ticks where a second node still ran as primary but could not acknowledge a
    /// write (no standby for its synchronous commits): a resumed old leader before Patroni
    /// demotes it.
    #[serde(default)]
    pub fenced_primary_ticks: usize,
    /// Timelines the primaries were on, in order.
    pub timelines: Vec<i64>,
}

/// Longest interval between consecutive `oks` (completion times, any order)
/// that overlaps [from, to]; a run with no success after `from` counts until `to`.
pub fn longest_gap(oks: &[u64], from: u64, to: u64) -> u64 {
    let mut oks: Vec<u64> = oks.to_vec();
    oks.sort_unstable();
    let mut best = 0;
    let mut previous: Option<u64> = None;
    for &t in &oks {
        if let Some(p) = previous {
            if t >= from && p <= to {
                best = best.max(t - p);
            }
        } else if t >= from {
            best = best.max(t - from);
        }
        previous = Some(t);
    }
    match previous {
        Some(p) if p < to => best.max(to - p.max(from)),
        None => to.saturating_sub(from),
        _ => best,
    }
}

/// The leader over time, one entry per change; ticks where no node answered are skipped.
pub fn leader_changes(ticks: &[Tick]) -> Vec<(u64, Option<String>)> {
    let mut out: Vec<(u64, Option<String>)> = Vec::new();
    for tick in ticks {
        if !tick.nodes.iter().any(|n| n.cluster_leader.is_some()) {
            continue;
        }
        let leader = tick.leader();
        if out.last().map(|(_, l)| l) != Some(&leader) {
            out.push((tick.t_ms, leader));
        }
    }
    out
}

/// Whether the leader's `/cluster` shows `node` streaming from it (used when the
/// observer's own session to the node has not reconnected yet).
fn streams_to_leader(tick: &Tick, node: &str, leader: Option<&str>) -> bool {
    leader
        .and_then(|l| tick.node(l))
        .and_then(|view| view.member_states.get(node))
        .is_some_and(|state| state == "streaming")
}

pub fn measure(
    fault: Fault,
    old_leader: &str,
    events: &[Event],
    ticks: &[Tick],
    attempts: &[Attempt],
    api: Option<&[Request]>,
) -> Measures {
    let _ = fault;
    let fault_at = events
        .iter()
        .find(|e| e.kind == "fault")
        .map(|e| e.t_ms)
        .unwrap_or(0);
    let end = attempts
        .iter()
        .map(|a| a.end_ms)
        .chain(ticks.last().map(|t| t.t_ms))
        .max()
        .unwrap_or(fault_at);
    let changes = leader_changes(ticks);

    // The first leader other than the old one after the fault.
    let moved = changes
        .iter()
        .find(|(t, l)| *t >= fault_at && l.as_deref().is_some_and(|l| l != old_leader))
        .cloned();
    let lost = changes
        .iter()
        .find(|(t, l)| *t >= fault_at && l.as_deref() != Some(old_leader))
        .map(|(t, _)| *t);
    let old_down = ticks
        .iter()
        .filter(|t| t.t_ms >= fault_at)
        .find(|t| {
            t.node(old_leader)
                .is_some_and(|n| n.api && !matches!(n.state.as_deref(), Some("running") | None))
        })
        .map(|t| t.t_ms);
    // Patroni may restart a killed postgres in place between two observer samples; then the
    // first write that failed after the fault is the earliest sign of it.
    let first_failure = attempts
        .iter()
        .filter(|a| !a.ok() && a.start_ms >= fault_at)
        .map(|a| a.end_ms)
        .min();
    let detected_at = match (lost, old_down) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .or(first_failure);
    let new_leader = match &moved {
        Some((_, l)) => l.clone(),
        None => Some(old_leader.to_string()),
    };

    let writable_from = moved.as_ref().map(|(t, _)| *t).or(detected_at);
    let writable_at = writable_from.and_then(|from| {
        attempts
            .iter()
            .filter(|a| a.ok() && a.start_ms >= from)
            .map(|a| a.end_ms)
            .min()
    });

    let oks: Vec<u64> = attempts
        .iter()
        .filter(|a| a.ok())
        .map(|a| a.end_ms)
        .collect();
    let mut errors = BTreeMap::new();
    for a in attempts.iter().filter(|a| !a.ok()) {
        *errors.entry(a.outcome.clone()).or_insert(0) += 1;
    }

    let (api_outage_ms, api_answers) = match api {
        None => (None, BTreeMap::new()),
        Some(requests) => {
            let work: Vec<&Request> = requests
                .iter()
                .filter(|r| matches!(r.kind.as_str(), "add_line" | "checkout"))
                .collect();
            let oks: Vec<u64> = work.iter().filter(|r| r.ok()).map(|r| r.end_ms).collect();
            let api_end = work.iter().map(|r| r.end_ms).max().unwrap_or(fault_at);
            let mut answers = BTreeMap::new();
            for r in &work {
                *answers.entry(answer_kind(r)).or_insert(0) += 1;
            }
            let gap = if work.is_empty() {
                None
            } else {
                Some(longest_gap(&oks, fault_at, api_end.max(fault_at)))
            };
            (gap, answers)
        }
    };

    // Catch-up: every replica at lag 0 in the new leader's own view.
    let catch_up_ms = writable_at.and_then(|from| {
        let leader = new_leader.clone()?;
        ticks
            .iter()
            .filter(|t| t.t_ms >= from)
            .find(|t| {
                let Some(view) = t.node(&leader) else {
                    return false;
                };
                let replicas: Vec<_> = view.lags.iter().filter(|(n, _)| **n != leader).collect();
                !replicas.is_empty()
                    && replicas.iter().all(|(n, lag)| {
                        **lag == Some(0)
                            && matches!(
                                view.member_states.get(*n).map(String::as_str),
                                Some("running" | "streaming")
                            )
                    })
            })
            .map(|t| t.t_ms - fault_at)
    });

    // Rejoin: the old leader running again, as a replica after a failover.
    let failed_over = new_leader.as_deref() != Some(old_leader);
    let rejoin_from = moved
        .as_ref()
        .map(|(t, _)| *t)
        .or(detected_at)
        .unwrap_or(fault_at);
    let rejoin_ms = ticks
        .iter()
        .filter(|t| t.t_ms >= rejoin_from)
        .find(|t| {
            t.node(old_leader).is_some_and(|n| {
                n.api
                    && n.state.as_deref() == Some("running")
                    && (!failed_over
                        || (!n.claims_primary()
                            && (n.in_recovery == Some(true)
                                || streams_to_leader(t, old_leader, new_leader.as_deref()))))
            })
        })
        .map(|t| t.t_ms - fault_at);

    let mut timelines = Vec::new();
    let mut dual = 0;
    let mut fenced = 0;
    for t in ticks {
        let primaries: Vec<_> = t.nodes.iter().filter(|n| n.writable_primary()).collect();
        if primaries.len() > 1 {
            dual += 1;
        } else if t.nodes.iter().filter(|n| n.primary_by_sql()).count() > 1 {
            fenced += 1;
        }
        for p in primaries {
            if let Some(tl) = p.timeline {
                if timelines.last() != Some(&tl) && !timelines.contains(&tl) {
                    timelines.push(tl);
                }
            }
        }
    }

    Measures {
        fault_at_ms: fault_at,
        old_leader: old_leader.to_string(),
        new_leader,
        leader_changes: changes,
        detect_ms: detected_at.map(|t| t - fault_at),
        writable_ms: writable_at.map(|t| t - fault_at),
        write_outage_ms: longest_gap(&oks, fault_at, end),
        api_outage_ms,
        catch_up_ms,
        rejoin_ms,
        writes_acknowledged: oks.len(),
        writes_failed: attempts.len() - oks.len(),
        errors,
        api_answers,
        dual_primary_ticks: dual,
        fenced_primary_ticks: fenced,
        timelines,
    }
}

pub fn answer_kind(r: &Request) -> String {
    match (r.status, &r.error) {
        (Some(503), _) if r.retry_after => "503+retry-after".into(),
        (Some(503), _) => "503 without retry-after".into(),
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.clone(),
        (None, None) => "no answer".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fault::NodeSample;
    use super::*;

    fn attempt(seq: i64, start: u64, end: u64, outcome: &str) -> Attempt {
        Attempt {
            seq,
            writer: 0,
            start_ms: start,
            end_ms: end,
            outcome: outcome.into(),
        }
    }

    fn sample(node: &str, leader: Option<&str>, role: &str, state: &str, rec: bool) -> NodeSample {
        NodeSample {
            node: node.into(),
            api: true,
            role: Some(role.into()),
            state: Some(state.into()),
            timeline: Some(1),
            in_recovery: Some(rec),
            cluster_leader: Some(leader.map(String::from)),
            ..NodeSample::default()
        }
    }

    #[test]
    fn the_longest_gap_around_the_fault() {
        // Steady writes every 10 ms, a hole from 1000 to 3500.
        let oks: Vec<u64> = (0..100)
            .map(|i| i * 10)
            .chain((350..400).map(|i| i * 10))
            .collect();
        assert_eq!(longest_gap(&oks, 995, 4000), 2510);
        // Gaps before the fault do not count.
        assert_eq!(longest_gap(&[0, 500, 510, 520], 505, 520), 10);
        // Nothing acknowledged after the fault: the outage lasts to the end.
        assert_eq!(longest_gap(&[0, 10, 20], 100, 5000), 4900);
        assert_eq!(longest_gap(&[], 100, 5000), 4900);
        // The first success after the fault counts from the fault.
        assert_eq!(longest_gap(&[1500], 1000, 1500), 500);
    }

    #[test]
    fn a_failover_in_numbers() {
        let mut ticks = Vec::new();
        for t in (0..10_000).step_by(100) {
            let nodes = if t < 2_300 {
                vec![
                    sample("pg-1", Some("pg-1"), "master", "running", false),
                    sample("pg-2", Some("pg-1"), "replica", "running", true),
                ]
            } else if t < 3_000 {
                vec![
                    NodeSample {
                        node: "pg-1".into(),
                        ..NodeSample::default()
                    },
                    sample("pg-2", None, "replica", "running", true),
                ]
            } else {
                let mut leader = sample("pg-2", Some("pg-2"), "master", "running", false);
                leader.lags.insert("pg-2".into(), Some(0));
                leader.member_states.insert("pg-2".into(), "running".into());
                if t >= 6_000 {
                    leader.lags.insert("pg-1".into(), Some(0));
                    leader
                        .member_states
                        .insert("pg-1".into(), "streaming".into());
                }
                let old = if t >= 6_000 {
                    sample("pg-1", Some("pg-2"), "replica", "running", true)
                } else {
                    NodeSample {
                        node: "pg-1".into(),
                        ..NodeSample::default()
                    }
                };
                vec![old, leader]
            };
            ticks.push(Tick { t_ms: t, nodes });
        }
        let events = vec![Event {
            t_ms: 2_000,
            kind: "fault".into(),
            label: "kill".into(),
        }];
        let mut attempts = Vec::new();
        let mut seq = 0;
        for t in (0..10_000).step_by(10) {
            seq += 1;
            let outcome = if (2_000..3_150).contains(&t) {
                "connect_refused"
            } else {
                "ok"
            };
            attempts.push(attempt(seq, t, t + 5, outcome));
        }
        let m = measure(Fault::KillNode, "pg-1", &events, &ticks, &attempts, None);
        assert_eq!(m.fault_at_ms, 2_000);
        assert_eq!(m.detect_ms, Some(300));
        assert_eq!(m.new_leader.as_deref(), Some("pg-2"));
        // First ok write starting at or after 3000 (the leader change) is 3150 -> ends 3155.
        assert_eq!(m.writable_ms, Some(1_155));
        // Last ok before: 1995 ends 2000... hole until 3155.
        assert_eq!(m.write_outage_ms, 1_160);
        assert_eq!(m.errors.get("connect_refused"), Some(&115));
        assert_eq!(m.catch_up_ms, Some(4_000));
        assert_eq!(m.rejoin_ms, Some(4_000));
        assert_eq!(m.dual_primary_ticks, 0);
        assert_eq!(
            m.leader_changes,
            vec![
                (0, Some("pg-1".into())),
                (2_300, None),
                (3_000, Some("pg-2".into()))
            ]
        );
    }

    #[test]
    fn rejoin_is_seen_in_the_leaders_view_when_the_own_session_is_not_back() {
        let tick = |t_ms: u64, old_state: &str| {
            let mut old = sample("pg-1", Some("pg-2"), "replica", "running", true);
            old.in_recovery = None;
            let mut leader = sample("pg-2", Some("pg-2"), "master", "running", false);
            leader.member_states.insert("pg-1".into(), old_state.into());
            Tick {
                t_ms,
                nodes: vec![old, leader],
            }
        };
        let ticks = vec![
            Tick {
                t_ms: 0,
                nodes: vec![
                    sample("pg-1", Some("pg-1"), "master", "running", false),
                    sample("pg-2", Some("pg-1"), "replica", "running", true),
                ],
            },
            tick(1_000, "starting"),
            tick(2_000, "streaming"),
        ];
        let events = vec![Event {
            t_ms: 500,
            kind: "fault".into(),
            label: String::new(),
        }];
        let m = measure(Fault::KillNode, "pg-1", &events, &ticks, &[], None);
        assert_eq!(m.new_leader.as_deref(), Some("pg-2"));
        assert_eq!(m.rejoin_ms, Some(1_500));
    }

    #[test]
    fn two_writable_primaries_are_counted() {
        let ticks = vec![Tick {
            t_ms: 0,
            nodes: vec![
                sample("pg-1", Some("pg-2"), "master", "running", false),
                sample("pg-2", Some("pg-2"), "master", "running", false),
            ],
        }];
        let m = measure(Fault::FreezeNode, "pg-1", &[], &ticks, &[], None);
        assert_eq!(m.dual_primary_ticks, 1);
    }

    #[test]
    fn an_old_primary_without_a_standby_for_its_commits_is_fenced_not_split() {
        let mut old = sample("pg-1", Some("pg-2"), "master", "running", false);
        old.can_acknowledge = Some(false);
        let mut new = sample("pg-2", Some("pg-2"), "master", "running", false);
        new.can_acknowledge = Some(true);
        let ticks = vec![Tick {
            t_ms: 0,
            nodes: vec![old, new],
        }];
        let m = measure(Fault::FreezeNode, "pg-1", &[], &ticks, &[], None);
        assert_eq!((m.dual_primary_ticks, m.fenced_primary_ticks), (0, 1));
    }

    #[test]
    fn api_answers_by_kind_and_outage() {
        let r = |start: u64, status: Option<u16>, ra: bool, error: Option<&str>| Request {
            shopper: 0,
            kind: "checkout".into(),
            start_ms: start,
            end_ms: start + 10,
            status,
            retry_after: ra,
            error: error.map(String::from),
        };
        let requests = vec![
            r(0, Some(201), false, None),
            r(1_000, Some(503), true, None),
            r(2_000, Some(503), false, None),
            r(3_000, Some(409), false, None),
            r(4_000, None, false, Some("timeout")),
            r(5_000, Some(201), false, None),
        ];
        let events = vec![Event {
            t_ms: 500,
            kind: "fault".into(),
            label: String::new(),
        }];
        let m = measure(
            Fault::Switchover,
            "pg-1",
            &events,
            &[],
            &[],
            Some(&requests),
        );
        assert_eq!(m.api_answers["503+retry-after"], 1);
        assert_eq!(m.api_answers["503 without retry-after"], 1);
        assert_eq!(m.api_answers["timeout"], 1);
        assert_eq!(m.api_answers["201"], 2);
        assert_eq!(m.api_outage_ms, Some(3_000));
    }
}
