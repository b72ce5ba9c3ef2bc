//! Renders templates/terraform and templates/k8s for one environment with
//! handlebars in strict mode: a template that names a missing value fails
//! with the template's name and line, and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, HelperDef, RenderErrorReason};
use serde_json::{json, Value};

use crate::config::LoadedEnvironment;

/// The template trees, relative to the templates directory. Each is rendered
/// into a directory of the same name in the output.
pub const TREES: &[&str] = &["terraform", "k8s"];

/// Files in an output tree that are not ours and that `--check` and stale-file
/// removal leave alone (Terraform's own working files).
const FOREIGN: &[&str] = &[
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate",
    "terraform.tfstate.backup",
    "tfplan",
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read templates under {}: {source}", .dir.display())]
    Read {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", .template.display())]
    Template { template: PathBuf, reason: String },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Rendered files by output path (`terraform/vpc.tf`), sorted.
pub type Tree = BTreeMap<PathBuf, String>;

/// All templates of a project, parsed once.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Template name (its path relative to the templates dir) to output path.
    outputs: Vec<(String, PathBuf)>,
    display_dir: PathBuf,
}

impl Templates {
    /// Loads every `*.hbs` file under `dir/<tree>/`. `display_dir` names the
    /// directory in messages.
    pub fn load(dir: &Path, display_dir: &Path) -> Result<Self, RenderError> {
        Self::load_trees(dir, display_dir, TREES)
    }

    /// Loads every `*.hbs` file under `dir/<tree>/` for the given trees (the
    /// local topology's `templates/local` is rendered on its own, not by `render`).
    pub fn load_trees(dir: &Path, display_dir: &Path, trees: &[&str]) -> Result<Self, RenderError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper(JSON_HELPER.name, Box::new(JSON_HELPER));
        registry.register_helper(HCL_HELPER.name, Box::new(HCL_HELPER));
        let mut outputs = Vec::new();
        for tree in trees {
            for file in files_under(&dir.join(tree)).map_err(|source| RenderError::Read {
                dir: dir.join(tree),
                source,
            })? {
                let relative = file
                    .strip_prefix(dir)
                    .expect("walked under dir")
                    .to_path_buf();
                let Some(output) = relative.to_str().and_then(|s| s.strip_suffix(".hbs")) else {
                    continue;
                };
                let name = relative.to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&file).map_err(|source| RenderError::Read {
                    dir: file.clone(),
                    source,
                })?;
                registry
                    .register_template_string(&name, text)
                    .map_err(|e| RenderError::Template {
                        template: display_dir.join(&relative),
                        reason: format!(
                            "{}{}",
                            e.reason(),
                            at_line(e.pos().map(|p| p.0), e.pos().map(|p| p.1))
                        ),
                    })?;
                outputs.push((name, PathBuf::from(output)));
            }
        }
        Ok(Templates {
            registry,
            outputs,
            display_dir: display_dir.to_owned(),
        })
    }

    /// Renders every template for `env`, entirely in memory.
    pub fn render(&self, env: &LoadedEnvironment) -> Result<Tree, RenderError> {
        self.render_value(&context(env))
    }

    /// Renders every template with the given data.
    pub fn render_value(&self, context: &Value) -> Result<Tree, RenderError> {
        self.outputs
            .iter()
            .map(|(name, output)| {
                let text =
                    self.registry
                        .render(name, context)
                        .map_err(|e| RenderError::Template {
                            template: self.display_dir.join(name),
                            reason: format!(
                                "{}{}",
                                describe(e.reason()),
                                at_line(e.line_no, e.column_no)
                            ),
                        })?;
                Ok((output.clone(), text))
            })
            .collect()
    }
}

fn at_line(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

fn describe(reason: &RenderErrorReason) -> String {
    match reason {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("the template uses `{path}`, which the environment does not define")
        }
        other => other.to_string(),
    }
}

/// A helper that writes its one argument through `format`. A missing
/// argument fails like any missing value in strict mode.
struct ValueHelper {
    name: &'static str,
    format: fn(&Value) -> String,
}

impl HelperDef for ValueHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex(self.name, 0))?;
        if param.is_value_missing() {
            return Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into());
        }
        out.write(&(self.format)(param.value()))?;
        Ok(())
    }
}

/// `{{json x}}`: JSON, as tfvars files take it.
const JSON_HELPER: ValueHelper = ValueHelper {
    name: "json",
    format: |v| v.to_string(),
};

/// `{{hcl x}}`: an HCL literal formatted as `terraform fmt` writes it (lists
/// as `["a", "b"]`), so rendered files pass `fmt -check`.
const HCL_HELPER: ValueHelper = ValueHelper {
    name: "hcl",
    format: hcl_literal,
};

fn hcl_literal(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(hcl_literal).collect::<Vec<_>>().join(", ")
        ),
        // Single-line objects: `terraform fmt` aligns only multi-line ones.
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), hcl_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        scalar => scalar.to_string(),
    }
}

/// The data templates see: the environment's config as written, its name,
/// a few values derived for Terraform's shapes (`terraform`), counts and names
/// derived for the Kubernetes manifests (`k8s`, see [`k8s_context`]), and the
/// values known only at deploy time (`deploy`, see [`deploy_context`]).
pub fn context(env: &LoadedEnvironment) -> Value {
    let config = &env.config;
    let mut context = serde_json::to_value(config).expect("config serializes");
    let node_groups: BTreeMap<String, Value> = config
        .eks
        .node_groups
        .iter()
        .map(|g| {
            let group = json!({
                "instance_types": g.instance_types,
                "capacity_type": g.capacity_type,
                "min_size": g.min,
                "desired_size": g.desired,
                "max_size": g.max,
                "disk_size_gib": g.disk_size_gib,
            });
            (g.name.to_string(), group)
        })
        .collect();
    let state_region = config.state_region();
    let state_key = config
        .state
        .key
        .clone()
        .unwrap_or_else(|| format!("shopctl/{}/terraform.tfstate", env.name));
    let object = context.as_object_mut().expect("config is a table");
    object.insert("env".into(), json!(env.name));
    object.insert(
        "terraform".into(),
        json!({
            "node_groups": node_groups,
            "eks_addon_versions": crate::terraform::addons::pinned(config.eks.version.as_str()),
            // Derived from the endpoint, never set on its own: a real account always gets
            // the add-ons (templates/terraform/variables.tf.hbs refuses otherwise too).
            "skip_eks_addons_for_emulator": crate::terraform::addons::skipped_for_emulator(config),
        }),
    );
    object.insert("k8s".into(), k8s_context(env));
    object.insert(
        "controllers".into(),
        crate::deploy::controllers::context(env),
    );
    object.insert("deploy".into(), deploy_context(env));
    let state = object["state"].as_object_mut().expect("state is a table");
    state.insert("region".into(), json!(state_region));
    state.insert("key".into(), json!(state_key));
    context
}

/// A digest of 64 zeros: the image reference of a plain `render` has the shape of
/// a pinned image (`repository:tag@sha256:...`) and names nothing that exists.
pub const PLACEHOLDER_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// An AWS account id no one owns, in the role ARNs of a plain `render`.
pub const PLACEHOLDER_ACCOUNT: &str = "000000000000";

/// A VPC id of the right shape that names no VPC, in a plain `render`.
pub const PLACEHOLDER_VPC_ID: &str = "vpc-00000000000000000";

/// base64 of "placeholder: shopctl deploy puts the webhook CA here": `caBundle` is
/// bytes, so the placeholder is base64 too, and names what replaces it.
pub const PLACEHOLDER_CA_BUNDLE: &str =
    "cGxhY2Vob2xkZXI6IHNob3BjdGwgZGVwbG95IHB1dHMgdGhlIHdlYmhvb2sgQ0EgaGVyZQ==";

/// Values that exist only once the environment is applied and the image pushed,
/// under `deploy` in the template context. A plain `shopctl render` gives
/// obviously-not-real values of the right shape, so the rendered manifests are
/// complete and schema-valid but point at nothing real:
///
/// - `deploy.image`: the app image, `<ecr.repository>:unreleased@sha256:000…0`.
///   `shopctl deploy` will put the repository URL (Terraform output
///   `ecr_repository_url`) and the digest of the image `shopctl image push` pushed.
/// - `deploy.app_role_arn`: the IAM role of the app's service account,
///   `arn:aws:iam::000000000000:role/shop-<env>-app` (the name Terraform gives it);
///   `shopctl deploy` will put Terraform's output `app_role_arn`.
/// - `deploy.backup_role_arn`: the IAM role of the PostgreSQL pods (WAL archive and
///   base backups to S3), `arn:aws:iam::000000000000:role/shop-<env>-postgres-backup`;
///   `shopctl deploy` will put Terraform's output `backup_role_arn`.
/// - `deploy.lb_controller_role_arn`, `deploy.cluster_autoscaler_role_arn`: the IAM
///   roles of the AWS Load Balancer Controller's and the Cluster Autoscaler's service
///   accounts, `arn:aws:iam::000000000000:role/shop-<env>-lb-controller` and
///   `…-cluster-autoscaler`; `shopctl deploy` puts Terraform's outputs of those names.
/// - `deploy.vpc_id`: the VPC the load balancer controller works in, `vpc-00000000000000000`;
///   `shopctl deploy` puts Terraform's output `vpc_id`.
/// - `deploy.lb_webhook_ca_bundle`: the CA of the controller's webhook certificate
///   (base64 PEM), a base64 placeholder text; `shopctl deploy` generates the certificate
///   into a Secret and puts its CA (cli/src/deploy/webhook_tls.rs).
/// - `deploy.smtp_host`: the SMTP relay the worker hands emails to, `smtp.invalid`
///   (a reserved name that never resolves) until the deployer names one.
///
/// None of them is a secret: secrets are never rendered (docs/k8s.md).
pub fn deploy_context(env: &LoadedEnvironment) -> Value {
    let name_prefix = format!("shop-{}", env.name);
    let role = |name: &str| format!("arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/{name_prefix}-{name}");
    json!({
        "image": format!("{}:unreleased@{PLACEHOLDER_DIGEST}", env.config.ecr.repository),
        "app_role_arn": role("app"),
        "backup_role_arn": role("postgres-backup"),
        "lb_controller_role_arn": role("lb-controller"),
        "cluster_autoscaler_role_arn": role("cluster-autoscaler"),
        "vpc_id": PLACEHOLDER_VPC_ID,
        "lb_webhook_ca_bundle": PLACEHOLDER_CA_BUNDLE,
        "smtp_host": "smtp.invalid",
    })
}

/// The PostgreSQL pods' Kubernetes service account: Terraform's backup role
/// trusts only this one (templates/terraform/irsa.tf.hbs).
pub const POSTGRES_SERVICE_ACCOUNT: &str = "shop-postgres";

/// Counts and names the manifests need that handlebars cannot compute, so that
/// small environments (local: one Kafka broker, one RabbitMQ node) degrade to
/// settings that still work instead of ones that cannot be met.
pub fn k8s_context(env: &LoadedEnvironment) -> Value {
    let config = &env.config;
    let services = &config.services;
    let namespace = config.kubernetes.namespace.as_str();
    let dns = |pod: String, service: &str| format!("{pod}.{service}.{namespace}.svc.cluster.local");

    let pg = services.patroni.replicas;
    // Like local: every replica confirms each commit (at most 2), strict. One member
    // alone cannot be synchronous with anything, so sync mode is off then.
    let sync_count = pg.saturating_sub(1).min(2);
    let pg_pods: Vec<String> = (0..pg).map(|i| format!("shop-postgres-{i}")).collect();

    let kafka = services.kafka.replicas;
    let replication_factor = kafka.min(3);
    let voters: Vec<String> = (0..kafka)
        .map(|i| {
            format!(
                "{i}@{}:9093",
                dns(format!("shop-kafka-{i}"), "shop-kafka-headless")
            )
        })
        .collect();
    let brokers: Vec<String> = (0..kafka)
        .map(|i| {
            format!(
                "{}:9092",
                dns(format!("shop-kafka-{i}"), "shop-kafka-headless")
            )
        })
        .collect();

    let redis_memory = RedisMemory::under(&services.redis.memory);
    json!({
        // The `kubernetes` Service's ClusterIP: pods reach the API server there, and the
        // VPC CNI's policy agent matches egress before the Service is translated, so the
        // NetworkPolicies must allow it (templates/k8s/networkpolicies.yaml.hbs).
        "api_server_service_ip": config.eks.api_server_service_ip().to_string(),
        "postgres": {
            "scope": "shop-postgres",
            "service_account": POSTGRES_SERVICE_ACCOUNT,
            "synchronous_mode": sync_count > 0,
            "synchronous_node_count": sync_count.max(1),
            "pods": pg_pods,
            // The media bucket is reused, under a prefix the app's role is denied
            // (templates/terraform/irsa.tf.hbs).
            "backup_prefix": format!("s3://{}/backups/postgres/{}", config.s3.media_bucket, env.name),
        },
        "kafka": {
            "replication_factor": replication_factor,
            "min_insync_replicas": replication_factor.min(2),
            "cluster_id": kafka_cluster_id(&env.name),
            "controller_quorum_voters": voters.join(","),
            "bootstrap_servers": brokers.join(","),
        },
        "rabbitmq": {
            "target_group_size": services.rabbitmq.replicas.min(3),
        },
        "redis": {
            // Sentinels that must agree the primary is down: a majority.
            "sentinel_quorum": services.redis.sentinels / 2 + 1,
            // The three StatefulSets of templates/k8s/redis.yaml.hbs.
            "sets": redis_sets(&services.redis),
            // The Sentinels' pod names: the data nodes and the Sentinels ask them for the master.
            "sentinel_pods": (0..services.redis.sentinels)
                .map(|i| format!("shop-redis-sentinel-{i}"))
                .collect::<Vec<_>>(),
            "maxmemory": redis_memory.dataset,
            "replica_buffer_hard": redis_memory.replica_buffer_hard,
            "replica_buffer_soft": redis_memory.replica_buffer_soft,
            // Each Sentinel by its stable name: the app asks them for the primary.
            "sentinels": (0..services.redis.sentinels)
                .map(|i| format!("{}:26379", dns(format!("shop-redis-sentinel-{i}"), "shop-redis-sentinel")))
                .collect::<Vec<_>>()
                .join(","),
        },
        "app": {
            "max_replicas": services.app_max_replicas(),
        },
        "worker": {
            "max_replicas": services.worker_max_replicas(),
        },
    })
}

/// The Redis primary, its replicas and the Sentinels: one StatefulSet each, alike but
/// for these values.
fn redis_sets(redis: &crate::config::Redis) -> Value {
    let data = |name: &str, replicas: u32, replica: bool| {
        json!({
            "name": name,
            "app": "redis",
            "service": "shop-redis-headless",
            "replicas": replicas,
            "container": "redis",
            "port": 6379,
            "port_name": "redis",
            "cpu": redis.cpu,
            "memory": redis.memory,
            "storage": redis.storage,
            "replica": replica,
            "sentinel": false,
        })
    };
    json!([
        data("shop-redis-primary", 1, false),
        data("shop-redis-replica", redis.replicas, true),
        {
            "name": "shop-redis-sentinel",
            "app": "redis-sentinel",
            "service": "shop-redis-sentinel",
            "replicas": redis.sentinels,
            "container": "sentinel",
            "port": 26379,
            "port_name": "sentinel",
            "cpu": "50m",
            "memory": "64Mi",
            // Sentinel's state (the current primary, its peers) is a few lines; 1 GiB is
            // the smallest gp3 volume.
            "storage": "1Gi",
            "replica": false,
            "sentinel": true,
        },
    ])
}

/// Redis's memory settings, in bytes, under its container's limit. The dataset
/// (`maxmemory`) gets half: a fork (AOF rewrite, a replica's full sync) may copy every page
/// the dataset dirties meanwhile, and the replicas' output buffers, the replication backlog
/// and the process live outside `maxmemory`. Each replica's buffer is capped at an eighth
/// (disconnected past it, or past a sixteenth for 60 s) instead of Redis's 256 MB default,
/// which alone would exceed a 512Mi limit.
struct RedisMemory {
    dataset: u64,
    replica_buffer_hard: u64,
    replica_buffer_soft: u64,
}

impl RedisMemory {
    fn under(limit: &crate::config::Bytes) -> RedisMemory {
        let limit = quantity_bytes(limit.as_str());
        RedisMemory {
            dataset: limit / 2,
            replica_buffer_hard: limit / 8,
            replica_buffer_soft: limit / 16,
        }
    }
}

/// The bytes of a binary Kubernetes quantity (`512Mi`); `Bytes` admits no other form.
fn quantity_bytes(quantity: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    units
        .iter()
        .find_map(|(unit, size)| {
            let digits = quantity.strip_suffix(unit)?;
            Some(digits.parse::<u64>().ok()?.saturating_mul(*size))
        })
        .unwrap_or_else(|| panic!("`{quantity}` passed the Bytes check but is no binary quantity"))
}

/// A KRaft cluster id (16 bytes, URL-safe base64 without padding, as
/// `kafka-storage.sh random-uuid` prints) derived from the environment's name,
/// so rendering stays deterministic and environments never share an id.
fn kafka_cluster_id(env: &str) -> String {
    // FNV-1a, twice with different offsets, for 16 bytes.
    let fnv = |offset: u64| {
        env.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Files under `dir`, recursively, sorted so output order never depends on
/// the filesystem.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a path in an output tree belongs to another tool.
fn is_foreign(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| FOREIGN.iter().any(|f| c.as_os_str() == *f))
}

/// What differs between a rendered tree and the one on disk.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    Missing(PathBuf),
    Changed(PathBuf),
    Extra(PathBuf),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "missing  {}", p.display()),
            Difference::Changed(p) => write!(f, "changed  {}", p.display()),
            Difference::Extra(p) => write!(f, "extra    {}", p.display()),
        }
    }
}

/// Files of ours currently under `out` (relative paths), skipping foreign ones.
fn ours_on_disk(out: &Path) -> Vec<PathBuf> {
    TREES
        .iter()
        .flat_map(|tree| files_under(&out.join(tree)).unwrap_or_default())
        .filter_map(|p| p.strip_prefix(out).ok().map(Path::to_path_buf))
        .filter(|p| !is_foreign(p))
        .collect()
}

/// Compares `tree` with what is under `out`.
pub fn diff(tree: &Tree, out: &Path) -> Vec<Difference> {
    let mut differences: Vec<Difference> = tree
        .iter()
        .filter_map(
            |(path, text)| match std::fs::read_to_string(out.join(path)) {
                Ok(on_disk) if on_disk == *text => None,
                Ok(_) => Some(Difference::Changed(path.clone())),
                Err(_) => Some(Difference::Missing(path.clone())),
            },
        )
        .collect();
    differences.extend(
        ours_on_disk(out)
            .into_iter()
            .filter(|p| !tree.contains_key(p))
            .map(Difference::Extra),
    );
    differences
}

/// Writes `tree` under `out`: unchanged files are not touched, changed ones are
/// replaced atomically, and files of ours that are no longer rendered are removed.
/// Returns how many files were written.
pub fn write(tree: &Tree, out: &Path) -> Result<usize, RenderError> {
    let mut written = 0;
    for (path, text) in tree {
        let target = out.join(path);
        if std::fs::read_to_string(&target).is_ok_and(|t| t == *text) {
            continue;
        }
        let fail = |source| RenderError::Write {
            path: target.clone(),
            source,
        };
        std::fs::create_dir_all(target.parent().expect("has a parent")).map_err(fail)?;
        let partial = target.with_extension("shopctl-partial");
        std::fs::write(&partial, text).map_err(fail)?;
        std::fs::rename(&partial, &target).map_err(fail)?;
        written += 1;
    }
    for stale in ours_on_disk(out)
        .into_iter()
        .filter(|p| !tree.contains_key(p))
    {
        let path = out.join(stale);
        std::fs::remove_file(&path).map_err(|source| RenderError::Write { path, source })?;
    }
    Ok(written)
}
