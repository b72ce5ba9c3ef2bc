//! One function per subcommand: load what it needs, do it, report it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::{
    AwsArgs, CapacityArgs, ChangeArgs, Cli, Command, DoctorArgs, DownArgs, LogsArgs, RenderArgs,
    StatusArgs, SuperviseArgs, TerraformArgs, UpArgs, ValidateArgs,
};
use crate::config::{self, LoadedEnvironment, StateBackend, Tier};
use crate::confirm::{confirm, Question};
use crate::emulator::{self, Started};
use crate::project::Project;
use crate::render::{self, Templates};
use crate::terraform::Workspace;

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Doctor(args) = &cli.command {
        return doctor(args);
    }
    if let Command::Jobs(command) = cli.command {
        return block_on(crate::jobs::run(cli.project_dir.as_deref(), command));
    }
    if let Command::Image(command) = cli.command {
        let project = Project::find(cli.project_dir.as_deref())?;
        return block_on(crate::image::command::run(&project, command));
    }
    if let Command::FailoverTest(args) = &cli.command {
        return block_on(failover_test(cli.project_dir.as_deref(), args));
    }
    let project = Project::find(cli.project_dir.as_deref())?;
    match cli.command {
        Command::Render(args) => render(&project, &args),
        Command::Up(args) if on_eks(&project, &args.env) => {
            block_on(crate::pipeline::up(&project, &args))
        }
        Command::Up(args) if args.aws => block_on(up(&project, &args)),
        Command::Up(args) => up_local(&project, &args),
        Command::Logs(args) => logs(&project, &args),
        Command::Supervise(args) => supervise(&project, &args),
        Command::Down(args) if on_eks(&project, &args.env) => {
            block_on(crate::pipeline::down(&project, &args))
        }
        Command::Down(args) => block_on(down(&project, &args)),
        Command::Validate(args) => block_on(validate(&project, &args)),
        Command::Capacity(args) => capacity(&project, &args),
        Command::Plan(args) => block_on(plan(&project, &args)),
        Command::Apply(args) => block_on(change(&project, &args, Change::Apply)),
        Command::Destroy(args) => block_on(change(&project, &args, Change::Destroy)),
        Command::Status(args) => block_on(status(&project, &args)),
        Command::Envs => envs(&project),
        Command::Kubeconfig(args) => {
            block_on(crate::eks::command::write_kubeconfig(&project, &args))
        }
        Command::Deploy(args) => block_on(crate::deploy::command::run_deploy(&project, &args)),
        Command::History(args) => block_on(crate::deploy::command::run_history(&project, &args)),
        Command::Rollback(args) => block_on(crate::deploy::command::run_rollback(&project, &args)),
        Command::EksToken(args) => block_on(crate::eks::command::print_token(&project, &args)),
        Command::Doctor(_) | Command::Jobs(_) | Command::Image(_) | Command::FailoverTest(_) => {
            unreachable!("handled above")
        }
    }
}

/// `failover-test`: destructive (it kills database processes), so it asks first.
async fn failover_test(
    project_dir: Option<&std::path::Path>,
    args: &crate::cli::FailoverTestArgs,
) -> Result<ExitCode> {
    let mode = format!("{:?}", args.mode).to_lowercase();
    let ask = |tier: Tier, nodes: String| {
        let question = Question {
            action: "failover-test",
            env: &args.env,
            tier,
            detail: format!(
                "inject {mode} into the Patroni leader ({nodes}) under a workload, {} time(s)",
                args.runs
            ),
        };
        async move { confirm(&question, args.yes).await }
    };
    // Keeps the port-forwards to the cluster open for the test.
    let mut _bridge = None;
    let target = match &args.target {
        Some(file) => {
            let target = crate::failover::Target::from_file(file)?;
            args.mode.faults(false)?;
            ask(Tier::Local, format!("{} nodes", target.nodes.len())).await?;
            target
        }
        None => {
            let project = Project::find(project_dir)?;
            let env = project.load(&args.env)?;
            if env.config.tier == Tier::Local {
                args.mode.faults(false)?;
                let topology = crate::local::local_topology(&project.state_dir(&env.name), &env)?;
                let target = crate::failover::target_for(&topology)?;
                ask(Tier::Local, format!("{} nodes", target.nodes.len())).await?;
                target
            } else {
                // Refuse a mode the cluster cannot run before asking or connecting.
                args.mode.faults(true)?;
                ask(env.config.tier, format!("{}'s cluster", env.name)).await?;
                let kubeconfig = args
                    .kubeconfig
                    .clone()
                    .unwrap_or_else(|| crate::eks::command::default_path(&project, &env.name));
                let reports = project.state_dir(&env.name).join("reports");
                let (target, bridge) =
                    crate::failover::target_for_kubernetes(&env, kubeconfig, reports).await?;
                _bridge = Some(bridge);
                target
            }
        }
    };
    let progress = crate::failover::Progress::new(args.json);
    let undo = crate::failover::Undo::default();
    let outcome = tokio::select! {
        outcome = crate::failover::run(&target, args.mode, args.runs, &progress, &undo) => outcome?,
        _ = tokio::signal::ctrl_c() => {
            for line in undo.run() {
                eprintln!("failover-test: {line}");
            }
            anyhow::bail!("failover-test interrupted; every fault was undone and no report was written");
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for report in &outcome.runs {
            println!("{}", crate::failover::report::summary(report));
        }
    }
    Ok(if outcome.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether `up` and `down` take the EKS path (every tier but local). An environment that
/// does not load takes the local path, which reports why.
fn on_eks(project: &Project, name: &str) -> bool {
    project
        .load(name)
        .is_ok_and(|env| env.config.tier != Tier::Local)
}

/// Runs an async command. Commands that talk to AWS or run Terraform are
/// async; the rest never start a runtime, which keeps `render` and `--help`
/// instant. A prompt's stdin reader may still be blocked at the end, so the
/// runtime does not wait for it.
fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(command: F) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    result
}

pub(crate) fn templates(project: &Project) -> Result<Templates> {
    Ok(Templates::load(
        &project.templates_dir(),
        Path::new("templates"),
    )?)
}

fn chosen(project: &Project, all: bool, envs: &[String]) -> Vec<String> {
    if all {
        config::available(&project.environments_dir())
    } else {
        envs.to_vec()
    }
}

fn render(project: &Project, args: &RenderArgs) -> Result<ExitCode> {
    let names = chosen(project, args.all, &args.envs);
    // Load and render everything first: one bad environment writes nothing.
    let environments = names
        .iter()
        .map(|n| project.load(n))
        .collect::<Result<Vec<_>, _>>()?;
    let templates = templates(project)?;
    let rendered = environments
        .iter()
        .map(|env| Ok((env, templates.render(env)?)))
        .collect::<Result<Vec<_>>>()?;
    for (env, tree) in &rendered {
        crate::capacity::preflight(env, tree)?;
    }
    let mut stale = false;
    for (env, tree) in &rendered {
        let out = match &args.out {
            Some(dir) => dir.join(&env.name),
            None => project.state_dir(&env.name).join("rendered"),
        };
        if args.check {
            let differences = render::diff(tree, &out);
            for d in &differences {
                println!("{}: {d}", env.name);
            }
            stale |= !differences.is_empty();
        } else {
            let written = render::write(tree, &out)?;
            eprintln!(
                "{}: {} files in {} ({written} changed)",
                env.name,
                tree.len(),
                shown(project, &out).display()
            );
        }
    }
    if stale {
        eprintln!("error: rendered files are out of date; run the same command without --check to update them");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A path relative to the project root when it is inside it.
pub(crate) fn shown(project: &Project, path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    absolute
        .strip_prefix(&project.root)
        .map(Path::to_path_buf)
        .unwrap_or(absolute)
}

/// Loads an environment with the command line's overrides applied.
pub(crate) fn load(
    project: &Project,
    name: &str,
    aws: &AwsArgs,
    local_state: bool,
) -> Result<LoadedEnvironment> {
    let mut env = project.load(name)?;
    if let Some(url) = &aws.aws_endpoint {
        env.config.aws.endpoint_url = Some(url.clone());
    }
    if local_state {
        env.config.state.backend = StateBackend::Local;
    }
    Ok(env)
}

/// Renders, checks the endpoint, bootstraps state and runs `terraform init`.
/// Renders every template for one environment, in memory.
pub(crate) fn render_env(project: &Project, env: &LoadedEnvironment) -> Result<render::Tree> {
    Ok(templates(project)?.render(env)?)
}

/// Where `up` and `down` send Terraform's output.
pub(crate) fn terraform_log(state_dir: &Path) -> PathBuf {
    state_dir.join("logs").join("terraform.log")
}

/// Terraform's local state of an environment (backend "local").
fn local_state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("rendered/terraform/terraform.tfstate")
}

pub(crate) async fn workspace<'a>(
    project: &Project,
    env: &'a LoadedEnvironment,
    tree: &render::Tree,
    log: Option<PathBuf>,
) -> Result<Workspace<'a>> {
    let terraform = crate::terraform::locate()?;
    crate::aws::check_reachable(&env.config)?;
    let mut workspace = Workspace::prepare(terraform, env, &project.state_dir(&env.name), tree)?;
    if let Some(log) = log {
        workspace = workspace.quiet(log);
    }
    if workspace.uses_s3_state() && crate::state_bucket::ensure(env).await? {
        eprintln!("{}: created the Terraform state bucket", env.name);
    }
    workspace.init().await?;
    Ok(workspace)
}

async fn validate(project: &Project, args: &ValidateArgs) -> Result<ExitCode> {
    let environments = chosen(project, args.all, &args.envs)
        .iter()
        .map(|n| project.load(n))
        .collect::<Result<Vec<_>, _>>()?;
    let templates = templates(project)?;
    let terraform = crate::terraform::locate()?;
    for env in &environments {
        let workspace = Workspace::prepare(
            terraform.clone(),
            env,
            &project.state_dir(&env.name),
            &templates.render(env)?,
        )?;
        workspace
            .validate()
            .await
            .with_context(|| format!("{}: Terraform is not valid", env.name))?;
        eprintln!("{}: formatted and valid", env.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn capacity(project: &Project, args: &CapacityArgs) -> Result<ExitCode> {
    let env = project.load(&args.env)?;
    let tree = render_env(project, &env)?;
    let options = crate::capacity::Options { json: args.json };
    Ok(if crate::capacity::run(&env, &tree, options)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn plan(project: &Project, args: &TerraformArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws, args.local_state)?;
    let tree = render_env(project, &env)?;
    crate::capacity::preflight(&env, &tree)?;
    let workspace = workspace(project, &env, &tree, None).await?;
    let summary = workspace.plan(false).await?;
    crate::terraform::addons::report_skipped(&env);
    eprintln!("{}: plan: {summary}", env.name);
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy)]
enum Change {
    Apply,
    Destroy,
}

async fn change(project: &Project, args: &ChangeArgs, change: Change) -> Result<ExitCode> {
    let t = &args.terraform;
    let env = load(project, &t.env, &t.aws, t.local_state)?;
    let (action, destroy) = match change {
        Change::Apply => ("apply", false),
        Change::Destroy => ("destroy", true),
    };
    // Refuse early, before any work, when nobody could confirm.
    if !args.yes && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!(
            "refusing to {action} {} without --yes: there is no terminal to confirm on",
            env.name
        );
    }
    let started = Instant::now();
    let workspace = workspace(project, &env, &render_env(project, &env)?, None).await?;
    let summary = workspace.plan(destroy).await?;
    crate::terraform::addons::report_skipped(&env);
    if summary.is_empty() {
        eprintln!(
            "{}: nothing to {action}; infrastructure matches the configuration",
            env.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    confirm(
        &Question {
            action,
            env: &env.name,
            tier: env.config.tier,
            detail: summary.to_string(),
        },
        args.yes,
    )
    .await?;
    workspace.apply_plan().await?;
    eprintln!(
        "{}: {action} complete: {} added, {} changed, {} destroyed in {:.0?}",
        env.name,
        summary.add,
        summary.change,
        summary.destroy,
        started.elapsed()
    );
    Ok(ExitCode::SUCCESS)
}

/// What only local environments have: the process topology (logs, and the local paths
/// of `up` and `down`; environments on EKS take `crate::pipeline`).
fn local_only(env: &LoadedEnvironment, command: &str) -> Result<()> {
    if env.config.tier != Tier::Local {
        anyhow::bail!(
            "`shopctl {command}` runs local environments; {} is {}\n  hint: use `shopctl plan|apply|destroy {}`",
            env.name,
            env.config.tier,
            env.name
        );
    }
    Ok(())
}

/// The topology of a local environment, or why it has none.
fn topology(project: &Project, env: &LoadedEnvironment) -> Result<crate::local::Topology> {
    Ok(crate::local::local_topology(
        &project.state_dir(&env.name),
        env,
    )?)
}

fn up_local(project: &Project, args: &UpArgs) -> Result<ExitCode> {
    let env = project.load(&args.env)?;
    local_only(&env, "up")?;
    crate::pipeline::refuse_remote_flags(args)?;
    let topology = topology(project, &env)?;
    let outcome = crate::local::up::run(
        &topology,
        &project.templates_dir(),
        &project.root,
        args.app_bin.as_deref(),
    )?;
    let status = crate::local::status::query(&topology);
    println!("{}", crate::local::status::table(&status));
    println!(
        "API       {}/  (static files: {}/static/)\nPostgreSQL write 127.0.0.1:{}  read 127.0.0.1:{}  (user {}, password in {})\nHAProxy   http://127.0.0.1:{}/\nlogs      {}",
        topology.api_url(),
        topology.api_url(),
        topology.ports.haproxy_write,
        topology.ports.haproxy_read,
        crate::local::topology::APP_DB_USER,
        shown(project, &topology.secrets_file()).display(),
        topology.ports.haproxy_stats,
        shown(project, &topology.logs_dir()).display(),
    );
    eprintln!(
        "{}: {} in {:.1} s; `shopctl status {}` shows it, `shopctl down {}` stops it",
        env.name,
        if outcome.reused {
            "already up, ready"
        } else {
            "up and ready"
        },
        outcome.elapsed.as_secs_f64(),
        env.name,
        env.name
    );
    Ok(ExitCode::SUCCESS)
}

fn logs(project: &Project, args: &LogsArgs) -> Result<ExitCode> {
    let env = project.load(&args.env)?;
    local_only(&env, "logs")?;
    crate::local::logs::run(
        &topology(project, &env)?,
        &args.component,
        args.lines,
        args.follow,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn supervise(project: &Project, args: &SuperviseArgs) -> Result<ExitCode> {
    let env = project.load(&args.env)?;
    crate::local::supervisor::run(topology(project, &env)?, args.app_bin.clone())?;
    Ok(ExitCode::SUCCESS)
}

async fn up(project: &Project, args: &UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let env = project.load(&args.env)?;
    local_only(&env, "up")?;
    crate::pipeline::refuse_remote_flags(args)?;
    let state_dir = project.state_dir(&env.name);
    let endpoint = env
        .config
        .aws
        .endpoint_url
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    step(1, "render", &format!("{} templates checked", env.name));
    let tree = render_env(project, &env)?;
    step(2, "AWS emulator", &endpoint);
    match emulator::ensure_running(&env.config, &state_dir)? {
        Started::Reused => eprintln!("      already running; reusing it"),
        Started::Fresh => {
            eprintln!(
                "      started moto_server (log: {})",
                shown(project, &emulator::log_file(&state_dir)).display()
            );
            discard_stale_local_state(project, &env)?;
        }
    }
    let log = terraform_log(&state_dir);
    step(
        3,
        "terraform apply",
        &format!("(log: {})", shown(project, &log).display()),
    );
    let workspace = workspace(project, &env, &tree, Some(log)).await?;
    let summary = workspace.plan(false).await?;
    if !summary.is_empty() {
        workspace.apply_plan().await?;
    }
    step(4, "status", "");
    let status = crate::status::query(&env).await?;
    println!("{}", crate::status::table(&status));
    eprintln!(
        "{}: up in {:.0?} ({summary} applied); AWS API at {endpoint}; `shopctl down {}` takes it down",
        env.name,
        started.elapsed(),
        env.name
    );
    Ok(ExitCode::SUCCESS)
}

fn step(n: usize, what: &str, detail: &str) {
    eprintln!("[{n}/4] {what} {detail}");
}

/// A fresh emulator holds nothing, so local state describing the previous
/// one's resources is void: drop it rather than let Terraform chase ghosts.
fn discard_stale_local_state(project: &Project, env: &LoadedEnvironment) -> Result<()> {
    if env.config.state.backend != StateBackend::Local {
        return Ok(());
    }
    let state = local_state_file(&project.state_dir(&env.name));
    if state.exists() {
        std::fs::rename(&state, state.with_extension("tfstate.previous-emulator"))?;
        eprintln!("      the previous emulator is gone; its Terraform state was set aside");
    }
    Ok(())
}

async fn down(project: &Project, args: &DownArgs) -> Result<ExitCode> {
    let env = project.load(&args.env)?;
    local_only(&env, "down")?;
    if args.kubeconfig.is_some() {
        anyhow::bail!(
            "--kubeconfig is for `shopctl down <env>` of an environment on EKS; {} is a local environment",
            env.name
        );
    }
    let state_dir = project.state_dir(&env.name);
    confirm(
        &Question {
            action: "take down",
            env: &env.name,
            tier: env.config.tier,
            detail: format!(
                "stop every process of the local topology, destroy the emulator's infrastructure and stop the emulator{}",
                if args.purge { ", and delete .shopctl/".to_owned() + &env.name } else { String::new() }
            ),
        },
        args.yes,
    )
    .await?;
    let topology_stopped = match env.config.local {
        Some(_) => Some(crate::local::down::stop(&topology(project, &env)?)?),
        None => None,
    };
    let has_state = local_state_file(&state_dir).exists();
    if has_state && crate::aws::check_reachable(&env.config).is_ok() {
        let tree = render_env(project, &env)?;
        let workspace = workspace(project, &env, &tree, Some(terraform_log(&state_dir))).await?;
        let summary = workspace.plan(true).await?;
        if !summary.is_empty() {
            workspace.apply_plan().await?;
        }
        eprintln!("{}: destroyed ({summary})", env.name);
    }
    let stopped = emulator::stop(&state_dir)?;
    if args.purge && state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("cannot delete {}", state_dir.display()))?;
    }
    let what = if stopped {
        "emulator stopped"
    } else {
        "no emulator of ours was running"
    };
    eprintln!(
        "{}: down; {}{what}{}",
        env.name,
        topology_stopped.map(|t| t + "; ").unwrap_or_default(),
        if args.purge { "; state deleted" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(project: &Project, args: &StatusArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws, false)?;
    if env.config.tier == Tier::Local
        && env.config.local.is_some()
        && !args.aws_resources
        && args.aws.aws_endpoint.is_none()
    {
        let status = crate::local::status::query(&topology(project, &env)?);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            println!("{}", crate::local::status::table(&status));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let status = crate::status::query(&env).await?;
    crate::terraform::addons::report_skipped(&env);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{}", crate::status::table(&status));
        if !status.complete() {
            eprintln!(
                "{}: some resources are missing; `shopctl apply {}` creates them",
                env.name, env.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    let checks = crate::doctor::run_checks();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        println!("{}", crate::doctor::table(&checks));
    }
    let missing_required = checks.iter().any(|c| c.required && !c.found);
    Ok(if missing_required {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn envs(project: &Project) -> Result<ExitCode> {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(["environment", "tier", "region", "state"]);
    for name in config::available(&project.environments_dir()) {
        match project.load(&name) {
            Ok(env) => {
                let c = &env.config;
                table.add_row([
                    name,
                    c.tier.to_string(),
                    c.aws.region.to_string(),
                    c.state.backend.to_string(),
                ]);
            }
            Err(e) => {
                table.add_row([
                    name,
                    "invalid".to_owned(),
                    e.to_string().lines().next().unwrap_or_default().to_owned(),
                    String::new(),
                ]);
            }
        }
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
