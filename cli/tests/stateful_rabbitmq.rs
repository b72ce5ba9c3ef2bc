//! Staging's RabbitMQ, run for real from what `shopctl render staging` wrote: three nodes of
//! Debian's rabbitmq-server started from the rendered rabbitmq.conf, enabled_plugins and
//! definitions (00-topology.json, and the users file in the deployer's format), each with the
//! Erlang cookie installed by the rendered init container's own command. The test asserts
//! behaviour: the nodes form one cluster, the `shop` user connects, the real `app worker`
//! declares the job topology and every queue of it, retry and dead-letter queues included, is
//! a quorum queue with a member on each node, and a message confirmed into a dead-letter
//! queue survives stopping the node that led it.
//!
//! Substituted, each in one place below ([`Substitutions`]), because it has no local
//! equivalent; everything else is as rendered:
//! - Kubernetes peer discovery (the API's Endpoints) by `classic_config` with the three node
//!   names;
//! - pod DNS names by 127.0.0.1: the three nodes share the host and one Erlang port mapper
//!   (epmd, which keys nodes by name), so the name part carries the ordinal: `rabbit-N@127.0.0.1`
//!   for `rabbit@shop-rabbitmq-N.shop-rabbitmq-headless.<namespace>.svc.cluster.local`;
//! - per-node loopback ports for AMQP, Prometheus and distribution, and one epmd port;
//! - the pod's mounts (/etc/rabbitmq, /var/lib/rabbitmq, the cookie Secret, /tmp) by
//!   temporary directories; Secrets by generated values;
//! - [`KEYS_DEBIAN_LACKS`]: rabbitmq.conf keys of RabbitMQ 3.13 (the image) that Debian's
//!   3.10 refuses at boot, removed by name.
//!
//! Debian's 3.10 is not the image's 3.13.7: what differs between them (continuous membership
//! reconciliation, 4.x's default delivery limit) is documented in docs/jobs.md, not tested.

mod common;

use std::{
    collections::BTreeMap,
    net::TcpStream,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use common::{
    app_binary, free_port,
    manifests::{argv, literal_env, Manifests},
    random_hex, Project,
};
use lapin::{
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::FieldTable,
    BasicProperties, Connection, ConnectionProperties,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const NODES: usize = 3;
/// What Debian's RabbitMQ 3.10 cannot read of what was rendered for the image's 3.13.7,
/// each replaced by name (and stated in docs/k8s.md); nothing else is edited:
/// - rabbitmq.conf keys 3.10 refuses at boot as unknown (continuous membership
///   reconciliation, 3.13+; it keeps quorum queues at their target size as nodes change:
///   here the queues are declared after the cluster formed, so their initial size,
///   min(3, nodes), is what is checked);
/// - `definitions.import_backend = local_filesystem` with `definitions.local.path = <dir>`:
///   3.10's backend reads that path as one file (a directory from 3.11.x on), so the
///   directory is given by the classic key `load_definitions`, which 3.10 reads as one;
/// - policies' `"apply-to": "quorum_queues"` (3.12+): `"queues"` (every queue it matches is
///   a quorum queue). 3.10 stops importing definitions at the first value it refuses, and
///   the users file after it would be skipped.
const KEYS_DEBIAN_LACKS: [&str; 2] = [
    "quorum_queue.continuous_membership_reconciliation.enabled",
    "quorum_queue.continuous_membership_reconciliation.target_group_size",
];
/// The whole test, from rendering to the last assertion.
const BUDGET: Duration = Duration::from_secs(150);

/// A RabbitMQ command: Debian's real scripts (the /usr/sbin wrappers switch to the rabbitmq
/// account and reset the environment).
fn bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    assert!(
        debian.is_file(),
        "{name} not found; run: bash tests/tools.sh (it installs rabbitmq-server)"
    );
    debian
}

/// RabbitMQ's `rabbit_password_hashing_sha256`, as cli/src/deploy/secrets.rs computes it
/// for the `shop-rabbitmq-users` Secret: base64(salt ++ sha256(salt ++ password)).
fn rabbitmq_hash(password: &str, salt: [u8; 4]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    let mut bytes = salt.to_vec();
    bytes.extend_from_slice(&hasher.finalize());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs a command to its end within `timeout` (killed past it): success, stdout, stderr.
fn run(command: &mut Command, timeout: Duration) -> (bool, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A child process killed (with its process group) when dropped, and with the test
/// process however that ends.
struct Process(Option<Child>);

impl Process {
    fn spawn(command: &mut Command) -> Process {
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Process(Some(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("{command:?}: {e}")),
        ))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What was rendered for the StatefulSet's pods.
struct Rendered {
    conf: String,
    enabled_plugins: String,
    topology: String,
    /// The rabbitmq container's literal env.
    env: BTreeMap<String, String>,
    /// The erlang-cookie init container's argv.
    cookie_argv: Vec<String>,
    /// Mount path of each volume (by volume name), over both containers.
    mounts: BTreeMap<String, String>,
    namespace: String,
    replicas: usize,
}

fn rendered(project: &Project) -> Rendered {
    let manifests = Manifests::render(project, "staging");
    let sts = manifests.get("StatefulSet", "shop-rabbitmq");
    let rabbit = sts.container("rabbitmq");
    let init = sts.container("erlang-cookie");
    let mut mounts = BTreeMap::new();
    for container in [rabbit, init] {
        for mount in container["volumeMounts"].as_array().unwrap() {
            mounts.insert(
                mount["name"].as_str().unwrap().to_owned(),
                mount["mountPath"].as_str().unwrap().to_owned(),
            );
        }
    }
    Rendered {
        conf: manifests.config_file("shop-rabbitmq", "rabbitmq.conf"),
        enabled_plugins: manifests.config_file("shop-rabbitmq", "enabled_plugins"),
        topology: manifests.config_file("shop-rabbitmq", "00-topology.json"),
        env: literal_env(rabbit),
        cookie_argv: argv(init),
        mounts,
        namespace: sts.value["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned(),
        replicas: sts.value["spec"]["replicas"].as_u64().unwrap() as usize,
    }
}

/// One node's local stand-ins.
struct NodePlan {
    ordinal: usize,
    name: String,
    amqp: u16,
    dist: u16,
    prometheus: u16,
    /// Stand-ins for the pod's mounts: volume name to local directory.
    dirs: BTreeMap<String, PathBuf>,
}

/// Every substitution of rendered configuration by a local equivalent.
struct Substitutions<'a> {
    rendered: &'a Rendered,
    nodes: &'a [NodePlan],
    epmd: u16,
}

impl Substitutions<'_> {
    /// A rendered path under one of the pod's mounts, mapped to that mount's stand-in.
    fn path(&self, node: &NodePlan, rendered: &str) -> String {
        for (volume, mount) in &self.rendered.mounts {
            if rendered == mount || rendered.starts_with(&format!("{mount}/")) {
                let dir = node.dirs[volume].display().to_string();
                return format!("{dir}{}", &rendered[mount.len()..]);
            }
        }
        panic!("{rendered} is under no mount of the pod")
    }

    /// A shell command with every word that is a path under a mount mapped (word by word:
    /// a stand-in directory may itself lie under a path that is also a mount, /tmp).
    fn paths_in(&self, node: &NodePlan, script: &str) -> String {
        script
            .split(' ')
            .map(|word| {
                let under_mount = self
                    .rendered
                    .mounts
                    .values()
                    .any(|m| word == m || word.starts_with(&format!("{m}/")));
                if under_mount {
                    self.path(node, word)
                } else {
                    word.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The node name: `rabbit@<pod DNS name>` with the pod's DNS name as 127.0.0.1 and
    /// the ordinal in the name part (one host, one epmd).
    fn node_name(&self, node: &NodePlan) -> String {
        let rendered = &self.rendered.env["RABBITMQ_NODENAME"];
        let pod_dns = format!(
            "shop-rabbitmq-{}.shop-rabbitmq-headless.{}.svc.cluster.local",
            node.ordinal, self.rendered.namespace
        );
        let expanded = rendered
            .replace("$(POD_NAME)", &format!("shop-rabbitmq-{}", node.ordinal))
            .replace("$(POD_NAMESPACE)", &self.rendered.namespace);
        let (name, host) = expanded.split_once('@').unwrap();
        assert_eq!(host, pod_dns, "RABBITMQ_NODENAME: {rendered}");
        format!("{name}-{}@127.0.0.1", node.ordinal)
    }

    /// rabbitmq.conf: peer discovery, listeners and paths replaced; the keys Debian's
    /// 3.10 lacks removed; every other line as rendered.
    fn conf(&self, node: &NodePlan) -> String {
        let mut out = String::new();
        for line in self.rendered.conf.lines() {
            let key = line.split('=').next().unwrap().trim();
            let value = line.split_once('=').map(|(_, v)| v.trim());
            if KEYS_DEBIAN_LACKS.contains(&key) {
                continue;
            }
            match key {
                "cluster_formation.peer_discovery_backend" => {
                    out += "cluster_formation.peer_discovery_backend = classic_config\n";
                    for (i, peer) in self.nodes.iter().enumerate() {
                        out += &format!(
                            "cluster_formation.classic_config.nodes.{} = {}\n",
                            i + 1,
                            peer.name
                        );
                    }
                }
                k if k.starts_with("cluster_formation.k8s.") => {}
                "listeners.tcp.default" => {
                    out += &format!("listeners.tcp.default = 127.0.0.1:{}\n", node.amqp);
                }
                "prometheus.tcp.port" => {
                    out += &format!("prometheus.tcp.port = {}\n", node.prometheus);
                    out += "prometheus.tcp.ip = 127.0.0.1\n";
                }
                // Debian 3.10: see KEYS_DEBIAN_LACKS.
                "definitions.import_backend" => {
                    assert_eq!(value, Some("local_filesystem"), "{line}");
                }
                "definitions.local.path" => {
                    out += &format!("load_definitions = {}\n", self.path(node, value.unwrap()));
                }
                _ => {
                    out += line;
                    out += "\n";
                }
            }
        }
        out
    }

    /// 00-topology.json with the policies' `apply-to` as Debian's 3.10 knows it (see
    /// KEYS_DEBIAN_LACKS); every other value as rendered.
    fn topology(&self) -> String {
        let mut topology: Value = serde_json::from_str(&self.rendered.topology).unwrap();
        for policy in topology["policies"].as_array_mut().unwrap() {
            assert_eq!(policy["apply-to"], "quorum_queues", "{policy}");
            policy["apply-to"] = json!("queues");
        }
        topology.to_string()
    }

    /// The environment of rabbitmq-server: the rendered literal env with names and paths
    /// substituted, what the image sets by default (its paths under the stand-ins), and
    /// the loopback ports.
    fn env(&self, node: &NodePlan) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.rendered.env {
            let v = match k.as_str() {
                "RABBITMQ_NODENAME" => node.name.clone(),
                "HOME" | "ERL_CRASH_DUMP" => self.path(node, v),
                _ => v.clone(),
            };
            env.push((k.clone(), v));
        }
        let config = &self.rendered.mounts["config"];
        let data = &self.rendered.mounts["data"];
        for (k, rendered_path) in [
            // The image's defaults, under the pod's mounts.
            ("RABBITMQ_CONFIG_FILE", format!("{config}/rabbitmq.conf")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{config}/enabled_plugins"),
            ),
            ("RABBITMQ_MNESIA_BASE", format!("{data}/mnesia")),
            ("RABBITMQ_LOG_BASE", format!("{data}/log")),
            ("RABBITMQ_PID_FILE", format!("{data}/rabbitmq.pid")),
        ] {
            env.push((k.into(), self.path(node, &rendered_path)));
        }
        env.extend([
            ("RABBITMQ_DIST_PORT".into(), node.dist.to_string()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                "-kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
            ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
            ("ERL_EPMD_PORT".into(), self.epmd.to_string()),
        ]);
        env
    }
}

struct Cluster {
    nodes: Vec<NodePlan>,
    env: Vec<Vec<(String, String)>>,
    servers: Vec<Process>,
    _epmd: Process,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn ctl(&self, node: usize, tool: &str, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new(bin(tool));
        command
            .envs(self.env[node].iter().map(|(k, v)| (k, v)))
            .arg("-n")
            .arg(&self.nodes[node].name)
            .arg("-q")
            .args(args);
        run(&mut command, Duration::from_secs(30))
    }

    fn spawn(&mut self, node: usize) {
        let log = self.nodes[node].dirs["tmp"].join("server.log");
        let mut command = Command::new(bin("rabbitmq-server"));
        command
            .envs(self.env[node].iter().map(|(k, v)| (k, v)))
            // The script then execs the VM: the child is the broker.
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        self.servers[node] = Process::spawn(&mut command);
    }

    fn log(&self, node: usize) -> String {
        let text =
            std::fs::read_to_string(self.nodes[node].dirs["tmp"].join("server.log")).unwrap();
        text[text.len().saturating_sub(4000)..].to_owned()
    }

    /// Waits until the node accepts AMQP connections.
    fn wait_amqp(&mut self, node: usize, deadline: Instant) {
        while TcpStream::connect(("127.0.0.1", self.nodes[node].amqp)).is_err() {
            if let Some(status) = self.servers[node].exited() {
                panic!(
                    "node {} exited ({status}) before listening:\n{}",
                    self.nodes[node].name,
                    self.log(node)
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not listen in time:\n{}",
                self.nodes[node].name,
                self.log(node)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, node: usize, password: &str) -> String {
        format!(
            "amqp://shop:{password}@127.0.0.1:{}/%2f",
            self.nodes[node].amqp
        )
    }
}

/// The running nodes as one node sees them (`rabbitmqctl cluster_status`).
fn running_nodes(cluster: &Cluster, node: usize) -> Vec<String> {
    let (ok, out, _) = cluster.ctl(
        node,
        "rabbitmqctl",
        &["cluster_status", "--formatter", "json"],
    );
    if !ok {
        return Vec::new();
    }
    let status: Value = serde_json::from_str(&out).unwrap_or_default();
    let mut nodes: Vec<String> = status["running_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

/// `rabbitmqctl list_queues`: name to the requested columns.
fn queues(cluster: &Cluster, node: usize, columns: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["list_queues", "--formatter", "json", "name"];
    args.extend(columns);
    let (ok, out, err) = cluster.ctl(node, "rabbitmqctl", &args);
    assert!(ok, "list_queues: {out}{err}");
    let rows: Vec<Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("list_queues: {e}: {out}"));
    rows.into_iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> lapin::Result<Connection> {
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("no AMQP answer within 10 s"))
}

#[test]
fn staging_rabbitmq_forms_one_cluster_whose_job_queues_are_all_replicated_quorum_queues() {
    let started = Instant::now();
    let deadline = started + BUDGET;
    let project = Project::new();
    let rendered = rendered(&project);
    assert_eq!(rendered.replicas, NODES, "staging's RabbitMQ replicas");
    assert!(
        rendered.conf.contains("rabbit_peer_discovery_k8s"),
        "the rendered peer discovery is what the test replaces:\n{}",
        rendered.conf
    );

    // Secrets by generated values, in the deployer's format (cli/src/deploy/secrets.rs).
    let password = random_hex(24);
    let cookie = random_hex(32);
    let salt: [u8; 4] = {
        let b = random_hex(4);
        std::array::from_fn(|i| u8::from_str_radix(&b[2 * i..2 * i + 2], 16).unwrap())
    };
    let users = json!({
        "users": [{
            "name": "shop",
            "password_hash": rabbitmq_hash(&password, salt),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        }],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "shop", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    });

    let dir = tempfile::Builder::new()
        .prefix("shop-stateful-rabbitmq")
        .tempdir()
        .unwrap();
    let nodes: Vec<NodePlan> = (0..NODES)
        .map(|ordinal| {
            let mut dirs = BTreeMap::new();
            for volume in rendered
                .mounts
                .keys()
                .chain(std::iter::once(&"tmp".to_owned()))
            {
                let d = dir.path().join(format!("node{ordinal}")).join(volume);
                std::fs::create_dir_all(&d).unwrap();
                dirs.insert(volume.clone(), d);
            }
            NodePlan {
                ordinal,
                name: String::new(),
                amqp: free_port(),
                dist: free_port(),
                prometheus: free_port(),
                dirs,
            }
        })
        .collect();
    let epmd_port = free_port();
    let mut nodes = nodes;
    for i in 0..NODES {
        let name = Substitutions {
            rendered: &rendered,
            nodes: &nodes,
            epmd: epmd_port,
        }
        .node_name(&nodes[i]);
        nodes[i].name = name;
    }
    let subs = Substitutions {
        rendered: &rendered,
        nodes: &nodes,
        epmd: epmd_port,
    };

    let mut env = Vec::new();
    for node in &nodes {
        // The projected config volume: the ConfigMap's files and the users Secret.
        let config = &node.dirs["config"];
        std::fs::write(config.join("rabbitmq.conf"), subs.conf(node)).unwrap();
        std::fs::write(config.join("enabled_plugins"), &rendered.enabled_plugins).unwrap();
        std::fs::create_dir_all(config.join("definitions")).unwrap();
        std::fs::write(config.join("definitions/00-topology.json"), subs.topology()).unwrap();
        std::fs::write(config.join("definitions/10-users.json"), users.to_string()).unwrap();
        // The cookie Secret volume (defaultMode 0400), then the rendered init container.
        let secret = node.dirs["erlang-cookie"].join("cookie");
        std::fs::write(&secret, &cookie).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).unwrap();
        let init: Vec<String> = rendered
            .cookie_argv
            .iter()
            .map(|a| subs.paths_in(node, a))
            .collect();
        let (ok, out, err) = run(
            Command::new(&init[0]).args(&init[1..]),
            Duration::from_secs(10),
        );
        assert!(
            ok,
            "the erlang-cookie init container's command failed: {out}{err}"
        );
        let installed = node.dirs["data"].join(".erlang.cookie");
        assert_eq!(std::fs::read_to_string(&installed).unwrap(), cookie);
        assert_eq!(
            std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
            0o600,
            "Erlang reads a cookie file only if it is private to its owner"
        );
        env.push(subs.env(node));
    }

    // One port mapper for the three nodes (and rabbitmqctl), on loopback.
    let epmd = Process::spawn(
        Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port"])
            .arg(epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    common::wait_for_port(epmd_port, Duration::from_secs(10));
    let mut cluster = Cluster {
        servers: (0..NODES).map(|_| Process(None)).collect(),
        nodes,
        env,
        _epmd: epmd,
        _dir: dir,
    };
    // The first node first: with classic_config, nodes that start at the same instant may
    // each find no peer yet and boot alone (the Kubernetes backend orders them itself).
    cluster.spawn(0);
    cluster.wait_amqp(0, deadline);
    let first_up = started.elapsed();
    for node in 1..NODES {
        cluster.spawn(node);
    }
    for node in 1..NODES {
        cluster.wait_amqp(node, deadline);
    }

    // One cluster: every node sees all three running.
    let mut names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    names.sort();
    for node in 0..NODES {
        loop {
            let running = running_nodes(&cluster, node);
            if running == names {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} sees running nodes {running:?}, not {names:?}:\n{}",
                cluster.nodes[node].name,
                cluster.log(node)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let clustered = started.elapsed();

    // The `shop` user of the generated definitions connects; the default guest does not
    // exist (importing definitions at boot skips it).
    let rt = runtime();
    rt.block_on(async {
        let connection = connect(&cluster.url(1, &password))
            .await
            .expect("the shop user connects with its generated password");
        let _ = connection.close(200, "".into()).await;
        assert!(
            connect(&format!(
                "amqp://guest:guest@127.0.0.1:{}/%2f",
                cluster.nodes[1].amqp
            ))
            .await
            .is_err(),
            "the guest user must not exist"
        );
    });

    // The real worker declares the topology (app/src/jobs/topology.rs) on its first
    // connection; the database is never reached for that (it connects lazily).
    let metrics = free_port();
    let mut worker = Process::spawn(
        Command::new(app_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("APP_JOBS__AMQP_URL", cluster.url(0, &password))
            .env(
                "APP_DATABASE__URL",
                format!("postgres://shop@127.0.0.1:{}/shop", free_port()),
            )
            .env("APP_AUTH__JWT_SECRET", random_hex(32))
            .env("APP_PAYMENTS__WEBHOOK_SECRET", random_hex(32))
            .env("APP_WORKER__METRICS_BIND", format!("127.0.0.1:{metrics}"))
            .env("APP_LOG__FILTER", "warn")
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let expected: Vec<String> = ["emails", "payments"]
        .iter()
        .flat_map(|q| {
            [
                q.to_string(),
                format!("{q}.dlq"),
                format!("{q}.retry.1000ms"),
                format!("{q}.retry.5000ms"),
                format!("{q}.retry.25000ms"),
            ]
        })
        .collect();
    let listed = loop {
        let listed = queues(&cluster, 2, &["type", "members", "policy", "leader"]);
        if expected.iter().all(|q| listed.contains_key(q)) {
            break listed;
        }
        assert!(
            worker.exited().is_none(),
            "app worker exited before declaring its queues"
        );
        assert!(
            Instant::now() < deadline,
            "the worker did not declare {expected:?}; the broker has {:?}",
            listed.keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    worker.stop(Duration::from_secs(25));
    let declared = started.elapsed();

    for queue in &expected {
        let row = &listed[queue];
        assert_eq!(
            row["type"], "quorum",
            "{queue} must be a quorum queue (replicated), it is {}",
            row["type"]
        );
        let mut members: Vec<String> = row["members"]
            .as_array()
            .unwrap_or_else(|| panic!("{queue} has no member list: {row}"))
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        members.sort();
        assert_eq!(members, names, "{queue} must have a member on each node");
        assert_eq!(
            row["policy"], "shop-job-queues",
            "{queue} must be bounded by the rendered policy"
        );
    }

    // A dead letter confirmed into emails.dlq (through the dead-letter exchange, as the
    // worker hands it on) survives stopping the node that leads the queue.
    let leader = listed["emails.dlq"]["leader"].as_str().unwrap().to_owned();
    let leader_node = cluster.nodes.iter().position(|n| n.name == leader).unwrap();
    let other = (leader_node + 1) % NODES;
    rt.block_on(async {
        let connection = connect(&cluster.url(other, &password)).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let confirm = channel
            .basic_publish(
                "jobs.dlx".into(),
                "emails".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"dead letter kept",
                BasicProperties::default()
                    .with_message_id("password-reset:kept".into())
                    .with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack(), "the broker refused the dead letter");
        assert!(
            confirm.take_message().is_none(),
            "the dead letter was unroutable"
        );
        let _ = connection.close(200, "".into()).await;
    });
    cluster.servers[leader_node].stop(Duration::from_secs(30));
    let survivor = (leader_node + 2) % NODES;
    rt.block_on(async {
        let connection = connect(&cluster.url(survivor, &password)).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let message = loop {
            // A new leader is elected within seconds of the old one stopping.
            match channel
                .basic_get("emails.dlq".into(), BasicGetOptions { no_ack: false })
                .await
            {
                Ok(Some(message)) => break message,
                Ok(None) => {
                    panic!("emails.dlq lost its confirmed message with its leader {leader}")
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "emails.dlq is unavailable after stopping {leader}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        assert_eq!(message.delivery.data, b"dead letter kept");
        let depth = channel
            .queue_declare(
                "emails.dlq".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map(|q| q.message_count());
        let _ = connection.close(200, "".into()).await;
        depth.expect("emails.dlq answers on a surviving node");
    });
    eprintln!(
        "stateful_rabbitmq: first node up {:.1?}, cluster of {NODES} {:.1?}, topology declared {:.1?}, total {:.1?}",
        first_up,
        clustered,
        declared,
        started.elapsed()
    );
}
