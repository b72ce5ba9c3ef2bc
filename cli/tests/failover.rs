//! `shopctl failover-test` end to end against a real cluster this test starts
//! itself: 1 etcd, 3 Patroni nodes with PostgreSQL 15 (ttl 10, loop_wait 1,
//! retry_timeout 4, synchronous mode, pg_rewind) and HAProxy with a write
//! port that follows `/primary`. No API here: the database half of the
//! workload is what is tested. Everything runs on free loopback ports in a
//! temporary directory and is killed (by pid) at the end.
//!
//! etcd, Patroni, HAProxy and PostgreSQL come from `bash tests/tools.sh`; the
//! test fails with that hint when one is missing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::free_port;

struct NodeDirs {
    name: String,
    dir: PathBuf,
    api: u16,
    pg: u16,
}

impl NodeDirs {
    fn config(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("patroni.pid")
    }
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }
}

/// Everything the test started; killed by pid when dropped.
struct Cluster {
    root: tempfile::TempDir,
    nodes: Vec<NodeDirs>,
    pids: Vec<i32>,
    write_port: u16,
    read_port: u16,
    as_postgres: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(pid) = read_pid(&node.pid_file()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for node in &self.nodes {
            if let Some(pid) = read_pid(&node.data().join("postmaster.pid")) {
                // Immediate shutdown: the postmaster ends its backends.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
        }
        for pid in &self.pids {
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(500));
        if std::env::var_os("FAILOVER_TEST_KEEP").is_some() {
            let path = self.root.path().to_path_buf();
            eprintln!("keeping {}", path.display());
            std::mem::forget(std::mem::replace(
                &mut self.root,
                tempfile::tempdir().unwrap(),
            ));
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn spawn(argv: &[String], log: &Path) -> i32 {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        // The postgres account may not enter the clone's directory (a private temp dir).
        .current_dir(log.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", argv[0]));
    let pid = child.id() as i32;
    std::mem::forget(child);
    pid
}

fn patroni_argv(node: &NodeDirs, as_postgres: bool) -> Vec<String> {
    let mut argv = Vec::new();
    if as_postgres {
        argv.extend(
            [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
            ]
            .map(String::from),
        );
    }
    argv.push(common::tool("patroni").display().to_string());
    argv.push(node.config().display().to_string());
    argv
}

fn get(url: &str) -> Option<(u16, String)> {
    // A tiny HTTP/1.0 GET, to keep the test free of an HTTP client.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

const PASSWORD_ENV: [(&str, &str); 2] = [
    ("PATRONI_SUPERUSER_PASSWORD", "failover-su"),
    ("PATRONI_REPLICATION_PASSWORD", "failover-repl"),
];

/// Patroni's REST API credentials (write endpoints).
const API_AUTH: (&str, &str) = ("failover", "failover-api-password");

fn start_cluster() -> Cluster {
    let pg_bin = common::postgres_bin_dir().display().to_string();
    for (k, v) in PASSWORD_ENV {
        std::env::set_var(k, format!("{v}-{}", std::process::id()));
    }
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let root = tempfile::Builder::new()
        .prefix("shopctl-failover-")
        .tempdir()
        .unwrap();
    let mut pids = Vec::new();
    // etcd, one member.
    let (client, peer) = (free_port(), free_port());
    let etcd = [
        common::tool("etcd").display().to_string(),
        "--name=e1".into(),
        format!("--data-dir={}", root.path().join("etcd").display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=e1=http://127.0.0.1:{peer}"),
    ];
    pids.push(spawn(&etcd, &root.path().join("etcd.log")));

    let nodes: Vec<NodeDirs> = (1..=3)
        .map(|i| NodeDirs {
            name: format!("pg-{i}"),
            dir: root.path().join(format!("pg-{i}")),
            api: free_port(),
            pg: free_port(),
        })
        .collect();
    let mut cluster = Cluster {
        root,
        nodes,
        pids,
        write_port: free_port(),
        read_port: free_port(),
        as_postgres,
    };
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(cluster.root.path(), perms).unwrap();
    for node in &cluster.nodes {
        std::fs::create_dir_all(&node.dir).unwrap();
        let config = format!(
            r#"scope: failover-test
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
  # As the Kubernetes manifests: the switchover must send these (the target's
  # patroni_api_auth), or Patroni answers 401.
  authentication:
    username: {api_user}
    password: {api_password}
etcd3:
  hosts: 127.0.0.1:{client}
bootstrap:
  dcs:
    ttl: 8
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: {strict}
    postgresql:
      use_pg_rewind: true
      use_slots: false
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        hot_standby: "on"
        wal_keep_size: 128MB
        wal_retrieve_retry_interval: 200ms
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {pg_bin}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 md5
    - host replication replicator 127.0.0.1/32 md5
  parameters:
    unix_socket_directories: {dir}
    shared_buffers: 32MB
    max_connections: 60
"#,
            name = node.name,
            api_user = API_AUTH.0,
            api_password = API_AUTH.1,
            // As `up local` runs it; FAILOVER_TEST_STRICT=0 shows what non-strict mode loses.
            strict = std::env::var("FAILOVER_TEST_STRICT").as_deref() != Ok("0"),
            api = node.api,
            pg = node.pg,
            data = node.data().display(),
            dir = node.dir.display(),
        );
        std::fs::write(node.config(), config).unwrap();
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&node.dir)
                .status()
                .unwrap();
        }
        let pid = spawn(&patroni_argv(node, as_postgres), &node.log());
        std::fs::write(node.pid_file(), format!("{pid}\n")).unwrap();
    }
    // HAProxy as `up local` runs it: write port on /primary, read port on /replica.
    let mut haproxy = String::from(
        "global\n  maxconn 400\ndefaults\n  mode tcp\n  timeout connect 250ms\n  retries 1\n  \
         option redispatch\n  timeout client 30m\n  timeout server 30m\n  timeout check 1s\n",
    );
    for (port, check) in [
        (cluster.write_port, "primary"),
        (cluster.read_port, "replica"),
    ] {
        haproxy.push_str(&format!(
            "listen {check}\n  bind 127.0.0.1:{port}\n  option httpchk GET /{check}\n  \
             http-check expect status 200\n  \
             default-server inter 500ms fastinter 200ms downinter 200ms fall 2 rise 1 \
             on-marked-down shutdown-sessions\n"
        ));
        for node in &cluster.nodes {
            haproxy.push_str(&format!(
                "  server {} 127.0.0.1:{} maxconn 100 check port {}\n",
                node.name, node.pg, node.api
            ));
        }
    }
    let haproxy_cfg = cluster.root.path().join("haproxy.cfg");
    std::fs::write(&haproxy_cfg, haproxy).unwrap();
    let argv = [
        common::tool("haproxy").display().to_string(),
        "-db".into(),
        "-f".into(),
        haproxy_cfg.display().to_string(),
    ];
    let pid = spawn(&argv, &cluster.root.path().join("haproxy.log"));
    cluster.pids.push(pid);

    // Healthy: a leader, three members running, a synchronous standby, lag 0.
    let start = Instant::now();
    loop {
        let view = get(&format!(
            "http://127.0.0.1:{}/cluster",
            cluster.nodes[0].api
        ));
        if let Some((200, body)) = &view {
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let running = members
                .iter()
                .filter(|m| matches!(m["state"].as_str(), Some("running" | "streaming")))
                .count();
            let sync = members.iter().any(|m| m["role"] == "sync_standby");
            if running == 3 && sync {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            for node in &cluster.nodes {
                eprintln!(
                    "--- {}\n{}",
                    node.name,
                    std::fs::read_to_string(node.log()).unwrap_or_default()
                );
            }
            panic!("the test cluster did not come up: {view:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("cluster up in {:?}", start.elapsed());
    cluster
}

fn target(cluster: &Cluster, workload_seconds: u64) -> PathBuf {
    let nodes: Vec<serde_json::Value> = cluster
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "api_url": format!("http://127.0.0.1:{}", n.api),
                "pg_port": n.pg,
                "data_dir": n.data(),
                "patroni_pid_file": n.pid_file(),
                "start_command": patroni_argv(n, cluster.as_postgres),
                "log_file": n.log(),
            })
        })
        .collect();
    let target = serde_json::json!({
        "nodes": nodes,
        "write_dsn": format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.write_port),
        "read_dsn": format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.read_port),
        "password_env": "PATRONI_SUPERUSER_PASSWORD",
        "patroni_api_auth": {"username": API_AUTH.0, "password": API_AUTH.1},
        "workload_seconds": workload_seconds,
        "fault_after_seconds": 3,
        "ttl_seconds": 8,
        "settle_seconds": 45,
        // Twice the targets of docs/failover.md: a 2-core CI machine running other tests is
        // not the benchmark (tests/bench-failover.sh is); safety checks stay exact.
        "thresholds": {"switchover_ms": 4000, "kill_postgres_ms": 16000, "kill_node_ms": 24000, "freeze_node_ms": 24000},
        "reports_dir": cluster.root.path().join("reports"),
    });
    let path = cluster
        .root
        .path()
        .join(format!("target-{workload_seconds}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&target).unwrap()).unwrap();
    path
}

/// Runs one mode through the binary and checks its report.
fn run_mode(cluster: &Cluster, mode: &str, workload_seconds: u64) -> serde_json::Value {
    let target = target(cluster, workload_seconds);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_shopctl"))
        .args([
            "failover-test",
            "local",
            "--mode",
            mode,
            "--yes",
            "--json",
            "--target",
        ])
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "{mode}: {:?}, exit {:?}\n{stderr}",
        started.elapsed(),
        output.status.code()
    );
    let outcome: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{mode}: no JSON outcome ({e}):\n{stdout}\n{stderr}"));
    let report = outcome["runs"][0].clone();
    let m = &report["measures"];
    eprintln!(
        "{mode}: leader {} -> {}, detect {} ms, writable {} ms, write outage {} ms, catch-up {} ms, rejoin {} ms, acked {}, failed {}, errors {}",
        m["old_leader"], m["new_leader"], m["detect_ms"], m["writable_ms"], m["write_outage_ms"],
        m["catch_up_ms"], m["rejoin_ms"], m["writes_acknowledged"], m["writes_failed"], m["errors"]
    );
    for check in report["checks"].as_array().unwrap() {
        eprintln!(
            "  {} {}: {}",
            if check["passed"] == true {
                "pass"
            } else {
                "FAIL"
            },
            check["name"],
            check["detail"]
        );
    }
    // Reports written.
    let dir = PathBuf::from(report["dir"].as_str().expect("report dir"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["mode"], mode);
    let svg = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("## Checks"));
    report
}

fn check_passed(report: &serde_json::Value, name: &str) -> bool {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == name && c["passed"] == true)
}

#[test]
fn switchover_kill_postgres_and_kill_node_lose_nothing() {
    let cluster = start_cluster();
    let mut failures = Vec::new();
    // FAILOVER_TEST_MODES=switchover,kill-node runs only those.
    let only = std::env::var("FAILOVER_TEST_MODES").unwrap_or_default();
    // freeze-node runs only when asked for (it waits out the ttl twice).
    for (mode, seconds, default) in [
        ("switchover", 12, true),
        ("kill-postgres", 15, true),
        ("kill-node", 25, true),
        ("freeze-node", 25, false),
    ] {
        let wanted = if only.is_empty() {
            default
        } else {
            only.split(',').any(|m| m == mode)
        };
        if !wanted {
            continue;
        }
        let report = run_mode(&cluster, mode, seconds);
        for name in [
            "zero acknowledged writes lost",
            "write outage within threshold",
            "no split brain",
            "replicas converge",
            "old leader rejoined",
        ] {
            if !check_passed(&report, name) {
                failures.push(format!("{mode}: {name}"));
            }
        }
        assert!(report["measures"]["writes_acknowledged"].as_u64().unwrap() > 100);
    }
    assert!(failures.is_empty(), "failed checks: {failures:?}");
}
