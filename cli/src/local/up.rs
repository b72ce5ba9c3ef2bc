//! `shopctl up local`: prepare the state directory (secrets, rendered configuration, data
//! directories), start the supervisor unless one runs, and wait until every component
//! answers its readiness probe.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::components::{PATRONI_WAKE_FILE, SMTP_SINK};
use super::control;
use super::ready;
use super::secrets::Secrets;
use super::supervisor::postgres_account;
use super::tools::Tools;
use super::topology::Topology;

/// How long `up` waits for every component (first start: initdb, replicas cloned,
/// migrations, seed).
const READY_WITHIN: Duration = Duration::from_secs(180);

/// A component that exits this often while `up` waits is crash-looping: `up` stops waiting
/// and shows why, instead of waiting out READY_WITHIN.
const CRASH_LOOP_RESTARTS: u32 = 3;

pub struct Outcome {
    pub reused: bool,
    pub elapsed: Duration,
}

pub fn run(
    topology: &Topology,
    templates_dir: &Path,
    project_root: &Path,
    app_bin: Option<&Path>,
) -> Result<Outcome> {
    let started = Instant::now();
    let tools = Tools::locate()?;
    let app = super::tools::app_binary(app_bin)?;
    let socket = topology.supervisor_socket();
    let reused = match control::running_supervisor(&socket) {
        Some(pid) => {
            eprintln!(
                "{}: supervisor {pid} already running; reusing it",
                topology.env
            );
            true
        }
        None => {
            // A fresh supervisor starts fresh processes: nothing of an earlier run (one
            // whose supervisor was killed) may hold a port or a data directory.
            let killed = super::down::kill_leftovers(topology);
            if killed > 0 {
                eprintln!(
                    "{}: killed {killed} processes left from an earlier run",
                    topology.env
                );
            }
            prepare(topology, templates_dir, &app, &tools)?;
            start_supervisor(topology, project_root, &app)?;
            false
        }
    };
    wait_ready(topology, &tools)?;
    Ok(Outcome {
        reused,
        elapsed: started.elapsed(),
    })
}

/// Directories, secrets, rendered configuration and static files.
fn prepare(topology: &Topology, templates_dir: &Path, app: &Path, tools: &Tools) -> Result<()> {
    let dir = &topology.state_dir;
    for sub in [
        "conf", "logs", "run", "reports", "static", "redis", "kafka", "smtp", "rabbitmq",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("nginx").join(sub))?;
    }
    let secrets_file = topology.secrets_file();
    Secrets::ensure(&secrets_file)?;
    let tree = super::render::render(templates_dir, topology, &tools.pg_bin)?;
    crate::render::write(&tree, &topology.conf_dir())?;
    std::fs::write(
        topology.conf_dir().join(PATRONI_WAKE_FILE),
        super::components::PATRONI_WAKE,
    )?;
    std::fs::write(dir.join("smtp/smtp_sink.py"), SMTP_SINK)?;
    std::fs::write(
        dir.join("rabbitmq/rabbitmq.conf"),
        format!(
            "listeners.tcp.default = 127.0.0.1:{}\n\
             # Small machines: do not stop publishers for lack of disk space.\n\
             disk_free_limit.absolute = 1MB\n",
            topology.ports.amqp
        ),
    )?;
    std::fs::write(dir.join("rabbitmq/enabled_plugins"), "[].\n")?;
    static_files(topology, app)?;
    let account = postgres_account();
    if let Some((uid, _)) = account {
        reachable_by_postgres(dir, uid)?;
    }
    for pg in &topology.pg {
        std::fs::create_dir_all(&pg.dir)?;
        // PostgreSQL insists on a private data directory owned by the account it runs as.
        std::fs::set_permissions(&pg.dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&pg.dir, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to postgres", pg.dir.display()))?;
        }
    }
    Ok(())
}

/// The postgres account must traverse every directory above the state directory.
fn reachable_by_postgres(dir: &Path, uid: u32) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let traversable = mode & 0o001 != 0
            || (std::os::unix::fs::MetadataExt::uid(&meta) == uid && mode & 0o100 != 0);
        if !traversable {
            bail!(
                "{} is not searchable by the postgres account, which Patroni and PostgreSQL run as\n  hint: chmod o+x {}",
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// What nginx serves at /static/: an index page and the API's OpenAPI document.
fn static_files(topology: &Topology, app: &Path) -> Result<()> {
    let dir = topology.static_dir();
    let openapi = Command::new(app)
        .arg("openapi")
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} openapi", app.display()))?;
    if openapi.status.success() {
        std::fs::write(dir.join("openapi.json"), &openapi.stdout)?;
    }
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>shop (local)</title></head>\n\
         <body><h1>shop (local)</h1>\n<p>The API is served at <code>/</code>; its description is \
         <a href=\"/static/openapi.json\">/static/openapi.json</a>.</p></body></html>\n",
    )?;
    Ok(())
}

fn start_supervisor(topology: &Topology, project_root: &Path, app: &Path) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(topology.log_file("supervisor"))?;
    let exe = std::env::current_exe().context("cannot find shopctl's own executable")?;
    let mut command = Command::new(exe);
    command
        .arg("-C")
        .arg(project_root)
        .args(["supervise", &topology.env, "--app-bin"])
        .arg(app)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe. Its own session: the supervisor outlives this
    // command and the terminal's Ctrl-C.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start the supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while control::running_supervisor(&topology.supervisor_socket()).is_none() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the supervisor exited ({status}) at once; see {}",
                topology.log_file("supervisor").display()
            );
        }
        if Instant::now() > deadline {
            bail!("the supervisor did not answer on its socket within 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Check {
    label: String,
    probe: Box<dyn Fn() -> bool + Send + Sync>,
}

fn checks(t: &Topology, tools: &Tools) -> Result<Vec<Check>> {
    let secrets = t.secrets()?;
    let mut checks = Vec::new();
    let mut add = |label: String, probe: Box<dyn Fn() -> bool + Send + Sync>| {
        checks.push(Check { label, probe })
    };
    for e in &t.etcd {
        let port = e.client_port;
        add(
            format!("{} /health", e.name),
            Box::new(move || ready::etcd(port)),
        );
    }
    let rest: Vec<u16> = t.pg.iter().map(|p| p.rest_port).collect();
    let r = rest.clone();
    add(
        "postgres leader (Patroni /leader)".into(),
        Box::new(move || r.iter().filter(|p| ready::http_ok(**p, "/leader")).count() == 1),
    );
    let want = rest.len() - 1;
    let want_sync = (t.patroni.synchronous_node_count as usize).min(want);
    let topology = t.clone();
    add(
        format!("postgres {want} streaming replicas, {want_sync} synchronous (Patroni /cluster)"),
        Box::new(move || {
            let members = super::status::cluster(&topology);
            let streaming = members
                .iter()
                .filter(|m| m.role != "leader" && m.state == "streaming")
                .count();
            let sync = members.iter().filter(|m| m.role == "sync_standby").count();
            streaming == want && sync == want_sync
        }),
    );
    for (label, port) in [
        ("haproxy write port", t.ports.haproxy_write),
        ("haproxy read port", t.ports.haproxy_read),
    ] {
        let (psql, password) = (tools.psql.clone(), secrets.postgres_password.clone());
        add(
            label.into(),
            Box::new(move || ready::query(&psql, port, "postgres", &password, "postgres")),
        );
    }
    let p = t.ports.clone();
    add("redis PING".into(), Box::new(move || ready::redis(p.redis)));
    add(
        "rabbitmq AMQP".into(),
        Box::new(move || ready::amqp(p.amqp)),
    );
    add(
        "kafka (tansu)".into(),
        Box::new(move || ready::tcp(p.kafka)),
    );
    add(
        "smtp greeting".into(),
        Box::new(move || ready::smtp(p.smtp)),
    );
    for w in &t.workers {
        let port = w.port;
        add(
            format!("{} /healthz", w.name),
            Box::new(move || ready::http_ok(port, "/healthz")),
        );
    }
    for a in &t.apps {
        let port = a.port;
        add(
            format!("{} /readyz", a.name),
            Box::new(move || ready::http_ok(port, "/readyz")),
        );
    }
    let http = t.ports.http;
    add(
        "nginx /readyz".into(),
        Box::new(move || ready::http_ok(http, "/readyz")),
    );
    add(
        "nginx /static/".into(),
        Box::new(move || ready::http_ok(http, "/static/index.html")),
    );
    Ok(checks)
}

/// Polls every check in parallel until all pass; a spinner each on a terminal.
fn wait_ready(t: &Topology, tools: &Tools) -> Result<()> {
    let checks = checks(t, tools)?;
    let terminal = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    if !terminal {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("valid template");
    let deadline = Instant::now() + READY_WITHIN;
    let done: Vec<AtomicBool> = checks.iter().map(|_| AtomicBool::new(false)).collect();
    let socket = t.supervisor_socket();
    let crash_loop = CrashLoop::watch(t);
    std::thread::scope(|scope| {
        for (check, done) in checks.iter().zip(&done) {
            let crash_loop = &crash_loop;
            let bar = multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_message(format!("{} ...", check.label));
            let socket = &socket;
            scope.spawn(move || {
                let since = Instant::now();
                while Instant::now() < deadline {
                    if (check.probe)() {
                        done.store(true, Ordering::SeqCst);
                        bar.finish_with_message(format!(
                            "{} ready ({:.1} s)",
                            check.label,
                            since.elapsed().as_secs_f64()
                        ));
                        return;
                    }
                    if control::running_supervisor(socket).is_none() || crash_loop.found() {
                        break;
                    }
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                }
                bar.abandon_with_message(format!("{} NOT ready", check.label));
            });
        }
    });
    let failed: Vec<&str> = checks
        .iter()
        .zip(&done)
        .filter(|(_, d)| !d.load(Ordering::SeqCst))
        .map(|(c, _)| c.label.as_str())
        .collect();
    if let Some(looping) = crash_loop.culprit() {
        bail!(
            "{} exited {} times while starting (last: {}); its log ends:\n{}\n  hint: `shopctl logs {} {}`; `shopctl down {} --yes` stops the rest",
            looping.name,
            looping.restarts,
            looping.last_exit.as_deref().unwrap_or("?"),
            log_tail(&t.log_file(&looping.name), 8),
            t.env,
            looping.name,
            t.env
        );
    }
    if !failed.is_empty() {
        bail!(
            "not ready within {}s: {}\n  hint: `shopctl status {}` and `shopctl logs {} <component>` (logs in {})",
            READY_WITHIN.as_secs(),
            failed.join(", "),
            t.env,
            t.env,
            t.logs_dir().display()
        );
    }
    Ok(())
}

/// Watches the supervisor's state while `up` waits: the first component that has exited
/// CRASH_LOOP_RESTARTS times more than when `up` began.
struct CrashLoop {
    culprit: std::sync::Arc<std::sync::Mutex<Option<control::ComponentState>>>,
}

impl CrashLoop {
    fn watch(t: &Topology) -> CrashLoop {
        let culprit = std::sync::Arc::new(std::sync::Mutex::new(None));
        let file = t.state_file();
        let earlier = control::read_state(&file);
        let prepare_before = earlier.as_ref().map_or(0, |s| s.prepare.failures);
        let before: std::collections::HashMap<String, u32> = earlier
            .map(|s| {
                s.components
                    .into_iter()
                    .map(|c| (c.name, c.restarts))
                    .collect()
            })
            .unwrap_or_default();
        let found = culprit.clone();
        // Ends with `up` (a detached thread that only reads a file).
        std::thread::spawn(move || {
            let deadline = Instant::now() + READY_WITHIN;
            while Instant::now() < deadline {
                if let Some(state) = control::read_state(&file) {
                    let prepare = &state.prepare;
                    let looping = state
                        .components
                        .iter()
                        .find(|c| {
                            c.restarts
                                >= before.get(&c.name).copied().unwrap_or(0) + CRASH_LOOP_RESTARTS
                        })
                        .cloned()
                        // The database preparation keeps failing: shown like a component,
                        // named by its failing step, whose log is `<step>.log`.
                        .or_else(|| {
                            (prepare.failures >= prepare_before + CRASH_LOOP_RESTARTS).then(|| {
                                control::ComponentState {
                                    name: prepare.step.clone().unwrap_or("database".into()),
                                    pid: None,
                                    state: control::RunState::Restarting,
                                    restarts: prepare.failures,
                                    started_at: None,
                                    last_exit: prepare.last_error.clone(),
                                }
                            })
                        });
                    if let Some(c) = looping {
                        *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        CrashLoop { culprit }
    }

    fn culprit(&self) -> Option<control::ComponentState> {
        self.culprit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn found(&self) -> bool {
        self.culprit().is_some()
    }
}

/// The last `lines` lines of a log, indented, or a note that there is none.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => format!("    ({} is empty)", path.display()),
        Ok(text) => super::logs::last_lines(&text, lines)
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(_) => format!("    (no log at {})", path.display()),
    }
}
