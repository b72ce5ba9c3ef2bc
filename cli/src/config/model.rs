//! The shape of `environments/<env>.toml`. Unknown keys are rejected
//! everywhere so that a typo never silently falls back to a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::values::{
    BucketName, Bytes, Cidr, Cpu, DnsLabel, DomainName, EksVersion, EndpointUrl, Region,
    RepositoryName,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// How careful shopctl is: production refuses weak topologies and asks
    /// for the environment's name before apply or destroy.
    pub tier: Tier,
    /// Public DNS name of the shop.
    pub domain: DomainName,
    pub aws: Aws,
    pub network: Network,
    pub eks: Eks,
    pub ecr: Ecr,
    pub s3: S3,
    pub state: State,
    pub logs: Logs,
    pub kubernetes: Kubernetes,
    pub services: Services,
    /// The RabbitMQ broker of the background jobs, for `shopctl jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Jobs>,
    /// The local topology run as processes by `shopctl up local` (local tier only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Local>,
    /// Tags on every AWS resource (environment, tier and managed-by are added).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Environment {
    /// Region of the Terraform state bucket: `state.region`, else `aws.region`.
    pub fn state_region(&self) -> &Region {
        self.state.region.as_ref().unwrap_or(&self.aws.region)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Local,
    Staging,
    Production,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Local => "local",
            Tier::Staging => "staging",
            Tier::Production => "production",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Aws {
    pub region: Region,
    pub account_alias: DnsLabel,
    /// Exactly three zones of `region`.
    pub availability_zones: Vec<String>,
    /// An AWS-compatible API (an emulator) instead of AWS itself.
    #[serde(default)]
    pub endpoint_url: Option<EndpointUrl>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub vpc_cidr: Cidr,
    /// One public subnet per availability zone, in zone order.
    pub public_subnets: Vec<Cidr>,
    /// One private subnet per availability zone, in zone order.
    pub private_subnets: Vec<Cidr>,
    /// One NAT gateway for all zones: cheaper, but a zone outage cuts egress.
    #[serde(default)]
    pub single_nat_gateway: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Eks {
    pub version: EksVersion,
    pub endpoint_public_access: bool,
    /// Who may reach the public endpoint; required when it is public.
    #[serde(default)]
    pub public_access_cidrs: Vec<Cidr>,
    /// The cluster's Service CIDR (kubernetes_network_config): set explicitly so that the
    /// NetworkPolicies can name the API server's Service IP, its first host.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Cidr,
    pub node_groups: Vec<NodeGroup>,
}

/// What EKS would pick for a VPC outside 10.0.0.0/8, made explicit.
fn default_service_cidr() -> Cidr {
    "172.20.0.0/16".parse().expect("a valid CIDR")
}

impl Eks {
    /// The `kubernetes` Service's ClusterIP: the first host of the Service CIDR, where
    /// pods reach the API server.
    pub fn api_server_service_ip(&self) -> std::net::Ipv4Addr {
        let network = u32::from(self.service_cidr.0.network());
        std::net::Ipv4Addr::from(network + 1)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    pub name: DnsLabel,
    pub instance_types: Vec<String>,
    pub capacity_type: CapacityType,
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    pub disk_size_gib: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CapacityType {
    OnDemand,
    Spot,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ecr {
    pub repository: RepositoryName,
    /// Tagged images kept by the lifecycle policy.
    pub keep_images: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    pub media_bucket: BucketName,
    pub static_bucket: BucketName,
}

/// Where Terraform keeps this environment's state.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub backend: StateBackend,
    /// S3 backend: bucket (created by shopctl when missing) and object key.
    #[serde(default)]
    pub bucket: Option<BucketName>,
    #[serde(default)]
    pub key: Option<String>,
    /// S3 backend: region of the bucket; defaults to `aws.region`.
    #[serde(default)]
    pub region: Option<Region>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    S3,
    Local,
}

impl std::fmt::Display for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StateBackend::S3 => "s3",
            StateBackend::Local => "local",
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// CloudWatch retention of flow logs and control-plane logs, in days.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    pub namespace: DnsLabel,
    /// The app's service account; the IRSA role trusts only this one.
    pub app_service_account: DnsLabel,
    /// Which ingress controller serves the app's Ingress: the AWS Load Balancer
    /// Controller (`alb`, an internet-facing ALB) or ingress-nginx (`nginx`).
    #[serde(default)]
    pub ingress_class: IngressClass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressClass {
    #[default]
    Alb,
    Nginx,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    pub patroni: Patroni,
    pub kafka: Stateful,
    pub rabbitmq: Stateful,
    pub redis: Redis,
    pub app: Stateless,
    pub worker: Stateless,
}

impl Services {
    /// The app's HorizontalPodAutoscaler maximum (render.rs `k8s.app.max_replicas`).
    pub fn app_max_replicas(&self) -> u32 {
        self.app.replicas * 3
    }

    /// The worker's HorizontalPodAutoscaler maximum (render.rs `k8s.worker.max_replicas`).
    pub fn worker_max_replicas(&self) -> u32 {
        self.worker.replicas * 4
    }
}

/// `[services.patroni]`: the PostgreSQL cluster, a replicated store with a connection limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Patroni {
    pub replicas: u32,
    pub cpu: Cpu,
    pub memory: Bytes,
    pub storage: Bytes,
    /// PostgreSQL's `max_connections` on every member; the app's and worker's pools at
    /// their HPA maxima plus the reserve must fit (cli/src/capacity/connections.rs).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    200
}

/// A replicated store: its replica count is a quorum and must be odd.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stateful {
    pub replicas: u32,
    pub cpu: Cpu,
    pub memory: Bytes,
    pub storage: Bytes,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub replicas: u32,
    /// Sentinels vote on failover: an odd quorum.
    pub sentinels: u32,
    pub cpu: Cpu,
    pub memory: Bytes,
    pub storage: Bytes,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stateless {
    pub replicas: u32,
    pub cpu: Cpu,
    pub memory: Bytes,
    /// Connections each pod's database pool may open (APP_DATABASE__MAX_CONNECTIONS).
    #[serde(default = "default_db_pool")]
    pub db_pool: u32,
}

/// The app's and the worker's pool when not set (the app's own default is 20): 10 per pod
/// keeps local's and staging's pools at their HPA maxima within the default max_connections
/// (the budget of cli/src/capacity/connections.rs); production sets its own.
fn default_db_pool() -> u32 {
    10
}

/// `[jobs]`: where `shopctl jobs` reaches the broker. The URL carries no password; it comes
/// from the environment variable named by `password_env`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// `amqp://user@host:port/vhost` (vhost URL-encoded: `%2f` is `/`).
    pub amqp_url: String,
    #[serde(default = "default_password_env")]
    pub password_env: String,
}

fn default_password_env() -> String {
    "SHOPCTL_AMQP_PASSWORD".into()
}

/// `[local]`: the HA topology `shopctl up local` runs as processes on 127.0.0.1.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Local {
    /// Members of the etcd cluster (Patroni's DCS): an odd quorum.
    #[serde(default = "default_etcd_members")]
    pub etcd_members: u32,
    pub ports: LocalPorts,
    #[serde(default)]
    pub patroni: LocalPatroni,
    #[serde(default)]
    pub failover: LocalFailover,
}

fn default_etcd_members() -> u32 {
    3
}

/// `[local.ports]`: every loopback port of the topology. Ranges (`app`, `postgres`,
/// `patroni`, `etcd_client`, `etcd_peer`, `worker_metrics`) start here and take one
/// consecutive port per member.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalPorts {
    /// nginx: the public API and `/static/`.
    pub http: u16,
    pub app: u16,
    pub haproxy_write: u16,
    pub haproxy_read: u16,
    pub haproxy_stats: u16,
    pub postgres: u16,
    pub patroni: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub redis: u16,
    pub amqp: u16,
    /// The Erlang port mapper RabbitMQ registers with (ERL_EPMD_PORT).
    pub epmd: u16,
    pub rabbitmq_dist: u16,
    pub kafka: u16,
    pub smtp: u16,
    pub worker_metrics: u16,
}

impl LocalPorts {
    /// Every port key with its first port and how many consecutive ports it takes.
    pub fn ranges(&self, local: &Local, env: &Environment) -> Vec<(&'static str, u16, u32)> {
        let pg = env.services.patroni.replicas;
        vec![
            ("http", self.http, 1),
            ("app", self.app, env.services.app.replicas),
            ("haproxy_write", self.haproxy_write, 1),
            ("haproxy_read", self.haproxy_read, 1),
            ("haproxy_stats", self.haproxy_stats, 1),
            ("postgres", self.postgres, pg),
            ("patroni", self.patroni, pg),
            ("etcd_client", self.etcd_client, local.etcd_members),
            ("etcd_peer", self.etcd_peer, local.etcd_members),
            ("redis", self.redis, 1),
            ("amqp", self.amqp, 1),
            ("epmd", self.epmd, 1),
            ("rabbitmq_dist", self.rabbitmq_dist, 1),
            ("kafka", self.kafka, 1),
            ("smtp", self.smtp, 1),
            (
                "worker_metrics",
                self.worker_metrics,
                env.services.worker.replicas,
            ),
        ]
    }
}

/// `[local.patroni]`: the DCS timings Patroni bootstraps with. Tuned for fast failover on
/// one machine (Patroni's defaults are ttl 30, loop_wait 10, retry_timeout 10).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalPatroni {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    /// Bytes a replica may lag and still be promoted.
    pub maximum_lag_on_failover: u64,
    /// Commits wait for a synchronous standby even when none is left. Without it a leader
    /// that was paused (a frozen VM) and resumes may acknowledge writes on its own until
    /// Patroni demotes it, and those are lost (docs/failover.md).
    pub synchronous_mode_strict: bool,
    /// How many replicas confirm each commit. With 2 of 2 every replica holds every
    /// acknowledged commit, so whichever Patroni promotes (the one with the most WAL) is
    /// ahead of the other, which follows it without a pg_rewind; with 1 the other replica
    /// may have received WAL the new leader never got and must rewind before it can
    /// confirm commits again (seconds of held writes, docs/failover.md).
    pub synchronous_node_count: u32,
}

impl Default for LocalPatroni {
    fn default() -> Self {
        LocalPatroni {
            ttl: 8,
            loop_wait: 1,
            retry_timeout: 3,
            maximum_lag_on_failover: 1_048_576,
            synchronous_mode_strict: true,
            synchronous_node_count: 2,
        }
    }
}

/// `[local.failover]`: thresholds of `shopctl failover-test local`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalFailover {
    pub workload_seconds: u32,
    pub switchover_max_outage_ms: u64,
    pub kill_postgres_max_outage_ms: u64,
    pub kill_node_max_outage_ms: u64,
    pub freeze_node_max_outage_ms: u64,
}

impl Default for LocalFailover {
    fn default() -> Self {
        LocalFailover {
            workload_seconds: 20,
            switchover_max_outage_ms: 2_000,
            kill_postgres_max_outage_ms: 8_000,
            kill_node_max_outage_ms: 12_000,
            freeze_node_max_outage_ms: 12_000,
        }
    }
}
