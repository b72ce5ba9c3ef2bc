//! `shopctl up local` for real: etcd, Patroni/PostgreSQL, HAProxy, Redis, RabbitMQ, tansu,
//! the SMTP sink, the app and nginx as processes on free loopback ports of a copied project;
//! then status, a request through nginx, a killed replica restarted by the supervisor, logs,
//! a frozen worker left alone, hold and release on the supervisor's socket, and `down`
//! stopping every process; and `failover-test local --mode all` against that stack, every
//! report verdict checked. Always taken down, even when an assertion fails.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Project;
use predicates::prelude::*;
use serde_json::Value;

/// The stacks of two tests would share 2 cores and spoil each other's timings: one at a time.
static ONE_STACK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_stack() -> std::sync::MutexGuard<'static, ()> {
    ONE_STACK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes the topology down whatever happens to the test.
struct DownOnDrop<'a>(&'a Project);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .shopctl()
            .args(["down", "local", "--yes"])
            .timeout(Duration::from_secs(150))
            .output();
    }
}

/// The project with every [local.ports] key (and [jobs] amqp_url) moved to free ports.
fn project_on_free_ports() -> Project {
    let project = Project::new();
    // Patroni and PostgreSQL run as the postgres account when the tests run as root: it
    // must be able to reach the state directory under the temporary directory.
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = common::free_ports(40);
    let keys = [
        ("http", 8080, 0),
        ("app", 8101, 1),
        ("haproxy_write", 6432, 4),
        ("haproxy_read", 6433, 5),
        ("haproxy_stats", 7000, 6),
        ("postgres", 5441, 7),
        ("patroni", 8008, 10),
        ("etcd_client", 2379, 13),
        ("etcd_peer", 2479, 16),
        ("redis", 6379, 19),
        ("amqp", 5672, 20),
        ("epmd", 4369, 21),
        ("rabbitmq_dist", 25672, 22),
        ("kafka", 9092, 23),
        ("smtp", 2525, 24),
        ("worker_metrics", 9091, 25),
    ];
    for (key, default, offset) in keys {
        let port = base + offset;
        let text = project.env_text("local");
        let from = format!("\n{key} = {default}");
        assert!(text.contains(&from), "{from}");
        project.write_env(
            "local",
            &text.replacen(&from, &format!("\n{key} = {port}"), 1),
        );
    }
    project.edit(
        "local",
        "amqp://shop@127.0.0.1:5672/%2f",
        &format!("amqp://shop@127.0.0.1:{}/%2f", base + 20),
    );
    project
}

fn state(project: &Project) -> Value {
    let text =
        std::fs::read_to_string(project.path().join(".shopctl/local/run/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn component<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in state.json"))
}

/// One request on the supervisor's socket; the answer line.
fn control(socket: &Path, request: &str) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Waits (at most 30 s) until `name` in state.json satisfies `done`.
fn wait_for(project: &Project, name: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = state(project);
        let c = component(&now, name);
        if done(c) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: i64) -> bool {
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// One HTTP/1.0 request to 127.0.0.1:port; returns status and body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn local_port(project: &Project, key: &str) -> u16 {
    let text = project.env_text("local");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn app_built() -> bool {
    let shopctl = assert_cmd::cargo::cargo_bin("shopctl");
    shopctl.parent().unwrap().join("app").is_file()
}

/// A project for a whole `up local` stack on free ports, and the turn to run one.
fn new_stack() -> (std::sync::MutexGuard<'static, ()>, Project) {
    assert!(
        app_built(),
        "the app binary must be next to shopctl: cargo build -p app --bin app"
    );
    let turn = one_stack();
    (turn, project_on_free_ports())
}

#[test]
fn up_supervises_the_topology_and_down_stops_every_process() {
    let (_one, project) = new_stack();
    let _guard = DownOnDrop(&project);
    let http_port = local_port(&project, "http");

    let started = Instant::now();
    project
        .shopctl()
        .args(["up", "local"])
        .timeout(Duration::from_secs(240))
        .assert()
        .success()
        .stderr(predicate::str::contains("local: up and ready in"))
        .stdout(predicate::str::contains("sync_standby"));
    eprintln!("up local: {:.1} s", started.elapsed().as_secs_f64());

    let again = Instant::now();
    project
        .shopctl()
        .args(["up", "local"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success()
        .stderr(predicate::str::contains("already running; reusing it"));
    eprintln!("second up local: {:.1} s", again.elapsed().as_secs_f64());

    // Status: 3 etcd members, one leader and two streaming replicas on its timeline.
    let out = project
        .shopctl()
        .args(["status", "local", "--json"])
        .assert()
        .success();
    let status: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(status["healthy"], true, "{status:#}");
    let etcd = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("etcd-") && c["state"] == "running")
        .count();
    assert_eq!(etcd, 3);
    let members = status["postgres"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status:#}");
    let leaders: Vec<&Value> = members.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{status:#}");
    let replicas: Vec<&Value> = members.iter().filter(|m| m["role"] != "leader").collect();
    assert!(
        replicas
            .iter()
            .all(|m| m["state"] == "streaming" && m["timeline"] == leaders[0]["timeline"]),
        "{status:#}"
    );
    // synchronous_node_count = 2: both replicas confirm every commit.
    assert_eq!(
        replicas
            .iter()
            .filter(|m| m["role"] == "sync_standby")
            .count(),
        2,
        "{status:#}"
    );

    // Through nginx: readiness, the seeded catalog, a registration, a static file.
    assert_eq!(http(http_port, "GET", "/readyz", None).0, 200);
    let (code, products) = http(http_port, "GET", "/api/v1/products", None);
    assert_eq!(code, 200, "{products}");
    assert!(products.contains("\"id\""), "{products}");
    let (code, body) = http(
        http_port,
        "POST",
        "/api/v1/auth/register",
        Some(r#"{"email":"ada@example.com","password":"correct horse battery","full_name":"Ada"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = http(http_port, "GET", "/static/index.html", None);
    assert_eq!(code, 200, "{body}");

    // SIGKILL app-1: the supervisor restarts it and says so; nginx keeps serving.
    let before = component(&state(&project), "app-1").clone();
    let pid = before["pid"].as_i64().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(http(http_port, "GET", "/readyz", None).0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = state(&project);
        let app = component(&now, "app-1");
        if app["state"] == "running" && app["restarts"] == 1 && app["pid"].as_i64() != Some(pid) {
            assert!(
                app["last_exit"]
                    .as_str()
                    .unwrap()
                    .starts_with("signal 9 at "),
                "{app}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "app-1 not restarted: {app}");
        std::thread::sleep(Duration::from_millis(200));
    }
    project
        .shopctl()
        .args(["status", "local"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"app-1 +running +\d+ +1 ").unwrap());

    // A frozen (SIGSTOPped) process is not dead: no restart.
    let frozen = component(&state(&project), "worker-1")["pid"]
        .as_i64()
        .unwrap();
    unsafe { libc::kill(frozen as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(2));
    let worker = component(&state(&project), "worker-1").clone();
    unsafe { libc::kill(frozen as i32, libc::SIGCONT) };
    assert_eq!(worker["pid"].as_i64(), Some(frozen), "{worker}");
    assert_eq!(worker["restarts"], 0, "{worker}");

    // Hold: a held component that exits stays down; release starts it again.
    let socket = project.path().join(".shopctl/local/run/supervisor.sock");
    assert!(control(&socket, r#"{"op":"hold","component":"app-2"}"#).contains(r#""ok":true"#));
    let held = component(&state(&project), "app-2")["pid"]
        .as_i64()
        .unwrap();
    unsafe { libc::kill(held as i32, libc::SIGKILL) };
    wait_for(&project, "app-2", |c| {
        c["state"] == "held" && c["pid"].is_null()
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(component(&state(&project), "app-2")["pid"].is_null());
    assert!(control(&socket, r#"{"op":"release","component":"app-2"}"#).contains(r#""ok":true"#));
    wait_for(&project, "app-2", |c| {
        c["state"] == "running" && c["restarts"] == 1
    });
    assert!(control(&socket, r#"{"op":"hold","component":"pg-9"}"#).contains("unknown component"));

    // Logs.
    project
        .shopctl()
        .args(["logs", "local", "app-1", "-n", "5"])
        .assert()
        .success()
        .stdout(predicate::str::is_empty().not());
    project
        .shopctl()
        .args(["logs", "local", "app-9"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown component `app-9`"))
        .stderr(predicate::str::contains("pg-1"));

    // A supervisor killed outright takes its children along; the next `up` clears what
    // they left (postmasters) and starts afresh.
    let before = state(&project);
    unsafe {
        libc::kill(
            before["supervisor_pid"].as_i64().unwrap() as i32,
            libc::SIGKILL,
        )
    };
    let children: Vec<i64> = before["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pid"].as_i64())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while children.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "children outlived the supervisor"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    project
        .shopctl()
        .args(["up", "local"])
        .timeout(Duration::from_secs(240))
        .assert()
        .success()
        .stderr(predicate::str::contains("local: up and ready in"));

    // Down asks first; then stops every process and deletes the state.
    project
        .shopctl()
        .args(["down", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to take down local without --yes",
        ));
    let last = state(&project);
    let mut pids: Vec<i64> = last["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pid"].as_i64())
        .collect();
    pids.push(last["supervisor_pid"].as_i64().unwrap());
    assert!(
        pids.iter().all(|p| alive(*p)),
        "down without --yes stopped something"
    );
    project
        .shopctl()
        .args(["down", "local", "--yes", "--purge"])
        .timeout(Duration::from_secs(150))
        .assert()
        .success()
        .stderr(predicate::str::contains("stopped every component"));
    let still: Vec<&i64> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(still.is_empty(), "still alive after down: {still:?}");
    assert!(!project.path().join(".shopctl/local").exists());
    assert!(TcpStream::connect(("127.0.0.1", http_port)).is_err());
}

/// Every fault under the workload through the public API and HAProxy, on the stack `up local`
/// started: safety verdicts (no acknowledged write lost, one primary, convergence, rejoin,
/// shop invariants, 503 with Retry-After and never a 500) must all pass. The outage
/// thresholds are reported; a 2-core CI machine running other work is not the benchmark
/// (docs/benchmarks.md is), so they are held to twice the target here.
#[test]
fn failover_test_all_through_up_local_loses_nothing() {
    let (_one, project) = new_stack();
    let _guard = DownOnDrop(&project);
    project
        .shopctl()
        .args(["up", "local"])
        .timeout(Duration::from_secs(240))
        .assert()
        .success();

    let started = Instant::now();
    let out = project
        .shopctl()
        .args(["failover-test", "local", "--mode", "all", "--yes", "--json"])
        .timeout(Duration::from_secs(900))
        .output()
        .unwrap();
    eprintln!(
        "failover-test local --mode all: {:.0} s\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON outcome ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let runs = outcome["runs"].as_array().unwrap();
    let modes: Vec<&str> = runs.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(
        modes,
        ["switchover", "kill-postgres", "kill-node", "freeze-node"]
    );
    let mut failures = Vec::new();
    for run in runs {
        let mode = run["mode"].as_str().unwrap();
        let dir = Path::new(run["dir"].as_str().unwrap());
        for file in ["report.json", "report.md", "timeline.svg"] {
            assert!(dir.join(file).is_file(), "{mode}: no {file}");
        }
        for check in run["checks"].as_array().unwrap() {
            let name = check["name"].as_str().unwrap();
            eprintln!(
                "{mode:>14} {} {name}: {}",
                if check["passed"] == true {
                    "ok  "
                } else {
                    "FAIL"
                },
                check["detail"]
            );
            if check["passed"] != true && name != "write outage within threshold" {
                failures.push(format!("{mode}: {name}: {}", check["detail"]));
            }
        }
        let outage = run["measures"]["write_outage_ms"].as_u64().unwrap();
        let threshold = run["threshold_ms"].as_u64().unwrap();
        if outage > 2 * threshold {
            failures.push(format!(
                "{mode}: write outage {outage} ms > 2 x {threshold} ms"
            ));
        }
        assert_eq!(run["measures"]["dual_primary_ticks"], 0, "{mode}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The exit code agrees with the verdicts.
    assert_eq!(
        out.status.success(),
        outcome["passed"] == true,
        "exit code and verdicts disagree"
    );
    project
        .shopctl()
        .args(["down", "local", "--yes", "--purge"])
        .timeout(Duration::from_secs(150))
        .assert()
        .success();
}

/// An app whose migrations fail: `up` stops waiting after three failed attempts, names
/// the step and shows its log, instead of waiting out its whole deadline.
#[test]
fn up_stops_waiting_when_the_database_preparation_keeps_failing() {
    let (_one, project) = new_stack();
    let _guard = DownOnDrop(&project);
    let started = Instant::now();
    project
        .shopctl()
        .args(["up", "local", "--app-bin", "/bin/false"])
        .timeout(Duration::from_secs(240))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "migrate exited 3 times while starting",
        ))
        .stderr(predicate::str::contains(
            "`app migrate` failed (exit status: 1)",
        ))
        .stderr(predicate::str::contains("shopctl logs local migrate"));
    let waited = started.elapsed();
    eprintln!(
        "up with failing migrations gave up after {:.1} s",
        waited.as_secs_f64()
    );
    assert!(waited < Duration::from_secs(120), "waited {waited:?}");
    project
        .shopctl()
        .args(["down", "local", "--yes", "--purge"])
        .timeout(Duration::from_secs(150))
        .assert()
        .success();
}

#[test]
fn a_duplicate_local_port_names_its_key_and_line() {
    let project = Project::new();
    project.edit("local", "redis = 6379", "redis = 8080");
    let line = project
        .env_text("local")
        .lines()
        .position(|l| l.starts_with("redis = 8080"))
        .unwrap()
        + 1;
    project
        .shopctl()
        .args(["up", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "environments/local.toml:{line}:"
        )))
        .stderr(predicate::str::contains(
            "local.ports.redis: port 8080 is already used by local.ports.http",
        ));
}

#[test]
fn ranges_that_overlap_and_unknown_keys_are_refused() {
    let project = Project::new();
    // app-1 and app-2 take 8101 and 8102: a postgres range starting at 8102 collides.
    project.edit("local", "postgres = 5441", "postgres = 8102");
    project
        .shopctl()
        .args(["status", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "local.ports.postgres: port 8102 is already used by local.ports.app",
        ));
    let project = Project::new();
    project.edit(
        "local",
        "etcd_members = 3",
        "etcd_members = 3\netcd_member = 3",
    );
    project
        .shopctl()
        .args(["status", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown field `etcd_member`"));
}
