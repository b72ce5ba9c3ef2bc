//! `shopctl supervise local`: the process supervisor of the local topology. It starts every
//! component in dependency stages, restarts any that exits (backoff doubling from 0.5 s,
//! capped at 10 s, reset after 30 s of running), records each change in `run/state.json`
//! (atomically) and `run/events.jsonl`, and obeys `hold` / `release` / `stop` on its socket.
//!
//! It is only a supervisor: leadership, replication and failover belong to Patroni and etcd.
//! A SIGSTOPped child is not dead: only `waitpid` exits count (no WUNTRACED). Children get
//! PR_SET_PDEATHSIG, so they die with the supervisor if it is killed.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{watch, Notify};

use super::components::{self, Spec, Stage};
use super::control::{now_rfc3339, ComponentState, PrepareState, RunState, StateFile};
use super::secrets::Secrets;
use super::tools::Tools;
use super::topology::{Topology, APP_DB, APP_DB_USER};

/// What a component's runner is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Its stage has not started yet.
    Pending,
    Run,
    /// Do not restart it; leave it running if it runs.
    Hold,
    Stop,
}

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A run this long counts as healthy: the next crash restarts quickly again.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

struct Shared {
    topology: Topology,
    secrets: Secrets,
    tools: Tools,
    app: PathBuf,
    specs: Vec<Spec>,
    states: Mutex<Vec<ComponentState>>,
    prepare: Mutex<PrepareState>,
    modes: Vec<watch::Sender<Mode>>,
    events: Mutex<File>,
    postgres_account: Option<(u32, u32)>,
    stopping: AtomicBool,
    stop: Notify,
}

/// The uid and gid of the `postgres` account, when running as root (PostgreSQL refuses
/// to run as root, so Patroni runs as that account).
pub fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam returns a pointer into static storage
    // that is read at once, on this thread.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

pub fn run(topology: Topology, app: PathBuf) -> Result<()> {
    let secrets = topology.secrets()?;
    let tools = Tools::locate()?;
    let specs = components::specs(&topology, &secrets, &tools, &app);
    std::fs::create_dir_all(topology.run_dir())?;
    let events = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(topology.events_file())
        .context("cannot open the events file")?;
    let states = specs
        .iter()
        .map(|s| ComponentState {
            name: s.name.clone(),
            pid: None,
            state: RunState::Starting,
            restarts: 0,
            started_at: None,
            last_exit: None,
        })
        .collect();
    let modes = specs
        .iter()
        .map(|_| watch::channel(Mode::Pending).0)
        .collect();
    let shared = Arc::new(Shared {
        postgres_account: postgres_account(),
        topology,
        secrets,
        tools,
        app,
        specs,
        states: Mutex::new(states),
        prepare: Mutex::new(PrepareState::default()),
        modes,
        events: Mutex::new(events),
        stopping: AtomicBool::new(false),
        stop: Notify::new(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(supervise(shared))
}

async fn supervise(shared: Arc<Shared>) -> Result<()> {
    let socket = shared.topology.supervisor_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    shared.write_state();
    log(&format!("supervisor {} started", std::process::id()));
    let runners: Vec<_> = (0..shared.specs.len())
        .map(|i| tokio::spawn(runner(shared.clone(), i)))
        .collect();
    let orchestrator = tokio::spawn(orchestrate(shared.clone()));
    let server = tokio::spawn(serve(shared.clone(), listener));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = shared.stop.notified() => log("stop requested on the socket"),
        _ = term.recv() => log("SIGTERM"),
        _ = tokio::signal::ctrl_c() => log("SIGINT"),
    }
    shared.stopping.store(true, Ordering::SeqCst);
    orchestrator.abort();
    // Reverse dependency order: the app tier, then the databases, then the rest.
    for stage in [Stage::App, Stage::Database, Stage::Base] {
        for (i, spec) in shared.specs.iter().enumerate() {
            if spec.stage == stage {
                shared.modes[i].send_replace(Mode::Stop);
            }
        }
        for (i, runner) in runners.iter().enumerate() {
            if shared.specs[i].stage == stage {
                while !runner.is_finished() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    server.abort();
    leftovers(&shared);
    shared.write_state();
    let _ = std::fs::remove_file(&socket);
    log("supervisor stopped everything; exiting");
    Ok(())
}

/// What may outlive its parent: the epmd RabbitMQ started, and a postmaster whose Patroni
/// was killed.
fn leftovers(shared: &Shared) {
    if let Some(epmd) = &shared.tools.epmd {
        let _ = std::process::Command::new(epmd)
            .args(["-port", &shared.topology.ports.epmd.to_string(), "-kill"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for pg in &shared.topology.pg {
        if let Some(pid) = postmaster_pid(&pg.data_dir) {
            log(&format!(
                "{}: stopping a leftover postmaster {pid}",
                pg.name
            ));
            // SIGQUIT: immediate shutdown; SIGKILL if it lingers.
            unsafe { libc::kill(pid as i32, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while super::control::alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// The running postmaster of a data directory (first line of `postmaster.pid`).
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.contains("postgres").then_some(pid)
}

fn log(message: &str) {
    // stderr is the supervisor's log file.
    eprintln!("{} {message}", now_rfc3339());
}

impl Shared {
    fn index(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    fn update(&self, i: usize, change: impl FnOnce(&mut ComponentState)) {
        let mut states = self.states.lock().expect("state lock");
        change(&mut states[i]);
        self.write_locked(&states);
    }

    /// Records a failed preparation in state.json, for `up` to see it keep failing.
    fn prepare_failed(&self, error: &anyhow::Error) {
        {
            let mut prepare = self.prepare.lock().expect("prepare lock");
            prepare.failures += 1;
            prepare.step = error
                .downcast_ref::<PrepareFailed>()
                .map(|f| f.step.to_string());
            prepare.last_error = Some(format!("{error:#}"));
        }
        self.write_state();
    }

    fn write_state(&self) {
        let states = self.states.lock().expect("state lock");
        self.write_locked(&states);
    }

    /// Writes state.json through a temporary file and a rename: readers never see half.
    fn write_locked(&self, states: &[ComponentState]) {
        let file = StateFile {
            supervisor_pid: std::process::id(),
            updated_at: now_rfc3339(),
            components: states.to_vec(),
            prepare: self.prepare.lock().expect("prepare lock").clone(),
        };
        let target = self.topology.state_file();
        let partial = target.with_extension("json.partial");
        let text = serde_json::to_string_pretty(&file).expect("state serializes");
        if std::fs::write(&partial, text).is_ok() {
            let _ = std::fs::rename(&partial, &target);
        }
    }

    fn event(&self, component: &str, event: &str, detail: Value) {
        let line =
            json!({"at": now_rfc3339(), "component": component, "event": event, "detail": detail});
        log(&format!("{component}: {event} {detail}"));
        let mut file = self.events.lock().expect("events lock");
        let _ = writeln!(file, "{line}");
    }
}

async fn orchestrate(shared: Arc<Shared>) {
    let t = &shared.topology;
    start_stage(&shared, Stage::Base);
    let etcd: Vec<u16> = t.etcd.iter().map(|e| e.client_port).collect();
    wait_until(&shared, "etcd quorum", move || {
        etcd.iter().all(|p| super::ready::etcd(*p))
    })
    .await;
    start_stage(&shared, Stage::Database);
    let (psql, port, password) = (
        shared.tools.psql.clone(),
        t.ports.haproxy_write,
        shared.secrets.postgres_password.clone(),
    );
    wait_until(&shared, "the leader through HAProxy", move || {
        super::ready::query(&psql, port, "postgres", &password, "postgres")
    })
    .await;
    loop {
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || prepare(&s)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                log(&format!(
                    "preparing the database failed (retrying in 3 s): {e:#}"
                ));
                shared.prepare_failed(&e);
            }
            Err(e) => log(&format!("preparing the database panicked: {e}")),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    start_stage(&shared, Stage::App);
    log("every stage started");
}

fn start_stage(shared: &Shared, stage: Stage) {
    log(&format!("starting stage {stage:?}"));
    for (i, spec) in shared.specs.iter().enumerate() {
        if spec.stage == stage {
            shared.modes[i].send_if_modified(|m| {
                let pending = *m == Mode::Pending;
                if pending {
                    *m = Mode::Run;
                }
                pending
            });
        }
    }
}

async fn wait_until<F: Fn() -> bool + Send + Sync + 'static>(
    shared: &Shared,
    what: &str,
    probe: F,
) {
    log(&format!("waiting for {what}"));
    let probe = Arc::new(probe);
    loop {
        let p = probe.clone();
        if tokio::task::spawn_blocking(move || p())
            .await
            .unwrap_or(false)
        {
            log(&format!("{what}: ready"));
            return;
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Once per state directory: the app's role and database, migrations and the demo seed.
fn prepare(shared: &Shared) -> Result<()> {
    let t = &shared.topology;
    let marker = t.seeded_marker();
    if marker.exists() {
        return Ok(());
    }
    // The password travels on stdin, never in arguments.
    let sql = format!(
        "SELECT 'CREATE ROLE {APP_DB_USER} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_DB_USER}')\\gexec\n\
         ALTER ROLE {APP_DB_USER} PASSWORD '{}';\n\
         SELECT 'CREATE DATABASE {APP_DB} OWNER {APP_DB_USER}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{APP_DB}')\\gexec\n\
         \\c {APP_DB}\n\
         CREATE EXTENSION IF NOT EXISTS pg_trgm;\n",
        shared.secrets.app_db_password
    );
    let mut psql = std::process::Command::new(&shared.tools.psql)
        .args(["-X", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            t.ports.haproxy_write
        ))
        .env("PGPASSWORD", &shared.secrets.postgres_password)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run psql")?;
    psql.stdin
        .take()
        .expect("piped")
        .write_all(sql.as_bytes())?;
    let out = psql.wait_with_output()?;
    std::fs::write(t.log_file("database"), &out.stderr)?;
    if !out.status.success() {
        return Err(PrepareFailed {
            step: "database",
            message: format!(
                "creating the app's role and database: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
        .into());
    }
    let env = components::app_env(t, &shared.secrets);
    for (what, args) in [
        ("migrate", vec!["migrate"]),
        ("seed", vec!["seed", "--products", "200"]),
    ] {
        let log_file = File::create(t.log_file(what))?;
        let mut command = std::process::Command::new(&shared.app);
        if what == "seed" {
            command.env("APP_SEED_PASSWORD", &shared.secrets.seed_password);
        }
        let status = command
            .args(&args)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .status()
            .with_context(|| format!("cannot run {} {what}", shared.app.display()))?;
        if !status.success() {
            return Err(PrepareFailed {
                step: what,
                message: format!(
                    "`app {what}` failed ({status}); see {}",
                    t.log_file(what).display()
                ),
            }
            .into());
        }
        shared.event(what, "done", Value::Null);
    }
    std::fs::write(&marker, now_rfc3339())?;
    Ok(())
}

fn spawn(shared: &Shared, spec: &Spec) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(shared.topology.log_file(&spec.name))?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().cloned())
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    if spec.as_postgres {
        if let Some((uid, gid)) = shared.postgres_account {
            command
                .uid(uid)
                .gid(gid)
                .env("HOME", &spec.cwd)
                .env("USER", "postgres");
        }
    }
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. It runs
    // after the uid change (which would otherwise reset the parent-death signal).
    // Its own process group too, so that what it leaves behind (nginx workers whose master
    // was killed) can be killed with it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    command.spawn()
}

/// Kills what is left in an exited component's process group (pgid = its pid). Patroni
/// starts PostgreSQL in a session of its own, so a postmaster outlives its Patroni here as
/// it does in production.
fn kill_group(pid: u32) {
    // SAFETY: a negative pid signals a process group; ESRCH when it is empty is fine.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    let what = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "exited".to_owned(),
        },
        Err(e) => format!("lost ({e})"),
    };
    format!("{what} at {}", now_rfc3339())
}

async fn terminate(child: &mut tokio::process::Child, pid: u32, grace: Duration) {
    // SIGCONT too: a SIGSTOPped child cannot act on SIGTERM.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        libc::kill(pid as i32, libc::SIGCONT);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

async fn runner(shared: Arc<Shared>, i: usize) {
    let spec = shared.specs[i].clone();
    let mut rx = shared.modes[i].subscribe();
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        // Until asked to run.
        loop {
            let mode = *rx.borrow_and_update();
            match mode {
                Mode::Run => break,
                Mode::Stop => {
                    shared.update(i, |c| {
                        c.state = RunState::Stopped;
                        c.pid = None;
                    });
                    return;
                }
                Mode::Hold => shared.update(i, |c| c.state = RunState::Held),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
        if !first {
            shared.update(i, |c| c.restarts += 1);
            shared.event(&spec.name, "restart", Value::Null);
        }
        first = false;
        let mut child = match spawn(&shared, &spec) {
            Ok(child) => child,
            Err(e) => {
                let failure = format!("spawn failed ({e}) at {}", now_rfc3339());
                shared.event(&spec.name, "spawn_failed", json!(e.to_string()));
                shared.update(i, |c| {
                    c.state = RunState::Restarting;
                    c.last_exit = Some(failure);
                });
                back_off(&mut rx, &mut backoff).await;
                continue;
            }
        };
        let pid = child.id().unwrap_or_default();
        let started = Instant::now();
        let held = *rx.borrow() == Mode::Hold;
        shared.update(i, |c| {
            c.state = if held {
                RunState::Held
            } else {
                RunState::Running
            };
            c.pid = Some(pid);
            c.started_at = Some(now_rfc3339());
        });
        shared.event(&spec.name, "start", json!({"pid": pid}));
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                changed = rx.changed() => {
                    let mode = if changed.is_err() { Mode::Stop } else { *rx.borrow_and_update() };
                    match mode {
                        Mode::Stop => {
                            terminate(&mut child, pid, Duration::from_secs(spec.grace_secs)).await;
                            kill_group(pid);
                            let exit = format!("stopped at {}", now_rfc3339());
                            shared.event(&spec.name, "stop", json!({"pid": pid}));
                            shared.update(i, |c| {
                                c.state = RunState::Stopped;
                                c.pid = None;
                                c.last_exit = Some(exit);
                            });
                            return;
                        }
                        Mode::Hold => {
                            shared.event(&spec.name, "hold", json!({"pid": pid}));
                            shared.update(i, |c| c.state = RunState::Held);
                        }
                        Mode::Run => {
                            shared.event(&spec.name, "release", json!({"pid": pid}));
                            shared.update(i, |c| c.state = RunState::Running);
                        }
                        Mode::Pending => {}
                    }
                }
            }
        };
        let exit = describe(status);
        kill_group(pid);
        shared.event(&spec.name, "exit", json!({"pid": pid, "exit": exit}));
        if started.elapsed() > HEALTHY_RUN {
            backoff = BACKOFF_START;
        }
        let mode = *rx.borrow_and_update();
        shared.update(i, |c| {
            c.pid = None;
            c.last_exit = Some(exit);
            c.state = match mode {
                Mode::Hold => RunState::Held,
                Mode::Stop => RunState::Stopped,
                _ => RunState::Restarting,
            };
        });
        match mode {
            Mode::Stop => return,
            Mode::Hold => continue,
            _ => back_off(&mut rx, &mut backoff).await,
        }
    }
}

/// Sleeps the backoff (cut short when the mode changes), then doubles it up to the cap.
async fn back_off(rx: &mut watch::Receiver<Mode>, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = rx.changed() => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_CAP);
}

async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            let read =
                tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
            let answer = match read {
                Ok(Ok(_)) => handle(&shared, &line),
                _ => json!({"ok": false, "error": "no request line"}),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            let _ = write.shutdown().await;
        });
    }
}

fn handle(shared: &Shared, line: &str) -> Value {
    let Ok(request) = serde_json::from_str::<Value>(line) else {
        return json!({"ok": false, "error": "not a JSON line"});
    };
    let op = request["op"].as_str().unwrap_or_default();
    let component = || -> Result<usize, Value> {
        let name = request["component"].as_str().unwrap_or_default();
        shared.index(name).ok_or_else(|| {
            let names: Vec<&str> = shared.specs.iter().map(|s| s.name.as_str()).collect();
            json!({"ok": false, "error": format!("unknown component `{name}`; valid: {}", names.join(", "))})
        })
    };
    match op {
        "ping" => json!({"ok": true, "pid": std::process::id()}),
        "hold" | "release" => {
            let i = match component() {
                Ok(i) => i,
                Err(answer) => return answer,
            };
            let mode = if op == "hold" { Mode::Hold } else { Mode::Run };
            shared.modes[i].send_if_modified(|m| {
                let change = *m != Mode::Stop && *m != mode;
                if change {
                    *m = mode;
                }
                change
            });
            json!({"ok": true, "component": shared.specs[i].name, "op": op})
        }
        "stop" => {
            shared.stop.notify_one();
            json!({"ok": true, "op": "stop"})
        }
        _ => {
            json!({"ok": false, "error": format!("unknown op `{op}`; valid: hold, release, stop, ping")})
        }
    }
}

/// A preparation step that failed (its log is `<step>.log`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct PrepareFailed {
    step: &'static str,
    message: String,
}
