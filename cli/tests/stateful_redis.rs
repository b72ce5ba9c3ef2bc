//! Redis + Sentinel run from staging's rendered manifests: the data nodes (the
//! StatefulSets shop-redis-primary and shop-redis-replica) and the Sentinels
//! (shop-redis-sentinel), each pod's container started as the kubelet would start it (its
//! command, `sh -ec <the rendered script>`, its env, the ConfigMap shop-redis as its
//! /etc/redis), with Debian's redis-server on loopback. Behaviour is asserted, not text:
//! roles decided at start after a Sentinel failover, no acknowledged write lost, one master
//! after the master restarts, Sentinel's AUTH, the probes, and memory bounded by the
//! rendered `maxmemory` and policy.
//!
//! Debian ships Redis 7.0, the manifests run the redis:7.4.2 image: the rendered files and
//! scripts use only what both have (docs/k8s.md, "Redis").
//!
//! What has no local equivalent is substituted in one place, `Pod::localize` (and the
//! Secret in `SECRET`); nothing else is changed.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::manifests::{argv, Manifests};
use common::random_hex;
use common::Project;

/// The data nodes' and the Sentinels' ports, as rendered (kept: each pod has its own
/// loopback address, as it has its own network namespace in the cluster).
const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Bulk(b) => b.clone().unwrap_or_default(),
            Reply::Int(i) => i.to_string(),
            Reply::Array(items) => items.iter().map(Reply::text).collect::<Vec<_>>().join(" "),
        }
    }
}

/// A minimal RESP client with timeouts: the test's own view of a server, not the app's.
fn command(addr: (Ipv4Addr, u16), auth: Option<&str>, args: &[&str]) -> Result<Reply, String> {
    let stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect {}:{}: {e}", addr.0, addr.1))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut send = |args: &[&str]| -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        writer.write_all(&out).map_err(|e| e.to_string())?;
        read_reply(&mut reader)
    };
    if let Some(password) = auth {
        match send(&["AUTH", password])? {
            Reply::Status(_) => {}
            other => return Err(format!("AUTH: {other:?}")),
        }
    }
    send(args)
}

fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches("\r\n");
    if line.is_empty() {
        return Err("connection closed".into());
    }
    let (kind, rest) = line.split_at(1);
    Ok(match kind {
        "+" => Reply::Status(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().map_err(|_| format!("bad integer {rest}"))?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad length {rest}"))?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad length {rest}"))?;
            let mut items = Vec::new();
            for _ in 0..len.max(0) {
                items.push(read_reply(reader)?);
            }
            Reply::Array(items)
        }
        _ => return Err(format!("not RESP: {line}")),
    })
}

/// One pod of a StatefulSet: its loopback address, its volumes and its process.
struct Pod {
    name: String,
    /// The StatefulSet whose pod template it runs.
    set: String,
    /// The headless Service that names it.
    service: String,
    ip: Ipv4Addr,
    port: u16,
    data: PathBuf,
    etc: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Pod {
    fn addr(&self) -> (Ipv4Addr, u16) {
        (self.ip, self.port)
    }
}

struct Cluster {
    _root: tempfile::TempDir,
    manifests: Manifests,
    namespace: String,
    secret: String,
    pods: Vec<Pod>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pod in &mut self.pods {
            kill(pod);
        }
    }
}

/// Kills a pod's process group (the shell, what it runs, the server it became).
fn kill(pod: &mut Pod) {
    if let Some(mut child) = pod.child.take() {
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
}

/// A /8 loopback prefix nobody else on this machine is likely to use, with the rendered
/// ports free on each of the `count` addresses.
fn loopback_addresses(count: u8) -> Vec<Ipv4Addr> {
    let seed = std::process::id();
    for attempt in 0..200u32 {
        let n = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(attempt * 7_919);
        let (a, b) = (100 + (n % 150) as u8, ((n >> 8) % 250) as u8 + 1);
        let ips: Vec<Ipv4Addr> = (1..=count).map(|d| Ipv4Addr::new(127, a, b, d)).collect();
        let free = ips.iter().all(|ip| {
            TcpListener::bind((*ip, REDIS_PORT)).is_ok()
                && TcpListener::bind((*ip, SENTINEL_PORT)).is_ok()
        });
        if free {
            return ips;
        }
    }
    panic!("no free loopback addresses for the Redis pods");
}

impl Cluster {
    fn new() -> Cluster {
        let project = Project::new();
        let manifests = Manifests::render(&project, "staging");
        let namespace = manifests.get("ConfigMap", "shop-redis").value["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned();
        let root = tempfile::tempdir().unwrap();
        let sets = [
            ("shop-redis-primary", REDIS_PORT),
            ("shop-redis-replica", REDIS_PORT),
            ("shop-redis-sentinel", SENTINEL_PORT),
        ];
        let mut names = Vec::new();
        for (set, port) in sets {
            let doc = manifests.get("StatefulSet", set);
            let replicas = doc.value["spec"]["replicas"].as_u64().unwrap();
            let service = doc.value["spec"]["serviceName"]
                .as_str()
                .unwrap()
                .to_owned();
            for i in 0..replicas {
                names.push((format!("{set}-{i}"), set.to_owned(), service.clone(), port));
            }
        }
        let ips = loopback_addresses(names.len() as u8);
        let pods = names
            .into_iter()
            .zip(ips)
            .map(|((name, set, service, port), ip)| {
                let dir = root.path().join(&name);
                let (data, etc) = (dir.join("data"), dir.join("etc"));
                std::fs::create_dir_all(&data).unwrap();
                std::fs::create_dir_all(&etc).unwrap();
                Pod {
                    log: dir.join("log"),
                    name,
                    set,
                    service,
                    ip,
                    port,
                    data,
                    etc,
                    child: None,
                }
            })
            .collect();
        Cluster {
            _root: root,
            manifests,
            namespace,
            // The Secret shop-redis (key `auth`), generated as the deployer does: random hex.
            secret: random_hex(24),
            pods,
        }
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.name == name).unwrap()
    }

    fn data_nodes(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.port == REDIS_PORT)
    }

    fn sentinels(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.port == SENTINEL_PORT)
    }

    fn container(&self, pod: &Pod) -> &Value {
        let doc = self.manifests.get("StatefulSet", &pod.set);
        let name = doc.value["spec"]["template"]["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        doc.container(&name)
    }

    /// THE SUBSTITUTIONS, all of them: what a pod has in the cluster and not here.
    /// - Pod DNS names (`<pod>.<service>.<namespace>.svc.cluster.local`, written with the
    ///   namespace or `$POD_NAMESPACE`, and a pod's own as `$HOSTNAME.<service>...`) become
    ///   the pod's loopback address: there is no cluster DNS here.
    /// - The volumes /data (the PVC) and /etc/redis (the ConfigMap) become the pod's
    ///   directories.
    /// - Each server binds its pod's address (`bind`, appended to its copy of the
    ///   ConfigMap's file), as it owns the pod's network namespace there.
    /// - redis-cli in a probe reaches the pod's address instead of 127.0.0.1.
    fn localize(&self, text: &str, own: &Pod) -> String {
        let mut text = text.to_owned();
        let own_name = format!("$HOSTNAME.{}.$POD_NAMESPACE.svc.cluster.local", own.service);
        text = text.replace(&own_name, &own.ip.to_string());
        for pod in &self.pods {
            for ns in ["$POD_NAMESPACE", self.namespace.as_str()] {
                let dns = format!("{}.{}.{ns}.svc.cluster.local", pod.name, pod.service);
                text = text.replace(&dns, &pod.ip.to_string());
            }
        }
        text = text
            .replace("/etc/redis", own.etc.to_str().unwrap())
            .replace("/data", own.data.to_str().unwrap())
            .replace("redis-cli -p", &format!("redis-cli -h {} -p", own.ip));
        assert!(
            !text.contains("svc.cluster.local"),
            "a DNS name the test does not know:\n{text}"
        );
        text
    }

    /// The container's env as the kubelet sets it: literal values, the downward API, the
    /// Secret.
    fn env(&self, pod: &Pod) -> Vec<(String, String)> {
        let container = self.container(pod);
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap()),
            ("HOSTNAME".to_owned(), pod.name.clone()),
        ];
        for entry in container["env"].as_array().into_iter().flatten() {
            let name = entry["name"].as_str().unwrap().to_owned();
            let value = if let Some(v) = entry["value"].as_str() {
                v.to_owned()
            } else if entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
                self.namespace.clone()
            } else if entry["valueFrom"]["secretKeyRef"]
                == serde_json::json!({"name": "shop-redis", "key": "auth"})
            {
                self.secret.clone()
            } else {
                panic!(
                    "{}: env {name} comes from nothing the test knows: {entry}",
                    pod.name
                );
            };
            env.push((name, value));
        }
        env
    }

    /// Starts the pod's container: the ConfigMap's files into its /etc/redis, then its
    /// command (`sh -ec <script>`) with its env, in its own process group.
    fn start(&mut self, index: usize) {
        let pod = &self.pods[index];
        let cm = self.manifests.get("ConfigMap", "shop-redis");
        for (file, text) in cm.value["data"].as_object().unwrap() {
            let mut text = self.localize(text.as_str().unwrap(), pod);
            text.push_str(&format!("\nbind {}\n", pod.ip));
            std::fs::write(pod.etc.join(file), text).unwrap();
        }
        let argv: Vec<String> = argv(self.container(pod))
            .iter()
            .map(|a| self.localize(a, pod))
            .collect();
        assert_eq!(&argv[..2], ["sh", "-ec"], "{}: {argv:?}", pod.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pod.log)
            .unwrap();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .envs(self.env(pod))
            .current_dir(&pod.data)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("start sh");
        self.pods[index].child = Some(child);
    }

    fn index(&self, name: &str) -> usize {
        self.pods.iter().position(|p| p.name == name).unwrap()
    }

    /// Stops the pod as the kubelet does (SIGTERM, SIGKILL after the grace period) and runs
    /// its container again; returns once the server answers.
    fn restart(&mut self, name: &str) {
        let index = self.index(name);
        let grace = self
            .manifests
            .get("StatefulSet", &self.pods[index].set)
            .value["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        let mut child = self.pods[index].child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(grace);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                child.wait().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let stopped = Instant::now();
        self.start(index);
        self.wait_answers(name);
        eprintln!(
            "stateful_redis: {name} restarted, answering {:.1} s after it stopped",
            stopped.elapsed().as_secs_f64()
        );
    }

    fn auth(&self) -> Option<&str> {
        Some(&self.secret)
    }

    fn ask(&self, pod: &Pod, args: &[&str]) -> Result<Reply, String> {
        command(pod.addr(), self.auth(), args)
    }

    /// Polls `check` every 100 ms until it gives a value; panics naming `what`, with the
    /// pods' logs, after `within`.
    fn wait_for<T>(&self, what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                panic!("{what}: not within {within:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        self.pods
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ({}):\n{}\n", p.name, p.ip, tail.join("\n"))
            })
            .collect()
    }

    fn wait_answers(&self, name: &str) {
        let pod = self.pod(name);
        self.wait_for(
            &format!("{name} answers PING"),
            Duration::from_secs(45),
            || {
                matches!(self.ask(pod, &["PING"]), Ok(Reply::Status(s)) if s == "PONG")
                    .then_some(())
            },
        );
    }

    /// ROLE's first element: master, slave or sentinel.
    fn role(&self, pod: &Pod) -> Option<String> {
        match self.ask(pod, &["ROLE"]).ok()? {
            Reply::Array(items) => Some(items.first()?.text()),
            _ => None,
        }
    }

    /// A field of INFO replication.
    fn info(&self, pod: &Pod, field: &str) -> Option<String> {
        let info = self.ask(pod, &["INFO", "replication"]).ok()?.text();
        info.lines().find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
    }

    /// What each Sentinel names as the master (its address), None for one that cannot say.
    fn named_masters(&self) -> Vec<Option<String>> {
        self.sentinels()
            .map(
                |s| match self.ask(s, &["SENTINEL", "get-master-addr-by-name", "shop"]) {
                    Ok(Reply::Array(items)) if items.len() == 2 => Some(items[0].text()),
                    _ => None,
                },
            )
            .collect()
    }

    /// Waits until exactly one data node is master, every other replicates it with the link
    /// up, and every Sentinel names it; returns its name.
    fn wait_one_master(&self, what: &str) -> String {
        self.wait_for(what, Duration::from_secs(60), || {
            let masters: Vec<&Pod> = self
                .data_nodes()
                .filter(|p| self.role(p).as_deref() == Some("master"))
                .collect();
            let &[master] = masters.as_slice() else {
                return None;
            };
            let ip = master.ip.to_string();
            let replicas_follow = self
                .data_nodes()
                .filter(|p| p.name != master.name)
                .all(|p| {
                    self.info(p, "master_host").as_deref() == Some(ip.as_str())
                        && self.info(p, "master_link_status").as_deref() == Some("up")
                });
            let sentinels_agree = self
                .named_masters()
                .iter()
                .all(|m| m.as_deref() == Some(ip.as_str()));
            // Every Sentinel has found every replica (it learns them from the master's INFO,
            // every 10 s): a failover only reconfigures the replicas a Sentinel knows, so one
            // found too late would stay behind, following the demoted master.
            let replicas = self.data_nodes().count() - 1;
            let sentinels_know_replicas = self.sentinels().all(|s| {
                matches!(
                    self.ask(s, &["SENTINEL", "REPLICAS", "shop"]),
                    Ok(Reply::Array(known)) if known.len() >= replicas
                )
            });
            (replicas_follow && sentinels_agree && sentinels_know_replicas)
                .then(|| master.name.clone())
        })
    }

    /// Every data node holds every key of `keys` (acknowledged writes).
    fn assert_no_node_lost(&self, keys: &[String]) {
        for node in self.data_nodes() {
            let missing = self.missing(node, keys);
            assert!(
                missing.is_empty(),
                "{} lost acknowledged writes: {missing:?}",
                node.name
            );
        }
    }

    /// The keys of `keys` a node lacks.
    fn missing(&self, pod: &Pod, keys: &[String]) -> Vec<String> {
        keys.iter()
            .filter(|k| !matches!(self.ask(pod, &["GET", k]), Ok(Reply::Bulk(Some(v))) if &v == *k))
            .cloned()
            .collect()
    }

    /// Writes `count` keys (value = key) to the master and returns them once `replicas`
    /// replicas acknowledged them (WAIT).
    fn write_acknowledged(
        &self,
        master: &Pod,
        tag: &str,
        count: usize,
        replicas: i64,
    ) -> Vec<String> {
        let keys: Vec<String> = (0..count).map(|i| format!("acked:{tag}:{i}")).collect();
        for key in &keys {
            let reply = self.ask(master, &["SET", key, key]);
            assert_eq!(
                reply,
                Ok(Reply::Status("OK".into())),
                "SET {key} on {}",
                master.name
            );
        }
        // Replicas a failover just reconfigured may take a moment to connect: WAIT again.
        let what = format!("WAIT {replicas} on {}", master.name);
        self.wait_for(&what, Duration::from_secs(30), || {
            match self.ask(master, &["WAIT", &replicas.to_string(), "1000"]) {
                Ok(Reply::Int(n)) if n >= replicas => Some(()),
                _ => None,
            }
        });
        keys
    }

    /// Runs a rendered exec probe of the pod with `env`; whether it succeeded.
    fn probe(&self, pod: &Pod, probe: &str, env: Vec<(String, String)>) -> bool {
        let argv: Vec<String> = self.container(pod)[probe]["exec"]["command"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no exec {probe}", pod.name))
            .iter()
            .map(|a| self.localize(a.as_str().unwrap(), pod))
            .collect();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The bytes of a binary quantity (`512Mi`), as rendered in `resources.limits.memory`.
fn quantity(text: &str) -> u64 {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let unit = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unit {other}"),
    };
    digits.parse::<u64>().unwrap() * unit
}

#[test]
fn redis_and_sentinel_from_the_rendered_manifests_keep_acknowledged_writes_and_one_master() {
    let started = Instant::now();
    let mut cluster = Cluster::new();
    let mut last = Instant::now();
    let mut phase = |name: &str| {
        eprintln!(
            "stateful_redis: {name}: {:.1} s",
            last.elapsed().as_secs_f64()
        );
        last = Instant::now();
    };
    // Every pod at once (podManagementPolicy: Parallel).
    for i in 0..cluster.pods.len() {
        cluster.start(i);
    }
    let names: Vec<String> = cluster.pods.iter().map(|p| p.name.clone()).collect();
    for name in &names {
        cluster.wait_answers(name);
    }

    // First boot: the seed is the master, the Sentinels agree.
    let first = cluster.wait_one_master("first boot: one master, followed and named");
    assert_eq!(first, "shop-redis-primary-0", "{}", cluster.logs());
    phase("render, first boot");

    // Sentinel requires AUTH; the rendered probes pass with the pod's env and fail without
    // the secret (a probe that passed on NOAUTH would prove nothing).
    for sentinel in cluster.sentinels() {
        let anonymous = command(
            sentinel.addr(),
            None,
            &["SENTINEL", "get-master-addr-by-name", "shop"],
        );
        assert!(
            matches!(&anonymous, Ok(Reply::Error(e)) if e.starts_with("NOAUTH")),
            "{} without AUTH: {anonymous:?}",
            sentinel.name
        );
        let wrong = command(sentinel.addr(), Some("not-the-secret"), &["PING"]);
        assert!(
            wrong.is_err(),
            "{} with a wrong password: {wrong:?}",
            sentinel.name
        );
    }
    for pod in &cluster.pods {
        for probe in ["readinessProbe", "livenessProbe"] {
            assert!(
                cluster.probe(pod, probe, cluster.env(pod)),
                "{}: {probe} fails with the pod's env",
                pod.name
            );
            let without: Vec<(String, String)> = cluster
                .env(pod)
                .into_iter()
                .filter(|(k, _)| k != "REDISCLI_AUTH")
                .collect();
            assert!(
                !cluster.probe(pod, probe, without),
                "{}: {probe} passes without the secret",
                pod.name
            );
        }
    }

    phase("auth and probes");
    // Writes acknowledged by every replica, then a failover.
    let replica_count = cluster.data_nodes().count() as i64 - 1;
    let before = cluster.write_acknowledged(cluster.pod(&first), "before", 200, replica_count);
    let sentinel0 = cluster.sentinels().next().unwrap();
    cluster.wait_for(
        "SENTINEL FAILOVER shop accepted",
        Duration::from_secs(20),
        || {
            matches!(
                cluster.ask(sentinel0, &["SENTINEL", "FAILOVER", "shop"]),
                Ok(Reply::Status(_))
            )
            .then_some(())
        },
    );
    // Restarted as soon as the Sentinels name another master, before they demote the old
    // primary (they wait a few seconds for that): the harder case for its start script.
    let promoted = cluster.wait_for(
        "all Sentinels name a new master",
        Duration::from_secs(60),
        || {
            let named = cluster.named_masters();
            let ip = named.first()?.clone()?;
            let pod = cluster.data_nodes().find(|p| p.ip.to_string() == ip)?;
            let agreed = named.iter().all(|m| m.as_deref() == Some(ip.as_str()));
            (agreed && pod.name != first && cluster.role(pod).as_deref() == Some("master"))
                .then(|| pod.name.clone())
        },
    );
    let after = cluster.write_acknowledged(cluster.pod(&promoted), "after", 100, 1);
    phase("failover");

    // The old primary's process restarts with its rendered script: it must come back as a
    // replica of the new master, not as a master of its stale data.
    cluster.restart(&first);
    let old = cluster.pod(&first);
    let role = cluster.role(old);
    assert_eq!(
        role.as_deref(),
        Some("slave"),
        "{first} restarted after the failover as {role:?}, not as a replica of {promoted}\n{}",
        cluster.logs()
    );
    assert_eq!(
        cluster.info(old, "master_host").as_deref(),
        Some(cluster.pod(&promoted).ip.to_string().as_str()),
        "{first} follows another node than {promoted}"
    );
    phase("old primary restarted as a replica");
    let master = cluster.wait_one_master("the old primary back: one master, followed and named");
    phase("old primary synced");
    assert_eq!(
        master, promoted,
        "the old primary's restart moved the master"
    );
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    cluster.assert_no_node_lost(&all);

    phase("old primary restarted");
    // The new master's process restarts: it comes back as the master (the Sentinels still
    // name it), and exactly one master remains.
    cluster.restart(&promoted);
    let role = cluster.role(cluster.pod(&promoted));
    assert_eq!(
        role.as_deref(),
        Some("master"),
        "{promoted}, the master the Sentinels name, restarted as {role:?}\n{}",
        cluster.logs()
    );
    let master =
        cluster.wait_one_master("the new master back: exactly one master, followed and named");
    cluster.assert_no_node_lost(&all);
    let failover_done = started.elapsed();
    phase("new master restarted");

    // Memory: maxmemory below the container's limit, and filling the dataset neither passes
    // it nor evicts a key (noeviction: the denylist must survive); writes are refused.
    let master = cluster.pod(&master);
    let limit = quantity(
        cluster.container(master)["resources"]["limits"]["memory"]
            .as_str()
            .unwrap(),
    );
    let config = |name: &str| match cluster.ask(master, &["CONFIG", "GET", name]) {
        Ok(Reply::Array(items)) if items.len() == 2 => items[1].text(),
        other => panic!("CONFIG GET {name}: {other:?}"),
    };
    let maxmemory: u64 = config("maxmemory").parse().unwrap();
    assert!(
        maxmemory > 0 && maxmemory <= limit / 2,
        "maxmemory {maxmemory} for a {limit} limit"
    );
    assert_eq!(config("maxmemory-policy"), "noeviction");
    let revoked = "shop:revoked:jti:0123456789abcdef0123456789abcdef";
    assert_eq!(
        cluster.ask(master, &["SET", revoked, "1", "PX", "600000"]),
        Ok(Reply::Status("OK".into()))
    );
    const CHUNK: u64 = 8 << 20;
    let fill = "for i = 1, 8 do redis.call('SET', KEYS[1] .. ':' .. i, string.rep('x', 1048576), 'PX', 600000) end return 1";
    let mut refused = None;
    for round in 0..(limit / CHUNK + 8) {
        match cluster.ask(master, &["EVAL", fill, "1", &format!("fill:{round}")]) {
            Ok(Reply::Int(1)) => {}
            Ok(Reply::Error(e)) => {
                refused = Some(e);
                break;
            }
            other => panic!("filling, round {round}: {other:?}\n{}", cluster.logs()),
        }
    }
    let refused = refused
        .unwrap_or_else(|| panic!("{} bytes written and nothing refused", limit + 8 * CHUNK));
    assert!(
        refused.contains("OOM"),
        "refused for another reason: {refused}"
    );
    let set = cluster.ask(master, &["SET", "one:more", "x"]);
    assert!(
        matches!(&set, Ok(Reply::Error(e)) if e.starts_with("OOM")),
        "a write when full: {set:?}"
    );
    let memory = cluster.ask(master, &["INFO", "memory"]).unwrap().text();
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim()
            .parse()
            .unwrap()
    };
    // What maxmemory counts: the replication and AOF buffers are outside it (and bounded
    // by the rendered output buffer limit). The last write before the refusal may pass it
    // by at most its own size: the check is made before each command.
    let used = field(&memory, "used_memory") - field(&memory, "mem_not_counted_for_evict");
    assert!(
        used <= maxmemory + CHUNK,
        "used memory {used} past maxmemory {maxmemory}"
    );
    let stats = cluster.ask(master, &["INFO", "stats"]).unwrap().text();
    assert_eq!(field(&stats, "evicted_keys"), 0, "keys were evicted");
    assert_eq!(
        cluster.ask(master, &["EXISTS", revoked]),
        Ok(Reply::Int(1)),
        "the denylist entry is gone"
    );
    // The server's peak resident memory stays under the container's limit.
    let pid = master.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib * 1024 < limit,
        "peak RSS {peak_kib} KiB over the {limit} byte limit"
    );

    eprintln!(
        "stateful_redis: failover and restarts {:.1} s, memory {:.1} s (used_memory {} MiB, peak RSS {} MiB, maxmemory {} MiB)",
        failover_done.as_secs_f64(),
        (started.elapsed() - failover_done).as_secs_f64(),
        used >> 20,
        peak_kib >> 10,
        maxmemory >> 20
    );
}
