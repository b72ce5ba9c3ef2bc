//! The bookkeeping of `up <env>`'s steps: whether a step is skipped, its record in
//! `up.json`, the closing summary, and the rule that once a step runs, every later one runs
//! too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::progress::{self, Decision, Done, Facts, Progress};
use super::{command_line, now_rfc3339, Step};
use crate::cli::UpArgs;

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
pub(super) struct Runner<'a> {
    args: &'a UpArgs,
    /// The environment's name, for the summary.
    env: String,
    /// The last step to run (--until, else smoke).
    until: Step,
    started: Instant,
    /// `.shopctl/<env>/up.json`.
    file: PathBuf,
    progress: Progress,
    /// A step ran (or --restart): every later step runs.
    rerun: bool,
    lines: Vec<Line>,
    today: String,
}

impl<'a> Runner<'a> {
    /// The runner of one `up`, started at `started`, with the progress recorded in `file`
    /// (forgotten with --restart).
    pub fn new(args: &'a UpArgs, env: &str, started: Instant, file: PathBuf) -> Result<Self> {
        let progress = if args.restart {
            eprintln!("{env}: --restart: the recorded progress is forgotten");
            Progress::default()
        } else {
            Progress::load(&file)?
        };
        Ok(Runner {
            args,
            env: env.to_owned(),
            until: args.until.unwrap_or(Step::Smoke),
            started,
            file,
            progress,
            rerun: args.restart,
            lines: Vec::new(),
            today: now_rfc3339().chars().take(10).collect(),
        })
    }

    /// The record of `step` when it is done with these inputs (and `still_there` holds:
    /// its output was not removed since), after saying so; None when it must run.
    pub fn skip(
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
    pub fn start(&mut self, step: Step, what: &str) -> Result<Instant> {
        self.rerun = true;
        self.progress.forget_from(step);
        self.progress.save(&self.file)?;
        eprintln!("{}: {what}", step.label());
        Ok(Instant::now())
    }

    /// Records a step that succeeded, or turns its error into one that ends with the
    /// command that resumes.
    pub fn finish<T>(
        &mut self,
        step: Step,
        inputs: Facts,
        began: Instant,
        result: Result<(T, Facts, String)>,
    ) -> Result<T> {
        let (value, outputs, summary) = result.map_err(|e| self.failed(step, e))?;
        let took = began.elapsed();
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

    pub fn failed(&self, step: Step, error: anyhow::Error) -> anyhow::Error {
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
    pub fn refuse(&self, step: Step, why: String, next: String) -> anyhow::Error {
        anyhow!("{} refused: {why}\n  next: {next}", step.label())
    }

    /// A line for a step that ran nowhere but is part of the summary (a given kubeconfig).
    pub fn given(&mut self, step: Step, detail: String) {
        self.lines.push(Line {
            step,
            took: None,
            detail,
        });
    }

    /// Whether `up` ends after `step` (--until, or the last step): if so, the summary and
    /// the way on are said.
    pub fn stops_after(&self, step: Step) -> bool {
        if step != self.until {
            return false;
        }
        self.summary();
        match step.next() {
            Some(next) => eprintln!(
                "{}: stopped after {step} (--until); next: {next}, with `{}`",
                self.env,
                command_line(self.args, None)
            ),
            None => eprintln!("{}: up", self.env),
        }
        true
    }

    fn summary(&self) {
        let ran = self.lines.iter().filter(|l| l.took.is_some()).count();
        eprintln!(
            "{}: {} step(s) in {:.1} s ({ran} ran, {} skipped)",
            self.env,
            self.lines.len(),
            self.started.elapsed().as_secs_f64(),
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
