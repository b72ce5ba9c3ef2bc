//! PostgreSQL under Patroni, run from exactly what staging renders: the ConfigMap's
//! `patroni.yml` and `post-bootstrap.sh`, the StatefulSet container's command and literal
//! environment, with Debian's Patroni, PostgreSQL 15 and etcd on loopback. What has no local
//! equivalent is substituted in one place, [`substitute`], each substitution said there.
//!
//! It asserts behaviour: three members bootstrap (a leader and two streaming synchronous
//! replicas); `post_bootstrap` created the `shop` role and database and a client logs in as
//! `shop` over TCP; Patroni's REST API refuses write requests without its credentials and
//! takes them with; a switchover and a leader kill keep every acknowledged write; and when a
//! synchronous replica's node vanishes (its PostgreSQL stopped with SIGSTOP: nothing closes
//! its connections) commits resume within [`COMMIT_STALL_BOUND`].
//!
//! Everything it starts is killed when it ends, also on a panic; every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::manifests::{argv, Manifests};
use common::random_hex;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// When a synchronous replica's node vanishes, commits must resume within this: half of
/// PostgreSQL's default wal_sender_timeout (60 s), which alone would stall them a minute.
const COMMIT_STALL_BOUND: Duration = Duration::from_secs(30);

/// The keys `shopctl deploy` generates in the Secret the pods read (cli/src/deploy/secrets.rs,
/// whose unit test lists the same keys).
const SECRET_KEYS: [&str; 6] = [
    "PATRONI_SUPERUSER_PASSWORD",
    "PATRONI_REPLICATION_PASSWORD",
    "PATRONI_REWIND_PASSWORD",
    "PATRONI_RESTAPI_USERNAME",
    "PATRONI_RESTAPI_PASSWORD",
    "SHOP_DB_PASSWORD",
];

/// What staging renders for PostgreSQL, read back from the manifests.
struct Rendered {
    patroni_yml: String,
    post_bootstrap: String,
    /// The container's command and args.
    argv: Vec<String>,
    /// The container's `env` entries, in order (literal ones and references).
    env: Vec<Value>,
    /// Where the ConfigMap is mounted (`/etc/patroni`).
    config_mount: String,
    /// The Secret the container reads whole (`envFrom`).
    secret: String,
    replicas: usize,
    /// The VPC's CIDR, as pg_hba names the pods' network.
    vpc_cidr: String,
}

impl Rendered {
    fn of_staging(project: &common::Project) -> Rendered {
        let manifests = Manifests::render(project, "staging");
        let sts = manifests.get("StatefulSet", "shop-postgres");
        let container = sts.container("postgres");
        let spec = sts.pod_spec().unwrap();
        let config_volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == "shop-postgres")
            .expect("a volume of the ConfigMap shop-postgres")["name"]
            .clone();
        let config_mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == config_volume)
            .expect("the ConfigMap is mounted")["mountPath"]
            .as_str()
            .unwrap()
            .to_owned();
        let secrets: Vec<&str> = container["envFrom"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["secretRef"]["name"].as_str())
            .collect();
        assert_eq!(secrets.len(), 1, "one Secret read whole: {secrets:?}");
        let toml: toml::Table = toml::from_str(
            &std::fs::read_to_string(project.path().join("environments/staging.toml")).unwrap(),
        )
        .unwrap();
        Rendered {
            patroni_yml: manifests.config_file("shop-postgres", "patroni.yml"),
            post_bootstrap: manifests.config_file("shop-postgres", "post-bootstrap.sh"),
            argv: argv(container),
            env: container["env"].as_array().unwrap().clone(),
            config_mount,
            secret: secrets[0].to_owned(),
            replicas: sts.value["spec"]["replicas"].as_u64().unwrap() as usize,
            vpc_cidr: toml["network"]["vpc_cidr"].as_str().unwrap().to_owned(),
        }
    }
}

/// One member: what a pod has of its own.
struct Member {
    /// The pod's name (`metadata.name`), Patroni's member name.
    name: String,
    /// Stands in for the pod's IP.
    ip: String,
    pg_port: u16,
    rest_port: u16,
    /// Holds what the pod's volumes would: etc/ (the ConfigMap), pgdata/, run/, tmp/.
    dir: PathBuf,
}

impl Member {
    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }
    fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }
    fn rest(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.rest_port)
    }
    /// The shop's database on this member, over TCP with the `shop` password.
    fn shop_options(&self, password: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.ip)
            .port(self.pg_port)
            .username("shop")
            .password(password)
            .database("shop")
            .application_name("stateful-postgres-test")
            .disable_statement_logging()
    }
}

/// Replaces `from` by `to` in `text`, which must contain it exactly `times` times: a
/// template that no longer renders what a substitution expects fails here, by name.
fn replace(text: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        times,
        "the rendered text should contain `{from}` {times} time(s):\n{text}"
    );
    text.replace(from, to)
}

/// Expands `$(VAR)` as the kubelet does, from the variables defined before.
fn expand(value: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = value.to_owned();
    for (name, v) in defined {
        out = out.replace(&format!("$({name})"), v);
    }
    assert!(!out.contains("$("), "unresolved reference in `{value}`");
    out
}

/// Every substitution of rendered configuration by a local equivalent, and nothing else.
/// Returns the member's patroni.yml, its argv and its environment.
fn substitute(
    rendered: &Rendered,
    member: &Member,
    archive: &Path,
    etcd_port: u16,
    secrets: &BTreeMap<String, String>,
) -> (String, Vec<String>, BTreeMap<String, String>) {
    let bin_dir = common::postgres_bin_dir();
    let mount = rendered.config_mount.as_str();
    let data_dir = member.pgdata().join("pgroot/data");
    let mut yml = rendered.patroni_yml.clone();
    // Patroni's REST API listens on the pod's IP (0.0.0.0 in the pod) on a free port.
    yml = replace(
        &yml,
        "listen: 0.0.0.0:8008",
        &format!("listen: {}:{}", member.ip, member.rest_port),
        1,
    );
    // PostgreSQL listens on every address of the pod: its own loopback and its pod IP.
    // Members share this machine's loopback, so the pod's loopback is played by ::1 and its
    // IP by 127.0.0.1x; inter-member traffic then comes from 127.0.0.1 (the kernel's source
    // address on lo), so 127.0.0.0/8 plays the VPC below, and ::1, like the pod's
    // 127.0.0.1 on EKS, is outside it. Patroni connects over TCP to the first address when
    // not told to use the socket, as it connects to localhost in the pod.
    yml = replace(
        &yml,
        "listen: 0.0.0.0:5432",
        &format!("listen: '::1,{}:{}'", member.ip, member.pg_port),
        1,
    );
    // The VPC's CIDR in pg_hba: the loopback network the members' connections come from.
    yml = replace(&yml, &rendered.vpc_cidr, "127.0.0.0/8", 2);
    // Paths of the pod's volumes: the data volume, /tmp, the socket's emptyDir.
    yml = replace(
        &yml,
        "data_dir: /home/postgres/pgdata/pgroot/data",
        &format!("data_dir: {}", data_dir.display()),
        1,
    );
    yml = replace(
        &yml,
        "pgpass: /tmp/pgpass",
        &format!("pgpass: {}", member.tmp().join("pgpass").display()),
        1,
    );
    yml = replace(
        &yml,
        "unix_socket_directories: /var/run/postgresql",
        &format!("unix_socket_directories: {}", member.run().display()),
        1,
    );
    // The ConfigMap's mount.
    yml = replace(
        &yml,
        &format!("sh {mount}/post-bootstrap.sh"),
        &format!("sh {}/post-bootstrap.sh", member.etc().display()),
        1,
    );
    // Spilo's PostgreSQL binaries: Debian's.
    yml = replace(
        &yml,
        "bin_dir: /usr/lib/postgresql/15/bin",
        &format!("bin_dir: {}", bin_dir.display()),
        1,
    );
    // WAL-G and S3 (not installed here): a directory all members share, as the bucket.
    let archive = archive.display();
    yml = replace(
        &yml,
        "archive_command: wal-g wal-push %p",
        &format!("archive_command: test ! -f {archive}/%f && cp %p {archive}/%f"),
        1,
    );
    yml = replace(
        &yml,
        "restore_command: wal-g wal-fetch %f %p",
        &format!("restore_command: cp {archive}/%f %p"),
        1,
    );

    // The command: Debian's patroni, the config file where the ConfigMap is mounted.
    let command = rendered.argv.clone();
    assert_eq!(
        command[0], "patroni",
        "the container runs Patroni: {command:?}"
    );
    let config_arg = format!("{mount}/patroni.yml");
    assert_eq!(command[1..], [config_arg], "{command:?}");
    let command = vec![
        common::tool("patroni").display().to_string(),
        member.etc().join("patroni.yml").display().to_string(),
    ];

    // The environment, entry by entry as the kubelet builds it.
    let mut env = BTreeMap::new();
    for entry in &rendered.env {
        let name = entry["name"].as_str().unwrap().to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            expand(value, &env)
        } else if let Some(field) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            // The downward API.
            match field {
                "status.podIP" => member.ip.clone(),
                "metadata.name" => member.name.clone(),
                "metadata.namespace" => "shop".to_owned(),
                other => panic!("{name}: no local value for the field {other}"),
            }
        } else if let Some(secret) = entry["valueFrom"]["secretKeyRef"].as_object() {
            assert_eq!(secret["name"], rendered.secret.as_str(), "{name}");
            let key = secret["key"].as_str().unwrap();
            secrets
                .get(key)
                .unwrap_or_else(|| panic!("{name}: the deployer generates no {key}"))
                .clone()
        } else {
            panic!("{name}: an env entry this test does not know: {entry}");
        };
        env.insert(name, value);
    }
    // The Kubernetes DCS: etcd's v2 API (Debian's etcd 3.4 has no v3 gRPC gateway).
    env.retain(|k, _| !k.starts_with("PATRONI_KUBERNETES_"));
    env.insert(
        "PATRONI_ETCD_HOSTS".into(),
        format!("127.0.0.1:{etcd_port}"),
    );
    // The rendered ports in the connect addresses: this member's free ports.
    for (key, port, free) in [
        ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", 5432, member.pg_port),
        ("PATRONI_RESTAPI_CONNECT_ADDRESS", 8008, member.rest_port),
    ] {
        let value = env.get_mut(key).unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(*value, format!("{}:{port}", member.ip), "{key}");
        *value = format!("{}:{free}", member.ip);
    }
    // The pod's paths again, as the environment names them.
    for (key, path) in [("PGDATA", data_dir.clone()), ("PGHOST", member.run())] {
        let value = env.get_mut(key).unwrap_or_else(|| panic!("no {key}"));
        *value = path.display().to_string();
    }
    // The Secret, read whole (envFrom): generated values for every key the deployer makes.
    for (key, value) in secrets {
        env.entry(key.clone()).or_insert_with(|| value.clone());
    }
    // The image's PATH (PostgreSQL's programs, psql for post-bootstrap.sh) and HOME.
    env.insert(
        "PATH".into(),
        format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
    );
    env.insert("HOME".into(), member.dir.display().to_string());
    env.insert("LANG".into(), "C.UTF-8".into());
    (yml, command, env)
}

/// Everything the test started; killed when dropped (also on a panic).
struct Cluster {
    root: tempfile::TempDir,
    members: Vec<Member>,
    patroni: Vec<Option<Child>>,
    etcd: Child,
    secrets: BTreeMap<String, String>,
    http: reqwest::Client,
    started: Instant,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (member, patroni) in self.members.iter().zip(&mut self.patroni) {
            if let Some(child) = patroni {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Patroni starts the postmaster in a session of its own: kill it and its
            // children (stopped ones included).
            if let Some(pid) = postmaster_pid(member) {
                signal_postgres(pid, libc::SIGKILL);
            }
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if std::thread::panicking() {
            for member in &self.members {
                let log = std::fs::read_to_string(member.log()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "--- last lines of {}'s Patroni log:\n{}",
                    member.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

fn postmaster_pid(member: &Member) -> Option<i32> {
    std::fs::read_to_string(member.pgdata().join("pgroot/data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Signals a postmaster and its children: the whole of a member's PostgreSQL. (Each child
/// is a process group of its own: PostgreSQL calls setsid in every child.)
fn signal_postgres(postmaster: i32, signal: i32) {
    let children: Vec<i32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: i32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == postmaster).then_some(pid)
        })
        .collect();
    // SAFETY: kill has no memory preconditions; ESRCH for a process already gone is fine.
    unsafe {
        // The postmaster first, so that it does not react to its children's signals.
        libc::kill(postmaster, signal);
        for pid in children {
            libc::kill(pid, signal);
        }
    }
}

/// The `postgres` account (uid, gid): PostgreSQL runs as it, as in the pod, and peer
/// authentication on the socket depends on that name.
fn postgres_account() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; getpwnam/getpwuid results are read at once.
    unsafe {
        if libc::geteuid() != 0 {
            let pw = libc::getpwuid(libc::geteuid());
            let name = (!pw.is_null()).then(|| std::ffi::CStr::from_ptr((*pw).pw_name));
            assert!(
                name.is_some_and(|n| n.to_bytes() == b"postgres"),
                "PostgreSQL runs as the `postgres` account here as in the pod (peer \
                 authentication on its socket needs that name): run this test as root or postgres"
            );
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "no `postgres` account: run `bash tests/tools.sh`"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn spawn(
    program: &str,
    args: &[String],
    env: Option<&BTreeMap<String, String>>,
    log: &Path,
    account: Option<(u32, u32)>,
    cwd: &Path,
) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    if let Some(env) = env {
        command.env_clear().envs(env);
    }
    if let Some((uid, gid)) = account {
        command.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe. It dies with the test (this thread) if the test
    // is killed without unwinding.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

impl Cluster {
    fn start(rendered: &Rendered) -> Cluster {
        let account = postgres_account();
        // Short: socket paths must stay under 107 bytes.
        let root = tempfile::Builder::new()
            .prefix("sp")
            .tempdir_in("/tmp")
            .unwrap();
        let base = common::free_ports(2 * rendered.replicas as u16 + 2);
        let (etcd_client, etcd_peer) = (base, base + 1);
        let members: Vec<Member> = (0..rendered.replicas)
            .map(|i| Member {
                name: format!("shop-postgres-{i}"),
                ip: format!("127.0.0.{}", 11 + i),
                pg_port: base + 2 + 2 * i as u16,
                rest_port: base + 3 + 2 * i as u16,
                dir: root.path().join(i.to_string()),
            })
            .collect();
        let etcd = spawn(
            common::tool("etcd").to_str().unwrap(),
            &[
                "--name=e0".into(),
                format!("--data-dir={}", root.path().join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=e0=http://127.0.0.1:{etcd_peer}"),
                "--enable-v2=true".into(),
            ],
            None,
            &root.path().join("etcd.log"),
            None,
            root.path(),
        );
        let secrets: BTreeMap<String, String> = SECRET_KEYS
            .iter()
            .map(|k| {
                let value = if *k == "PATRONI_RESTAPI_USERNAME" {
                    "patroni".to_owned()
                } else {
                    random_hex(24)
                };
                (k.to_string(), value)
            })
            .collect();
        let mut cluster = Cluster {
            root,
            members,
            patroni: Vec::new(),
            etcd,
            secrets,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            started: Instant::now(),
        };
        common::wait_for_port(etcd_client, Duration::from_secs(20));
        let archive = cluster.root.path().join("archive");
        std::fs::create_dir(&archive).unwrap();
        let mut owned = vec![cluster.root.path().to_path_buf(), archive.clone()];
        let mut starts = Vec::new();
        for member in &cluster.members {
            for dir in [
                member.dir.clone(),
                member.etc(),
                member.pgdata(),
                member.run(),
                member.tmp(),
            ] {
                std::fs::create_dir_all(&dir).unwrap();
                owned.push(dir);
            }
            let socket = member.run().join(format!(".s.PGSQL.{}", member.pg_port));
            assert!(socket.as_os_str().len() < 107, "{}", socket.display());
            let (yml, command, env) =
                substitute(rendered, member, &archive, etcd_client, &cluster.secrets);
            std::fs::write(member.etc().join("patroni.yml"), yml).unwrap();
            std::fs::write(
                member.etc().join("post-bootstrap.sh"),
                &rendered.post_bootstrap,
            )
            .unwrap();
            starts.push((command, env));
        }
        if let Some((uid, gid)) = account {
            for dir in owned {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            }
        }
        for (member, (command, env)) in cluster.members.iter().zip(starts) {
            let child = spawn(
                &command[0],
                &command[1..],
                Some(&env),
                &member.log(),
                account,
                &member.dir,
            );
            cluster.patroni.push(Some(child));
        }
        cluster
    }

    fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap()
    }

    fn elapsed(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }

    /// `/cluster` from the first member that answers, among `alive`.
    async fn view(&self, alive: &[String]) -> Option<Value> {
        for name in alive {
            let url = self.member(name).rest("/cluster");
            if let Ok(response) = self.http.get(url).send().await {
                if let Ok(view) = response.json::<Value>().await {
                    return Some(view);
                }
            }
        }
        None
    }

    /// Waits until the `alive` members are one leader and streaming synchronous replicas;
    /// returns the leader and the replicas.
    async fn wait_healthy(
        &self,
        alive: &[String],
        within: Duration,
        what: &str,
    ) -> (String, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            // A Patroni that gave up (bootstrap failed) ends the wait at once.
            for (member, child) in self.members.iter().zip(&self.patroni) {
                if let Some(child) = child {
                    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                        .unwrap_or_default();
                    // The state field: Z (a zombie) once it exited; no file once reaped.
                    let running = stat
                        .rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|state| state != "Z");
                    assert!(
                        running,
                        "{what}: {}'s Patroni exited (its log's last lines follow)",
                        member.name
                    );
                }
            }
            let view = self.view(alive).await;
            if let Some(view) = &view {
                if let Some(state) = healthy(view, alive) {
                    eprintln!(
                        "[{}] {what}: leader {}, sync {:?}",
                        self.elapsed(),
                        state.0,
                        state.1
                    );
                    return state;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not one leader and {} streaming synchronous replicas after {within:?}: {view:#?}",
                alive.len() - 1
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A POST to a member's REST API, with or without the API's credentials.
    async fn post(
        &self,
        member: &str,
        path: &str,
        body: Value,
        authenticated: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .post(self.member(member).rest(path))
            .timeout(Duration::from_secs(60))
            .json(&body);
        if let Some((user, password)) = authenticated {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.expect("Patroni's REST API answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    fn api_credentials(&self) -> (&str, &str) {
        (
            self.secrets["PATRONI_RESTAPI_USERNAME"].as_str(),
            self.secrets["PATRONI_RESTAPI_PASSWORD"].as_str(),
        )
    }

    fn shop_password(&self) -> String {
        self.secrets["SHOP_DB_PASSWORD"].clone()
    }
}

/// The leader and the synchronous replicas when every member of `alive` is running, one
/// leads and the others are synchronous standbys.
fn healthy(view: &Value, alive: &[String]) -> Option<(String, Vec<String>)> {
    let members = view["members"].as_array()?;
    let mut leader = None;
    let mut sync = Vec::new();
    for name in alive {
        let m = members.iter().find(|m| m["name"] == name.as_str())?;
        if !matches!(m["state"].as_str(), Some("running" | "streaming")) {
            return None;
        }
        match m["role"].as_str()? {
            "leader" => leader = Some(name.clone()),
            "sync_standby" => sync.push(name.clone()),
            _ => return None,
        }
    }
    Some((leader?, sync))
}

/// A writer through whichever member accepts writes, recording each acknowledged insert.
struct Writer {
    acked: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(members: Vec<PgConnectOptions>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut conn: Option<PgConnection> = None;
            let mut seq = 0i64;
            while !s.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = connect_primary(&members).await;
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                seq += 1;
                let insert = sqlx::query("INSERT INTO ledger (seq) VALUES ($1)")
                    .bind(seq)
                    .execute(conn.as_mut().unwrap());
                match tokio::time::timeout(Duration::from_secs(30), insert).await {
                    Ok(Ok(_)) => a.lock().unwrap().push(seq),
                    _ => conn = None,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Writer { acked, stop, task }
    }

    fn acked(&self) -> Vec<i64> {
        self.acked.lock().unwrap().clone()
    }

    async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(35), self.task).await;
        self.acked.lock().unwrap().clone()
    }
}

/// A connection to the member that is not in recovery, if one answers.
async fn connect_primary(members: &[PgConnectOptions]) -> Option<PgConnection> {
    for options in members {
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(2), PgConnection::connect_with(options)).await
        else {
            continue;
        };
        let recovery =
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut conn);
        if let Ok(Ok(false)) = tokio::time::timeout(Duration::from_secs(2), recovery).await {
            return Some(conn);
        }
    }
    None
}

/// Every acknowledged insert is on `leader`.
async fn assert_kept(cluster: &Cluster, leader: &str, acked: &[i64], after: &str) {
    let options = cluster
        .member(leader)
        .shop_options(&cluster.shop_password());
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    .expect("connect in time")
    .expect("connect to the new leader");
    let present: BTreeSet<i64> = sqlx::query_scalar::<_, i64>("SELECT seq FROM ledger")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<&i64> = acked.iter().filter(|s| !present.contains(s)).collect();
    assert!(
        lost.is_empty(),
        "after {after}: {} of {} acknowledged inserts are not on the new leader {leader}: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "[{}] after {after}: all {} acknowledged inserts on {leader}",
        cluster.elapsed(),
        acked.len()
    );
}

/// Waits until the writer has `more` acknowledgements beyond `since`.
async fn wait_acks(writer: &Writer, since: usize, more: usize, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while writer.acked().len() < since + more {
        assert!(
            Instant::now() < deadline,
            "{what}: the writer got no acknowledgement in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_postgres_bootstraps_authenticates_and_keeps_acknowledged_writes() {
    let project = common::Project::new();
    let rendered = Rendered::of_staging(&project);
    assert_eq!(rendered.replicas, 3, "staging runs three members");
    let mut cluster = Cluster::start(&rendered);
    let mut alive: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();

    // Three members bootstrap: a leader and two streaming synchronous replicas.
    let (leader, sync) = cluster
        .wait_healthy(&alive, Duration::from_secs(120), "bootstrap")
        .await;
    assert_eq!(sync.len(), 2);

    // post_bootstrap made the `shop` role and database: the app's login over TCP.
    let shop = cluster.shop_password();
    let options: Vec<PgConnectOptions> = cluster
        .members
        .iter()
        .map(|m| m.shop_options(&shop))
        .collect();
    let mut conn = connect_primary(&options)
        .await
        .expect("`shop` logs in to the leader with its password");
    sqlx::query("CREATE TABLE ledger (seq bigint PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    let wrong = cluster.member(&leader).shop_options("not-the-password");
    assert!(
        PgConnection::connect_with(&wrong).await.is_err(),
        "a wrong password is refused"
    );

    // A synchronous replica's node vanishes: its PostgreSQL stops answering but nothing
    // closes its connections (SIGSTOP). Its Patroni keeps running, so it stays a member, as
    // a pod on a lost node stays in the Kubernetes API (the Kubernetes DCS keeps members
    // while their pods exist; etcd would expire its key after ttl).
    let frozen = cluster.member(&sync[0]);
    let pm = postmaster_pid(frozen).expect("the replica's postmaster");
    signal_postgres(pm, libc::SIGSTOP);
    let start = Instant::now();
    let insert = sqlx::query("INSERT INTO ledger (seq) VALUES (0)").execute(&mut conn);
    let committed = tokio::time::timeout(Duration::from_secs(90), insert).await;
    let stall = start.elapsed();
    signal_postgres(pm, libc::SIGCONT);
    committed
        .expect("the commit completes within 90 s")
        .expect("the commit succeeds");
    eprintln!(
        "[{}] commit with {} frozen: {stall:?}",
        cluster.elapsed(),
        frozen.name
    );
    assert!(
        stall < COMMIT_STALL_BOUND,
        "a commit waited {stall:?} for the vanished replica {}: more than {COMMIT_STALL_BOUND:?}",
        frozen.name
    );
    drop(conn);

    // The REST API: reads open (the probes), writes only with the credentials.
    for path in ["/readiness", "/liveness", "/cluster"] {
        let response = cluster
            .http
            .get(cluster.member(&leader).rest(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "GET {path} is open");
    }
    let (leader, sync) = cluster
        .wait_healthy(&alive, Duration::from_secs(60), "the frozen replica back")
        .await;
    let body = json!({"leader": leader, "candidate": sync[0]});
    for (path, body) in [("/switchover", body.clone()), ("/restart", json!({}))] {
        let (status, text) = cluster.post(&leader, path, body.clone(), None).await;
        assert_eq!(status, 401, "unauthenticated POST {path}: {text}");
        let (status, text) = cluster
            .post(&leader, path, body, Some(("patroni", "wrong")))
            .await;
        assert_eq!(status, 401, "POST {path} with a wrong password: {text}");
    }

    // A switchover (authenticated) while the writer writes.
    let writer = Writer::start(options.clone());
    wait_acks(
        &writer,
        0,
        20,
        Duration::from_secs(20),
        "before the switchover",
    )
    .await;
    let (status, text) = cluster
        .post(
            &leader,
            "/switchover",
            body,
            Some(cluster.api_credentials()),
        )
        .await;
    assert_eq!(status, 200, "authenticated switchover: {text}");
    let (new_leader, _) = cluster
        .wait_healthy(&alive, Duration::from_secs(60), "switchover")
        .await;
    assert_eq!(new_leader, sync[0], "the candidate leads");
    let since = writer.acked().len();
    wait_acks(
        &writer,
        since,
        20,
        Duration::from_secs(30),
        "after the switchover",
    )
    .await;
    assert_kept(&cluster, &new_leader, &writer.acked(), "the switchover").await;

    // The leader's node dies: SIGKILL its Patroni and its PostgreSQL, every process.
    let pm = postmaster_pid(cluster.member(&new_leader)).expect("the leader's postmaster");
    let index = cluster
        .members
        .iter()
        .position(|m| m.name == new_leader)
        .unwrap();
    if let Some(mut patroni) = cluster.patroni[index].take() {
        let _ = patroni.kill();
        let _ = patroni.wait();
    }
    signal_postgres(pm, libc::SIGKILL);
    let acked_at_kill = writer.acked().len();
    eprintln!(
        "[{}] killed {new_leader} ({acked_at_kill} inserts acknowledged)",
        cluster.elapsed()
    );
    alive.retain(|n| *n != new_leader);
    let (after_kill, _) = cluster
        .wait_healthy(&alive, Duration::from_secs(90), "leader kill")
        .await;
    wait_acks(
        &writer,
        acked_at_kill,
        20,
        Duration::from_secs(30),
        "after the kill",
    )
    .await;
    let acked = writer.stop().await;
    assert_kept(&cluster, &after_kill, &acked, "the leader kill").await;
    eprintln!("[{}] done", cluster.elapsed());
}
