//! Who runs where: the names, ports, URLs and directories of every component of the local
//! topology, derived from `[local]` and `[services]` of `environments/local.toml`.
//!
//! This is the one place other commands (`shopctl failover-test local`) learn the topology
//! from: call [`local_topology`] and read the fields; nothing else is needed.

use std::path::{Path, PathBuf};

use crate::config::{LoadedEnvironment, Local, LocalFailover, LocalPatroni, LocalPorts, Tier};

use super::secrets::Secrets;

/// Patroni's cluster name (its `scope`).
pub const SCOPE: &str = "shop-local";
/// The component that wakes Patroni members when the leader key changes.
pub const PATRONI_WAKE_COMPONENT: &str = "patroni-wake";
/// The app's database and the role that owns it.
pub const APP_DB: &str = "shop";
pub const APP_DB_USER: &str = "shop";

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{env} is a {tier} environment; the process topology runs local environments only")]
    NotLocal { env: String, tier: Tier },
    #[error("environments/{env}.toml has no [local] section\n  hint: copy [local] and [local.ports] from the repository's environments/local.toml")]
    NoLocalSection { env: String },
}

/// One Patroni member and the PostgreSQL it manages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgNode {
    /// `pg-1`.. : the component name and the Patroni member name.
    pub name: String,
    /// Patroni's REST API, e.g. `http://127.0.0.1:8008`.
    pub rest_url: String,
    pub rest_port: u16,
    pub postgres_port: u16,
    /// `.shopctl/local/pg-N`: holds `data/`, Patroni's pgpass.
    pub dir: PathBuf,
    /// `.shopctl/local/pg-N/data`: PGDATA (`postmaster.pid` names the postmaster).
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EtcdNode {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
}

/// An `app serve` replica or an `app worker`: name and the port it listens on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppNode {
    pub name: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub env: String,
    /// `.shopctl/<env>` (absolute).
    pub state_dir: PathBuf,
    pub ports: LocalPorts,
    pub patroni: LocalPatroni,
    /// Thresholds of `shopctl failover-test local`.
    #[allow(dead_code)] // read by the failover tests
    pub failover: LocalFailover,
    pub etcd: Vec<EtcdNode>,
    pub pg: Vec<PgNode>,
    /// `app-1..N`, serving on `ports.app + i - 1`.
    pub apps: Vec<AppNode>,
    /// `worker-1..M`, metrics on `ports.worker_metrics + i - 1`.
    pub workers: Vec<AppNode>,
}

/// The topology of a loaded local environment whose state lives in `state_dir`
/// (`Project::state_dir(&env.name)`).
pub fn local_topology(
    state_dir: &Path,
    env: &LoadedEnvironment,
) -> Result<Topology, TopologyError> {
    if env.config.tier != Tier::Local {
        return Err(TopologyError::NotLocal {
            env: env.name.clone(),
            tier: env.config.tier,
        });
    }
    let local: &Local = env
        .config
        .local
        .as_ref()
        .ok_or_else(|| TopologyError::NoLocalSection {
            env: env.name.clone(),
        })?;
    let ports = local.ports.clone();
    let offset = |base: u16, i: u32| base + i as u16;
    let etcd = (0..local.etcd_members)
        .map(|i| EtcdNode {
            name: format!("etcd-{}", i + 1),
            client_port: offset(ports.etcd_client, i),
            peer_port: offset(ports.etcd_peer, i),
            data_dir: state_dir.join(format!("etcd-{}", i + 1)),
        })
        .collect();
    let pg = (0..env.config.services.patroni.replicas)
        .map(|i| {
            let name = format!("pg-{}", i + 1);
            let dir = state_dir.join(&name);
            PgNode {
                rest_url: format!("http://127.0.0.1:{}", offset(ports.patroni, i)),
                rest_port: offset(ports.patroni, i),
                postgres_port: offset(ports.postgres, i),
                data_dir: dir.join("data"),
                dir,
                name,
            }
        })
        .collect();
    let apps = (0..env.config.services.app.replicas)
        .map(|i| AppNode {
            name: format!("app-{}", i + 1),
            port: offset(ports.app, i),
        })
        .collect();
    let workers = (0..env.config.services.worker.replicas)
        .map(|i| AppNode {
            name: format!("worker-{}", i + 1),
            port: offset(ports.worker_metrics, i),
        })
        .collect();
    Ok(Topology {
        env: env.name.clone(),
        state_dir: state_dir.to_path_buf(),
        patroni: local.patroni.clone(),
        failover: local.failover.clone(),
        ports,
        etcd,
        pg,
        apps,
        workers,
    })
}

impl Topology {
    /// Every component name in dependency order (`stop` goes in reverse).
    pub fn component_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.etcd.iter().map(|n| n.name.clone()).collect();
        names.extend(self.pg.iter().map(|n| n.name.clone()));
        names.push(PATRONI_WAKE_COMPONENT.into());
        names.extend(
            ["haproxy", "redis", "rabbitmq", "kafka", "smtp"]
                .iter()
                .map(|s| s.to_string()),
        );
        names.extend(self.workers.iter().map(|n| n.name.clone()));
        names.extend(self.apps.iter().map(|n| n.name.clone()));
        names.push("nginx".into());
        names
    }

    /// The public API (nginx), e.g. `http://127.0.0.1:8080`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// A DSN of the app's role through HAProxy's write port (always the leader).
    pub fn write_dsn(&self, secrets: &Secrets) -> String {
        self.dsn(self.ports.haproxy_write, secrets)
    }

    /// A DSN of the app's role through HAProxy's read port (the streaming replicas).
    pub fn read_dsn(&self, secrets: &Secrets) -> String {
        self.dsn(self.ports.haproxy_read, secrets)
    }

    fn dsn(&self, port: u16, secrets: &Secrets) -> String {
        format!(
            "postgres://{APP_DB_USER}:{}@127.0.0.1:{port}/{APP_DB}",
            secrets.app_db_password
        )
    }

    /// The secrets generated by the first `up` (`secrets.toml`).
    pub fn secrets(&self) -> Result<Secrets, super::secrets::SecretsError> {
        Secrets::load(&self.secrets_file())
    }

    pub fn secrets_file(&self) -> PathBuf {
        self.state_dir.join("secrets.toml")
    }

    /// Where failover tests write their reports.
    #[allow(dead_code)] // used by the failover tests
    pub fn reports_dir(&self) -> PathBuf {
        self.state_dir.join("reports")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    /// The supervisor's control socket (one JSON line per connection).
    pub fn supervisor_socket(&self) -> PathBuf {
        self.run_dir().join("supervisor.sock")
    }

    /// The supervisor's view of every component, rewritten atomically on each change.
    pub fn state_file(&self) -> PathBuf {
        self.run_dir().join("state.json")
    }

    pub fn events_file(&self) -> PathBuf {
        self.run_dir().join("events.jsonl")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    pub fn log_file(&self, component: &str) -> PathBuf {
        self.logs_dir().join(format!("{component}.log"))
    }

    /// Rendered configuration files.
    pub fn conf_dir(&self) -> PathBuf {
        self.state_dir.join("conf")
    }

    /// Files nginx serves at `/static/`.
    pub fn static_dir(&self) -> PathBuf {
        self.state_dir.join("static")
    }

    /// Written once migrations and the demo seed have run.
    pub fn seeded_marker(&self) -> PathBuf {
        self.run_dir().join("seeded")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn local_env(edit: impl Fn(&str) -> String) -> LoadedEnvironment {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("environments/local.toml")).unwrap();
        LoadedEnvironment {
            name: "local".into(),
            config: crate::config::parse(&edit(&text), Path::new("environments/local.toml"))
                .unwrap(),
        }
    }

    #[test]
    fn members_take_consecutive_ports_and_fixed_names() {
        let t = local_topology(Path::new("/state"), &local_env(str::to_owned)).unwrap();
        let pg: Vec<_> =
            t.pg.iter()
                .map(|p| (p.name.as_str(), p.postgres_port, p.rest_port))
                .collect();
        assert_eq!(
            pg,
            [
                ("pg-1", 5441, 8008),
                ("pg-2", 5442, 8009),
                ("pg-3", 5443, 8010)
            ]
        );
        assert_eq!(t.pg[2].data_dir, Path::new("/state/pg-3/data"));
        assert_eq!(t.pg[0].rest_url, "http://127.0.0.1:8008");
        assert_eq!(
            t.component_names(),
            [
                "etcd-1",
                "etcd-2",
                "etcd-3",
                "pg-1",
                "pg-2",
                "pg-3",
                "patroni-wake",
                "haproxy",
                "redis",
                "rabbitmq",
                "kafka",
                "smtp",
                "worker-1",
                "app-1",
                "app-2",
                "nginx"
            ]
        );
        assert_eq!(
            t.supervisor_socket(),
            Path::new("/state/run/supervisor.sock")
        );
        assert_eq!(t.reports_dir(), Path::new("/state/reports"));
        assert_eq!(t.api_url(), "http://127.0.0.1:8080");
        assert_eq!(t.failover.kill_node_max_outage_ms, 12_000);
    }

    #[test]
    fn dsns_use_the_app_role_through_haproxy() {
        let t = local_topology(Path::new("/state"), &local_env(str::to_owned)).unwrap();
        let mut secrets = Secrets::generate().unwrap();
        secrets.app_db_password = "pw".into();
        assert_eq!(
            t.write_dsn(&secrets),
            "postgres://shop:pw@127.0.0.1:6432/shop"
        );
        assert_eq!(
            t.read_dsn(&secrets),
            "postgres://shop:pw@127.0.0.1:6433/shop"
        );
    }

    #[test]
    fn a_short_ttl_an_even_etcd_quorum_and_too_many_sync_standbys_are_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("environments/local.toml")).unwrap();
        let text = text
            .replace("ttl = 8", "ttl = 5")
            .replace("etcd_members = 3", "etcd_members = 2")
            .replace("synchronous_node_count = 2", "synchronous_node_count = 3");
        let error = crate::config::parse(&text, Path::new("environments/local.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("local.patroni.ttl: ttl 5 is below"),
            "{error}"
        );
        assert!(
            error.contains("local.etcd_members: 2 etcd members"),
            "{error}"
        );
        assert!(
            error.contains(
                "local.patroni.synchronous_node_count: 3 synchronous standbys with 2 replicas"
            ),
            "{error}"
        );
    }
}
