//! Runs Terraform for one environment in its rendered working directory
//! (`.shopctl/<env>/rendered/terraform`), with a CLI config written by shopctl.
//!
//! Terraform runs in its own process group, so a Ctrl-C reaches shopctl
//! alone and shopctl decides what Terraform gets:
//! - while reading (init, plan), the interrupt is passed on at once;
//! - while applying, the first Ctrl-C is held back: when Terraform stops, the
//!   provider cancels the API calls in flight, and a resource whose create
//!   call AWS already carried out is then missing from the state, so the next
//!   run fails on "already exists". Terraform finishes its plan instead and
//!   shopctl stops after it. A second Ctrl-C passes the interrupt on for those
//!   who must stop now.

pub mod addons;
mod mirror;
mod summary;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::config::{LoadedEnvironment, StateBackend};
use crate::render::{self, Tree};
pub use mirror::discover as discover_mirror;
pub use summary::Summary;

/// The exit code for a run stopped by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED_EXIT: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Interrupted {
    #[error("interrupted: Terraform finished the changes it had started, so its state matches what exists; run the same command again to continue")]
    AfterApply,
    #[error("interrupted: Terraform stopped and saved its state; run the same command again to continue")]
    Stopped,
}

/// What a Ctrl-C does to a running Terraform command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnInterrupt {
    /// Pass it on: nothing changes in AWS, stopping is always safe.
    Stop,
    /// Hold the first one back and let Terraform finish (see the module docs).
    FinishFirst,
}

pub struct Workspace<'a> {
    pub env: &'a LoadedEnvironment,
    /// Where Terraform runs: the rendered Terraform tree.
    pub dir: PathBuf,
    cli_config: PathBuf,
    binary: PathBuf,
    /// When set, Terraform's output goes to this file behind a spinner
    /// instead of to the terminal.
    log: Option<PathBuf>,
}

/// Finds `terraform` on PATH.
pub fn locate() -> Result<PathBuf> {
    crate::doctor::find("terraform").context(
            "Terraform is not installed: no `terraform` on PATH\n  \
             hint: install Terraform 1.6 or newer (or OpenTofu as `terraform`); `shopctl doctor` lists every missing tool",
        )
}

impl<'a> Workspace<'a> {
    /// Prepares the working directory: writes the rendered trees to
    /// `<state_dir>/rendered` (Terraform's own files there are kept) and the
    /// CLI config beside it. Nothing runs yet.
    pub fn prepare(
        binary: PathBuf,
        env: &'a LoadedEnvironment,
        state_dir: &Path,
        tree: &Tree,
    ) -> Result<Self> {
        let rendered = state_dir.join("rendered");
        render::write(tree, &rendered)?;
        // A local mirror needs no plugin cache; without one, downloads are cached.
        let mirror = mirror::discover();
        let cache = dirs_cache().join("terraform-plugins");
        if mirror.is_none() {
            std::fs::create_dir_all(&cache)
                .with_context(|| format!("cannot create {}", cache.display()))?;
        }
        let cli_config = state_dir.join("terraformrc");
        std::fs::write(&cli_config, mirror::cli_config(mirror.as_ref(), &cache))
            .with_context(|| format!("cannot write {}", cli_config.display()))?;
        Ok(Workspace {
            env,
            dir: rendered.join("terraform"),
            cli_config,
            binary,
            log: None,
        })
    }

    /// Sends Terraform's output to `log` (appended) and shows a spinner.
    pub fn quiet(mut self, log: PathBuf) -> Self {
        self.log = Some(log);
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args.first());
        if self.log.is_some() || !std::io::stdout().is_terminal() {
            command.arg("-no-color");
        }
        command
            .args(args.iter().skip(1))
            .current_dir(&self.dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            // No version checks or telemetry calls from Terraform.
            .env("CHECKPOINT_DISABLE", "1")
            .envs(crate::aws::emulator_env(&self.env.config))
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        command
    }

    /// Runs a Terraform command that changes nothing in AWS.
    pub async fn run(&self, args: &[&str]) -> Result<()> {
        self.run_with(args, OnInterrupt::Stop).await
    }

    /// Runs Terraform with its output streamed to ours (or to the log).
    async fn run_with(&self, args: &[&str], on_interrupt: OnInterrupt) -> Result<()> {
        let mut command = self.command(args);
        let mut spinner = None;
        if let Some(log) = &self.log {
            std::fs::create_dir_all(log.parent().expect("has a parent"))?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)?;
            command.stdout(file.try_clone()?).stderr(file);
            let bar = indicatif::ProgressBar::new_spinner()
                .with_message(format!("terraform {}", args.join(" ")));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner = Some(bar);
        }
        let mut child = command.spawn().context("cannot start terraform")?;
        let status = wait_handling_interrupts(&mut child, on_interrupt).await?;
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        match status {
            Outcome::Interrupted { finished: true } => Err(Interrupted::AfterApply.into()),
            Outcome::Interrupted { finished: false } => Err(Interrupted::Stopped.into()),
            Outcome::Exited(status) if status.success() => Ok(()),
            Outcome::Exited(status) => {
                let mut message = format!(
                    "terraform {} failed ({status})",
                    args.first().unwrap_or(&"")
                );
                if let Some(log) = &self.log {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    let tail: Vec<&str> = text
                        .lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    message.push_str(&format!(
                        "; the end of {}:\n{}",
                        log.display(),
                        tail.join("\n")
                    ));
                }
                bail!(message)
            }
        }
    }

    /// Runs Terraform and returns its standard output (errors still stream).
    pub async fn output(&self, args: &[&str]) -> Result<Vec<u8>> {
        let output = self
            .command(args)
            .stdout(Stdio::piped())
            .output()
            .await
            .context("cannot start terraform")?;
        if !output.status.success() {
            bail!(
                "terraform {} failed ({})",
                args.first().unwrap_or(&""),
                output.status
            );
        }
        Ok(output.stdout)
    }

    pub async fn init(&self) -> Result<()> {
        self.run(&["init", "-input=false", "-reconfigure", "-lock-timeout=60s"])
            .await
    }

    /// Checks formatting and validity without touching any backend.
    pub async fn validate(&self) -> Result<()> {
        self.run(&["fmt", "-check", "-recursive", "-diff"])
            .await
            .context("rendered Terraform is not formatted")?;
        self.run(&["init", "-input=false", "-backend=false"])
            .await?;
        self.run(&["validate"]).await
    }

    /// Plans into `tfplan` and counts what it would do.
    pub async fn plan(&self, destroy: bool) -> Result<Summary> {
        let mut args = vec!["plan", "-input=false", "-lock-timeout=60s", "-out=tfplan"];
        if destroy {
            args.push("-destroy");
        }
        self.run(&args).await?;
        let json = self.output(&["show", "-json", "tfplan"]).await?;
        summary::from_plan_json(&json).context("cannot read Terraform's plan")
    }

    /// Applies exactly the plan that was shown (and confirmed).
    pub async fn apply_plan(&self) -> Result<()> {
        self.run_with(
            &["apply", "-input=false", "-lock-timeout=60s", "tfplan"],
            OnInterrupt::FinishFirst,
        )
        .await
    }

    pub fn uses_s3_state(&self) -> bool {
        self.env.config.state.backend == StateBackend::S3
    }
}

enum Outcome {
    Exited(ExitStatus),
    /// Ctrl-C was pressed; `finished` when Terraform still completed its run.
    Interrupted {
        finished: bool,
    },
}

async fn wait_handling_interrupts(
    child: &mut tokio::process::Child,
    on_interrupt: OnInterrupt,
) -> Result<Outcome> {
    let mut interrupts = 0;
    let mut passed_on = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("cannot wait for terraform")?;
                return Ok(match interrupts {
                    0 => Outcome::Exited(status),
                    _ => Outcome::Interrupted { finished: !passed_on && status.success() },
                });
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if on_interrupt == OnInterrupt::FinishFirst && interrupts == 1 {
                    eprintln!(
                        "\nshopctl: interrupt: Terraform finishes the changes of this plan first, so that its state \
                         matches what exists; press Ctrl-C again to stop it now (a resource being created at that \
                         moment may then exist without being in the state)"
                    );
                    continue;
                }
                if let Some(pid) = child.id() {
                    eprintln!("\nshopctl: interrupt: asking Terraform to stop");
                    // SAFETY: kill(2) with a pid we own and a valid signal has no memory effects.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
                    passed_on = true;
                }
            }
        }
    }
}

/// shopctl's cache directory, shared by every project on the machine.
pub fn dirs_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("shopctl")
}
