//! Checks of meaning that types alone cannot express: subnets that fit and do
//! not overlap, sane scaling bounds, odd quorums, and production's stricter
//! rules. Every finding names its key so it can be placed on a line.

use super::locate::KeyPath;
use super::model::{Environment, StateBackend, Tier};
use super::values::Cidr;

/// One thing wrong with a config, before it is placed in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: KeyPath,
    pub message: String,
    pub allowed: String,
}

/// Retention periods that CloudWatch Logs accepts.
const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, key: &str, message: impl Into<String>, allowed: impl Into<String>) {
        self.0.push(Finding {
            key: KeyPath::parse(key),
            message: message.into(),
            allowed: allowed.into(),
        });
    }
}

pub fn validate(env: &Environment) -> Vec<Finding> {
    let mut f = Findings::default();
    zones(env, &mut f);
    subnets(env, &mut f);
    eks(env, &mut f);
    service_cidr(env, &mut f);
    quorums(env, &mut f);
    connections(env, &mut f);
    state(env, &mut f);
    jobs(env, &mut f);
    local(env, &mut f);
    if !LOG_RETENTION_DAYS.contains(&env.logs.retention_days) {
        f.add(
            "logs.retention_days",
            format!(
                "{} days is not a CloudWatch retention period",
                env.logs.retention_days
            ),
            format!("one of {LOG_RETENTION_DAYS:?}"),
        );
    }
    if env.ecr.keep_images == 0 {
        f.add(
            "ecr.keep_images",
            "keeping 0 images would expire every image",
            "1 or more",
        );
    }
    if env.s3.media_bucket == env.s3.static_bucket {
        f.add(
            "s3.static_bucket",
            "static and media share one bucket",
            "two different bucket names",
        );
    }
    f.0
}

fn zones(env: &Environment, f: &mut Findings) {
    let zones = &env.aws.availability_zones;
    if zones.len() != 3 {
        f.add(
            "aws.availability_zones",
            format!("{} zones given", zones.len()),
            "exactly 3 availability zones",
        );
    }
    for (i, zone) in zones.iter().enumerate() {
        let suffix = zone.strip_prefix(env.aws.region.as_str());
        if !suffix.is_some_and(|s| s.len() == 1 && s.bytes().all(|b| b.is_ascii_lowercase())) {
            f.add(
                &format!("aws.availability_zones[{i}]"),
                format!("`{zone}` is not a zone of {}", env.aws.region),
                format!("a zone of the region, such as \"{}a\"", env.aws.region),
            );
        }
        if zones[..i].contains(zone) {
            f.add(
                &format!("aws.availability_zones[{i}]"),
                format!("`{zone}` is listed twice; the platform would run in fewer zones"),
                "3 distinct zones",
            );
        }
    }
}

fn subnets(env: &Environment, f: &mut Findings) {
    let net = &env.network;
    let zones = env.aws.availability_zones.len();
    let mut all: Vec<(String, Cidr)> = Vec::new();
    for (kind, list) in [
        ("public_subnets", &net.public_subnets),
        ("private_subnets", &net.private_subnets),
    ] {
        if list.len() != zones {
            f.add(
                &format!("network.{kind}"),
                format!("{} subnets for {zones} availability zones", list.len()),
                "one subnet per availability zone, in zone order",
            );
        }
        for (i, cidr) in list.iter().enumerate() {
            let key = format!("network.{kind}[{i}]");
            if !net.vpc_cidr.0.contains(&cidr.0) {
                f.add(
                    &key,
                    format!("{cidr} is outside the VPC {}", net.vpc_cidr),
                    format!("a subnet inside {}", net.vpc_cidr),
                );
            }
            if cidr.0.prefix_len() > 28 {
                f.add(
                    &key,
                    format!("{cidr} is smaller than AWS allows"),
                    "a prefix length of /16 to /28",
                );
            }
            if let Some((other, _)) = all
                .iter()
                .find(|(_, o)| o.0.contains(&cidr.0) || cidr.0.contains(&o.0))
            {
                f.add(
                    &key,
                    format!("{cidr} overlaps {other}"),
                    "subnets that do not overlap each other",
                );
            }
            all.push((format!("{key} ({cidr})"), *cidr));
        }
    }
    if !(16..=28).contains(&net.vpc_cidr.0.prefix_len()) {
        f.add(
            "network.vpc_cidr",
            format!("{} has a prefix AWS does not allow for a VPC", net.vpc_cidr),
            "a prefix length of /16 to /28",
        );
    }
    if env.tier == Tier::Production && net.single_nat_gateway {
        f.add(
            "network.single_nat_gateway",
            "production must not route all egress through one zone",
            "false (one NAT gateway per zone) in production",
        );
    }
}

fn eks(env: &Environment, f: &mut Findings) {
    let eks = &env.eks;
    if eks.endpoint_public_access && eks.public_access_cidrs.is_empty() {
        f.add(
            "eks.public_access_cidrs",
            "the public API endpoint is on but no CIDR may reach it",
            "the CIDRs of your operators and CI, or endpoint_public_access = false",
        );
    }
    for (i, cidr) in eks.public_access_cidrs.iter().enumerate() {
        if cidr.0.prefix_len() == 0 {
            f.add(
                &format!("eks.public_access_cidrs[{i}]"),
                "0.0.0.0/0 opens the Kubernetes API to the whole internet",
                "specific CIDRs of operators and CI",
            );
        }
    }
    if eks.node_groups.is_empty() {
        f.add(
            "eks.node_groups",
            "no node group: pods would have nowhere to run",
            "at least one [[eks.node_groups]]",
        );
    }
    for (i, group) in eks.node_groups.iter().enumerate() {
        let key = |field: &str| format!("eks.node_groups[{i}].{field}");
        if eks.node_groups[..i].iter().any(|g| g.name == group.name) {
            f.add(
                &key("name"),
                format!("node group `{}` is defined twice", group.name),
                "unique node group names",
            );
        }
        if group.max == 0 {
            f.add(&key("max"), "max is 0", "max of 1 or more");
        }
        if group.min > group.desired {
            f.add(
                &key("min"),
                format!("min {} is above desired {}", group.min, group.desired),
                "min <= desired <= max",
            );
        }
        if group.desired > group.max {
            f.add(
                &key("desired"),
                format!("desired {} is above max {}", group.desired, group.max),
                "min <= desired <= max",
            );
        }
        for (j, name) in group.instance_types.iter().enumerate() {
            if crate::capacity::catalog::lookup(name).is_none() {
                f.add(
                    &format!("eks.node_groups[{i}].instance_types[{j}]"),
                    format!("`{name}` is not in shopctl's instance type catalog, so its capacity cannot be checked"),
                    format!("one of {}", crate::capacity::catalog::names().join(", ")),
                );
            }
        }
        if group.instance_types.is_empty() {
            f.add(
                &key("instance_types"),
                "no instance type",
                "one or more EC2 instance types, such as \"m6i.large\"",
            );
        }
        if !(20..=16384).contains(&group.disk_size_gib) {
            f.add(
                &key("disk_size_gib"),
                format!("{} GiB", group.disk_size_gib),
                "20 to 16384 GiB",
            );
        }
    }
}

/// The private ranges (RFC 1918) EKS takes a Service CIDR from.
const PRIVATE_RANGES: &[&str] = &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// `eks.service_cidr`: private, a size EKS accepts, and clear of the VPC: a Service IP
/// that is also a VPC address would be routed to the VPC instead of to the Service. And
/// `eks.version` must be one the add-on versions are pinned for.
fn service_cidr(env: &Environment, f: &mut Findings) {
    let cidr = env.eks.service_cidr;
    let key = "eks.service_cidr";
    let private = PRIVATE_RANGES.iter().any(|r| {
        r.parse::<ipnet::Ipv4Net>()
            .is_ok_and(|r| r.contains(&cidr.0))
    });
    if !private {
        f.add(
            key,
            format!("{cidr} is not a private range"),
            "a CIDR inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, such as \"172.20.0.0/16\" (the default)",
        );
    }
    if !(12..=24).contains(&cidr.0.prefix_len()) {
        f.add(
            key,
            format!("{cidr} has a prefix EKS does not accept for Services"),
            "a prefix length of /12 to /24",
        );
    }
    let net = &env.network;
    let overlaps = |other: &Cidr| other.0.contains(&cidr.0) || cidr.0.contains(&other.0);
    if overlaps(&net.vpc_cidr) {
        f.add(
            key,
            format!(
                "{cidr} overlaps the VPC {} (network.vpc_cidr)",
                net.vpc_cidr
            ),
            format!(
                "a private range outside {}, such as \"172.20.0.0/16\"",
                net.vpc_cidr
            ),
        );
    } else {
        let subnets = [
            ("public_subnets", &net.public_subnets),
            ("private_subnets", &net.private_subnets),
        ];
        if let Some((kind, i, subnet)) = subnets
            .iter()
            .flat_map(|(kind, list)| list.iter().enumerate().map(move |(i, s)| (kind, i, s)))
            .find(|(_, _, s)| overlaps(s))
        {
            f.add(
                key,
                format!("{cidr} overlaps the subnet {subnet} (network.{kind}[{i}])"),
                "a private range that no subnet overlaps",
            );
        }
    }
    if crate::terraform::addons::pinned(env.eks.version.as_str()).is_none() {
        f.add(
            "eks.version",
            format!(
                "EKS {} has no pinned cluster add-on versions (vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver, metrics-server)",
                env.eks.version
            ),
            format!(
                "one of {} (cli/src/terraform/addons.rs pins their add-ons)",
                crate::terraform::addons::supported_versions().join(", ")
            ),
        );
    }
}

/// How a replica count is judged.
#[derive(Clone, Copy, PartialEq)]
enum Replicas {
    /// Members vote (Patroni's etcd/Kubernetes DCS, KRaft controllers,
    /// RabbitMQ, Sentinel): must be odd.
    Quorum,
    /// Holds data but does not vote (Redis data nodes).
    Stateful,
    /// Stateless pods.
    Stateless,
}

fn quorums(env: &Environment, f: &mut Findings) {
    let s = &env.services;
    let counts = [
        (
            "services.patroni.replicas",
            s.patroni.replicas,
            Replicas::Quorum,
        ),
        (
            "services.kafka.replicas",
            s.kafka.replicas,
            Replicas::Quorum,
        ),
        (
            "services.rabbitmq.replicas",
            s.rabbitmq.replicas,
            Replicas::Quorum,
        ),
        (
            "services.redis.sentinels",
            s.redis.sentinels,
            Replicas::Quorum,
        ),
        (
            "services.redis.replicas",
            s.redis.replicas,
            Replicas::Stateful,
        ),
        ("services.app.replicas", s.app.replicas, Replicas::Stateless),
        (
            "services.worker.replicas",
            s.worker.replicas,
            Replicas::Stateless,
        ),
    ];
    for (key, count, kind) in counts {
        if count == 0 {
            f.add(key, "0 replicas", "1 or more");
        } else if kind == Replicas::Quorum && count % 2 == 0 {
            f.add(
                key,
                format!(
                    "{count} members: an even quorum tolerates no more failures than {} members would, and can split in half",
                    count - 1
                ),
                "an odd number (1, 3, 5, ...)",
            );
        } else if env.tier == Tier::Production && kind != Replicas::Stateless && count == 1 {
            f.add(
                key,
                "1 replica in production: one failure loses the service",
                "3 or more in production",
            );
        }
    }
}

/// PostgreSQL's connections: every pool at its HPA maximum plus the reserve.
fn connections(env: &Environment, f: &mut Findings) {
    let s = &env.services;
    for (key, pool) in [
        ("services.app.db_pool", s.app.db_pool),
        ("services.worker.db_pool", s.worker.db_pool),
    ] {
        if pool == 0 {
            f.add(key, "a pool of 0 connections", "1 or more");
        }
    }
    let budget = crate::capacity::connections::Budget::of(s);
    if !(budget.fits() || s.app.db_pool == 0 || s.worker.db_pool == 0) {
        let (app, worker) = budget.pools_that_fit();
        f.add(
            "services.patroni.max_connections",
            format!(
                "{} connections may be open at once but max_connections is {}: {}",
                budget.needed(),
                budget.max_connections,
                budget.sum()
            ),
            format!(
                "services.patroni.max_connections >= {}, or services.app.db_pool <= {app} and services.worker.db_pool <= {worker}",
                budget.needed()
            ),
        );
    }
}

fn state(env: &Environment, f: &mut Findings) {
    match env.state.backend {
        StateBackend::S3 if env.state.bucket.is_none() => {
            f.add(
                "state.bucket",
                "the s3 backend needs a bucket",
                "a bucket name for Terraform state",
            );
        }
        StateBackend::Local if env.tier == Tier::Production => {
            f.add(
                "state.backend",
                "production state on one machine can be lost and cannot be locked between operators",
                "\"s3\" in production",
            );
        }
        _ => {}
    }
}

fn jobs(env: &Environment, f: &mut Findings) {
    let Some(jobs) = &env.jobs else { return };
    let Some(rest) = jobs.amqp_url.strip_prefix("amqp://") else {
        f.add(
            "jobs.amqp_url",
            format!("`{}` is not an AMQP URL", jobs.amqp_url),
            "amqp://user@host:port/vhost",
        );
        return;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    {
        f.add(
            "jobs.amqp_url",
            "the URL holds a password; secrets do not belong in environment files",
            format!(
                "amqp://user@host:port/vhost, with the password in the variable {}",
                jobs.password_env
            ),
        );
    }
    if jobs.password_env.is_empty()
        || !jobs
            .password_env
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        f.add(
            "jobs.password_env",
            format!(
                "`{}` is not an environment variable name",
                jobs.password_env
            ),
            "upper-case letters, digits and _, such as SHOPCTL_AMQP_PASSWORD",
        );
    }
}

fn local(env: &Environment, f: &mut Findings) {
    let Some(local) = &env.local else { return };
    if env.tier != Tier::Local {
        f.add(
            "local",
            format!(
                "[local] describes processes on this machine; this is a {} environment",
                env.tier
            ),
            "[local] only in a tier = \"local\" environment",
        );
    }
    if local.etcd_members == 0 || local.etcd_members % 2 == 0 {
        f.add(
            "local.etcd_members",
            format!(
                "{} etcd members: the DCS needs an odd quorum",
                local.etcd_members
            ),
            "an odd number (1, 3, 5)",
        );
    }
    let p = &local.patroni;
    if p.loop_wait == 0 {
        f.add("local.patroni.loop_wait", "0 s", "1 s or more");
    }
    // Patroni's own rule: the leader key must outlive a loop plus two retries.
    if p.ttl < p.loop_wait + 2 * p.retry_timeout {
        f.add(
            "local.patroni.ttl",
            format!(
                "ttl {} is below loop_wait + 2 x retry_timeout ({})",
                p.ttl,
                p.loop_wait + 2 * p.retry_timeout
            ),
            "ttl >= loop_wait + 2 * retry_timeout",
        );
    }
    let replicas = env.services.patroni.replicas.saturating_sub(1);
    if p.synchronous_node_count == 0 || p.synchronous_node_count > replicas.max(1) {
        f.add(
            "local.patroni.synchronous_node_count",
            format!(
                "{} synchronous standbys with {} replicas (services.patroni.replicas - 1)",
                p.synchronous_node_count, replicas
            ),
            format!("1 to {}", replicas.max(1)),
        );
    }
    // One port per member of each range; every port in 1..=65535 and used once.
    let mut taken: Vec<(u32, String)> = Vec::new();
    for (key, first, count) in local.ports.ranges(local, env) {
        let key = format!("local.ports.{key}");
        let last = u32::from(first) + count.max(1) - 1;
        if first == 0 || last > 65_535 {
            f.add(
                &key,
                format!("{first} (and {count} consecutive) is outside 1..65535"),
                "a port from 1 to 65535 (ranges: first + members - 1 <= 65535)",
            );
            continue;
        }
        for port in u32::from(first)..=last {
            if let Some((_, other)) = taken.iter().find(|(p, _)| *p == port) {
                f.add(
                    &key,
                    format!("port {port} is already used by {other}"),
                    "a port no other [local.ports] key uses (ranges take one port per member)",
                );
                break;
            }
            taken.push((port, key.clone()));
        }
    }
    // [jobs] amqp_url may point `shopctl jobs` at another broker (the job tests do), so it
    // is not tied to local.ports.amqp here; environments/local.toml keeps them equal.
}
