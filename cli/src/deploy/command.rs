//! The command line's edge of `deploy`, `history`, `rollback`, and what `up <env>` and
//! `down <env>` call: resolve the deploy-time values, render, talk to the cluster through
//! [`Cluster`], decide with the plain functions of the sibling modules.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::controllers;
use super::diff::{self, Change};
use super::history::{self, Outcome as Result_, Revision, HISTORY_LABEL};
use super::manifest::{self, Key, Object, ENVIRONMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use super::plan::{self, JobAction, Phase};
use super::readiness::{self, Rollout};
use super::webhook_tls::{self, WebhookTls};
use super::{lock, prune, secrets, Options, PushedImage};
use crate::cli::{ClusterArgs, DeployArgs, HistoryArgs, RollbackArgs};
use crate::config::{IngressClass, LoadedEnvironment};
use crate::confirm::{confirm, Question};
use crate::project::Project;

/// How a deploy ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The revision this deploy recorded (None for a dry run).
    pub revision: Option<u32>,
    /// One line for a summary: what changed, how long it took.
    pub summary: String,
}

pub async fn run_deploy(project: &Project, args: &DeployArgs) -> Result<ExitCode> {
    let env = load(project, &args.cluster)?;
    crate::capacity::preflight(&env, &crate::commands::render_env(project, &env)?)?;
    let options = Options {
        dry_run: args.dry_run,
        rollback_on_failure: !args.no_rollback,
        timeout: Duration::from_secs(args.timeout),
        kubeconfig: args.cluster.kubeconfig.clone(),
        image: args.image.clone(),
    };
    if !args.dry_run {
        confirm(
            &Question {
                action: "deploy to",
                env: &env.name,
                tier: env.config.tier,
                detail: "apply the rendered manifests to the cluster and prune what is no longer rendered".into(),
            },
            args.yes,
        )
        .await?;
    }
    let outcome = deploy(project, &env, &options).await?;
    eprintln!("{}: {}", env.name, outcome.summary);
    Ok(ExitCode::SUCCESS)
}

pub async fn run_history(project: &Project, args: &HistoryArgs) -> Result<ExitCode> {
    let env = load(project, &args.cluster)?;
    let cluster = connect(project, &env, args.cluster.kubeconfig.as_deref()).await?;
    let deployer = Deployer::new(&cluster, &env);
    let revisions: Vec<Revision> = deployer.revisions().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&revisions)?);
    } else if revisions.is_empty() {
        eprintln!(
            "{}: nothing deployed yet; `shopctl deploy {}` deploys",
            env.name, env.name
        );
    } else {
        println!("{}", history::table(&revisions));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_rollback(project: &Project, args: &RollbackArgs) -> Result<ExitCode> {
    let env = load(project, &args.cluster)?;
    let cluster = connect(project, &env, args.cluster.kubeconfig.as_deref()).await?;
    let deployer = Deployer::new(&cluster, &env);
    let recorded = deployer.history().await?;
    let revisions: Vec<Revision> = recorded.iter().map(|(r, _)| r.clone()).collect();
    let target = history::rollback_target(&env.name, &revisions, args.to)?;
    let config_map = &recorded
        .iter()
        .find(|(r, _)| r.number == target.number)
        .expect("listed")
        .1;
    let mut objects = history::objects_of(config_map)?;
    confirm(
        &Question {
            action: "roll back",
            env: &env.name,
            tier: env.config.tier,
            detail: format!(
                "apply revision {} again ({}, commit {})",
                target.number, target.image, target.commit
            ),
        },
        args.yes,
    )
    .await?;
    let record = Revision {
        number: history::next_number(&revisions),
        image: target.image.clone(),
        commit: target.commit.clone(),
        started: now(),
        finished: None,
        outcome: Result_::InProgress,
        note: Some(format!("rollback to {}", target.number)),
        keys: objects.iter().map(|o| o.key.clone()).collect(),
    };
    // The recorded webhook configurations carry the CA of their day; the certificate the
    // controller serves now may be a renewed one.
    deployer.with_current_ca(&mut objects).await?;
    let deadline = Duration::from_secs(args.timeout);
    let outcome = deployer
        .roll_out(record, &objects, &revisions, deadline, false)
        .await?;
    eprintln!("{}: {}", env.name, outcome.summary);
    Ok(ExitCode::SUCCESS)
}

/// Applies the environment's rendered manifests to its cluster (see the module docs).
pub async fn deploy(
    project: &Project,
    env: &LoadedEnvironment,
    options: &Options,
) -> Result<Outcome> {
    let image = image(project, &env.name, options.image.as_deref())?;
    let cluster = connect(project, env, options.kubeconfig.as_deref()).await?;
    let outputs = terraform_outputs(project, env).await?;
    let deployer = Deployer::new(&cluster, env);
    let placeholders = crate::render::deploy_context(env);
    // The webhook's CA goes into the rendered webhook configurations; a dry run makes a
    // certificate it does not store, to show what the first deploy would apply.
    let ca_bundle = match lb_controller(env) {
        true => webhook_tls::ca_bundle(&deployer.webhook_ca(options.dry_run).await?),
        false => placeholders["lb_webhook_ca_bundle"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let values = json!({
        "image": image,
        "app_role_arn": outputs.app_role_arn,
        "backup_role_arn": outputs.backup_role_arn,
        "lb_controller_role_arn": outputs.lb_controller_role_arn.unwrap_or_else(|| placeholders["lb_controller_role_arn"].as_str().unwrap_or_default().to_owned()),
        "cluster_autoscaler_role_arn": outputs.cluster_autoscaler_role_arn,
        "vpc_id": outputs.vpc_id,
        "lb_webhook_ca_bundle": ca_bundle,
        "smtp_host": placeholders["smtp_host"],
    });
    let objects = render(project, env, values)?;
    eprintln!(
        "deploy: {} objects of {} to {} ({image})",
        objects.len(),
        env.name,
        cluster.server
    );
    let revisions: Vec<Revision> = deployer.revisions().await?;
    if options.dry_run {
        return deployer.dry_run(&objects, &revisions).await;
    }
    let record = Revision {
        number: history::next_number(&revisions),
        image,
        commit: crate::image::Source::discover(&project.root).revision,
        started: now(),
        finished: None,
        outcome: Result_::InProgress,
        note: None,
        keys: objects.iter().map(|o| o.key.clone()).collect(),
    };
    deployer
        .roll_out(
            record,
            &objects,
            &revisions,
            options.timeout,
            options.rollback_on_failure,
        )
        .await
}

/// Deletes every Kubernetes object of the environment that shopctl deployed (by the
/// environment label), then the namespace with what was generated in it (Secrets, the
/// revision history); returns a one-line summary.
pub async fn teardown(
    project: &Project,
    env: &LoadedEnvironment,
    kubeconfig: Option<&Path>,
) -> Result<String> {
    let cluster = connect(project, env, kubeconfig).await?;
    let deployer = Deployer::new(&cluster, env);
    let revisions: Vec<Revision> = deployer.revisions().await?;
    // The kinds: what is rendered now (placeholder values name the same objects) and
    // what the current revision applied.
    let rendered = render(project, env, crate::render::deploy_context(env))?;
    let rendered_keys: Vec<Key> = rendered.iter().map(|o| o.key.clone()).collect();
    let previous = history::current(&revisions)
        .map(|r| r.keys.clone())
        .unwrap_or_default();
    let live = deployer
        .labelled(&prune::kinds(&rendered_keys, &previous))
        .await?;
    // Everything labelled is ours to delete here: nothing is "still rendered". The app's
    // objects and namespace first; the controllers only once the namespace is gone, as the
    // load balancer controller deletes the Ingress's ALB (its finalizer) on the way.
    let doomed = prune::to_prune(&env.name, &[], &live);
    let (cluster_scope, app_scope): (Vec<&Key>, Vec<&Key>) =
        doomed.iter().partition(|k| Phase::of(k).is_cluster());
    let namespace = env.config.kubernetes.namespace.as_str();
    let mut deleted = 0;
    for key in app_scope.iter().filter(|k| k.kind != "Namespace") {
        if cluster.delete(key).await? {
            deleted += 1;
        }
    }
    let namespace_key = deployer.namespace_key();
    let spinner = crate::image::command::spinner(&format!("deleting namespace {namespace}"));
    let had_namespace = cluster.delete(&namespace_key).await?;
    let gone = !had_namespace
        || cluster
            .wait_gone(
                &namespace_key,
                Duration::from_secs(300),
                Duration::from_secs(2),
            )
            .await?;
    spinner.finish_and_clear();
    if !gone {
        bail!(
            "namespace {namespace} is still terminating after 300 s (a finalizer waits)\n  \
             hint: `kubectl get namespace {namespace} -o yaml` shows which; `shopctl down {}` again continues",
            env.name
        );
    }
    for key in &cluster_scope {
        if cluster.delete(key).await? {
            deleted += 1;
        }
    }
    if !cluster_scope.is_empty() {
        // Generated for the controllers, not labelled for prune: goes with them.
        cluster
            .delete(&controllers::webhook_tls_secret_key())
            .await?;
    }
    Ok(format!(
        "deleted {deleted} objects{}",
        if had_namespace {
            format!(" and namespace {namespace} (its Secrets, history and volumes' claims)")
        } else {
            String::new()
        }
    ))
}

fn load(project: &Project, args: &ClusterArgs) -> Result<LoadedEnvironment> {
    crate::commands::load(project, &args.env, &args.aws, false)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn connect(
    project: &Project,
    env: &LoadedEnvironment,
    explicit: Option<&Path>,
) -> Result<Cluster> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::eks::command::default_path(project, &env.name));
    Ok(Cluster::connect(&path, &env.name).await?)
}

/// The image to run: `--image`, else the one `image push` recorded. Either way pinned by
/// digest, so what runs is what was tested.
fn image(project: &Project, env: &str, explicit: Option<&str>) -> Result<String> {
    if let Some(reference) = explicit {
        return parse_pinned(reference).map(str::to_owned);
    }
    let file = project.state_dir(env).join(PushedImage::FILE);
    let text = std::fs::read_to_string(&file).map_err(|_| {
        anyhow::anyhow!(
            "no image pushed for {env} from here ({} is missing)\n  hint: `shopctl image build && shopctl image push {env}`, or pass --image REPOSITORY@sha256:...",
            file.display()
        )
    })?;
    let pushed: PushedImage = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a pushed-image record", file.display()))?;
    parse_pinned(&pushed.reference()).map(str::to_owned)
}

/// `repository@sha256:<64 hex>`: anything else is refused with what is expected.
fn parse_pinned(reference: &str) -> Result<&str> {
    let pinned = reference
        .rsplit_once("@sha256:")
        .is_some_and(|(repository, hex)| {
            !repository.is_empty()
                && hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
    if !pinned {
        bail!("--image {reference:?} is not pinned by digest: expected REPOSITORY@sha256:<64 lowercase hex digits> (what `shopctl image push` prints)");
    }
    Ok(reference)
}

/// Whether the environment runs the AWS Load Balancer Controller (its Ingress class).
fn lb_controller(env: &LoadedEnvironment) -> bool {
    env.config.kubernetes.ingress_class == IngressClass::Alb
}

/// What the manifests need from Terraform's outputs.
#[derive(Debug, Clone, PartialEq)]
struct TerraformOutputs {
    /// The IAM roles of the app's and PostgreSQL's service accounts.
    app_role_arn: String,
    backup_role_arn: String,
    /// The load balancer controller's role: only when it is rendered (ingress class `alb`).
    lb_controller_role_arn: Option<String>,
    cluster_autoscaler_role_arn: String,
    /// The VPC the load balancer controller works in (told, not discovered: no IMDS).
    vpc_id: String,
}

async fn terraform_outputs(project: &Project, env: &LoadedEnvironment) -> Result<TerraformOutputs> {
    let tree = crate::commands::render_env(project, env)?;
    let log = crate::commands::terraform_log(&project.state_dir(&env.name));
    let workspace = crate::commands::workspace(project, env, &tree, Some(log)).await?;
    let outputs: Value = serde_json::from_slice(&workspace.output(&["output", "-json"]).await?)
        .context("terraform output -json printed something else than JSON")?;
    outputs_of(&outputs, &env.name, lb_controller(env))
}

fn outputs_of(outputs: &Value, env: &str, lb_controller: bool) -> Result<TerraformOutputs> {
    let output = |name: &str, prefix: &str| {
        outputs[name]["value"]
            .as_str()
            .filter(|v| v.starts_with(prefix))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("Terraform has no output {name} for {env}\n  hint: `shopctl apply {env}` creates the infrastructure first"))
    };
    Ok(TerraformOutputs {
        app_role_arn: output("app_role_arn", "arn:")?,
        backup_role_arn: output("backup_role_arn", "arn:")?,
        lb_controller_role_arn: match lb_controller {
            true => Some(output("lb_controller_role_arn", "arn:")?),
            false => None,
        },
        cluster_autoscaler_role_arn: output("cluster_autoscaler_role_arn", "arn:")?,
        vpc_id: output("vpc_id", "vpc-")?,
    })
}

/// The environment's manifests rendered with these deploy-time values.
fn render(project: &Project, env: &LoadedEnvironment, deploy: Value) -> Result<Vec<Object>> {
    let templates = crate::commands::templates(project)?;
    let mut context = crate::render::context(env);
    context["deploy"] = deploy;
    let tree = templates.render_value(&context)?;
    Ok(manifest::from_tree(&tree, &env.name)?)
}

/// Why a rollout stopped short.
struct RolloutFailure {
    what: String,
    problems: Vec<String>,
}

impl std::fmt::Display for RolloutFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// One environment's deploys against one cluster.
struct Deployer<'a> {
    cluster: &'a Cluster,
    env: &'a str,
    namespace: &'a str,
}

impl<'a> Deployer<'a> {
    fn new(cluster: &'a Cluster, env: &'a LoadedEnvironment) -> Self {
        Deployer {
            cluster,
            env: &env.name,
            namespace: env.config.kubernetes.namespace.as_str(),
        }
    }

    /// The recorded revisions with their ConfigMaps, oldest first.
    async fn history(&self) -> Result<Vec<(Revision, Value)>> {
        let maps = self
            .cluster
            .list(
                "v1",
                "ConfigMap",
                Some(self.namespace),
                &format!("{HISTORY_LABEL}={}", self.env),
            )
            .await?;
        let mut revisions = Vec::new();
        for map in maps {
            revisions.push((history::revision_of(&map)?, map));
        }
        revisions.sort_by_key(|(r, _)| r.number);
        Ok(revisions)
    }

    /// The recorded revisions, oldest first.
    async fn revisions(&self) -> Result<Vec<Revision>> {
        Ok(self.history().await?.into_iter().map(|(r, _)| r).collect())
    }

    async fn record(&self, revision: &Revision, objects: &[Object]) -> Result<()> {
        let map = history::to_config_map(revision, objects, self.namespace, self.env);
        let key = Key::of(&map).expect("named");
        self.cluster.apply(&key, &map, false).await?;
        Ok(())
    }

    /// The key of an object of the environment's namespace.
    fn key(&self, api_version: &str, kind: &str, name: &str) -> Key {
        Key {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(self.namespace.into()),
            name: name.into(),
        }
    }

    /// The key of the environment's namespace itself.
    fn namespace_key(&self) -> Key {
        Key {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: self.namespace.into(),
        }
    }

    fn lock_key(&self) -> Key {
        self.key("coordination.k8s.io/v1", "Lease", lock::NAME)
    }

    /// Takes the environment's deploy lock (docs: `lock.rs`) for as long as a rollout and
    /// a return to the last good revision may take. The namespace is applied first: the
    /// Lease lives in it.
    async fn lock(&self, objects: &[Object], timeout: Duration) -> Result<()> {
        if let Some(namespace) = objects.iter().find(|o| o.key.kind == "Namespace") {
            self.cluster
                .apply(&namespace.key, &namespace.value, false)
                .await?;
        }
        let key = self.lock_key();
        let me = lock::identity();
        let hold = timeout * 2 + Duration::from_secs(120);
        for _ in 0..3 {
            let live = self.cluster.get(&key).await?;
            let taken = match lock::decide(live.as_ref(), SystemTime::now()) {
                lock::Decision::Create => {
                    let lease = lock::lease(self.namespace, self.env, &me, SystemTime::now(), hold, None);
                    self.cluster.create_if_absent(&key, &lease).await?
                }
                lock::Decision::TakeOver { resource_version, holder } => {
                    eprintln!("deploy: the lock of {holder} has expired; taking it over");
                    let lease = lock::lease(self.namespace, self.env, &me, SystemTime::now(), hold, Some(&resource_version));
                    self.cluster.replace(&key, &lease).await?
                }
                lock::Decision::Held { holder, since, expires_in } => bail!(
                    "another deploy of {env} is running: {holder} holds its lock since {since} (it expires in {} s)\n  \
                     hint: wait for it; if its holder is gone, `kubectl -n {ns} delete lease {}` frees the lock",
                    expires_in.as_secs(),
                    lock::NAME,
                    env = self.env,
                    ns = self.namespace
                ),
            };
            if taken {
                return Ok(());
            }
        }
        bail!(
            "the deploy lock of {} changed hands three times while taking it; try again",
            self.env
        )
    }

    /// Frees the lock (a failure leaves it to expire).
    async fn unlock(&self) {
        if let Err(e) = self.cluster.delete(&self.lock_key()).await {
            eprintln!("deploy: could not free the lock ({e}); it expires by itself");
        }
    }

    /// Every live object of these kinds in these namespaces carrying the environment's
    /// and shopctl's labels.
    async fn labelled(&self, scopes: &BTreeSet<prune::Scope>) -> Result<Vec<Value>> {
        let selector = format!(
            "{ENVIRONMENT_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
            self.env
        );
        let mut live = Vec::new();
        for scope in scopes {
            live.extend(
                self.cluster
                    .list(
                        &scope.api_version,
                        &scope.kind,
                        scope.namespace.as_deref(),
                        &selector,
                    )
                    .await?,
            );
        }
        Ok(live)
    }

    /// The CA of the load balancer controller's webhook certificate, as PEM: the one in
    /// its Secret when that will do, else a new one, stored unless `dry_run`. Safe against
    /// a concurrent deploy: the Secret is created only if absent and replaced only at the
    /// version read, and whatever is stored is what is returned.
    async fn webhook_ca(&self, dry_run: bool) -> Result<String> {
        let key = controllers::webhook_tls_secret_key();
        for _ in 0..3 {
            let live = self.cluster.get(&key).await?;
            let now = time::OffsetDateTime::now_utc();
            let decision = webhook_tls::decide(live.as_ref(), now);
            if let webhook_tls::Decision::Keep { ca_pem } = decision {
                return Ok(ca_pem);
            }
            let tls = WebhookTls::generate(now)?;
            let until = tls.not_after.date();
            if dry_run {
                eprintln!(
                    "deploy: {key} would get a new webhook certificate (valid until {until})"
                );
                return Ok(tls.ca_pem);
            }
            let mut secret = tls.secret(self.env);
            let stored = match (&decision, live) {
                (webhook_tls::Decision::Renew(why), Some(live)) => {
                    eprintln!("deploy: renewing the load balancer controller's webhook certificate: {why}");
                    secret["metadata"]["resourceVersion"] =
                        live["metadata"]["resourceVersion"].clone();
                    self.cluster.replace(&key, &secret).await?
                }
                _ => self.cluster.create_if_absent(&key, &secret).await?,
            };
            if stored {
                eprintln!("deploy: generated the load balancer controller's webhook certificate into {key} (valid until {until}; never printed)");
                return Ok(tls.ca_pem);
            }
        }
        bail!("the Secret {key} changed three times while the webhook certificate was being stored; try again")
    }

    /// Sets the current webhook CA into the objects' webhook configurations, if they have
    /// any (a recorded revision's bundle may be of a certificate renewed since).
    async fn with_current_ca(&self, objects: &mut [Object]) -> Result<()> {
        if controllers::has_webhooks(objects) {
            let ca = self.webhook_ca(false).await?;
            controllers::set_ca_bundle(objects, &webhook_tls::ca_bundle(&ca));
        }
        Ok(())
    }

    async fn ensure_secrets(&self) -> Result<usize> {
        let mut existing = BTreeSet::new();
        for name in secrets::NAMES {
            if self
                .cluster
                .get(&self.key("v1", "Secret", name))
                .await?
                .is_some()
            {
                existing.insert(name.to_owned());
            }
        }
        match secrets::plan(&existing) {
            secrets::Plan::Keep => Ok(0),
            secrets::Plan::Partial { missing } => bail!(
                "the Secrets of {} are incomplete: {} missing while the others exist; new passwords would not match the ones in use\n  \
                 hint: restore them from your backup, or delete all of {} to have new ones generated (the database's `shop` password must then be reset by hand)",
                self.env,
                missing.join(", "),
                secrets::NAMES.join(", ")
            ),
            secrets::Plan::CreateAll => {
                let passwords = secrets::Passwords::generate().context("cannot read random bytes")?;
                for secret in secrets::objects(&passwords, self.namespace, self.env) {
                    self.cluster.create_if_absent(&Key::of(&secret).expect("named"), &secret).await?;
                }
                Ok(secrets::NAMES.len())
            }
        }
    }

    /// Server-side dry run of every object; prints what would change.
    async fn dry_run(&self, objects: &[Object], revisions: &[Revision]) -> Result<Outcome> {
        let autoscaled = plan::autoscaled(objects);
        let namespace_exists = self.cluster.get(&self.namespace_key()).await?.is_some();
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
            .set_header(["object", "change"]);
        let (mut create, mut update, mut same) = (0, 0, 0);
        for object in objects {
            let namespaced_missing =
                !namespace_exists && object.key.namespace.as_deref() == Some(self.namespace);
            let change = if namespaced_missing {
                Change::Create
            } else {
                let live = self.cluster.get(&object.key).await?;
                // As a deploy applies it: an autoscaled workload without its count.
                let applied = match autoscaled.contains(&object.key) && live.is_some() {
                    true => plan::split_replicas(&object.value).0,
                    false => object.value.clone(),
                };
                let after = self.cluster.apply(&object.key, &applied, true).await?;
                diff::change(live.as_ref(), &after)
            };
            let text = match &change {
                Change::Create => {
                    create += 1;
                    "create".to_owned()
                }
                Change::Update(paths) => {
                    update += 1;
                    format!("update: {}", paths.join(", "))
                }
                Change::Unchanged => {
                    same += 1;
                    continue;
                }
            };
            table.add_row([object.key.to_string(), text]);
        }
        let previous = history::current(revisions)
            .map(|r| r.keys.clone())
            .unwrap_or_default();
        let rendered: Vec<Key> = objects.iter().map(|o| o.key.clone()).collect();
        let pruned = if namespace_exists {
            prune::to_prune(
                self.env,
                &rendered,
                &self.labelled(&prune::kinds(&rendered, &previous)).await?,
            )
        } else {
            Vec::new()
        };
        for key in &pruned {
            table.add_row([key.to_string(), "delete (no longer rendered)".to_owned()]);
        }
        if create + update + pruned.len() > 0 {
            println!("{table}");
        }
        Ok(Outcome {
            revision: None,
            summary: format!(
                "dry run: {create} to create, {update} to update, {} to delete, {same} unchanged; nothing was changed",
                pruned.len()
            ),
        })
    }

    /// Under the environment's deploy lock: records the revision, applies it phase by
    /// phase, prunes, and on a rollout that is not ready in time returns to the last good
    /// revision (when asked to).
    async fn roll_out(
        &self,
        record: Revision,
        objects: &[Object],
        revisions: &[Revision],
        timeout: Duration,
        rollback_on_failure: bool,
    ) -> Result<Outcome> {
        self.lock(objects, timeout).await?;
        let outcome = self
            .roll_out_locked(record, objects, revisions, timeout, rollback_on_failure)
            .await;
        self.unlock().await;
        outcome
    }

    async fn roll_out_locked(
        &self,
        mut record: Revision,
        objects: &[Object],
        revisions: &[Revision],
        timeout: Duration,
        rollback_on_failure: bool,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let number = record.number;
        let failure = self
            .apply_and_wait(objects, Some((&mut record, objects)), timeout)
            .await
            .err();
        let Some(failure) = failure else {
            let previous = history::current(revisions)
                .map(|r| r.keys.clone())
                .unwrap_or_default();
            let pruned = self.prune(objects, &previous).await?;
            record.outcome = Result_::Deployed;
            record.finished = Some(now());
            self.record(&record, objects).await?;
            self.expire(revisions).await?;
            return Ok(Outcome {
                revision: Some(number),
                summary: format!(
                    "revision {number} deployed in {:.0} s: {} objects applied, {} pruned; `shopctl history {}` lists revisions",
                    started.elapsed().as_secs_f64(),
                    objects.len(),
                    pruned,
                    self.env
                ),
            });
        };
        let good = history::last_good_before(revisions, number);
        record.finished = Some(now());
        match good {
            Some(good) if rollback_on_failure => {
                eprintln!("deploy: revision {number} failed: {failure}\ndeploy: rolling back to revision {}", good.number);
                record.outcome = Result_::RolledBack;
                record.note = Some(format!("{}; returned to {}", failure.what, good.number));
                self.record(&record, objects).await?;
                let (_, map) = self
                    .history()
                    .await?
                    .into_iter()
                    .find(|(r, _)| r.number == good.number)
                    .context("the good revision's record vanished")?;
                let mut previous_objects = history::objects_of(&map)?;
                self.with_current_ca(&mut previous_objects).await?;
                let returned = self.apply_and_wait(&previous_objects, None, timeout).await;
                if returned.is_ok() {
                    // What only the failed revision added goes too.
                    self.prune(&previous_objects, &record.keys).await?;
                }
                if let Err(again) = returned {
                    bail!(
                        "revision {number} failed ({}), and returning to revision {} failed too: {again}\n  \
                         hint: `shopctl history {env}`; `kubectl -n {ns} get pods` shows what is stuck",
                        failure.what, good.number, env = self.env, ns = self.namespace
                    );
                }
                bail!(
                    "revision {number} failed: {failure}\nrolled back to revision {} (ready again)\n  \
                     hint: `shopctl deploy {env} --no-rollback` keeps a failed rollout for debugging",
                    good.number, env = self.env
                );
            }
            _ => {
                record.outcome = Result_::Failed;
                record.note = Some(failure.what.clone());
                self.record(&record, objects).await?;
                let next = match good {
                    Some(good) => format!(
                        "`shopctl rollback {} --to {}` returns to the last good revision",
                        self.env, good.number
                    ),
                    None => format!(
                        "there is no good revision to return to; fix and `shopctl deploy {}` again",
                        self.env
                    ),
                };
                bail!("revision {number} failed and was kept as it is: {failure}\n  hint: {next}");
            }
        }
    }

    /// Applies phase by phase and waits for each phase's workloads. With a record, writes
    /// it as in progress once the namespace exists, and the Secrets before anything reads them.
    async fn apply_and_wait(
        &self,
        objects: &[Object],
        mut record: Option<(&mut Revision, &[Object])>,
        timeout: Duration,
    ) -> Result<(), RolloutFailure> {
        let deadline = Instant::now() + timeout;
        let steps = plan::steps(objects);
        let autoscaled = plan::autoscaled(objects);
        let total = steps.len();
        let api = |e: anyhow::Error| RolloutFailure {
            what: format!("{e:#}"),
            problems: vec![],
        };
        for (i, step) in steps.iter().enumerate() {
            let phase_started = Instant::now();
            if step.phase == Phase::Config {
                if let Some((revision, all)) = record.take() {
                    self.record(revision, all).await.map_err(api)?;
                    let created = self.ensure_secrets().await.map_err(api)?;
                    if created > 0 {
                        eprintln!("deploy: generated {created} Secrets (never printed; `kubectl -n {} get secrets` lists them)", self.namespace);
                    }
                }
            }
            for object in &step.apply {
                let scaled = autoscaled.contains(&object.key);
                self.apply_one(object, scaled).await.map_err(api)?;
            }
            self.wait(
                &step.wait_for,
                deadline,
                &format!("[{}/{total}] {}", i + 1, step.phase.name()),
            )
            .await?;
            eprintln!(
                "deploy: [{}/{total}] {}: {} applied{} in {:.0} s",
                i + 1,
                step.phase.name(),
                step.apply.len(),
                if step.wait_for.is_empty() {
                    String::new()
                } else {
                    format!(", {} ready", step.wait_for.len())
                },
                phase_started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    async fn apply_one(&self, object: &Object, autoscaled: bool) -> Result<()> {
        if autoscaled {
            // The autoscaler owns the count: set once, on creation, under its own manager.
            let (owned, initial) = plan::split_replicas(&object.value);
            let created = self.cluster.get(&object.key).await?.is_none();
            self.cluster.apply(&object.key, &owned, false).await?;
            if let (true, Some(initial)) = (created, initial) {
                self.cluster
                    .apply_as(plan::INITIAL_REPLICAS_MANAGER, &object.key, &initial, false)
                    .await?;
            }
            return Ok(());
        }
        if object.key.kind != "Job" {
            self.cluster
                .apply(&object.key, &object.value, false)
                .await?;
            return Ok(());
        }
        // A Job's pod template cannot change: a changed or failed Job is replaced.
        let hashed = plan::with_spec_hash(&object.value);
        let live = self.cluster.get(&object.key).await?;
        match plan::job_action(live.as_ref(), &hashed) {
            JobAction::Keep => return Ok(()),
            JobAction::Create => {}
            JobAction::Replace => {
                self.cluster.delete(&object.key).await?;
                let within = Duration::from_secs(120);
                if !self
                    .cluster
                    .wait_gone(&object.key, within, Duration::from_secs(1))
                    .await?
                {
                    bail!("{} is still being deleted after 120 s", object.key);
                }
            }
        }
        self.cluster.apply(&object.key, &hashed, false).await?;
        Ok(())
    }

    /// Polls the workloads until all are ready, one fails, or the deadline passes.
    async fn wait(
        &self,
        keys: &[&Key],
        deadline: Instant,
        label: &str,
    ) -> Result<(), RolloutFailure> {
        if keys.is_empty() {
            return Ok(());
        }
        let spinner = crate::image::command::spinner(label);
        let result = self.poll(keys, deadline, label, &spinner).await;
        spinner.finish_and_clear();
        result
    }

    async fn poll(
        &self,
        keys: &[&Key],
        deadline: Instant,
        label: &str,
        spinner: &indicatif::ProgressBar,
    ) -> Result<(), RolloutFailure> {
        let mut waiting: Vec<&Key> = keys.to_vec();
        loop {
            let mut still = Vec::new();
            let mut messages = Vec::new();
            for key in &waiting {
                let live = self
                    .cluster
                    .get(key)
                    .await
                    .map_err(|e| RolloutFailure {
                        what: e.to_string(),
                        problems: vec![],
                    })?
                    .unwrap_or(Value::Null);
                match readiness::rollout(&key.kind, &live) {
                    Rollout::Ready => {}
                    Rollout::Progressing(why) => {
                        messages.push(format!("{}: {why}", key.name));
                        still.push(*key);
                    }
                    Rollout::Failed(why) => {
                        return Err(RolloutFailure {
                            what: format!("{key} failed: {why}"),
                            problems: self.problems(&[key]).await,
                        })
                    }
                }
            }
            waiting = still;
            if waiting.is_empty() {
                return Ok(());
            }
            let last = messages.join("; ");
            spinner.set_message(format!("{label}: {last}"));
            if Instant::now() >= deadline {
                return Err(RolloutFailure {
                    what: format!("not ready before the deadline: {last}"),
                    problems: self.problems(&waiting).await,
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// What the pods of these workloads say is wrong (best effort: a failure to read
    /// them does not hide the failure being reported).
    async fn problems(&self, keys: &[&Key]) -> Vec<String> {
        let mut problems = Vec::new();
        for key in keys {
            let Ok(Some(live)) = self.cluster.get(key).await else {
                continue;
            };
            let selector = plan::selector(&live);
            if selector.is_empty() {
                continue;
            }
            let namespace = key.namespace.as_deref().unwrap_or(self.namespace);
            if let Ok(pods) = self
                .cluster
                .list("v1", "Pod", Some(namespace), &selector)
                .await
            {
                problems.extend(readiness::pod_problems(&pods));
            }
        }
        problems
    }

    async fn prune(&self, objects: &[Object], previous: &[Key]) -> Result<usize> {
        let rendered: Vec<Key> = objects.iter().map(|o| o.key.clone()).collect();
        let live = self.labelled(&prune::kinds(&rendered, previous)).await?;
        let doomed = prune::to_prune(self.env, &rendered, &live);
        let mut waited = false;
        for key in &doomed {
            if Phase::of(key).is_cluster() && !waited {
                // The load balancer controller removes a deleted Ingress's ALB; it goes
                // only once the Ingresses pruned before it are gone.
                self.wait_gone(doomed.iter().filter(|k| k.kind == "Ingress"))
                    .await?;
                waited = true;
            }
            eprintln!("deploy: pruning {key} (no longer rendered)");
            self.cluster.delete(key).await?;
        }
        Ok(doomed.len())
    }

    async fn wait_gone(&self, keys: impl Iterator<Item = &Key>) -> Result<()> {
        for key in keys {
            let within = Duration::from_secs(300);
            if !self
                .cluster
                .wait_gone(key, within, Duration::from_secs(2))
                .await?
            {
                bail!("{key} is still being deleted after 300 s (its load balancer's finalizer waits)\n  hint: `kubectl -n {} describe ingress {}`", self.namespace, key.name);
            }
        }
        Ok(())
    }

    async fn expire(&self, revisions: &[Revision]) -> Result<()> {
        // The new revision is not in `revisions`: keep one fewer of the older ones.
        for number in history::expired(revisions, history::KEEP - 1) {
            let key = self.key("v1", "ConfigMap", &Revision::config_map_name(number));
            self.cluster.delete(&key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_must_be_pinned_by_digest() {
        let digest = "a".repeat(64);
        let good = format!("123.dkr.ecr.eu-west-1.amazonaws.com/shop-app@sha256:{digest}");
        assert_eq!(parse_pinned(&good).unwrap(), good);
        for bad in [
            "shop-app:latest".to_owned(),
            format!("@sha256:{digest}"),
            format!("shop-app@sha256:{}", "a".repeat(63)),
            format!("shop-app@sha256:{}", "A".repeat(64)),
        ] {
            let err = parse_pinned(&bad).unwrap_err().to_string();
            assert!(
                err.contains("not pinned by digest") && err.contains("REPOSITORY@sha256:"),
                "{err}"
            );
        }
    }

    #[test]
    fn role_arns_and_the_vpc_come_from_terraforms_outputs() {
        let mut outputs = json!({
            "app_role_arn": {"value": "arn:aws:iam::123456789012:role/shop-staging-app"},
            "backup_role_arn": {"value": "arn:aws:iam::123456789012:role/shop-staging-postgres-backup"},
            "lb_controller_role_arn": {"value": "arn:aws:iam::123456789012:role/shop-staging-lb-controller"},
            "cluster_autoscaler_role_arn": {"value": "arn:aws:iam::123456789012:role/shop-staging-cluster-autoscaler"},
            "vpc_id": {"value": "vpc-0123456789abcdef0"},
        });
        let found = outputs_of(&outputs, "staging", true).unwrap();
        assert!(found.app_role_arn.ends_with("role/shop-staging-app"));
        assert!(found.backup_role_arn.ends_with("postgres-backup"));
        assert!(found
            .lb_controller_role_arn
            .unwrap()
            .ends_with("lb-controller"));
        assert!(found
            .cluster_autoscaler_role_arn
            .ends_with("cluster-autoscaler"));
        assert_eq!(found.vpc_id, "vpc-0123456789abcdef0");
        let err = outputs_of(&json!({}), "staging", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no output app_role_arn") && err.contains("`shopctl apply staging`"),
            "{err}"
        );
        // Without the ALB's controller (ingress class nginx) its role is not needed.
        outputs
            .as_object_mut()
            .unwrap()
            .remove("lb_controller_role_arn");
        assert!(outputs_of(&outputs, "staging", false)
            .unwrap()
            .lb_controller_role_arn
            .is_none());
        let err = outputs_of(&outputs, "staging", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no output lb_controller_role_arn"), "{err}");
        outputs["vpc_id"] = json!({"value": "subnet-1"});
        let err = outputs_of(&outputs, "staging", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no output vpc_id"), "{err}");
    }
}
