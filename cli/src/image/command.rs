//! `shopctl image build|push|ls`: the command line's edge of the image module.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::registry::{Credentials, Pushed, Registry, Target};
use super::{ecr, layout::Image, Built, ImageError, Source};
use crate::cli::{
    ImageBuildArgs, ImageCommand, ImageLsArgs, ImagePushArgs, RegistryArgs, RegistryAuthKind,
    RegistryTargetArgs,
};
use crate::config::LoadedEnvironment;
use crate::deploy::PushedImage;
use crate::project::Project;

pub async fn run(project: &Project, command: ImageCommand) -> Result<ExitCode> {
    match command {
        ImageCommand::Build(args) => build(project, &args),
        ImageCommand::Push(args) => push(project, &args).await,
        ImageCommand::Ls(args) => ls(project, &args).await,
    }
}

fn build(project: &Project, args: &ImageBuildArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let (built, assembled) = build_image(project, args.app_bin.as_deref(), args.tag.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&built)?);
    } else {
        println!(
            "{}  {}  {:.1} MB compressed, {} layers ({} unchanged)",
            built.digest,
            built.tag,
            built.size_bytes as f64 / 1e6,
            built.layers.len(),
            built.layers_reused
        );
    }
    eprintln!(
        "image: built in {:.1} s (assembled in {:.1} s) into {}",
        started.elapsed().as_secs_f64(),
        assembled.as_secs_f64(),
        built.layout.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the app (`cargo build --release`, unless `app_bin` is given) and assembles the
/// image into `.shopctl/image`, tagged `tag` or the commit's tag; what was built and how
/// long the assembly took. `image build` and `up <env>` both build through this.
pub fn build_image(
    project: &Project,
    app_bin: Option<&Path>,
    tag: Option<&str>,
) -> Result<(Built, Duration)> {
    let binary = match app_bin {
        Some(path) => path.to_owned(),
        None => {
            eprintln!("image: cargo build --release -p shopctl -p app");
            super::cargo_build_app(&project.root)?
        }
    };
    let assembling = Instant::now();
    let spinner = spinner("assembling the image");
    let source = Source::discover(&project.root);
    let tag = tag.map_or_else(|| source.tag(), str::to_owned);
    let built = super::build(&binary, &source, &tag, &super::layout_dir(&project.root));
    spinner.finish_and_clear();
    Ok((built?, assembling.elapsed()))
}

async fn push(project: &Project, args: &ImagePushArgs) -> Result<ExitCode> {
    let env = load(project, &args.registry)?;
    let started = Instant::now();
    let (pushed, _) = push_image(project, &env, &args.registry.target, args.tag.as_deref()).await?;
    if args.registry.json {
        println!("{}", serde_json::to_string_pretty(&pushed)?);
    } else {
        for reference in &pushed.references {
            println!("{reference}");
        }
    }
    eprintln!(
        "image: pushed {} in {:.1} s: {} of {} blobs uploaded ({:.1} MB), {} already there{}",
        pushed.digest,
        started.elapsed().as_secs_f64(),
        pushed.blobs_uploaded,
        pushed.blobs_uploaded + pushed.blobs_present,
        pushed.bytes_uploaded as f64 / 1e6,
        pushed.blobs_present,
        if pushed.tags_present.is_empty() {
            String::new()
        } else {
            format!("; already tagged: {}", pushed.tags_present.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Pushes the image in `.shopctl/image` to the environment's registry (`target`), tagged
/// with its commit and `tag`, and records it in `.shopctl/<env>/pushed-image.json` for
/// `deploy`. `image push` and `up <env>` both push through this.
pub async fn push_image(
    project: &Project,
    env: &LoadedEnvironment,
    target: &RegistryTargetArgs,
    tag: Option<&str>,
) -> Result<(Pushed, PushedImage)> {
    let (image, _) = Image::read(&super::layout_dir(&project.root))?;
    let config = image
        .config()
        .context("the image's config cannot be read")?;
    let revision = config
        .config
        .labels
        .get("org.opencontainers.image.revision")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let mut tags = vec![super::tag_of(&revision)];
    if let Some(tag) = tag {
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    let registry = connect(env, target).await?;
    let spinner = spinner(&format!("pushing {} blobs", image.blobs.len()));
    let pushed = registry.push(&image, &tags).await;
    spinner.finish_and_clear();
    let pushed = pushed?;
    let record = PushedImage {
        repository: registry.target().repository_reference(),
        digest: pushed.digest.clone(),
        revision,
        tags,
    };
    super::pushed::write(&super::pushed::path(project, &env.name), &record)?;
    Ok((pushed, record))
}

async fn ls(project: &Project, args: &ImageLsArgs) -> Result<ExitCode> {
    let args = &args.registry;
    if args.target.registry.is_some() {
        let registry = connect(&load(project, args)?, &args.target).await?;
        let tags = registry.tags().await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&tags)?);
        } else {
            for tag in tags {
                println!("{tag}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let env = load(project, args)?;
    let sdk = crate::aws::sdk_config(&env.config).await;
    let images = ecr::list(&sdk, env.config.ecr.repository.as_str(), &env.name).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["tags", "digest", "size", "pushed"]);
    for image in &images {
        table.add_row([
            image.tags.join(", "),
            image.digest.chars().take(19).collect(),
            format!("{:.1} MB", image.size_bytes as f64 / 1e6),
            image.pushed_at.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    eprintln!(
        "image: {} image(s) in {}",
        images.len(),
        env.config.ecr.repository.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// The registry to talk to and how to log in, from the environment (with its AWS
/// endpoint override applied) and the flags.
pub async fn connect(env: &LoadedEnvironment, args: &RegistryTargetArgs) -> Result<Registry> {
    let repository = env.config.ecr.repository.as_str();
    let from_env = super::credentials_from_env()?;
    let auth = args.auth.unwrap_or(match (&args.registry, &from_env) {
        (None, _) => RegistryAuthKind::Ecr,
        (Some(_), Some(_)) => RegistryAuthKind::Basic,
        (Some(_), None) => RegistryAuthKind::None,
    });
    let needs_aws = args.registry.is_none() || auth == RegistryAuthKind::Ecr;
    let sdk = if needs_aws {
        crate::aws::check_reachable(&env.config)?;
        Some(crate::aws::sdk_config(&env.config).await)
    } else {
        None
    };
    let target = match &args.registry {
        Some(url) => Target::new(url, repository),
        None => {
            let sdk = sdk.as_ref().expect("set above");
            let uri = ecr::repository_uri(sdk, repository, &env.name).await?;
            let (host, path) = uri.split_once('/').unwrap_or((uri.as_str(), repository));
            Target::new(host, path)
        }
    };
    let credentials = match auth {
        RegistryAuthKind::Ecr => ecr::credentials(sdk.as_ref().expect("set above")).await?,
        RegistryAuthKind::Basic => from_env.ok_or(ImageError::MissingPassword)?,
        RegistryAuthKind::None => Credentials::Anonymous,
    };
    Ok(Registry::connect(target, &credentials).await)
}

fn load(project: &Project, args: &RegistryArgs) -> Result<LoadedEnvironment> {
    let mut env = project.load(&args.env)?;
    if let Some(url) = &args.aws.aws_endpoint {
        env.config.aws.endpoint_url = Some(url.clone());
    }
    Ok(env)
}

/// A spinner on a terminal; nothing otherwise (CI logs stay clean).
pub fn spinner(message: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
