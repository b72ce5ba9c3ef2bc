//! `shopctl failover-test`: runs a bounded workload while it injects a fault
//! into the Patroni cluster, then proves what happened (docs/failover.md).
//!
//! The engine only needs a [`Target`]: where the nodes, the write port, the
//! API and the supervisor are. `shopctl up local` fills one from its
//! topology; tests (and `--target FILE`) read one from JSON.

pub mod fault;
pub mod kubernetes;
pub mod measure;
pub mod report;
pub mod verify;
pub mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use fault::Undo;
use fault::{Cluster, Observer};

/// Everything the engine needs to know about the environment under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// The Patroni nodes (pg-1, pg-2, ...).
    pub nodes: Vec<Node>,
    /// The supervisor of `shopctl up local`; without one, kill-node restarts
    /// the killed Patroni itself with the node's `start_command`.
    #[serde(default)]
    pub supervisor: Option<Supervisor>,
    /// The write port (HAProxy, follows the leader): postgres://user@host:port/db.
    pub write_dsn: String,
    /// The read port (replicas); informational.
    #[serde(default)]
    pub read_dsn: Option<String>,
    /// Password for the DSNs, if not in them.
    #[serde(default)]
    pub password: Option<Password>,
    /// ...or the environment variable holding it.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Basic authentication for Patroni's REST API write endpoints (the switchover), when
    /// the members require it (on Kubernetes: from the Secret shop-postgres-credentials).
    #[serde(default)]
    pub patroni_api_auth: Option<ApiAuth>,
    /// The shop's database, for the stock invariants (same user and password);
    /// skipped when absent.
    #[serde(default)]
    pub shop_database: Option<String>,
    /// The public API (nginx), e.g. http://127.0.0.1:8080; no API workload when absent.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Largest client-visible write outage allowed per mode.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// How long the workload runs per fault.
    #[serde(default = "default_workload_seconds")]
    pub workload_seconds: u64,
    /// When the fault is injected, after the workload starts.
    #[serde(default = "default_fault_after_seconds")]
    pub fault_after_seconds: u64,
    /// Patroni's leader key ttl (freeze-node resumes after a new leader, bounded by 3 ttl).
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u64,
    /// How long after the workload to wait for rejoin and convergence.
    #[serde(default = "default_settle_seconds")]
    pub settle_seconds: u64,
    /// Ledger writers (each with its own connection).
    #[serde(default = "default_ledger_writers")]
    pub ledger_writers: usize,
    /// API shoppers.
    #[serde(default = "default_shoppers")]
    pub shoppers: usize,
    /// Where `<timestamp>-<mode>/` report directories go.
    pub reports_dir: PathBuf,
    /// On a Kubernetes cluster: the API the cluster faults go through (the nodes are then
    /// reached through its port-forwards).
    #[serde(skip)]
    pub kubernetes: Option<Arc<kubernetes::Kubernetes>>,
    /// The environment's name (for messages and for undoing cluster faults).
    #[serde(default)]
    pub env: Option<String>,
}

/// A password in a target: read from JSON as a plain string, never shown by `{:?}`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A user and password for Patroni's REST API (`restapi.authentication`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiAuth {
    pub username: String,
    pub password: Password,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// Patroni's REST API, e.g. http://127.0.0.1:8008.
    pub api_url: String,
    #[serde(default = "default_host")]
    pub pg_host: String,
    pub pg_port: u16,
    /// The data directory; the postmaster's pid is the first line of postmaster.pid.
    pub data_dir: PathBuf,
    /// Without a supervisor: a file holding the Patroni pid (rewritten on restart).
    #[serde(default)]
    pub patroni_pid_file: Option<PathBuf>,
    /// Without a supervisor: how to start this node's Patroni again (argv).
    #[serde(default)]
    pub start_command: Option<Vec<String>>,
    /// Where a restarted Patroni's output goes.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Supervisor {
    /// run/state.json
    pub state_file: PathBuf,
    /// run/supervisor.sock
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Thresholds {
    pub switchover_ms: u64,
    pub kill_postgres_ms: u64,
    pub kill_node_ms: u64,
    pub freeze_node_ms: u64,
    #[serde(default = "default_cluster_fault_ms")]
    pub delete_pod_ms: u64,
    #[serde(default = "default_cluster_fault_ms")]
    pub drain_node_ms: u64,
}

/// A leader pod killed or evicted holds its key until the ttl expires (30 s in the
/// manifests), and the others notice within a loop (10 s): 45 s covers both with margin.
fn default_cluster_fault_ms() -> u64 {
    45_000
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            switchover_ms: 2_000,
            kill_postgres_ms: 8_000,
            kill_node_ms: 12_000,
            freeze_node_ms: 12_000,
            delete_pod_ms: default_cluster_fault_ms(),
            drain_node_ms: default_cluster_fault_ms(),
        }
    }
}

impl Thresholds {
    pub fn for_fault(&self, fault: Fault) -> u64 {
        match fault {
            Fault::Switchover => self.switchover_ms,
            Fault::KillPostgres => self.kill_postgres_ms,
            Fault::KillNode => self.kill_node_ms,
            Fault::FreezeNode => self.freeze_node_ms,
            Fault::DeletePod => self.delete_pod_ms,
            Fault::DrainNode => self.drain_node_ms,
        }
    }
}

fn default_workload_seconds() -> u64 {
    30
}
fn default_fault_after_seconds() -> u64 {
    5
}
fn default_ttl_seconds() -> u64 {
    30
}
fn default_settle_seconds() -> u64 {
    60
}
fn default_ledger_writers() -> usize {
    4
}
fn default_shoppers() -> usize {
    3
}
fn default_host() -> String {
    "127.0.0.1".into()
}

impl Target {
    pub fn from_file(path: &std::path::Path) -> Result<Target> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let target: Target = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a failover target", path.display()))?;
        if target.nodes.len() < 2 {
            bail!("a failover test needs at least 2 Patroni nodes");
        }
        Ok(target)
    }

    /// How long the workload runs: as configured, but at least two leader-key ttl past the
    /// fault, so that a failover which waits out the whole ttl (Patroni's default 30 s) is
    /// still measured by writes that succeed after it.
    pub fn workload_seconds(&self) -> u64 {
        self.workload_seconds
            .max(self.fault_after_seconds + 2 * self.ttl_seconds)
    }

    pub fn password(&self) -> Option<String> {
        if let Some(Password(p)) = &self.password {
            return Some(p.clone());
        }
        self.password_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok())
    }
}

/// What to test (`all` runs every fault of the place, one after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Switchover,
    /// Local: SIGKILL the leader's postmaster.
    KillPostgres,
    /// Local: SIGKILL the leader's Patroni and PostgreSQL.
    KillNode,
    /// Local: SIGSTOP every process of the leader's node.
    FreezeNode,
    /// Kubernetes: delete the leader's pod with no grace period.
    DeletePod,
    /// Kubernetes: cordon the leader's node and evict its pods.
    DrainNode,
    All,
}

impl Mode {
    /// The faults of this mode where the test runs; a fault the place cannot inject is
    /// refused with the modes it can.
    pub fn faults(self, on_kubernetes: bool) -> Result<Vec<Fault>> {
        let (here, place): (&[Fault], &str) = if on_kubernetes {
            (
                &[Fault::Switchover, Fault::DeletePod, Fault::DrainNode],
                "a Kubernetes cluster",
            )
        } else {
            (
                &[
                    Fault::Switchover,
                    Fault::KillPostgres,
                    Fault::KillNode,
                    Fault::FreezeNode,
                ],
                "local",
            )
        };
        let wanted = match self {
            Mode::All => return Ok(here.to_vec()),
            Mode::Switchover => Fault::Switchover,
            Mode::KillPostgres => Fault::KillPostgres,
            Mode::KillNode => Fault::KillNode,
            Mode::FreezeNode => Fault::FreezeNode,
            Mode::DeletePod => Fault::DeletePod,
            Mode::DrainNode => Fault::DrainNode,
        };
        if !here.contains(&wanted) {
            let names: Vec<&str> = here.iter().map(|f| f.name()).collect();
            bail!(
                "--mode {} cannot run on {place}: its modes are {}, all",
                wanted.name(),
                names.join(", ")
            );
        }
        Ok(vec![wanted])
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Switchover,
    KillPostgres,
    KillNode,
    FreezeNode,
    DeletePod,
    DrainNode,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Switchover => "switchover",
            Fault::KillPostgres => "kill-postgres",
            Fault::KillNode => "kill-node",
            Fault::FreezeNode => "freeze-node",
            Fault::DeletePod => "delete-pod",
            Fault::DrainNode => "drain-node",
        }
    }
}

/// The result of a whole `failover-test` invocation.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub runs: Vec<report::Report>,
    pub passed: bool,
}

/// Shows progress over the workload seconds; hidden without a terminal.
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            quiet: quiet || !std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self, len: u64, label: &str) -> indicatif::ProgressBar {
        if self.quiet {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} s {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar
    }

    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// Milliseconds since the run started: every record and sample uses this clock.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// Runs every fault of `mode` `runs` times. Whatever a fault holds is recorded in `undo`
/// until it is undone, for a caller that stops the run half-way.
pub async fn run(
    target: &Target,
    mode: Mode,
    runs: usize,
    progress: &Progress,
    undo: &Undo,
) -> Result<Outcome> {
    let mut reports = Vec::new();
    let faults = mode.faults(target.kubernetes.is_some())?;
    for round in 0..runs.max(1) {
        for &fault in &faults {
            progress.say(&format!(
                "failover-test: {} (run {}/{})",
                fault.name(),
                round + 1,
                runs.max(1)
            ));
            let report = run_one(target, fault, progress, undo).await?;
            progress.say(&report::summary(&report));
            reports.push(report);
        }
    }
    let passed = reports.iter().all(|r| r.passed);
    Ok(Outcome {
        runs: reports,
        passed,
    })
}

/// One fault under the workload, measured, verified and reported.
pub async fn run_one(
    target: &Target,
    fault: Fault,
    progress: &Progress,
    undo: &Undo,
) -> Result<report::Report> {
    let mut cluster = Cluster::new(target)?;
    cluster.undo = undo.clone();
    let cluster = Arc::new(cluster);
    let started_wall = time::OffsetDateTime::now_utc();
    cluster
        .wait_healthy(Duration::from_secs(target.settle_seconds.max(30)))
        .await
        .context("the cluster is not healthy before the test")?;
    let old_leader = cluster.leader().await?.context("no leader")?;
    workload::prepare_ledger(&cluster).await?;

    let run_id = format!(
        "{}-{}",
        fault.name(),
        started_wall.unix_timestamp_nanos() / 1_000_000
    );
    let clock = Clock(Instant::now());
    let observer = Observer::start(cluster.clone(), clock);
    let workload_seconds = target.workload_seconds();
    let deadline = Duration::from_secs(workload_seconds);
    let ledger = workload::start_ledger(cluster.clone(), run_id.clone(), clock, deadline);
    let api = target.api_url.as_ref().map(|url| {
        workload::start_api(
            url.clone(),
            run_id.clone(),
            target.shoppers,
            clock,
            deadline,
        )
    });

    let bar = progress.bar(workload_seconds, fault.name());
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                bar.set_position(clock.ms() / 1000);
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(target.fault_after_seconds)).await;
    bar.set_message(format!("{} on {}", fault.name(), old_leader));
    let injected = fault::inject(&cluster, fault, &old_leader, &run_id, clock).await;
    let mut events = match injected {
        Ok(events) => events,
        Err(e) => {
            for line in cluster.undo.run() {
                progress.say(&format!("failover-test: {line}"));
            }
            ticker.abort();
            bar.finish_and_clear();
            observer.stop().await;
            let _ = ledger.await;
            if let Some(api) = api {
                let _ = api.await;
            }
            return Err(e.context(format!("cannot inject {}", fault.name())));
        }
    };
    let ledger_records = ledger.await.context("ledger writers")?;
    let api_records = match api {
        Some(api) => Some(api.await.context("API shoppers")?),
        None => None,
    };
    ticker.abort();
    bar.set_message("settling".to_string());
    // Keep observing until the old leader is back and the replicas caught up.
    let settled = cluster
        .wait_healthy(Duration::from_secs(target.settle_seconds))
        .await;
    if settled.is_ok() {
        // A few more samples of the settled cluster: the observer's own sessions to a
        // restarted node reconnect on its next ticks.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let workload_end_ms = clock.ms();
    if let Err(e) = &settled {
        events.push(fault::Event {
            t_ms: workload_end_ms,
            kind: "settle".into(),
            label: format!("not healthy after {} s: {e:#}", target.settle_seconds),
        });
    }
    let ticks = observer.stop().await;
    bar.finish_and_clear();

    let measures = measure::measure(
        fault,
        &old_leader,
        &events,
        &ticks,
        &ledger_records.attempts,
        api_records.as_ref().map(|a| a.requests.as_slice()),
    );
    let verification = verify::verify(
        &cluster,
        &run_id,
        &ledger_records.attempts,
        api_records.as_ref(),
        &measures,
        &ticks,
        &events,
        target.thresholds.for_fault(fault),
    )
    .await;
    let mut report = report::Report::new(
        fault,
        &run_id,
        started_wall,
        &old_leader,
        target.thresholds.for_fault(fault),
        events,
        measures,
        verification,
        &ledger_records,
        api_records.as_ref(),
        &ticks,
    );
    report::write(&mut report, &target.reports_dir)?;
    Ok(report)
}

/// The target of `shopctl up local`'s topology: its Patroni nodes, supervisor, HAProxy
/// write port, public API and the thresholds of `[local.failover]`. Needs a running `up`
/// (the secrets it generated hold the app role's password).
pub fn target_for(topology: &crate::local::Topology) -> Result<Target> {
    let secrets = topology.secrets().with_context(|| {
        format!(
            "{} is not up (no secrets yet); run `shopctl up {}` first",
            topology.env, topology.env
        )
    })?;
    let f = &topology.failover;
    Ok(Target {
        nodes: topology
            .pg
            .iter()
            .map(|pg| Node {
                name: pg.name.clone(),
                api_url: pg.rest_url.clone(),
                pg_host: default_host(),
                pg_port: pg.postgres_port,
                data_dir: pg.data_dir.clone(),
                patroni_pid_file: None,
                start_command: None,
                log_file: Some(topology.log_file(&pg.name)),
            })
            .collect(),
        supervisor: Some(Supervisor {
            state_file: topology.state_file(),
            socket: topology.supervisor_socket(),
        }),
        write_dsn: topology.write_dsn(&secrets),
        read_dsn: Some(topology.read_dsn(&secrets)),
        password: None,
        password_env: None,
        // Local Patroni's REST API listens on loopback only, without authentication.
        patroni_api_auth: None,
        shop_database: Some(crate::local::topology::APP_DB.to_owned()),
        api_url: Some(topology.api_url()),
        thresholds: Thresholds {
            switchover_ms: f.switchover_max_outage_ms,
            kill_postgres_ms: f.kill_postgres_max_outage_ms,
            kill_node_ms: f.kill_node_max_outage_ms,
            freeze_node_ms: f.freeze_node_max_outage_ms,
            ..Thresholds::default()
        },
        workload_seconds: u64::from(f.workload_seconds),
        fault_after_seconds: default_fault_after_seconds(),
        ttl_seconds: u64::from(topology.patroni.ttl),
        settle_seconds: default_settle_seconds(),
        ledger_writers: default_ledger_writers(),
        shoppers: default_shoppers(),
        reports_dir: topology.reports_dir(),
        kubernetes: None,
        env: Some(topology.env.clone()),
    })
}

/// The target of an environment on Kubernetes: its Patroni members through the
/// port-forwards of a [`kubernetes::Bridge`] (kept alive by the caller), the superuser's
/// password from the cluster's Secret, the public API at the environment's domain.
pub async fn target_for_kubernetes(
    env: &crate::config::LoadedEnvironment,
    kubeconfig: PathBuf,
    reports_dir: PathBuf,
) -> Result<(Target, kubernetes::Bridge)> {
    let namespace = env.config.kubernetes.namespace.as_str();
    let kube = Arc::new(kubernetes::Kubernetes::connect(kubeconfig, &env.name, namespace).await?);
    let members: Vec<String> = kube
        .members()
        .await?
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    if members.len() < 2 {
        bail!(
            "{}: {} Patroni member(s) found; a failover test needs at least 2",
            env.name,
            members.len()
        );
    }
    let password = kube.superuser_password().await?;
    let patroni_api_auth = kube.patroni_api_auth().await?;
    let bridge = kube.bridge(&members).await?;
    let nodes = members
        .iter()
        .map(|name| Node {
            name: name.clone(),
            api_url: format!("http://127.0.0.1:{}", bridge.rest[name]),
            pg_host: default_host(),
            pg_port: bridge.postgres[name],
            // Process faults are refused on a cluster; nothing reads these.
            data_dir: PathBuf::new(),
            patroni_pid_file: None,
            start_command: None,
            log_file: None,
        })
        .collect();
    let target = Target {
        nodes,
        supervisor: None,
        write_dsn: format!("postgres://postgres@127.0.0.1:{}/postgres", bridge.write),
        read_dsn: None,
        password: Some(Password(password)),
        password_env: None,
        patroni_api_auth: Some(patroni_api_auth),
        shop_database: Some("shop".to_owned()),
        api_url: Some(format!("https://{}", env.config.domain)),
        thresholds: Thresholds::default(),
        workload_seconds: default_workload_seconds(),
        fault_after_seconds: default_fault_after_seconds(),
        // The manifests' Patroni: ttl 30, loop_wait 10 (templates/k8s/postgres.yaml.hbs).
        ttl_seconds: 30,
        settle_seconds: 120,
        ledger_writers: default_ledger_writers(),
        shoppers: default_shoppers(),
        reports_dir,
        kubernetes: Some(kube),
        env: Some(env.name.clone()),
    };
    Ok((target, bridge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_runs_its_own_faults() {
        assert_eq!(
            Mode::All.faults(false).unwrap(),
            vec![
                Fault::Switchover,
                Fault::KillPostgres,
                Fault::KillNode,
                Fault::FreezeNode
            ]
        );
        assert_eq!(
            Mode::All.faults(true).unwrap(),
            vec![Fault::Switchover, Fault::DeletePod, Fault::DrainNode]
        );
        assert_eq!(
            Mode::Switchover.faults(true).unwrap(),
            vec![Fault::Switchover]
        );
        assert_eq!(
            Mode::DrainNode.faults(true).unwrap(),
            vec![Fault::DrainNode]
        );
        assert_eq!(
            Mode::FreezeNode.faults(true).unwrap_err().to_string(),
            "--mode freeze-node cannot run on a Kubernetes cluster: its modes are switchover, delete-pod, drain-node, all"
        );
        assert_eq!(
            Mode::DeletePod.faults(false).unwrap_err().to_string(),
            "--mode delete-pod cannot run on local: its modes are switchover, kill-postgres, kill-node, freeze-node, all"
        );
        // A target's password reads from JSON as a string and never shows in Debug.
        let target: Target = serde_json::from_str(
            r#"{"nodes": [], "write_dsn": "postgres://u@h/d", "password": "hunter2", "reports_dir": "r"}"#,
        )
        .unwrap();
        assert_eq!(target.password().as_deref(), Some("hunter2"));
        assert!(!format!("{target:?}").contains("hunter2"));
        assert!(target.patroni_api_auth.is_none());
        // The REST API's password reads the same way, and never shows either.
        let target: Target = serde_json::from_str(
            r#"{"nodes": [], "write_dsn": "postgres://u@h/d", "patroni_api_auth": {"username": "patroni", "password": "s3cret"}, "reports_dir": "r"}"#,
        )
        .unwrap();
        let auth = target.patroni_api_auth.as_ref().unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.0.as_str()),
            ("patroni", "s3cret")
        );
        assert!(!format!("{target:?}").contains("s3cret"));
        // A target file from before the cluster modes still reads, with their defaults.
        let thresholds: Thresholds = serde_json::from_str(
            r#"{"switchover_ms": 1, "kill_postgres_ms": 2, "kill_node_ms": 3, "freeze_node_ms": 4}"#,
        )
        .unwrap();
        assert_eq!(thresholds.for_fault(Fault::DeletePod), 45_000);
    }
}
