//! The six steps of `up <env>`, one method each. A step fingerprints its inputs, is
//! skipped when the [`Runner`] finds it done with the same ones, and otherwise runs the
//! same code as its own command.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use super::progress::Facts;
use super::runner::Runner;
use super::{command_line, emulator, facts, sha256_hex, smoke, tree_hash, worktree_changes};
use super::{Step, DEPLOY_TIMEOUT};
use crate::cli::UpArgs;
use crate::commands::{load, render_env, shown, terraform_log, workspace};
use crate::config::LoadedEnvironment;
use crate::deploy::PushedImage;
use crate::project::Project;
use crate::render::Tree;

/// What the steps of one `up <env>` share: the environment and where its parts are.
pub(super) struct Up<'a> {
    pub project: &'a Project,
    pub args: &'a UpArgs,
    pub env: LoadedEnvironment,
    /// The emulator's URL when the AWS API is one (the emulator rule of the module docs).
    pub emulator: Option<String>,
    /// `AWS` or the emulator's URL: an input of every step that talks to it.
    aws: String,
    pub state_dir: PathBuf,
    domain: String,
    pub namespace: String,
    pub cluster: String,
    /// Where image-push goes, in words: --registry's URL or the ECR repository.
    pub registry: String,
    /// --kubeconfig, else the one the kubeconfig step writes.
    kubeconfig: PathBuf,
    /// The environment's rendered Terraform and Kubernetes files.
    tree: Tree,
}

impl<'a> Up<'a> {
    pub fn new(project: &'a Project, args: &'a UpArgs) -> Result<Self> {
        let env = load(project, &args.env, &args.endpoint, false)?;
        if args.aws {
            bail!(
                "--aws is for local environments; `shopctl up {0}` applies {0}'s Terraform stack as its first step",
                env.name
            );
        }
        let emulator = emulator(&env);
        let tree = render_env(project, &env)?;
        Ok(Up {
            project,
            args,
            aws: emulator.clone().unwrap_or_else(|| "AWS".into()),
            emulator,
            state_dir: project.state_dir(&env.name),
            domain: env.config.domain.as_str().to_owned(),
            namespace: env.config.kubernetes.namespace.as_str().to_owned(),
            cluster: crate::status::cluster_name(&env.name),
            registry: match &args.registry.registry {
                Some(url) => url.clone(),
                None => format!("ECR {}", env.config.ecr.repository.as_str()),
            },
            kubeconfig: args
                .kubeconfig
                .clone()
                .unwrap_or_else(|| crate::eks::command::default_path(project, &env.name)),
            env,
            tree,
        })
    }

    /// What each step will do, for the plan printed before asking.
    pub fn plan(&self) -> [(Step, String); 6] {
        [
            (
                Step::Terraform,
                "plan and apply the Terraform stack".to_owned(),
            ),
            (
                Step::ImageBuild,
                match &self.args.app_bin {
                    Some(path) => format!("the app's image, packaging {}", path.display()),
                    None => "the app's image (cargo build --release)".to_owned(),
                },
            ),
            (Step::ImagePush, format!("to {}", self.registry)),
            (
                Step::Kubeconfig,
                match &self.args.kubeconfig {
                    Some(path) => format!("given: {}", path.display()),
                    None => format!("for the EKS cluster {}", self.cluster),
                },
            ),
            (
                Step::Deploy,
                format!("the Kubernetes manifests, namespace {}", self.namespace),
            ),
            (
                Step::Smoke,
                format!("GET {}/readyz and /healthz", smoke::base_url(&self.domain)),
            ),
        ]
    }

    /// Step 1: plan and apply the Terraform stack.
    pub async fn terraform(&self, runner: &mut Runner<'_>) -> Result<()> {
        let config_file = self
            .project
            .environments_dir()
            .join(format!("{}.toml", self.env.name));
        let config_bytes = std::fs::read(&config_file)
            .with_context(|| format!("cannot read {}", config_file.display()))?;
        let inputs = facts([
            ("config", sha256_hex(&config_bytes)),
            ("terraform", tree_hash(&self.tree, "terraform")),
            ("aws", self.aws.clone()),
        ]);
        if runner.skip(Step::Terraform, &inputs, |_| true).is_some() {
            return Ok(());
        }
        let log = terraform_log(&self.state_dir);
        let began = runner.start(
            Step::Terraform,
            &format!(
                "plan and apply (Terraform's output: {})",
                shown(self.project, &log).display()
            ),
        )?;
        let result = async {
            let workspace = workspace(self.project, &self.env, &self.tree, Some(log)).await?;
            let summary = workspace.plan(false).await?;
            if !summary.is_empty() {
                workspace.apply_plan().await?;
            }
            let said = if summary.is_empty() {
                "nothing to change".to_owned()
            } else {
                format!("applied: {summary}")
            };
            Ok(((), Facts::new(), said))
        }
        .await;
        runner.finish(Step::Terraform, inputs, began, result)
    }

    /// Step 2: build the app's image; returns its digest.
    pub fn image_build(&self, runner: &mut Runner<'_>) -> Result<String> {
        let project = self.project;
        let source = crate::image::Source::discover(&project.root);
        let mut inputs = facts([
            ("commit", source.revision.clone()),
            ("epoch", source.epoch.to_string()),
        ]);
        if source.revision.ends_with("-dirty") {
            inputs.insert("changes".into(), worktree_changes(&project.root));
        }
        let binary = match &self.args.app_bin {
            Some(path) => sha256_hex(
                &std::fs::read(path)
                    .with_context(|| format!("--app-bin: cannot read {}", path.display()))?,
            ),
            None => "cargo build --release".to_owned(),
        };
        inputs.insert("binary".into(), binary);
        let layout = crate::image::layout_dir(&project.root);
        let layout_digest = || {
            crate::image::layout::Image::read(&layout)
                .ok()
                .map(|(image, _)| image.digest)
        };
        // Done only while the image it built is still the one in the layout.
        if let Some(done) = runner.skip(Step::ImageBuild, &inputs, |done| {
            done.outputs
                .get("digest")
                .is_some_and(|digest| layout_digest().as_ref() == Some(digest))
        }) {
            return Ok(done.outputs["digest"].clone());
        }
        let began = runner.start(
            Step::ImageBuild,
            &format!("into {}", shown(project, &layout).display()),
        )?;
        let result =
            crate::image::command::build_image(project, self.args.app_bin.as_deref(), None).map(
                |(built, _)| {
                    let said = format!(
                        "{} (tag {}), {:.1} MB compressed, {} of {} layers unchanged",
                        built.digest,
                        built.tag,
                        built.size_bytes as f64 / 1e6,
                        built.layers_reused,
                        built.layers.len()
                    );
                    let digest = built.digest.clone();
                    (digest.clone(), facts([("digest", digest)]), said)
                },
            );
        runner.finish(Step::ImageBuild, inputs, began, result)
    }

    /// Step 3: push the image `digest`; returns the record `deploy` reads.
    pub async fn image_push(&self, runner: &mut Runner<'_>, digest: &str) -> Result<PushedImage> {
        let project = self.project;
        let record_file = crate::image::pushed::path(project, &self.env.name);
        let mut inputs = facts([
            ("image", digest.to_owned()),
            ("registry", self.registry.clone()),
        ]);
        if self.args.registry.registry.is_none() {
            inputs.insert("aws".into(), self.aws.clone());
        }
        let recorded = || crate::image::pushed::read(&record_file).ok().flatten();
        // Done only while pushed-image.json still names what it pushed.
        if runner
            .skip(Step::ImagePush, &inputs, |done| {
                recorded().is_some_and(|r| Some(&r.digest) == done.outputs.get("digest"))
            })
            .is_some()
        {
            return recorded().context("pushed-image.json vanished");
        }
        if let (Some(url), None) = (&self.emulator, &self.args.registry.registry) {
            return Err(runner.refuse(
                Step::ImagePush,
                format!(
                    "the AWS API is an emulator ({url}); its ECR repository has no registry behind its URI"
                ),
                format!(
                    "push to a registry of your own with --registry URL, e.g. `{} --registry http://127.0.0.1:5000`",
                    command_line(self.args, self.args.until)
                ),
            ));
        }
        let began = runner.start(Step::ImagePush, &format!("{digest} to {}", self.registry))?;
        let result =
            crate::image::command::push_image(project, &self.env, &self.args.registry, None)
                .await
                .map(|(pushed, record)| {
                    let said = format!(
                        "{}: {} of {} blobs uploaded ({:.1} MB); recorded in {}",
                        record.reference(),
                        pushed.blobs_uploaded,
                        pushed.blobs_uploaded + pushed.blobs_present,
                        pushed.bytes_uploaded as f64 / 1e6,
                        shown(project, &record_file).display()
                    );
                    let outputs = facts([("digest", record.digest.clone())]);
                    (record, outputs, said)
                });
        runner.finish(Step::ImagePush, inputs, began, result)
    }

    /// Step 4: write the EKS cluster's kubeconfig, unless --kubeconfig names one.
    pub async fn kubeconfig(&self, runner: &mut Runner<'_>) -> Result<()> {
        let project = self.project;
        if let Some(path) = &self.args.kubeconfig {
            if !path.is_file() {
                return Err(runner.failed(
                    Step::Kubeconfig,
                    anyhow!("--kubeconfig {}: no such file", path.display()),
                ));
            }
            eprintln!(
                "{}: given with --kubeconfig ({}); nothing to write",
                Step::Kubeconfig.label(),
                path.display()
            );
            runner.given(Step::Kubeconfig, format!("given: {}", path.display()));
            return Ok(());
        }
        let kubeconfig = &self.kubeconfig;
        let inputs = facts([
            ("cluster", self.cluster.clone()),
            ("aws", self.aws.clone()),
            ("path", kubeconfig.display().to_string()),
        ]);
        if runner
            .skip(Step::Kubeconfig, &inputs, |_| kubeconfig.is_file())
            .is_some()
        {
            return Ok(());
        }
        let began = runner.start(
            Step::Kubeconfig,
            &format!(
                "EKS DescribeCluster {}, then write {}",
                self.cluster,
                shown(project, kubeconfig).display()
            ),
        )?;
        let endpoint = self.args.endpoint.aws_endpoint.as_ref().map(|u| u.as_str());
        let result = crate::eks::command::write_for(project, &self.env, endpoint, kubeconfig)
            .await
            .map(|c| {
                let said = format!(
                    "cluster {} (Kubernetes {}) -> {}",
                    c.name,
                    c.version,
                    shown(project, kubeconfig).display()
                );
                ((), Facts::new(), said)
            });
        runner.finish(Step::Kubeconfig, inputs, began, result)
    }

    /// Step 5: deploy the manifests with the pushed image.
    pub async fn deploy(&self, runner: &mut Runner<'_>, pushed: &PushedImage) -> Result<()> {
        let reference = pushed.reference();
        let inputs = facts([
            ("image", reference.clone()),
            ("kubeconfig", self.kubeconfig.display().to_string()),
            ("manifests", tree_hash(&self.tree, "k8s")),
        ]);
        if runner.skip(Step::Deploy, &inputs, |_| true).is_some() {
            return Ok(());
        }
        self.no_cluster_behind_the_emulator(runner, Step::Deploy)?;
        let began = runner.start(
            Step::Deploy,
            &format!("{reference} to namespace {}", self.namespace),
        )?;
        let options = crate::deploy::Options {
            dry_run: false,
            rollback_on_failure: true,
            timeout: DEPLOY_TIMEOUT,
            kubeconfig: Some(self.kubeconfig.clone()),
            image: Some(reference),
        };
        let result = crate::deploy::command::deploy(self.project, &self.env, &options)
            .await
            .map(|outcome| {
                let outputs = outcome
                    .revision
                    .map(|r| facts([("revision", r.to_string())]))
                    .unwrap_or_default();
                ((), outputs, outcome.summary)
            });
        runner.finish(Step::Deploy, inputs, began, result)
    }

    /// Step 6: GET the public endpoint's health checks. It checks the present, so it runs
    /// every time.
    pub async fn smoke(&self, runner: &mut Runner<'_>) -> Result<()> {
        self.no_cluster_behind_the_emulator(runner, Step::Smoke)?;
        let base = smoke::base_url(&self.domain);
        let inputs = facts([("endpoint", base.clone())]);
        let began = runner.start(
            Step::Smoke,
            &format!(
                "GET {base}{{{}}} (up to {} s while the load balancer comes up)",
                smoke::PATHS.join(","),
                smoke::DEADLINE.as_secs()
            ),
        )?;
        let result = smoke::check(&self.domain, &self.namespace, smoke::DEADLINE)
            .await
            .map(|said| ((), Facts::new(), said));
        runner.finish(Step::Smoke, inputs, began, result)
    }

    /// The emulator rule for deploy and smoke: never against the cluster an emulator makes
    /// up, only against one --kubeconfig names.
    fn no_cluster_behind_the_emulator(&self, runner: &Runner<'_>, step: Step) -> Result<()> {
        let (Some(url), None) = (&self.emulator, &self.args.kubeconfig) else {
            return Ok(());
        };
        Err(runner.refuse(
            step,
            format!(
                "the AWS API is an emulator ({url}): the EKS cluster it describes has no Kubernetes API, so there is nothing to {}",
                if step == Step::Deploy { "deploy to" } else { "test" }
            ),
            format!(
                "`{}` stops before it; for a real cluster, pass --kubeconfig PATH: `{} --kubeconfig PATH`",
                command_line(self.args, Some(Step::Kubeconfig)),
                command_line(self.args, None)
            ),
        ))
    }
}
