//! Real Terraform against a real AWS API emulator (moto_server): rendered
//! code is formatted, valid and passes checkov; apply, status and destroy
//! round-trip for staging and production; an interrupted apply leaves state
//! that the next run continues from.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Moto, Project};
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn rendered_terraform_is_formatted_and_valid_for_every_environment() {
    let project = Project::new();
    project
        .shopctl()
        .args(["validate", "--all"])
        .assert()
        .success()
        .stderr(predicate::str::contains("local: formatted and valid"))
        .stderr(predicate::str::contains("staging: formatted and valid"))
        .stderr(predicate::str::contains("production: formatted and valid"));
}

#[test]
fn checkov_finds_no_failed_checks() {
    let project = Project::new();
    let out = project.render_all();
    for env in ["local", "staging", "production"] {
        let output = std::process::Command::new(common::tool("checkov"))
            .args([
                "--framework",
                "terraform",
                "--quiet",
                "--compact",
                "--output",
                "json",
                "--skip-download",
                "-d",
            ])
            .arg(out.join(env).join("terraform"))
            .output()
            .expect("run checkov");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "checkov printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let summary = &report["summary"];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} {}", c["check_id"], c["resource"], c["check_name"]))
            .collect();
        assert_eq!(
            summary["failed"],
            0,
            "{env}: checkov failed checks:\n{}",
            failed.join("\n")
        );
        assert!(
            summary["passed"].as_u64().unwrap() > 50,
            "{env}: checkov checked too little: {summary}"
        );
    }
}

/// Reads an object from the emulator's S3 with boto3 (from the tools venv),
/// a client independent of shopctl's.
fn s3_object(moto: &Moto, bucket: &str, key: &str) -> String {
    let script = "import boto3, sys\n\
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='eu-west-1',\n\
            aws_access_key_id='test', aws_secret_access_key='test')\n\
        print(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read().decode())\n";
    let output = std::process::Command::new(common::venv_bin().join("python"))
        .args(["-c", script, &moto.url(), bucket, key])
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "cannot read s3://{bucket}/{key}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn status_json(project: &Project, env: &str, moto: &Moto) -> Value {
    let out = project
        .shopctl()
        .args(["status", env, "--json", "--aws-endpoint", &moto.url()])
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn round_trip(env: &str, zones: &[&str]) {
    let project = Project::new();
    let moto = Moto::start();
    let url = moto.url();

    project
        .shopctl()
        .args(["apply", env, "--yes", "--aws-endpoint", &url])
        .assert()
        .success()
        .stderr(
            predicate::str::is_match(format!(
                r"{env}: apply complete: \d+ added, 0 changed, 0 destroyed"
            ))
            .unwrap(),
        );

    let status = status_json(&project, env, &moto);
    assert_eq!(status["vpc"]["state"], "available", "{status:#}");
    let subnets = status["subnets"].as_array().unwrap();
    assert_eq!(subnets.len(), 6, "{status:#}");
    for zone in zones {
        assert_eq!(
            subnets.iter().filter(|s| s["zone"] == *zone).count(),
            2,
            "one public and one private in {zone}"
        );
    }
    assert_eq!(subnets.iter().filter(|s| s["public"] == true).count(), 3);
    assert_eq!(status["cluster"]["name"], format!("shop-{env}"));
    assert_eq!(status["cluster"]["status"], "ACTIVE");
    assert_eq!(status["cluster"]["version"], "1.33");
    assert_eq!(
        status["node_groups"].as_array().unwrap().len(),
        1,
        "{status:#}"
    );
    assert_eq!(status["repository"]["tag_mutability"], "IMMUTABLE");
    assert_eq!(status["repository"]["scan_on_push"], true);
    for bucket in status["buckets"].as_array().unwrap() {
        assert_eq!(bucket["exists"], true, "{bucket}");
        assert_eq!(bucket["versioning"], "Enabled", "{bucket}");
    }
    // The human view names the same things.
    project
        .shopctl()
        .args(["status", env, "--aws-endpoint", &url])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("shop-{env}")))
        .stdout(predicate::str::contains("ACTIVE"));

    // State went to the S3 backend (in the emulator), not to local disk.
    let state = s3_object(
        &moto,
        &format!("shop-{env}-tfstate"),
        &format!("shopctl/{env}/terraform.tfstate"),
    );
    assert!(
        state.contains("aws_eks_cluster"),
        "remote state lacks the cluster"
    );
    assert!(!project
        .path()
        .join(format!(
            ".shopctl/{env}/rendered/terraform/terraform.tfstate"
        ))
        .exists());

    // A second apply changes nothing.
    project
        .shopctl()
        .args(["apply", env, "--yes", "--aws-endpoint", &url])
        .assert()
        .success()
        .stderr(predicate::str::contains("nothing to apply"));

    project
        .shopctl()
        .args(["destroy", env, "--yes", "--aws-endpoint", &url])
        .assert()
        .success()
        .stderr(
            predicate::str::is_match(format!(
                r"{env}: destroy complete: 0 added, 0 changed, \d+ destroyed"
            ))
            .unwrap(),
        );
    let status = status_json(&project, env, &moto);
    assert!(
        status["vpc"].is_null() && status["cluster"].is_null() && status["repository"].is_null(),
        "{status:#}"
    );
    assert!(
        status["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["exists"] == false),
        "{status:#}"
    );
}

#[test]
fn staging_applies_reports_and_destroys_against_the_emulator() {
    round_trip("staging", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
}

#[test]
fn production_applies_reports_and_destroys_against_the_emulator() {
    round_trip("production", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
}

#[test]
fn interrupted_apply_keeps_state_consistent_and_the_rerun_finishes() {
    let project = Project::new();
    let moto = Moto::start();
    let url = moto.url();
    let binary = assert_cmd::cargo::cargo_bin("shopctl");
    let mut child = std::process::Command::new(&binary)
        .current_dir(project.path())
        .args([
            "apply",
            "local",
            "--yes",
            "--local-state",
            "--aws-endpoint",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once Terraform has started creating resources, and keep
    // reading its output (a closed pipe would kill it).
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = String::new();
    let mut interrupted = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if !interrupted && line.contains("Creation complete") {
            // SAFETY: kill(2) on our own child with a valid signal.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            interrupted = true;
        }
        seen.push_str(&line);
        seen.push('\n');
        assert!(
            interrupted || Instant::now() < deadline,
            "apply never started creating:\n{seen}"
        );
    }
    assert!(
        interrupted,
        "apply ended without creating anything:\n{seen}"
    );
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(130),
        "stdout:\n{seen}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("Terraform finishes the changes of this plan first"),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupted: Terraform finished the changes it had started"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("apply complete"),
        "an interrupted apply reported success: {stderr}"
    );

    // The state file is whole: it records everything that exists, so the
    // next run has nothing left to do and nothing "already exists".
    let state_path = project
        .path()
        .join(".shopctl/local/rendered/terraform/terraform.tfstate");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert!(
        state["resources"].as_array().unwrap().len() > 40,
        "the state is missing resources"
    );
    project
        .shopctl()
        .args([
            "apply",
            "local",
            "--yes",
            "--local-state",
            "--aws-endpoint",
            &url,
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("nothing to apply"));
    project
        .shopctl()
        .args(["plan", "local", "--local-state", "--aws-endpoint", &url])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "plan: 0 to add, 0 to change, 0 to destroy",
        ));
    project
        .shopctl()
        .args([
            "destroy",
            "local",
            "--yes",
            "--local-state",
            "--aws-endpoint",
            &url,
        ])
        .assert()
        .success();
}
