//! `shopctl up <env>` and `shopctl down <env>` for the environments that run on EKS: the
//! whole path in one command, in six steps (terraform, image-build, image-push,
//! kubeconfig, deploy, smoke), resumable through `.shopctl/<env>/up.json` ([`progress`]).
//!
//! Each step is the same code as its own command (`apply`, `image build`, `image push`,
//! `kubeconfig`, `deploy`), called from one method of [`steps::Up`] that fingerprints its
//! inputs; [`runner::Runner`] decides what is skipped and keeps the record; [`up`] orders
//! the steps. [`down`] takes an environment down.
//!
//! The emulator rule: when the AWS API is an emulator (aws.endpoint_url or
//! --aws-endpoint), the EKS cluster it describes has no Kubernetes API behind its endpoint,
//! and its ECR repository no registry behind its URI. So against an emulator, deploy and
//! smoke need an explicit --kubeconfig and image-push an explicit --registry; shopctl
//! never connects to the addresses the emulator makes up.

mod down;
mod progress;
mod runner;
mod smoke;
mod steps;

pub use down::down;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::ValueEnum;
use sha2::Digest;

use crate::cli::UpArgs;
use crate::config::LoadedEnvironment;
use crate::confirm::{confirm, Question};
use crate::project::Project;
use progress::{Facts, Progress};
use runner::Runner;
use steps::Up;

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

/// Now, to the second: `up.json` is read by people (local's state files keep the
/// nanoseconds, for ordering events).
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats as RFC 3339")
}

/// `shopctl up <env>` for an environment on EKS.
pub async fn up(project: &Project, args: &UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let up = Up::new(project, args)?;
    let until = args.until.unwrap_or(Step::Smoke);
    eprintln!(
        "{}: up, {} of {} steps{}{}",
        up.env.name,
        until.number(),
        Step::ALL.len(),
        if until == Step::Smoke {
            String::new()
        } else {
            format!(" (--until {until})")
        },
        up.emulator
            .as_ref()
            .map(|url| format!("; AWS API: the emulator at {url}"))
            .unwrap_or_default()
    );
    for (step, what) in up.plan() {
        let later = if step > until { "  (not now)" } else { "" };
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
            env: &up.env.name,
            tier: up.env.config.tier,
            detail: format!(
                "{} (steps already done with the same inputs are skipped)",
                changes.join(", ")
            ),
        },
        args.yes,
    )
    .await?;

    let file = up.state_dir.join(Progress::FILE);
    let mut runner = Runner::new(args, &up.env.name, started, file)?;
    up.terraform(&mut runner).await?;
    if runner.stops_after(Step::Terraform) {
        return Ok(ExitCode::SUCCESS);
    }
    let digest = up.image_build(&mut runner)?;
    if runner.stops_after(Step::ImageBuild) {
        return Ok(ExitCode::SUCCESS);
    }
    let pushed = up.image_push(&mut runner, &digest).await?;
    if runner.stops_after(Step::ImagePush) {
        return Ok(ExitCode::SUCCESS);
    }
    up.kubeconfig(&mut runner).await?;
    if runner.stops_after(Step::Kubeconfig) {
        return Ok(ExitCode::SUCCESS);
    }
    up.deploy(&mut runner, &pushed).await?;
    if runner.stops_after(Step::Deploy) {
        return Ok(ExitCode::SUCCESS);
    }
    up.smoke(&mut runner).await?;
    runner.stops_after(Step::Smoke);
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
