//! `shopctl kubeconfig <env>` and `shopctl eks-token <env>`: the command line's edge.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::kubeconfig::{self, ExecPlugin};
use super::Cluster;
use crate::cli::{AwsArgs, EksTokenArgs, KubeconfigArgs};
use crate::config::LoadedEnvironment;
use crate::project::Project;

/// Writes the environment's kubeconfig (default `.shopctl/<env>/kubeconfig`) and says how
/// to use it.
pub async fn write_kubeconfig(project: &Project, args: &KubeconfigArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws)?;
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| default_path(project, &env.name));
    let aws_endpoint = args.aws.aws_endpoint.as_ref().map(|u| u.as_str());
    let cluster = write_for(project, &env, aws_endpoint, &path).await?;
    println!("{}", path.display());
    eprintln!(
        "kubeconfig: cluster {} (Kubernetes {}) at {}; use it with `export KUBECONFIG={}`",
        cluster.name,
        cluster.version,
        cluster.endpoint,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Describes the environment's EKS cluster (it must exist and be ACTIVE) and writes its
/// kubeconfig to `path` (mode 600). The exec plugin passes `aws_endpoint` on: the
/// override given on the command line, if any (the configured one it reads itself).
/// `shopctl kubeconfig` and `shopctl up <env>` both write through this.
pub async fn write_for(
    project: &Project,
    env: &LoadedEnvironment,
    aws_endpoint: Option<&str>,
    path: &Path,
) -> Result<Cluster> {
    let sdk = crate::aws::sdk_config(&env.config).await;
    let name = crate::status::cluster_name(&env.name);
    let cluster = super::describe(&sdk, &env.config, &env.name, &name).await?;
    let shopctl = std::env::current_exe().context("cannot find the shopctl binary's path")?;
    let plugin = ExecPlugin {
        shopctl: &shopctl,
        project_root: &project.root,
        env: &env.name,
        aws_endpoint,
    };
    let config =
        kubeconfig::kubeconfig(&cluster, env.config.kubernetes.namespace.as_str(), &plugin);
    write_private(path, &serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(cluster)
}

/// Prints an ExecCredential with a fresh token (kubectl's exec plugin protocol).
pub async fn print_token(project: &Project, args: &EksTokenArgs) -> Result<ExitCode> {
    let env = load(project, &args.env, &args.aws)?;
    let sdk = crate::aws::sdk_config(&env.config).await;
    let credentials = super::credentials(&sdk).await?;
    let now = SystemTime::now();
    let token = super::token::token(
        credentials,
        env.config.aws.region.as_str(),
        &super::sts_url(&env.config),
        &crate::status::cluster_name(&env.name),
        now,
    )?;
    println!("{}", kubeconfig::exec_credential(&token, now));
    Ok(ExitCode::SUCCESS)
}

pub fn default_path(project: &Project, env: &str) -> PathBuf {
    project.state_dir(env).join("kubeconfig")
}

fn load(project: &Project, name: &str, aws: &AwsArgs) -> Result<LoadedEnvironment> {
    let env = crate::commands::load(project, name, aws, false)?;
    crate::aws::check_reachable(&env.config)?;
    Ok(env)
}

/// Writes through a temporary file, owner-only, then renames: a reader never sees half.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
