//! The cluster as the test sees it (Patroni's REST API, each node's port,
//! the supervisor), the four faults, and an observer that samples every node
//! every ~100 ms during the run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Clock, Fault, Node, Target};

/// A fault mark or an action of the test, for the timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub t_ms: u64,
    /// fault, resume, hold, release, restart, probe, settle
    pub kind: String,
    pub label: String,
}

pub struct Cluster {
    pub target: Target,
    pub http: reqwest::Client,
    /// Options for the write port.
    pub write: PgConnectOptions,
    /// What an injected fault still holds, undone if the test stops half-way.
    pub undo: Undo,
}

/// What a fault has done and not yet undone: frozen processes, components the supervisor
/// holds down, nodes killed with nobody to restart them. A test stopped half-way (Ctrl-C,
/// an error) runs it, so no process stays stopped and no node stays down.
#[derive(Clone, Default)]
pub struct Undo(Arc<std::sync::Mutex<Pending>>);

#[derive(Default)]
struct Pending {
    frozen: Vec<i32>,
    held: Vec<(std::path::PathBuf, String)>,
    killed: Vec<Node>,
    /// Kubernetes nodes cordoned by drain-node: (kubeconfig, environment, node).
    cordoned: Vec<(std::path::PathBuf, String, String)>,
}

impl Undo {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resumes, releases and restarts whatever is pending; says what it did.
    pub fn run(&self) -> Vec<String> {
        let pending = std::mem::take(&mut *self.pending());
        let mut done = Vec::new();
        if !pending.frozen.is_empty() {
            for pid in pending.frozen.iter().rev() {
                let _ = signal(*pid, libc::SIGCONT);
            }
            done.push(format!("resumed {} frozen processes", pending.frozen.len()));
        }
        for (socket, component) in pending.held {
            match supervisor(&socket, "release", &component) {
                Ok(_) => done.push(format!("released {component} to the supervisor")),
                Err(e) => done.push(format!("could not release {component}: {e:#}")),
            }
        }
        for node in pending.killed {
            match restart_patroni(&node) {
                Ok(pid) => done.push(format!("started Patroni {pid} on {}", node.name)),
                Err(e) => done.push(format!("could not restart {}: {e:#}", node.name)),
            }
        }
        for (kubeconfig, env, node) in pending.cordoned {
            match super::kubernetes::uncordon_blocking(&kubeconfig, &env, &node) {
                Ok(()) => done.push(format!("uncordoned node {node}")),
                Err(e) => done.push(format!(
                    "could not uncordon node {node} (`kubectl uncordon {node}`): {e:#}"
                )),
            }
        }
        done
    }
}

/// What one node's Patroni says about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeSample {
    pub node: String,
    /// Patroni's REST API answered.
    pub api: bool,
    pub role: Option<String>,
    pub state: Option<String>,
    pub timeline: Option<i64>,
    /// `SELECT pg_is_in_recovery()` on the node's own port, when it answered.
    pub in_recovery: Option<bool>,
    /// Whether a commit there could be acknowledged: no synchronous standby is required, or
    /// a standby streams from it (a walsender; any counts, to err towards "could").
    #[serde(default)]
    pub can_acknowledge: Option<bool>,
    /// The leader named by this node's `/cluster` (Some(None): no leader key).
    pub cluster_leader: Option<Option<String>>,
    /// Replication lag in bytes per member, as this node's `/cluster` shows it
    /// (None: unknown).
    pub lags: BTreeMap<String, Option<i64>>,
    /// Member states from `/cluster`.
    pub member_states: BTreeMap<String, String>,
}

impl NodeSample {
    pub fn claims_primary(&self) -> bool {
        matches!(self.role.as_deref(), Some("master" | "primary"))
    }

    /// Primary by Patroni and by its own port (not in recovery).
    pub fn primary_by_sql(&self) -> bool {
        self.claims_primary() && self.in_recovery == Some(false)
    }

    /// A primary that could acknowledge a write: with synchronous replication required and
    /// no standby streaming from it (a resumed old leader in strict mode), commits wait.
    pub fn writable_primary(&self) -> bool {
        self.primary_by_sql() && self.can_acknowledge != Some(false)
    }
}

/// All nodes at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub t_ms: u64,
    pub nodes: Vec<NodeSample>,
}

impl Tick {
    /// The leader most nodes' `/cluster` names (None: no leader key or nobody answered).
    pub fn leader(&self) -> Option<String> {
        let mut votes: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for n in &self.nodes {
            if let Some(view) = &n.cluster_leader {
                *votes.entry(view.clone()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .and_then(|(leader, _)| leader)
    }

    pub fn node(&self, name: &str) -> Option<&NodeSample> {
        self.nodes.iter().find(|n| n.node == name)
    }
}

#[derive(Deserialize)]
struct PatroniStatus {
    role: Option<String>,
    state: Option<String>,
    timeline: Option<i64>,
}

#[derive(Deserialize)]
struct ClusterView {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    name: String,
    role: String,
    state: Option<String>,
    #[serde(default)]
    lag: Option<serde_json::Value>,
}

impl Cluster {
    pub fn new(target: &Target) -> Result<Cluster> {
        let mut write = PgConnectOptions::from_str(&target.write_dsn)
            .context("write_dsn is not a PostgreSQL URL")?
            .application_name("shopctl-failover-test")
            .disable_statement_logging();
        if let Some(p) = target.password() {
            write = write.password(&p);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(400))
            .connect_timeout(Duration::from_millis(200))
            .build()?;
        Ok(Cluster {
            target: target.clone(),
            http,
            write,
            undo: Undo::default(),
        })
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.target
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| anyhow!("no node {name}"))
    }

    /// Options for one node's own port (same user, password and database).
    pub fn node_options(&self, node: &Node) -> PgConnectOptions {
        self.write.clone().host(&node.pg_host).port(node.pg_port)
    }

    pub async fn connect(options: &PgConnectOptions, timeout: Duration) -> Result<PgConnection> {
        match tokio::time::timeout(timeout, PgConnection::connect_with(options)).await {
            Ok(c) => Ok(c?),
            Err(_) => bail!("connect timed out"),
        }
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: String) -> Result<T> {
        // Patroni answers 503 with the same body on non-leaders; read both.
        let response = self.http.get(url).send().await?;
        Ok(response.json().await?)
    }

    /// The leader, as the first node that answers `/cluster` names it.
    pub async fn leader(&self) -> Result<Option<String>> {
        self.first_member(is_leader_role).await
    }

    /// The synchronous standby, as the first node that answers `/cluster` names it.
    pub async fn sync_standby(&self) -> Result<Option<String>> {
        self.first_member(|role| role == "sync_standby").await
    }

    /// The first member whose role matches, in the view of the first node that answers.
    async fn first_member(&self, role: impl Fn(&str) -> bool) -> Result<Option<String>> {
        let mut last = None;
        for node in &self.target.nodes {
            match self
                .get_json::<ClusterView>(format!("{}/cluster", node.api_url))
                .await
            {
                Ok(view) => {
                    return Ok(view
                        .members
                        .into_iter()
                        .find(|m| role(&m.role))
                        .map(|m| m.name))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no node")))
    }

    /// Whether `GET /primary` answers 200 on this node.
    pub async fn is_primary(&self, node: &Node) -> bool {
        matches!(
            self.http.get(format!("{}/primary", node.api_url)).send().await,
            Ok(r) if r.status().as_u16() == 200
        )
    }

    /// Waits until there is a leader, every node runs, and every replica has lag 0.
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        let mut why = String::from("not checked");
        while start.elapsed() < within {
            match self
                .get_json::<ClusterView>(format!("{}/cluster", self.target.nodes[0].api_url))
                .await
            {
                Ok(view) => why = healthy(&view, self.target.nodes.len()).unwrap_or_default(),
                Err(_) => {
                    // Ask the others.
                    why = "first node's /cluster did not answer".into();
                    for node in &self.target.nodes[1..] {
                        if let Ok(view) = self
                            .get_json::<ClusterView>(format!("{}/cluster", node.api_url))
                            .await
                        {
                            why = healthy(&view, self.target.nodes.len()).unwrap_or_default();
                            break;
                        }
                    }
                }
            }
            if why.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("{why}")
    }

    /// One sample of one node.
    async fn sample(&self, node: &Node, sql: &mut Option<PgConnection>) -> NodeSample {
        let mut s = NodeSample {
            node: node.name.clone(),
            ..NodeSample::default()
        };
        let status = self
            .get_json::<PatroniStatus>(format!("{}/patroni", node.api_url))
            .await;
        if let Ok(st) = status {
            s.api = true;
            s.role = st.role;
            s.state = st.state;
            s.timeline = st.timeline;
        }
        if let Ok(view) = self
            .get_json::<ClusterView>(format!("{}/cluster", node.api_url))
            .await
        {
            s.cluster_leader = Some(
                view.members
                    .iter()
                    .find(|m| is_leader_role(&m.role))
                    .map(|m| m.name.clone()),
            );
            for m in view.members {
                let lag = match &m.lag {
                    Some(serde_json::Value::Number(n)) => n.as_i64(),
                    None if is_leader_role(&m.role) => Some(0),
                    _ => None,
                };
                s.lags.insert(m.name.clone(), lag);
                s.member_states
                    .insert(m.name, m.state.unwrap_or_else(|| "unknown".into()));
            }
        }
        if sql.is_none() {
            *sql = Cluster::connect(&self.node_options(node), Duration::from_millis(300))
                .await
                .ok();
        }
        if let Some(conn) = sql.as_mut() {
            // pg_stat_replication's rows are visible to any role (their details are not).
            let query = sqlx::query_as::<_, (bool, bool)>(
                "SELECT pg_is_in_recovery(), \
                 current_setting('synchronous_standby_names') = '' \
                 OR EXISTS (SELECT 1 FROM pg_stat_replication)",
            )
            .fetch_one(conn);
            match tokio::time::timeout(Duration::from_millis(300), query).await {
                Ok(Ok((in_recovery, can_acknowledge))) => {
                    s.in_recovery = Some(in_recovery);
                    s.can_acknowledge = Some(!in_recovery && can_acknowledge);
                }
                _ => *sql = None,
            }
        }
        s
    }
}

fn is_leader_role(role: &str) -> bool {
    matches!(role, "leader" | "master" | "primary" | "standby_leader")
}

/// Why a cluster is not healthy ("" when it is).
fn healthy(view: &ClusterView, expected: usize) -> Option<String> {
    if !view.members.iter().any(|m| is_leader_role(&m.role)) {
        return Some("no leader".into());
    }
    if view.members.len() < expected {
        return Some(format!(
            "{} of {expected} members registered",
            view.members.len()
        ));
    }
    for m in &view.members {
        let state = m.state.as_deref().unwrap_or("unknown");
        if !matches!(state, "running" | "streaming") {
            return Some(format!("{} is {state}", m.name));
        }
        if !is_leader_role(&m.role) {
            match &m.lag {
                Some(serde_json::Value::Number(n)) if n.as_i64() == Some(0) => {}
                other => return Some(format!("{} lags ({other:?})", m.name)),
            }
        }
    }
    Some(String::new())
}

/// Samples every node every ~100 ms until stopped.
pub struct Observer {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Vec<Tick>>,
}

impl Observer {
    pub fn start(cluster: Arc<Cluster>, clock: Clock) -> Observer {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut ticks = Vec::new();
            let mut conns: Vec<Option<PgConnection>> =
                cluster.target.nodes.iter().map(|_| None).collect();
            loop {
                let t_ms = clock.ms();
                let mut handles = Vec::new();
                for (i, conn) in conns.iter_mut().enumerate() {
                    let cluster = cluster.clone();
                    let mut conn = conn.take();
                    handles.push(tokio::spawn(async move {
                        let node = &cluster.target.nodes[i];
                        let s = cluster.sample(node, &mut conn).await;
                        (s, conn)
                    }));
                }
                let mut nodes = Vec::new();
                for (i, h) in handles.into_iter().enumerate() {
                    if let Ok((s, conn)) = h.await {
                        conns[i] = conn;
                        nodes.push(s);
                    }
                }
                ticks.push(Tick { t_ms, nodes });
                let next = t_ms + 100;
                let wait = next.saturating_sub(clock.ms());
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = stopped.changed() => break,
                }
            }
            ticks
        });
        Observer { stop, handle }
    }

    pub async fn stop(self) -> Vec<Tick> {
        let _ = self.stop.send(true);
        self.handle.await.unwrap_or_default()
    }
}

/// The postmaster's pid: the first line of `<data_dir>/postmaster.pid`.
pub fn postmaster_pid(node: &Node) -> Result<i32> {
    let path = node.data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("{} has no pid", path.display()))
}

/// The children of a process (postgres backends and auxiliary processes of a postmaster).
pub fn children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) with a pid we read for this node.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The pid of a node's Patroni: from the supervisor's state file, else the node's pid file.
pub fn patroni_pid(cluster: &Cluster, node: &Node) -> Result<i32> {
    if let Some(sup) = &cluster.target.supervisor {
        let text = std::fs::read_to_string(&sup.state_file)
            .with_context(|| format!("cannot read {}", sup.state_file.display()))?;
        let state: serde_json::Value = serde_json::from_str(&text)?;
        let pid = state["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == node.name.as_str()))
            .and_then(|c| c["pid"].as_i64())
            .ok_or_else(|| anyhow!("the supervisor's state has no pid for {}", node.name))?;
        return Ok(pid as i32);
    }
    let file = node
        .patroni_pid_file
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no supervisor and no patroni_pid_file", node.name))?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(text.trim().parse()?)
}

/// One request to the supervisor: `{"op":"hold","component":"pg-1"}`.
fn supervisor(socket: &Path, op: &str, component: &str) -> Result<serde_json::Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the supervisor at {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let line = serde_json::json!({"op": op, "component": component}).to_string();
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let value: serde_json::Value =
        serde_json::from_str(answer.trim()).context("the supervisor's answer is not JSON")?;
    if value.get("ok") == Some(&serde_json::Value::Bool(false)) || value.get("error").is_some() {
        bail!("the supervisor refused {op} {component}: {value}");
    }
    Ok(value)
}

/// Starts a node's Patroni again (no supervisor): the node's start_command,
/// in its own process group, its pid written to the node's pid file.
fn restart_patroni(node: &Node) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let argv = node
        .start_command
        .as_ref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("{}: no supervisor and no start_command", node.name))?;
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]).stdin(std::process::Stdio::null());
    // Patroni may run as the postgres account, which may not enter our working directory.
    if let Some(dir) = node.data_dir.parent() {
        command.current_dir(dir);
    }
    match &node.log_file {
        Some(log) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            command.stdout(f.try_clone()?).stderr(f);
        }
        None => {
            command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
        }
    }
    command.process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", argv[0]))?;
    let pid = child.id() as i32;
    if let Some(file) = &node.patroni_pid_file {
        std::fs::write(file, format!("{pid}\n"))?;
    }
    // Reaped by nobody while we run; the caller's cleanup ends it by pid.
    std::mem::forget(child);
    Ok(pid)
}

/// Waits until a node other than `old` answers `/primary` with 200.
async fn wait_new_primary(cluster: &Cluster, old: &str, within: Duration) -> Option<String> {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        for node in cluster.target.nodes.iter().filter(|n| n.name != old) {
            if cluster.is_primary(node).await {
                return Some(node.name.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn kubernetes(cluster: &Cluster) -> Result<&super::kubernetes::Kubernetes> {
    cluster
        .target
        .kubernetes
        .as_deref()
        .context("this fault needs a Kubernetes cluster")
}

/// Injects one fault into the leader `leader` and does what follows it
/// (release, resume, probe); returns the marks for the timeline.
pub async fn inject(
    cluster: &Cluster,
    fault: Fault,
    leader: &str,
    run_id: &str,
    clock: Clock,
) -> Result<Vec<Event>> {
    let node = cluster.node(leader)?.clone();
    let mut events = Vec::new();
    let mut mark = |kind: &str, label: String| {
        events.push(Event {
            t_ms: clock.ms(),
            kind: kind.into(),
            label,
        })
    };
    let ttl = Duration::from_secs(cluster.target.ttl_seconds);
    match fault {
        Fault::Switchover => {
            // Name the synchronous standby (the only candidate Patroni accepts in
            // synchronous mode): the other replica then leaves the race at once
            // instead of polling every member's REST API, which can take its 2 s
            // timeout while the old leader shuts down.
            let candidate = cluster
                .sync_standby()
                .await?
                .context("the cluster has no synchronous standby to switch over to")?;
            mark("fault", format!("switchover {leader} -> {candidate}"));
            let body = serde_json::json!({"leader": leader, "candidate": candidate});
            let mut request = cluster
                .http
                .post(format!("{}/switchover", node.api_url))
                .timeout(Duration::from_secs(30))
                .json(&body);
            // A write endpoint: Patroni answers 401 without the REST API's credentials.
            if let Some(auth) = &cluster.target.patroni_api_auth {
                request = request.basic_auth(&auth.username, Some(&auth.password.0));
            }
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                bail!("Patroni refused the switchover ({status}): {text}");
            }
            mark("switchover", text.trim().to_string());
        }
        Fault::KillPostgres => {
            let pm = postmaster_pid(&node)?;
            mark("fault", format!("SIGKILL postgres {pm} on {leader}"));
            signal(pm, libc::SIGKILL)?;
        }
        Fault::KillNode => {
            let patroni = patroni_pid(cluster, &node)?;
            let pm = postmaster_pid(&node)?;
            if let Some(sup) = &cluster.target.supervisor {
                supervisor(&sup.socket, "hold", leader)?;
                cluster
                    .undo
                    .pending()
                    .held
                    .push((sup.socket.clone(), leader.to_string()));
                mark("hold", format!("supervisor holds {leader}"));
            } else {
                cluster.undo.pending().killed.push(node.clone());
            }
            let backends = children(pm);
            mark(
                "fault",
                format!("SIGKILL Patroni {patroni} + postgres {pm} on {leader}"),
            );
            let _ = signal(patroni, libc::SIGKILL);
            let _ = signal(pm, libc::SIGKILL);
            for pid in backends {
                let _ = signal(pid, libc::SIGKILL);
            }
            let new = wait_new_primary(cluster, leader, ttl * 3).await;
            mark(
                "leader",
                format!("new primary {}", new.as_deref().unwrap_or("none")),
            );
            // A while on the new leader before the old node comes back.
            tokio::time::sleep(Duration::from_secs(3)).await;
            if let Some(sup) = &cluster.target.supervisor {
                supervisor(&sup.socket, "release", leader)?;
                cluster.undo.pending().held.clear();
                mark("release", format!("supervisor releases {leader}"));
            } else {
                let pid = restart_patroni(&node)?;
                cluster.undo.pending().killed.clear();
                mark("restart", format!("Patroni {pid} started on {leader}"));
            }
        }
        Fault::DeletePod => {
            let kube = kubernetes(cluster)?;
            mark("fault", format!("delete pod {leader} (grace period 0)"));
            kube.delete_pod(leader).await?;
            let new = wait_new_primary(cluster, leader, ttl * 3).await;
            mark(
                "leader",
                format!("new primary {}", new.as_deref().unwrap_or("none")),
            );
        }
        Fault::DrainNode => {
            let kube = kubernetes(cluster)?;
            let host = kube.node_of(leader).await?;
            mark(
                "fault",
                format!("drain node {host} (cordon, evict; leader {leader})"),
            );
            kube.cordon(&host, true).await?;
            cluster.undo.pending().cordoned.push((
                kube.kubeconfig().clone(),
                cluster.target.env.clone().unwrap_or_default(),
                host.clone(),
            ));
            let evicted = kube.evict_all(&host, ttl * 3).await?;
            mark("evict", format!("{evicted} pods evicted from {host}"));
            let new = wait_new_primary(cluster, leader, ttl * 3).await;
            mark(
                "leader",
                format!("new primary {}", new.as_deref().unwrap_or("none")),
            );
            // Back in service, so the evicted member (its volume is in this node's zone)
            // can be scheduled again.
            kube.cordon(&host, false).await?;
            cluster.undo.pending().cordoned.clear();
            mark("release", format!("uncordoned {host}"));
        }
        Fault::FreezeNode => {
            let patroni = patroni_pid(cluster, &node)?;
            let pm = postmaster_pid(&node)?;
            // A session opened before the freeze, like a stale pooled
            // connection of an app, tries to write after the resume.
            let mut stale = Cluster::connect(&cluster.node_options(&node), Duration::from_secs(2))
                .await
                .ok();
            // Everything of the node at once, like a frozen VM: Patroni, the
            // postmaster and every postgres process under it (SIGSTOP on the
            // postmaster alone leaves its backends serving).
            let mut frozen = vec![patroni, pm];
            frozen.extend(children(pm));
            mark(
                "fault",
                format!("SIGSTOP {} processes of {leader}", frozen.len()),
            );
            cluster.undo.pending().frozen = frozen.clone();
            for pid in &frozen {
                let _ = signal(*pid, libc::SIGSTOP);
            }
            let new = wait_new_primary(cluster, leader, ttl * 3).await;
            mark(
                "leader",
                format!("new primary {}", new.as_deref().unwrap_or("none")),
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            mark("resume", format!("SIGCONT {leader}"));
            for pid in frozen.iter().rev() {
                let _ = signal(*pid, libc::SIGCONT);
            }
            cluster.undo.pending().frozen.clear();
            // The probe: the resumed old leader must not acknowledge a write.
            let outcome = match stale.as_mut() {
                None => "no session before the freeze".to_string(),
                Some(conn) => {
                    let insert = sqlx::query(
                        "INSERT INTO failover_ledger (run_id, seq, written_at) VALUES ($1, 0, now())",
                    )
                    .bind(format!("{run_id}-stale"))
                    .execute(conn);
                    match tokio::time::timeout(Duration::from_secs(5), insert).await {
                        Ok(Ok(_)) => "ACKNOWLEDGED".to_string(),
                        Ok(Err(e)) => format!("refused: {}", super::workload::classify(&e)),
                        Err(_) => "refused: timeout (not acknowledged)".to_string(),
                    }
                }
            };
            drop(stale);
            mark("probe", format!("stale write on {leader}: {outcome}"));
        }
    }
    Ok(events)
}
