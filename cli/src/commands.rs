//! One function per subcommand: load what it needs, do it, report it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::{AwsArgs, ChangeArgs, Cli, Command, DoctorArgs, RenderArgs, StatusArgs, TerraformArgs, ValidateArgs};
use crate::config::{self, LoadedEnvironment, StateBackend};
use crate::confirm::{confirm, Question};
use crate::project::Project;
use crate::render::{self, Templates};
use crate::terraform::Workspace;

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Doctor(args) = &cli.command {
        return doctor(args);
    }
    let project = Project::find(cli.project_dir.as_deref())?;
    match cli.command {
        Command::Render(args) => render(&project, &args),
        Command::Validate(args) => runtime()?.block_on(validate(&project, &args)),
        Command::Plan(args) => runtime()?.block_on(plan(&project, &args)),
        Command::Apply(args) => runtime()?.block_on(change(&project, &args, Change::Apply)),
        Command::Destroy(args) => runtime()?.block_on(change(&project, &args, Change::Destroy)),
        Command::Status(args) => runtime()?.block_on(status(&project, &args)),
        Command::Envs => envs(&project),
        Command::Doctor(_) => unreachable!("handled above"),
    }
}

/// Commands that talk to AWS or run Terraform are async; the rest never
/// start a runtime, which keeps `render` and `--help` instant.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn templates(project: &Project) -> Result<Templates> {
    Ok(Templates::load(&project.templates_dir(), Path::new("templates"))?)
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
    let environments = names.iter().map(|n| project.load(n)).collect::<Result<Vec<_>, _>>()?;
    let templates = templates(project)?;
    let rendered = environments
        .iter()
        .map(|env| Ok((env, templates.render(env)?)))
        .collect::<Result<Vec<_>>>()?;
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
            eprintln!("{}: {} files in {} ({written} changed)", env.name, tree.len(), shown(project, &out).display());
        }
    }
    if stale {
        eprintln!("error: rendered files are out of date; run the same command without --check to update them");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A path relative to the project root when it is inside it.
fn shown(project: &Project, path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    absolute.strip_prefix(&project.root).map(Path::to_path_buf).unwrap_or(absolute)
}

/// Loads an environment with the command line's overrides applied.
fn load(project: &Project, name: &str, aws: &AwsArgs, local_state: bool) -> Result<LoadedEnvironment> {
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
async fn workspace<'a>(project: &Project, env: &'a LoadedEnvironment) -> Result<Workspace<'a>> {
    let tree = templates(project)?.render(env)?;
    let terraform = crate::terraform::locate()?;
    crate::aws::check_reachable(&env.config)?;
    let workspace = Workspace::prepare(terraform, env, &project.state_dir(&env.name), &tree)?;
    if workspace.uses_s3_state() && crate::state_bucket::ensure(env).await? {
        eprintln!("{}: created the Terraform state bucket", env.name);
    }
    workspace.init().await?;
    Ok(workspace)
}

async fn validate(project: &Project, args: &ValidateArgs) -> Result<ExitCode> {
    let environments =
        chosen(project, args.all, &args.envs).iter().map(|n| project.load(n)).collect::<Result<Vec<_>, _>>()?;
    let templates = templates(project)?;
    let terraform = crate::terraform::locate()?;
    for env in &environments {
        let workspace = Workspace::prepare(terraform.clone(), env, &project.state_dir(&env.name), &templates.render(env)?)?;
        workspace.validate().await.with_context(|| format!("{}: Terraform is not valid", env.name))?;
        eprintln!("{}: formatted and valid", env.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn plan(project: &Project, args: &TerraformArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws, args.local_state)?;
    let workspace = workspace(project, &env).await?;
    let summary = workspace.plan(false).await?;
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
        anyhow::bail!("refusing to {action} {} without --yes: there is no terminal to confirm on", env.name);
    }
    let started = Instant::now();
    let workspace = workspace(project, &env).await?;
    let summary = workspace.plan(destroy).await?;
    if summary.is_empty() {
        eprintln!("{}: nothing to {action}; infrastructure matches the configuration", env.name);
        return Ok(ExitCode::SUCCESS);
    }
    confirm(&Question { action, env: &env.name, tier: env.config.tier, detail: summary.to_string() }, args.yes)?;
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

async fn status(project: &Project, args: &StatusArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws, false)?;
    let status = crate::status::query(&env).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{}", crate::status::table(&status));
        if !status.complete() {
            eprintln!("{}: some resources are missing; `shopctl apply {}` creates them", env.name, env.name);
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
    Ok(if missing_required { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn envs(project: &Project) -> Result<ExitCode> {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY).set_header(["environment", "tier", "region", "state"]);
    for name in config::available(&project.environments_dir()) {
        match project.load(&name) {
            Ok(env) => {
                let c = &env.config;
                let tier = serde_json::to_value(c.tier)?.as_str().unwrap_or_default().to_owned();
                let state = serde_json::to_value(c.state.backend)?.as_str().unwrap_or_default().to_owned();
                table.add_row([name, tier, c.aws.region.to_string(), state]);
            }
            Err(e) => {
                table.add_row([name, "invalid".to_owned(), e.to_string().lines().next().unwrap_or_default().to_owned(), String::new()]);
            }
        }
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}
