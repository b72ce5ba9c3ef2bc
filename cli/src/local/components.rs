//! What each component runs: program, arguments, environment, working directory and account,
//! in dependency stages. Secrets enter only through the environment built here.

use std::path::PathBuf;

use super::secrets::Secrets;
use super::tools::Tools;
use super::topology::{Topology, APP_DB_USER, PATRONI_WAKE_COMPONENT, SCOPE};

/// When a component may start: each stage waits for the previous one to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// etcd, Redis, RabbitMQ, Kafka, SMTP, HAProxy: need nothing.
    Base,
    /// Patroni: needs an etcd quorum.
    Database,
    /// Workers, app replicas, nginx: need the leader, migrations and the seed.
    App,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stage: Stage,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Runs as the `postgres` account when shopctl runs as root (PostgreSQL refuses root).
    pub as_postgres: bool,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub grace_secs: u64,
}

/// The environment of `app serve`, `app worker`, `app migrate` and `app seed`.
pub fn app_env(t: &Topology, s: &Secrets) -> Vec<(String, String)> {
    let p = &t.ports;
    [
        ("APP_DATABASE__URL", t.write_dsn(s)),
        ("APP_DATABASE__READ_URL", t.read_dsn(s)),
        ("APP_DATABASE__MAX_CONNECTIONS", "10".into()),
        ("APP_REDIS__URL", format!("redis://127.0.0.1:{}", p.redis)),
        ("APP_EVENTS__BROKERS", format!("127.0.0.1:{}", p.kafka)),
        // tansu reads every partition on every fetch: 2 keep an idle broker cheap.
        ("APP_EVENTS__PARTITIONS", "2".into()),
        (
            "APP_JOBS__AMQP_URL",
            format!(
                "amqp://{APP_DB_USER}:{}@127.0.0.1:{}/%2f",
                s.amqp_password, p.amqp
            ),
        ),
        ("APP_SMTP__HOST", "127.0.0.1".into()),
        ("APP_SMTP__PORT", p.smtp.to_string()),
        // The loopback sink speaks plain SMTP (staging and production require STARTTLS).
        ("APP_SMTP__TLS", "none".into()),
        ("APP_AUTH__JWT_SECRET", s.jwt_secret.clone()),
        ("APP_PAYMENTS__WEBHOOK_SECRET", s.webhook_secret.clone()),
        ("APP_LOG__FILTER", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Every component, in dependency order.
pub fn specs(t: &Topology, s: &Secrets, tools: &Tools, app: &PathBuf) -> Vec<Spec> {
    let conf = t.conf_dir();
    let dir = &t.state_dir;
    let p = &t.ports;
    let mut specs = Vec::new();
    let spec = |name: &str, stage, program: &PathBuf, args: Vec<String>, cwd: PathBuf| Spec {
        name: name.to_owned(),
        stage,
        program: program.clone(),
        args,
        env: Vec::new(),
        cwd,
        as_postgres: false,
        grace_secs: 10,
    };
    for e in &t.etcd {
        let config = conf.join(format!("etcd-{}.yml", e.name));
        let mut etcd = spec(
            &e.name,
            Stage::Base,
            &tools.etcd,
            vec!["--config-file".into(), config.display().to_string()],
            dir.clone(),
        );
        // The last member standing has no quorum to leave gracefully and waits out its own
        // timeouts; its write-ahead log is synced, so a kill after 3 s loses nothing.
        etcd.grace_secs = 3;
        specs.push(etcd);
    }
    for pg in &t.pg {
        let mut patroni = spec(
            &pg.name,
            Stage::Database,
            &tools.patroni,
            vec![conf
                .join(format!("patroni-{}.yml", pg.name))
                .display()
                .to_string()],
            pg.dir.clone(),
        );
        patroni.as_postgres = true;
        // Patroni stops PostgreSQL (fast mode) before it exits.
        patroni.grace_secs = 30;
        patroni.env = vec![
            (
                "PATRONI_SUPERUSER_PASSWORD".into(),
                s.postgres_password.clone(),
            ),
            (
                "PATRONI_REPLICATION_PASSWORD".into(),
                s.replication_password.clone(),
            ),
            ("PATRONI_REWIND_PASSWORD".into(), s.rewind_password.clone()),
        ];
        specs.push(patroni);
    }
    // Watches the cluster's keys in etcd and wakes the member that must act next.
    let etcd_urls: Vec<String> = t
        .etcd
        .iter()
        .map(|e| format!("http://127.0.0.1:{}", e.client_port))
        .collect();
    let mut wake = spec(
        PATRONI_WAKE_COMPONENT,
        Stage::Database,
        &tools.python,
        vec![
            conf.join(PATRONI_WAKE_FILE).display().to_string(),
            etcd_urls.join(","),
            format!("/service/{SCOPE}"),
        ],
        dir.clone(),
    );
    wake.grace_secs = 2;
    specs.push(wake);
    specs.push(spec(
        "haproxy",
        Stage::Base,
        &tools.haproxy,
        vec![
            "-db".into(),
            "-f".into(),
            conf.join("haproxy.cfg").display().to_string(),
        ],
        dir.clone(),
    ));
    let redis_dir = dir.join("redis");
    specs.push(spec(
        "redis",
        Stage::Base,
        &tools.redis,
        [
            "--bind",
            "127.0.0.1",
            "--port",
            &p.redis.to_string(),
            "--dir",
            &redis_dir.display().to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        .map(String::from)
        .to_vec(),
        redis_dir.clone(),
    ));
    let rabbit_dir = dir.join("rabbitmq");
    let mut rabbit = spec(
        "rabbitmq",
        Stage::Base,
        &tools.rabbitmq,
        vec![],
        rabbit_dir.clone(),
    );
    rabbit.grace_secs = 30;
    rabbit.env = vec![
        // Its own HOME for the Erlang cookie, its own node name and ports.
        ("HOME".into(), rabbit_dir.display().to_string()),
        (
            "RABBITMQ_NODENAME".into(),
            format!("shop-{}@localhost", t.env),
        ),
        ("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT".into(), p.amqp.to_string()),
        ("RABBITMQ_DIST_PORT".into(), p.rabbitmq_dist.to_string()),
        (
            "RABBITMQ_MNESIA_BASE".into(),
            rabbit_dir.join("mnesia").display().to_string(),
        ),
        (
            "RABBITMQ_LOG_BASE".into(),
            rabbit_dir.join("log").display().to_string(),
        ),
        (
            "RABBITMQ_CONFIG_FILE".into(),
            rabbit_dir.join("rabbitmq.conf").display().to_string(),
        ),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
            rabbit_dir.join("enabled_plugins").display().to_string(),
        ),
        (
            "RABBITMQ_PID_FILE".into(),
            rabbit_dir.join("rabbitmq.pid").display().to_string(),
        ),
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
            "-kernel inet_dist_use_interface {127,0,0,1}".into(),
        ),
        ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
        ("ERL_EPMD_PORT".into(), p.epmd.to_string()),
        // The script then execs the VM: the child is the broker, SIGTERM stops it.
        ("RUNNING_UNDER_SYSTEMD".into(), "true".into()),
        // Created on the node's first boot only; the password never touches a file.
        ("RABBITMQ_DEFAULT_USER".into(), APP_DB_USER.into()),
        ("RABBITMQ_DEFAULT_PASS".into(), s.amqp_password.clone()),
    ];
    specs.push(rabbit);
    // tansu resolves sqlite:// relative to its working directory; absolute paths break it.
    specs.push(spec(
        "kafka",
        Stage::Base,
        &tools.tansu,
        vec![
            "broker".into(),
            "--listener-url".into(),
            format!("tcp://127.0.0.1:{}", p.kafka),
            "--advertised-listener-url".into(),
            format!("tcp://127.0.0.1:{}", p.kafka),
            "--storage-engine".into(),
            "sqlite://tansu.db".into(),
        ],
        dir.join("kafka"),
    ));
    specs.push(spec(
        "smtp",
        Stage::Base,
        &tools.python,
        vec![
            dir.join("smtp/smtp_sink.py").display().to_string(),
            "--port".into(),
            p.smtp.to_string(),
            "--dir".into(),
            dir.join("smtp/mail").display().to_string(),
        ],
        dir.join("smtp"),
    ));
    let env = app_env(t, s);
    for w in &t.workers {
        let mut worker = spec(&w.name, Stage::App, app, vec!["worker".into()], dir.clone());
        worker.grace_secs = 25;
        worker.env = env.clone();
        worker.env.push((
            "APP_WORKER__METRICS_BIND".into(),
            format!("127.0.0.1:{}", w.port),
        ));
        specs.push(worker);
    }
    for a in &t.apps {
        let mut serve = spec(&a.name, Stage::App, app, vec!["serve".into()], dir.clone());
        serve.grace_secs = 25;
        serve.env = env.clone();
        serve
            .env
            .push(("APP_HTTP__BIND".into(), format!("127.0.0.1:{}", a.port)));
        specs.push(serve);
    }
    specs.push(spec(
        "nginx",
        Stage::App,
        &tools.nginx,
        vec![
            "-p".into(),
            dir.join("nginx").display().to_string(),
            "-c".into(),
            conf.join("nginx.conf").display().to_string(),
        ],
        dir.clone(),
    ));
    specs
}

/// The SMTP sink's script, carried in the binary so a copied project needs no tests/ dir.
pub const SMTP_SINK: &str = include_str!("../../../tests/smtp_sink.py");

/// The watcher that wakes the Patroni member that must act next (see the file's comment).
pub const PATRONI_WAKE: &str = include_str!("../../../templates/local/patroni_wake.py");
/// Its file name in `conf/`.
pub const PATRONI_WAKE_FILE: &str = "patroni_wake.py";
