//! `shopctl down <env>` for an environment on EKS, in three steps: the Kubernetes objects,
//! the Terraform stack, and what `up` recorded.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use super::emulator;
use super::progress::Progress;
use crate::cli::DownArgs;
use crate::commands::{load, render_env, shown, terraform_log, workspace};
use crate::confirm::{confirm, Question};
use crate::project::Project;

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
