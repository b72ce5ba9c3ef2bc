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
    pub node_groups: Vec<NodeGroup>,
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
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    pub patroni: Stateful,
    pub kafka: Stateful,
    pub rabbitmq: Stateful,
    pub redis: Redis,
    pub app: Stateless,
    pub worker: Stateless,
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
