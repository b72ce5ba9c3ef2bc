//! Proves what happened: zero loss, no split brain, convergence, the shop's
//! invariants, the API's behaviour and the outage against its threshold.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fault::{Cluster, Event, Tick};
use super::measure::Measures;
use super::workload::{ApiRecords, Attempt, Request};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn check(name: &str, passed: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        passed,
        detail: detail.into(),
    }
}

/// Acknowledged seqs missing from what the leader holds.
pub fn missing(acknowledged: &[Attempt], present: &HashSet<i64>) -> Vec<i64> {
    let mut out: Vec<i64> = acknowledged
        .iter()
        .filter(|a| a.ok() && !present.contains(&a.seq))
        .map(|a| a.seq)
        .collect();
    out.sort_unstable();
    out
}

/// The API's checks from its requests alone.
pub fn api_checks(records: &ApiRecords, fault_at_ms: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(check(
        "api: shoppers set up",
        records.setup_errors.is_empty(),
        if records.setup_errors.is_empty() {
            "every shopper registered and found a product".to_string()
        } else {
            records.setup_errors.join("; ")
        },
    ));
    let work: Vec<&Request> = records
        .requests
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "add_line" | "checkout"))
        .collect();
    let errors: Vec<&&Request> = work
        .iter()
        .filter(|r| matches!(r.status, Some(s) if s >= 500 && s != 503))
        .collect();
    checks.push(check(
        "api: never a 5xx other than 503",
        errors.is_empty(),
        format!("{} such answers", errors.len()),
    ));
    let hung = work.iter().filter(|r| r.status.is_none()).count();
    checks.push(check(
        "api: never hung or dropped",
        hung == 0,
        format!("{hung} requests without an answer (timeout or connection error)"),
    ));
    let unavailable: Vec<&&Request> = work.iter().filter(|r| r.status == Some(503)).collect();
    let without = unavailable.iter().filter(|r| !r.retry_after).count();
    checks.push(check(
        "api: 503 with Retry-After during the outage",
        without == 0,
        format!(
            "{} answers 503, {without} of them without Retry-After",
            unavailable.len()
        ),
    ));
    let last_failure = work
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.end_ms)
        .max()
        .unwrap_or(fault_at_ms)
        .max(fault_at_ms);
    let recovered = work
        .iter()
        .any(|r| r.kind == "checkout" && r.ok() && r.start_ms >= last_failure);
    checks.push(check(
        "api: recovered by itself",
        recovered,
        if recovered {
            "checkouts succeed after the last failure".to_string()
        } else {
            "no successful checkout after the last failure".to_string()
        },
    ));
    checks
}

/// Runs every check; a check that cannot run fails with the reason.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    cluster: &Cluster,
    run_id: &str,
    attempts: &[Attempt],
    api: Option<&ApiRecords>,
    measures: &Measures,
    _ticks: &[Tick],
    events: &[Event],
    threshold_ms: u64,
) -> Vec<Check> {
    let mut checks = Vec::new();

    // Zero loss: every acknowledged seq is on the leader.
    let present = read_seqs(cluster, &cluster.write, run_id).await;
    match &present {
        Ok(present) => {
            let lost = missing(attempts, present);
            checks.push(check(
                "zero acknowledged writes lost",
                lost.is_empty(),
                format!(
                    "{} acknowledged, {} on the leader, {} missing{}",
                    attempts.iter().filter(|a| a.ok()).count(),
                    present.len(),
                    lost.len(),
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(" (first: {:?})", &lost[..lost.len().min(10)])
                    }
                ),
            ));
        }
        Err(e) => checks.push(check(
            "zero acknowledged writes lost",
            false,
            format!("cannot read the ledger through the write port: {e:#}"),
        )),
    }

    // No split brain.
    let stale_acked = events
        .iter()
        .any(|e| e.kind == "probe" && e.label.contains("ACKNOWLEDGED"));
    checks.push(check(
        "no split brain",
        measures.dual_primary_ticks == 0 && !stale_acked,
        format!(
            "{} observer ticks with two primaries able to acknowledge writes ({} more with an old primary that could not: no standby for its synchronous commits); stale write on the old leader {}; timelines {:?}",
            measures.dual_primary_ticks,
            measures.fenced_primary_ticks,
            if stale_acked { "ACKNOWLEDGED" } else { "not acknowledged" },
            measures.timelines
        ),
    ));

    // No false failover: every leader the observer saw before the fault is the old one.
    let before: Vec<&(u64, Option<String>)> = measures
        .leader_changes
        .iter()
        .filter(|(t, _)| *t < measures.fault_at_ms)
        .collect();
    let stayed = before
        .iter()
        .all(|(_, l)| l.as_deref() == Some(measures.old_leader.as_str()));
    checks.push(check(
        "no failover before the fault",
        stayed,
        if stayed {
            format!("{} led until the fault", measures.old_leader)
        } else {
            let seen: Vec<String> = before
                .iter()
                .map(|(t, l)| format!("{} at {t} ms", l.as_deref().unwrap_or("no leader")))
                .collect();
            format!("the leader changed before the fault: {}", seen.join(", "))
        },
    ));

    // Replicas converge: the same rows on every node.
    if let Ok(present) = &present {
        let expected = present.len();
        let mut detail = String::new();
        let mut converged = false;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let mut counts = Vec::new();
            for node in &cluster.target.nodes {
                let n = read_seqs(cluster, &cluster.node_options(node), run_id)
                    .await
                    .map(|s| s.len());
                counts.push((node.name.clone(), n));
            }
            converged = counts
                .iter()
                .all(|(_, n)| matches!(n, Ok(n) if *n == expected));
            detail = counts
                .iter()
                .map(|(name, n)| match n {
                    Ok(n) => format!("{name}: {n}"),
                    Err(e) => format!("{name}: unreadable ({e})"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            if converged {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        checks.push(check(
            "replicas converge",
            converged,
            format!("{expected} rows on the leader; {detail}"),
        ));
    }

    // The old leader is back.
    checks.push(check(
        "old leader rejoined",
        measures.rejoin_ms.is_some(),
        match measures.rejoin_ms {
            Some(ms) => format!(
                "{} running again {ms} ms after the fault",
                measures.old_leader
            ),
            None => format!("{} never ran again during the test", measures.old_leader),
        },
    ));

    // The outage against the threshold.
    checks.push(check(
        "write outage within threshold",
        measures.writable_ms.is_some() && measures.write_outage_ms <= threshold_ms,
        format!(
            "{} ms (threshold {threshold_ms} ms){}",
            measures.write_outage_ms,
            if measures.writable_ms.is_none() {
                "; no write acknowledged after the leader moved"
            } else {
                ""
            }
        ),
    ));

    // Shop invariants.
    if let Some(db) = &cluster.target.shop_database {
        checks.push(shop_invariants(cluster, db).await);
    }

    if let Some(api) = api {
        checks.extend(api_checks(api, measures.fault_at_ms));
    }
    checks
}

async fn read_seqs(
    cluster: &Cluster,
    options: &sqlx::postgres::PgConnectOptions,
    run_id: &str,
) -> anyhow::Result<HashSet<i64>> {
    let _ = cluster;
    let mut last = None;
    for _ in 0..10 {
        match Cluster::connect(options, Duration::from_secs(2)).await {
            Ok(mut conn) => {
                let rows = sqlx::query_scalar::<_, i64>(
                    "SELECT seq FROM failover_ledger WHERE run_id = $1",
                )
                .bind(run_id)
                .fetch_all(&mut conn)
                .await?;
                return Ok(rows.into_iter().collect());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

async fn shop_invariants(cluster: &Cluster, database: &str) -> Check {
    let name = "shop invariants (stock and its movements)";
    let options = cluster.write.clone().database(database);
    let mut conn = match Cluster::connect(&options, Duration::from_secs(5)).await {
        Ok(c) => c,
        Err(e) => return check(name, false, format!("cannot connect: {e:#}")),
    };
    let oversold =
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM stock WHERE reserved > on_hand")
            .fetch_one(&mut conn)
            .await;
    let drift = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM stock s LEFT JOIN (SELECT variant_id, warehouse_id, \
         sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved \
         FROM inventory_movements GROUP BY 1, 2) m USING (variant_id, warehouse_id) \
         WHERE s.on_hand <> coalesce(m.on_hand, 0) OR s.reserved <> coalesce(m.reserved, 0)",
    )
    .fetch_one(&mut conn)
    .await;
    match (oversold, drift) {
        (Ok(o), Ok(d)) => check(
            name,
            o == 0 && d == 0,
            format!("{o} stock rows with reserved > on_hand; {d} stock rows differing from the sum of their movements"),
        ),
        (Err(e), _) | (_, Err(e)) => check(name, false, format!("cannot read stock: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(seq: i64, outcome: &str) -> Attempt {
        Attempt {
            seq,
            writer: 0,
            start_ms: 0,
            end_ms: 0,
            outcome: outcome.into(),
        }
    }

    #[test]
    fn only_acknowledged_writes_must_be_present() {
        let attempts = vec![
            attempt(1, "ok"),
            attempt(2, "timeout"),
            attempt(3, "ok"),
            attempt(4, "ok"),
        ];
        // A failed write that committed anyway (2) is fine; 4 lost is not.
        let present: HashSet<i64> = [1, 2, 3].into_iter().collect();
        assert_eq!(missing(&attempts, &present), vec![4]);
        let all: HashSet<i64> = [1, 3, 4].into_iter().collect();
        assert!(missing(&attempts, &all).is_empty());
    }

    fn request(kind: &str, start: u64, status: Option<u16>, retry_after: bool) -> Request {
        Request {
            shopper: 0,
            kind: kind.into(),
            start_ms: start,
            end_ms: start + 5,
            status,
            retry_after,
            error: status.is_none().then(|| "timeout".to_string()),
        }
    }

    #[test]
    fn a_well_behaved_api_passes() {
        let records = ApiRecords {
            requests: vec![
                request("checkout", 0, Some(201), false),
                request("add_line", 100, Some(503), true),
                request("checkout", 200, Some(409), false),
                request("checkout", 300, Some(201), false),
            ],
            setup_errors: vec![],
        };
        let checks = api_checks(&records, 50);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
    }

    #[test]
    fn a_500_a_hang_a_bare_503_and_no_recovery_fail() {
        let records = ApiRecords {
            requests: vec![
                request("checkout", 0, Some(201), false),
                request("checkout", 100, Some(500), false),
                request("checkout", 200, None, false),
                request("checkout", 300, Some(503), false),
            ],
            setup_errors: vec![],
        };
        let failed: Vec<String> = api_checks(&records, 50)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            vec![
                "api: never a 5xx other than 503",
                "api: never hung or dropped",
                "api: 503 with Retry-After during the outage",
                "api: recovered by itself",
            ]
        );
    }
}
