//! `shopctl status local`: the supervisor's view of each component (state.json) and the
//! PostgreSQL cluster as Patroni reports it (`GET /cluster`).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::control::{self, ComponentState, RunState};
use super::http;
use super::topology::Topology;

#[derive(Debug, Serialize)]
pub struct Component {
    #[serde(flatten)]
    pub state: ComponentState,
    /// Seconds since it started, while it runs.
    pub uptime_s: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub name: String,
    /// leader, sync_standby or replica.
    pub role: String,
    /// running, streaming, starting, stopped...
    pub state: String,
    pub timeline: Option<u64>,
    /// Replication lag in bytes (replicas only; None when Patroni cannot tell).
    pub lag_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct LocalStatus {
    pub env: String,
    pub supervisor_pid: Option<u32>,
    pub api_url: String,
    pub components: Vec<Component>,
    /// Members from Patroni's `/cluster`; empty when no member's REST API answers.
    pub postgres: Vec<Member>,
    /// Every component running, one leader and every other member streaming on its timeline.
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// Patroni's `/cluster`, from the first member that answers, with each replica's state
/// taken from the leader's `pg_stat_replication` (Patroni 3.0 reports replicas as
/// "running" whether or not they stream).
pub fn cluster(topology: &Topology) -> Vec<Member> {
    let mut members = members(topology);
    let leader = members
        .iter()
        .find(|m| m.role == "leader")
        .and_then(|m| topology.pg.iter().find(|p| p.name == m.name));
    let replication: Vec<Value> = leader
        .and_then(|l| http::get(l.rest_port, "/patroni", Duration::from_secs(1)).ok())
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
        .and_then(|v| v["replication"].as_array().cloned())
        .unwrap_or_default();
    for m in members.iter_mut().filter(|m| m.role != "leader") {
        if let Some(r) = replication
            .iter()
            .find(|r| r["application_name"] == m.name.as_str())
        {
            if m.state == "running" {
                m.state = r["state"].as_str().unwrap_or("running").to_owned();
            }
        }
    }
    members
}

fn members(topology: &Topology) -> Vec<Member> {
    for pg in &topology.pg {
        let Ok(response) = http::get(pg.rest_port, "/cluster", Duration::from_secs(1)) else {
            continue;
        };
        let Ok(body) = serde_json::from_str::<Value>(&response.body) else {
            continue;
        };
        return body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| Member {
                name: m["name"].as_str().unwrap_or_default().to_owned(),
                role: m["role"].as_str().unwrap_or_default().to_owned(),
                state: m["state"].as_str().unwrap_or_default().to_owned(),
                timeline: m["timeline"].as_u64(),
                lag_bytes: m["lag"].as_u64(),
            })
            .collect();
    }
    Vec::new()
}

pub fn query(topology: &Topology) -> LocalStatus {
    let supervisor_pid = control::running_supervisor(&topology.supervisor_socket());
    let file = control::read_state(&topology.state_file());
    let components: Vec<Component> = match &file {
        Some(file) => file
            .components
            .iter()
            .map(|c| Component {
                uptime_s: c
                    .started_at
                    .as_deref()
                    .filter(|_| c.pid.is_some() && supervisor_pid.is_some())
                    .and_then(control::seconds_since),
                state: ComponentState {
                    // Without a supervisor nothing it started still runs.
                    state: if supervisor_pid.is_some() {
                        c.state
                    } else {
                        RunState::Stopped
                    },
                    pid: c.pid.filter(|_| supervisor_pid.is_some()),
                    ..c.clone()
                },
            })
            .collect(),
        None => Vec::new(),
    };
    let postgres = if supervisor_pid.is_some() {
        cluster(topology)
    } else {
        Vec::new()
    };
    let mut problems = Vec::new();
    if supervisor_pid.is_none() {
        problems.push("the supervisor is not running (`shopctl up local` starts it)".to_owned());
    }
    for c in &components {
        if c.state.state != RunState::Running {
            problems.push(format!("{} is {}", c.state.name, c.state.state));
        }
    }
    let leaders: Vec<&Member> = postgres.iter().filter(|m| m.role == "leader").collect();
    if supervisor_pid.is_some() {
        if leaders.len() != 1 {
            problems.push(format!("{} PostgreSQL leaders", leaders.len()));
        }
        let timeline = leaders.first().and_then(|l| l.timeline);
        for m in postgres.iter().filter(|m| m.role != "leader") {
            if m.state != "streaming" || m.timeline != timeline {
                problems.push(format!(
                    "{} is {} on timeline {:?}",
                    m.name, m.state, m.timeline
                ));
            }
        }
        if postgres.len() != topology.pg.len() {
            problems.push(format!(
                "{} of {} PostgreSQL members in the cluster",
                postgres.len(),
                topology.pg.len()
            ));
        }
    }
    LocalStatus {
        env: topology.env.clone(),
        supervisor_pid,
        api_url: topology.api_url(),
        components,
        postgres,
        healthy: problems.is_empty(),
        problems,
    }
}

fn uptime(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h", s / 3600),
    }
}

pub fn table(status: &LocalStatus) -> String {
    let mut components = comfy_table::Table::new();
    components
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header([
            "component",
            "state",
            "pid",
            "restarts",
            "uptime",
            "last exit",
        ]);
    for c in &status.components {
        let s = &c.state;
        components.add_row([
            s.name.clone(),
            s.state.to_string(),
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            s.restarts.to_string(),
            uptime(c.uptime_s),
            s.last_exit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut members = comfy_table::Table::new();
    members
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(["member", "role", "state", "timeline", "lag"]);
    for m in &status.postgres {
        members.add_row([
            m.name.clone(),
            m.role.clone(),
            m.state.clone(),
            m.timeline
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            match m.lag_bytes {
                Some(b) if m.role != "leader" => format!("{b} B ({:.1} MB)", b as f64 / 1e6),
                _ => "-".into(),
            },
        ]);
    }
    let health = if status.healthy {
        "healthy".to_owned()
    } else {
        format!("unhealthy: {}", status.problems.join("; "))
    };
    format!(
        "{components}\nPostgreSQL cluster (Patroni):\n{members}\n{}: {health}",
        status.env
    )
}
