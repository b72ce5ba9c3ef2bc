//! `shopctl up <env>` and `shopctl down <env>` for the environments that run on EKS: the
//! whole path in one command, in six steps (terraform, image-build, image-push,
//! kubeconfig, deploy, smoke), resumable through `.shopctl/<env>/up.json` ([`progress`]).
//!
//! Each step is the same code as its own command (`apply`, `image build`, `image push`,
//! `kubeconfig`, `deploy`); this module orders them, fingerprints their inputs and keeps
//! the record.
//!
//! The emulator rule: when the AWS API is an emulator (aws.endpoint_url or
//! --aws-endpoint), the EKS cluster it describes has no Kubernetes API behind its endpoint,
//! and its ECR repository no registry behind its URI. So against an emulator, deploy and
//! smoke need an explicit --kubeconfig and image-push an explicit --registry; shopctl
//! never connects to the addresses the emulator makes up.

mod progress;
mod smoke;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use sha2::Digest;

use crate::cli::{DownArgs, UpArgs};
use crate::commands::{load, render_env, shown, terraform_log, workspace};
use crate::config::LoadedEnvironment;
use crate::confirm::{confirm, Question};
use crate::project::Project;
use progress::{Decision, Done, Facts, Progress};

/// The steps of `up <env>`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Step {
    /// Plan and apply the environment's Terraform stack.
    Terraform,
    /// Build the app's OCI image.
    ImageBuild,
    /// Push it to the environment's ECR repository (or --registry).
    ImagePush,
    /// Write the kubeconfig of the EKS cluster.
    Kubeconfig,
    /// Apply the Kubernetes manifests with the pushed image.
    Deploy,
    /// GET /readyz and /healthz at the public endpoint.
    Smoke,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Terraform,
        Step::ImageBuild,
        Step::ImagePush,
        Step::Kubeconfig,
        Step::Deploy,
        Step::Smoke,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Terraform => "terraform",
            Step::ImageBuild => "image-build",
            Step::ImagePush => "image-push",
            Step::Kubeconfig => "kubeconfig",
            Step::Deploy => "deploy",
            Step::Smoke => "smoke",
        }
    }

    fn number(self) -> usize {
        self as usize + 1
    }

    fn next(self) -> Option<Step> {
        Step::ALL.get(self as usize + 1).copied()
    }

    /// `[2/6] image-build`
    fn label(self) -> String {
        format!("[{}/{}] {}", self.number(), Step::ALL.len(), self.name())
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long `deploy` may wait for every workload together.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// The emulator's endpoint, when the AWS API is one.
fn emulator(env: &LoadedEnvironment) -> Option<String> {
    env.config.aws.endpoint_url.as_ref().map(|u| u.to_string())
}

/// `shopctl up <env>` with the flags that choose targets (not --until, --restart).
fn command_line(args: &UpArgs, until: Option<Step>) -> String {
    let mut line = format!("shopctl up {}", args.env);
    if let Some(step) = until {
        let _ = write!(line, " --until {step}");
    }
    if let Some(url) = &args.endpoint.aws_endpoint {
        let _ = write!(line, " --aws-endpoint {url}");
    }
    if let Some(url) = &args.registry.registry {
        let _ = write!(line, " --registry {url}");
    }
    if let Some(auth) = args.registry.auth.and_then(|a| a.to_possible_value()) {
        let _ = write!(line, " --auth {}", auth.get_name());
    }
    if let Some(path) = &args.app_bin {
        let _ = write!(line, " --app-bin {}", path.display());
    }
    if let Some(path) = &args.kubeconfig {
        let _ = write!(line, " --kubeconfig {}", path.display());
    }
    if args.yes {
        line.push_str(" --yes");
    }
    line
}

/// The flags `up local` does not take, when one was given.
pub fn refuse_remote_flags(args: &UpArgs) -> Result<()> {
    let given = [
        ("--until", args.until.is_some()),
        ("--restart", args.restart),
        ("--kubeconfig", args.kubeconfig.is_some()),
        ("--registry", args.registry.registry.is_some()),
        ("--auth", args.registry.auth.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} is for `shopctl up <env>` of an environment on EKS; {} is a local environment",
            args.env
        );
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A fingerprint of the rendered files under `dir/` (`terraform`, `k8s`).
fn tree_hash(tree: &crate::render::Tree, dir: &str) -> String {
    let mut hasher = sha2::Sha256::new();
    for (path, text) in tree.iter().filter(|(p, _)| p.starts_with(dir)) {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}

/// A fingerprint of the uncommitted changes to tracked files (what `-dirty` hides).
fn worktree_changes(root: &Path) -> String {
    let diff = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["diff", "HEAD", "--binary"])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    sha256_hex(&diff)
}

fn facts<const N: usize>(pairs: [(&str, String); N]) -> Facts {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats as RFC 3339")
}

/// Why a done step is skipped, in words.
fn same(step: Step, args: &UpArgs) -> &'static str {
    match step {
        Step::Terraform => "same configuration",
        Step::ImageBuild if args.app_bin.is_some() => "same commit and binary",
        Step::ImageBuild => "same commit",
        Step::ImagePush => "same image and registry",
        Step::Kubeconfig => "same cluster",
        Step::Deploy => "same image and manifests",
        Step::Smoke => "same endpoint",
    }
}

/// One line of the closing summary.
struct Line {
    step: Step,
    took: Option<Duration>,
    detail: String,
}

/// The steps' bookkeeping: the record, the summary, and the rule that once a step runs,
/// every later one runs too.
struct Runner<'a> {
    args: &'a UpArgs,
    file: PathBuf,
    progress: Progress,
    /// A step ran (or --restart): every later step runs.
    rerun: bool,
    lines: Vec<Line>,
    today: String,
}

impl Runner<'_> {
    /// The record of `step` when it is done with these inputs (and `still_there` holds:
    /// its output was not removed since), after saying so; None when it must run.
    fn skip(
        &mut self,
        step: Step,
        inputs: &Facts,
        still_there: impl Fn(&Done) -> bool,
    ) -> Option<Done> {
        if self.rerun {
            return None;
        }
        let label = step.label();
        match self.progress.decide(step, inputs) {
            Decision::NotDone => None,
            Decision::Same(done) if still_there(done) => {
                let when = progress::when(&done.finished_at, &self.today);
                let reason = same(step, self.args);
                eprintln!("{label}: done {when}, {reason}; skipped");
                let done = done.clone();
                self.lines.push(Line {
                    step,
                    took: None,
                    detail: format!("done {when}, {reason}"),
                });
                Some(done)
            }
            Decision::Same(done) => {
                let when = progress::when(&done.finished_at, &self.today);
                eprintln!("{label}: done {when}, but what it made is gone; running it again");
                None
            }
            Decision::Changed { done, what } => {
                let when = progress::when(&done.finished_at, &self.today);
                eprintln!(
                    "{label}: done {when}, but its inputs changed since ({}); running it again",
                    what.join(", ")
                );
                None
            }
        }
    }

    /// Says what the step does and forgets it and every later step: from here on, a
    /// failure leaves them not done.
    fn start(&mut self, step: Step, what: &str) -> Result<Instant> {
        self.rerun = true;
        self.progress.forget_from(step);
        self.progress.save(&self.file)?;
        eprintln!("{}: {what}", step.label());
        Ok(Instant::now())
    }

    /// Records a step that succeeded, or turns its error into one that ends with the
    /// command that resumes.
    fn finish<T>(
        &mut self,
        step: Step,
        inputs: Facts,
        started: Instant,
        result: Result<(T, Facts, String)>,
    ) -> Result<T> {
        let (value, outputs, summary) = result.map_err(|e| self.failed(step, e))?;
        let took = started.elapsed();
        self.progress.record(
            step,
            Done {
                finished_at: now_rfc3339(),
                seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
                inputs,
                outputs,
                summary: summary.clone(),
            },
        );
        self.progress.save(&self.file)?;
        eprintln!("{}: {summary} ({:.1} s)", step.label(), took.as_secs_f64());
        self.lines.push(Line {
            step,
            took: Some(took),
            detail: summary,
        });
        Ok(value)
    }

    fn failed(&self, step: Step, error: anyhow::Error) -> anyhow::Error {
        if error.is::<crate::terraform::Interrupted>() {
            return error;
        }
        anyhow!(
            "{} failed: {error:#}\n  next: when that is fixed, `{}` resumes from {step} (the steps done are skipped)",
            step.label(),
            command_line(self.args, self.args.until)
        )
    }

    /// A step that cannot run as asked: not recorded, and the way on is named.
    fn refuse(&self, step: Step, why: String, next: String) -> anyhow::Error {
        anyhow!("{} refused: {why}\n  next: {next}", step.label())
    }

    fn summary(&self, env: &str, started: Instant) {
        let ran = self.lines.iter().filter(|l| l.took.is_some()).count();
        eprintln!(
            "{env}: {} step(s) in {:.1} s ({ran} ran, {} skipped)",
            self.lines.len(),
            started.elapsed().as_secs_f64(),
            self.lines.len() - ran
        );
        for line in &self.lines {
            let took = line
                .took
                .map(|t| format!("{:.1} s", t.as_secs_f64()))
                .unwrap_or_else(|| "skipped".into());
            eprintln!("  {:<12} {took:>9}  {}", line.step.name(), line.detail);
        }
    }
}

/// `shopctl up <env>` for an environment on EKS.
pub async fn up(project: &Project, args: &UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let env = load(project, &args.env, &args.endpoint, false)?;
    if args.aws {
        bail!(
            "--aws is for local environments; `shopctl up {0}` applies {0}'s Terraform stack as its first step",
            env.name
        );
    }
    let until = args.until.unwrap_or(Step::Smoke);
    let emulator = emulator(&env);
    let state_dir = project.state_dir(&env.name);
    let domain = env.config.domain.as_str().to_owned();
    let namespace = env.config.kubernetes.namespace.as_str().to_owned();
    let cluster = crate::status::cluster_name(&env.name);
    let registry = match &args.registry.registry {
        Some(url) => url.clone(),
        None => format!("ECR {}", env.config.ecr.repository.as_str()),
    };
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| crate::eks::command::default_path(project, &env.name));

    let plan = [
        (
            Step::Terraform,
            "plan and apply the Terraform stack".to_owned(),
        ),
        (
            Step::ImageBuild,
            match &args.app_bin {
                Some(path) => format!("the app's image, packaging {}", path.display()),
                None => "the app's image (cargo build --release)".to_owned(),
            },
        ),
        (Step::ImagePush, format!("to {registry}")),
        (
            Step::Kubeconfig,
            match &args.kubeconfig {
                Some(path) => format!("given: {}", path.display()),
                None => format!("for the EKS cluster {cluster}"),
            },
        ),
        (
            Step::Deploy,
            format!("the Kubernetes manifests, namespace {namespace}"),
        ),
        (
            Step::Smoke,
            format!("GET {}/readyz and /healthz", smoke::base_url(&domain)),
        ),
    ];
    eprintln!(
        "{}: up, {} of {} steps{}{}",
        env.name,
        until.number(),
        Step::ALL.len(),
        if until == Step::Smoke {
            String::new()
        } else {
            format!(" (--until {until})")
        },
        emulator
            .as_ref()
            .map(|url| format!("; AWS API: the emulator at {url}"))
            .unwrap_or_default()
    );
    for (step, what) in &plan {
        let later = if *step > until { "  (not now)" } else { "" };
        eprintln!("  {}. {:<12} {what}{later}", step.number(), step.name());
    }
    let changes: Vec<&str> = [
        (Step::Terraform, "apply Terraform"),
        (Step::ImagePush, "push the image"),
        (Step::Deploy, "deploy to the cluster"),
    ]
    .into_iter()
    .filter(|(s, _)| *s <= until)
    .map(|(_, what)| what)
    .collect();
    confirm(
        &Question {
            action: "bring up",
            env: &env.name,
            tier: env.config.tier,
            detail: format!(
                "{} (steps already done with the same inputs are skipped)",
                changes.join(", ")
            ),
        },
        args.yes,
    )
    .await?;

    let file = state_dir.join(Progress::FILE);
    let progress = if args.restart {
        eprintln!(
            "{}: --restart: the recorded progress is forgotten",
            env.name
        );
        Progress::default()
    } else {
        Progress::load(&file)?
    };
    let mut runner = Runner {
        args,
        file,
        progress,
        rerun: args.restart,
        lines: Vec::new(),
        today: now_rfc3339().chars().take(10).collect(),
    };
    let stop = |runner: &Runner, step: Step| -> Option<ExitCode> {
        if step != until {
            return None;
        }
        runner.summary(&env.name, started);
        match step.next() {
            Some(next) => eprintln!(
                "{}: stopped after {step} (--until); next: {next}, with `{}`",
                env.name,
                command_line(args, None)
            ),
            None => eprintln!("{}: up", env.name),
        }
        Some(ExitCode::SUCCESS)
    };

    // 1. terraform
    let tree = render_env(project, &env)?;
    let config_file = project
        .environments_dir()
        .join(format!("{}.toml", env.name));
    let config_bytes = std::fs::read(&config_file)
        .with_context(|| format!("cannot read {}", config_file.display()))?;
    let aws = emulator.clone().unwrap_or_else(|| "AWS".into());
    let inputs = facts([
        ("config", sha256_hex(&config_bytes)),
        ("terraform", tree_hash(&tree, "terraform")),
        ("aws", aws.clone()),
    ]);
    if runner.skip(Step::Terraform, &inputs, |_| true).is_none() {
        let log = terraform_log(&state_dir);
        let t = runner.start(
            Step::Terraform,
            &format!(
                "plan and apply (Terraform's output: {})",
                shown(project, &log).display()
            ),
        )?;
        let result = async {
            let workspace = workspace(project, &env, &tree, Some(log)).await?;
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
        runner.finish(Step::Terraform, inputs, t, result)?;
    }
    if let Some(code) = stop(&runner, Step::Terraform) {
        return Ok(code);
    }

    // 2. image-build
    let source = crate::image::Source::discover(&project.root);
    let mut inputs = facts([
        ("commit", source.revision.clone()),
        ("epoch", source.epoch.to_string()),
    ]);
    if source.revision.ends_with("-dirty") {
        inputs.insert("changes".into(), worktree_changes(&project.root));
    }
    let binary = match &args.app_bin {
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
    let image_digest = match runner.skip(Step::ImageBuild, &inputs, |done| {
        done.outputs
            .get("digest")
            .is_some_and(|digest| layout_digest().as_ref() == Some(digest))
    }) {
        Some(done) => done.outputs["digest"].clone(),
        None => {
            let t = runner.start(
                Step::ImageBuild,
                &format!("into {}", shown(project, &layout).display()),
            )?;
            let result = crate::image::command::build_image(project, args.app_bin.as_deref(), None)
                .map(|(built, _)| {
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
                });
            runner.finish(Step::ImageBuild, inputs, t, result)?
        }
    };
    if let Some(code) = stop(&runner, Step::ImageBuild) {
        return Ok(code);
    }

    // 3. image-push
    let record_file = crate::image::pushed::path(project, &env.name);
    let mut inputs = facts([
        ("image", image_digest.clone()),
        ("registry", registry.clone()),
    ]);
    if args.registry.registry.is_none() {
        inputs.insert("aws".into(), aws.clone());
    }
    let recorded = || crate::image::pushed::read(&record_file).ok().flatten();
    let pushed = match runner.skip(Step::ImagePush, &inputs, |done| {
        recorded().is_some_and(|r| Some(&r.digest) == done.outputs.get("digest"))
    }) {
        Some(_) => recorded().context("pushed-image.json vanished")?,
        None => {
            if let (Some(url), None) = (&emulator, &args.registry.registry) {
                return Err(runner.refuse(
                    Step::ImagePush,
                    format!(
                        "the AWS API is an emulator ({url}); its ECR repository has no registry behind its URI"
                    ),
                    format!(
                        "push to a registry of your own with --registry URL, e.g. `{} --registry http://127.0.0.1:5000`",
                        command_line(args, args.until)
                    ),
                ));
            }
            let t = runner.start(Step::ImagePush, &format!("{image_digest} to {registry}"))?;
            let result = crate::image::command::push_image(project, &env, &args.registry, None)
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
            runner.finish(Step::ImagePush, inputs, t, result)?
        }
    };
    if let Some(code) = stop(&runner, Step::ImagePush) {
        return Ok(code);
    }

    // 4. kubeconfig
    if let Some(path) = &args.kubeconfig {
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
        runner.lines.push(Line {
            step: Step::Kubeconfig,
            took: None,
            detail: format!("given: {}", path.display()),
        });
    } else {
        let inputs = facts([
            ("cluster", cluster.clone()),
            ("aws", aws.clone()),
            ("path", kubeconfig.display().to_string()),
        ]);
        if runner
            .skip(Step::Kubeconfig, &inputs, |_| kubeconfig.is_file())
            .is_none()
        {
            let t = runner.start(
                Step::Kubeconfig,
                &format!(
                    "EKS DescribeCluster {cluster}, then write {}",
                    shown(project, &kubeconfig).display()
                ),
            )?;
            let endpoint = args.endpoint.aws_endpoint.as_ref().map(|u| u.as_str());
            let result = crate::eks::command::write_for(project, &env, endpoint, &kubeconfig)
                .await
                .map(|c| {
                    let said = format!(
                        "cluster {} (Kubernetes {}) -> {}",
                        c.name,
                        c.version,
                        shown(project, &kubeconfig).display()
                    );
                    ((), Facts::new(), said)
                });
            runner.finish(Step::Kubeconfig, inputs, t, result)?;
        }
    }
    if let Some(code) = stop(&runner, Step::Kubeconfig) {
        return Ok(code);
    }

    // 5. deploy and 6. smoke: never against the cluster an emulator makes up.
    let emulator_refusal = |runner: &Runner, step: Step| -> Option<anyhow::Error> {
        let url = emulator.as_ref()?;
        if args.kubeconfig.is_some() {
            return None;
        }
        Some(runner.refuse(
            step,
            format!(
                "the AWS API is an emulator ({url}): the EKS cluster it describes has no Kubernetes API, so there is nothing to {}",
                if step == Step::Deploy { "deploy to" } else { "test" }
            ),
            format!(
                "`{}` stops before it; for a real cluster, pass --kubeconfig PATH: `{} --kubeconfig PATH`",
                command_line(args, Some(Step::Kubeconfig)),
                command_line(args, None)
            ),
        ))
    };

    let reference = pushed.reference();
    let inputs = facts([
        ("image", reference.clone()),
        ("kubeconfig", kubeconfig.display().to_string()),
        ("manifests", tree_hash(&tree, "k8s")),
    ]);
    if runner.skip(Step::Deploy, &inputs, |_| true).is_none() {
        if let Some(refusal) = emulator_refusal(&runner, Step::Deploy) {
            return Err(refusal);
        }
        let t = runner.start(
            Step::Deploy,
            &format!("{reference} to namespace {namespace}"),
        )?;
        let options = crate::deploy::Options {
            dry_run: false,
            rollback_on_failure: true,
            timeout: DEPLOY_TIMEOUT,
            kubeconfig: Some(kubeconfig.clone()),
            image: Some(reference.clone()),
        };
        let result = crate::deploy::command::deploy(project, &env, &options)
            .await
            .map(|outcome| {
                let outputs = outcome
                    .revision
                    .map(|r| facts([("revision", r.to_string())]))
                    .unwrap_or_default();
                ((), outputs, outcome.summary)
            });
        runner.finish(Step::Deploy, inputs, t, result)?;
    }
    if let Some(code) = stop(&runner, Step::Deploy) {
        return Ok(code);
    }

    // The smoke test checks the present: it runs every time.
    if let Some(refusal) = emulator_refusal(&runner, Step::Smoke) {
        return Err(refusal);
    }
    let inputs = facts([("endpoint", smoke::base_url(&domain))]);
    let t = runner.start(
        Step::Smoke,
        &format!(
            "GET {}{{{}}} (up to {} s while the load balancer comes up)",
            smoke::base_url(&domain),
            smoke::PATHS.join(","),
            smoke::DEADLINE.as_secs()
        ),
    )?;
    let result = smoke::check(&domain, &namespace, smoke::DEADLINE)
        .await
        .map(|said| ((), Facts::new(), said));
    runner.finish(Step::Smoke, inputs, t, result)?;
    Ok(stop(&runner, Step::Smoke).unwrap_or(ExitCode::SUCCESS))
}

/// `shopctl down <env>` for an environment on EKS: the Kubernetes objects, then the
/// infrastructure, then the progress of `up`.
pub async fn down(project: &Project, args: &DownArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let env = load(project, &args.env, &args.endpoint, false)?;
    let emulator = emulator(&env);
    let state_dir = project.state_dir(&env.name);
    let cluster = crate::status::cluster_name(&env.name);
    confirm(
        &Question {
            action: "take down",
            env: &env.name,
            tier: env.config.tier,
            detail: format!(
                "delete the Kubernetes objects of {} (namespace {}), then destroy its infrastructure with Terraform (VPC, EKS, ECR, S3, IAM, KMS){}",
                env.name,
                env.config.kubernetes.namespace.as_str(),
                if args.purge {
                    format!(", and delete .shopctl/{}", env.name)
                } else {
                    String::new()
                }
            ),
        },
        args.yes,
    )
    .await?;
    let again = |e: anyhow::Error, what: &str| -> anyhow::Error {
        if e.is::<crate::terraform::Interrupted>() {
            return e;
        }
        anyhow!(
            "{what} failed: {e:#}\n  next: when that is fixed, `shopctl down {}{}` continues (what is gone stays gone)",
            env.name,
            args.endpoint
                .aws_endpoint
                .as_ref()
                .map(|u| format!(" --aws-endpoint {u}"))
                .unwrap_or_default()
        )
    };

    // 1. Kubernetes
    let kubernetes = match (&args.kubeconfig, &emulator) {
        (Some(path), _) => {
            eprintln!("[1/3] kubernetes: deleting the objects of {} via {}", env.name, path.display());
            crate::deploy::command::teardown(project, &env, Some(path))
                .await
                .map_err(|e| again(e, "[1/3] kubernetes"))?
        }
        (None, Some(url)) => format!(
            "skipped: the AWS API is an emulator ({url}) and the EKS cluster it describes has no Kubernetes API (--kubeconfig PATH names a real cluster)"
        ),
        (None, None) => {
            let sdk = crate::aws::sdk_config(&env.config).await;
            let eks = aws_sdk_eks::Client::new(&sdk);
            match crate::eks::describe_raw(&eks, &cluster)
                .await
                .map_err(|e| again(e.into(), "[1/3] kubernetes"))?
            {
                None => format!("skipped: the EKS cluster {cluster} does not exist"),
                Some(_) => {
                    let path = crate::eks::command::default_path(project, &env.name);
                    eprintln!("[1/3] kubernetes: deleting the objects of {} in {cluster}", env.name);
                    async {
                        crate::eks::command::write_for(project, &env, None, &path).await?;
                        crate::deploy::command::teardown(project, &env, Some(&path)).await
                    }
                    .await
                    .map_err(|e| again(e, "[1/3] kubernetes"))?
                }
            }
        }
    };
    eprintln!("[1/3] kubernetes: {kubernetes}");

    // 2. Terraform destroy
    let log = terraform_log(&state_dir);
    eprintln!(
        "[2/3] terraform: plan and apply the destruction (Terraform's output: {})",
        shown(project, &log).display()
    );
    let destroyed = async {
        let tree = render_env(project, &env)?;
        let workspace = workspace(project, &env, &tree, Some(log)).await?;
        let summary = workspace.plan(true).await?;
        if !summary.is_empty() {
            workspace.apply_plan().await?;
        }
        anyhow::Ok(summary)
    }
    .await
    .map_err(|e| again(e, "[2/3] terraform"))?;
    let destroyed = if destroyed.is_empty() {
        "nothing to destroy".to_owned()
    } else {
        format!("destroyed ({destroyed})")
    };
    eprintln!("[2/3] terraform: {destroyed}");

    // 3. What `up` recorded is void now.
    let file = state_dir.join(Progress::FILE);
    let forgot = match std::fs::remove_file(&file) {
        Ok(()) => "the progress of `up` forgotten",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no progress of `up` recorded",
        Err(e) => return Err(e).with_context(|| format!("cannot delete {}", file.display())),
    };
    eprintln!("[3/3] {forgot}");
    if args.purge && state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("cannot delete {}", state_dir.display()))?;
    }
    eprintln!(
        "{}: down in {:.1} s; kubernetes {}; terraform {}{}",
        env.name,
        started.elapsed().as_secs_f64(),
        if kubernetes.starts_with("skipped") {
            "skipped"
        } else {
            "deleted"
        },
        destroyed,
        if args.purge { "; state deleted" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn up_args(line: &[&str]) -> UpArgs {
        let cli = crate::cli::Cli::parse_from(line);
        match cli.command {
            crate::cli::Command::Up(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn steps_are_numbered_in_order_and_named_as_clap_accepts_them() {
        let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "terraform",
                "image-build",
                "image-push",
                "kubeconfig",
                "deploy",
                "smoke"
            ]
        );
        for step in Step::ALL {
            assert_eq!(
                step.to_possible_value().unwrap().get_name(),
                step.name(),
                "{step:?}"
            );
        }
        assert_eq!(Step::ImageBuild.label(), "[2/6] image-build");
        assert_eq!(Step::Kubeconfig.next(), Some(Step::Deploy));
        assert_eq!(Step::Smoke.next(), None);
    }

    #[test]
    fn the_resume_command_keeps_the_targets_and_drops_until_and_restart() {
        let args = up_args(&[
            "shopctl",
            "up",
            "staging",
            "--until",
            "image-push",
            "--restart",
            "--yes",
            "--aws-endpoint",
            "http://127.0.0.1:5000",
            "--registry",
            "http://127.0.0.1:5001",
            "--auth",
            "none",
            "--app-bin",
            "/bin/true",
        ]);
        assert_eq!(
            command_line(&args, None),
            "shopctl up staging --aws-endpoint http://127.0.0.1:5000 --registry http://127.0.0.1:5001 --auth none --app-bin /bin/true --yes"
        );
        assert!(command_line(&args, Some(Step::Kubeconfig))
            .starts_with("shopctl up staging --until kubeconfig "));
    }

    #[test]
    fn tree_fingerprints_cover_only_their_directory() {
        let mut tree = crate::render::Tree::new();
        tree.insert("terraform/main.tf".into(), "a".into());
        tree.insert("k8s/app.yaml".into(), "b".into());
        let terraform = tree_hash(&tree, "terraform");
        tree.insert("k8s/app.yaml".into(), "c".into());
        assert_eq!(tree_hash(&tree, "terraform"), terraform);
        tree.insert("terraform/main.tf".into(), "d".into());
        assert_ne!(tree_hash(&tree, "terraform"), terraform);
    }
}
