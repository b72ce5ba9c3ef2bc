//! `shopctl up staging` / `down staging` against real parts: Terraform applied to
//! moto_server (the AWS API emulator), the image built from a real binary and pushed into
//! Debian's docker-registry, the kubeconfig written from the emulator's EKS cluster, and
//! the Terraform stack destroyed again, all on loopback ports.
//!
//! The emulator's EKS cluster has no Kubernetes API, so deploy and smoke are shown to
//! refuse (no --kubeconfig) rather than run. The image packages `true` (a small real
//! binary) instead of a release build of the app; the project is a git repository, so
//! images are tagged with its commit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Moto, Project, Registry};
use predicates::prelude::*;
use serde_json::Value;

/// `git` in the project, as a throwaway identity.
fn git(project: &Project, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(project.path())
        .args([
            "-c",
            "user.name=shopctl test",
            "-c",
            "user.email=test@example.com",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Commits everything in the project; the new commit.
fn commit(project: &Project, message: &str) -> String {
    git(project, &["add", "-A"]);
    git(project, &["commit", "-q", "-m", message]);
    git(project, &["rev-parse", "HEAD"])
}

/// A small real binary to package instead of the app.
fn small_binary() -> PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("coreutils' true")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn status(project: &Project, moto: &Moto) -> Value {
    let out = project
        .shopctl()
        .args(["status", "staging", "--json", "--aws-endpoint", &moto.url()])
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

/// A run's stderr, also shown (with --nocapture, or when the test fails).
fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    eprintln!("---\n{stderr}");
    stderr
}

#[test]
fn up_staging_runs_to_a_step_resumes_and_down_destroys_against_the_emulator() {
    let project = Project::new();
    std::fs::write(project.path().join(".gitignore"), ".shopctl/\n").unwrap();
    git(&project, &["init", "-q"]);
    let first_commit = commit(&project, "the project");
    let moto = Moto::start();
    let registry = Registry::start(None);
    let binary = small_binary();
    let state = project.path().join(".shopctl/staging");
    let up = |extra: &[&str]| {
        let mut cmd = project.shopctl();
        cmd.args(["up", "staging", "--aws-endpoint", &moto.url(), "--registry"])
            .arg(registry.url())
            .arg("--app-bin")
            .arg(&binary)
            .args(extra)
            .timeout(Duration::from_secs(600));
        cmd
    };

    // Without a terminal and without --yes: refused before anything happens.
    up(&["--until", "image-push"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to bring up staging without --yes",
        ));
    assert!(!state.join("up.json").exists());
    assert!(!state.join("pushed-image.json").exists());
    assert!(
        status(&project, &moto)["vpc"].is_null(),
        "up without --yes applied"
    );

    // Up to the push: Terraform applied, the image built and pushed, and recorded.
    let started = Instant::now();
    let first = up(&["--until", "image-push", "--yes"]).assert().success();
    let stderr = stderr_of(&first);
    eprintln!("first up --until image-push: {:.0?}", started.elapsed());
    for expected in [
        "[1/6] terraform: applied: ",
        "[2/6] image-build: sha256:",
        "[3/6] image-push: 127.0.0.1:",
        "staging: stopped after image-push (--until); next: kubeconfig, with `shopctl up staging --aws-endpoint",
    ] {
        assert!(stderr.contains(expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(!stderr.contains("[4/6] kubeconfig:"), "{stderr}");
    let infrastructure = status(&project, &moto);
    assert_eq!(
        infrastructure["vpc"]["state"], "available",
        "{infrastructure:#}"
    );
    assert_eq!(infrastructure["cluster"]["status"], "ACTIVE");
    let pushed = read_json(&state.join("pushed-image.json"));
    assert_eq!(
        pushed["repository"],
        format!("127.0.0.1:{}/shop/app", registry.port)
    );
    assert_eq!(pushed["revision"], first_commit.as_str());
    assert_eq!(pushed["tags"], serde_json::json!([&first_commit[..12]]));
    let first_digest = pushed["digest"].as_str().unwrap().to_owned();
    assert!(first_digest.starts_with("sha256:"), "{pushed}");
    // The registry has it under the commit tag.
    let tags = project
        .shopctl()
        .args(["image", "ls", "staging", "--json", "--registry"])
        .arg(registry.url())
        .assert()
        .success();
    let tags: Value = serde_json::from_slice(&tags.get_output().stdout).unwrap();
    assert_eq!(tags, serde_json::json!([&first_commit[..12]]));
    let progress = read_json(&state.join("up.json"));
    let done: Vec<&String> = progress["steps"].as_object().unwrap().keys().collect();
    assert_eq!(
        done,
        ["image-build", "image-push", "terraform"],
        "{progress:#}"
    );

    // Again: every step is done with the same inputs, so nothing runs.
    let again = up(&["--until", "image-push", "--yes"]).assert().success();
    let stderr = stderr_of(&again);
    for expected in [
        "[1/6] terraform: done ",
        "same configuration; skipped",
        "[2/6] image-build: done ",
        "same commit and binary; skipped",
        "[3/6] image-push: done ",
        "same image and registry; skipped",
        "(0 ran, 3 skipped)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }

    // A new commit: Terraform is still done, the image is built and pushed again.
    std::fs::write(project.path().join("CHANGES"), "a change\n").unwrap();
    let second_commit = commit(&project, "a change");
    let changed = up(&["--until", "image-push", "--yes"]).assert().success();
    let stderr = stderr_of(&changed);
    for expected in [
        "same configuration; skipped",
        "[2/6] image-build: done ",
        "but its inputs changed since (commit",
        "[3/6] image-push: 127.0.0.1:",
        "(2 ran, 1 skipped)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let pushed = read_json(&state.join("pushed-image.json"));
    assert_eq!(pushed["revision"], second_commit.as_str());
    assert_ne!(pushed["digest"], first_digest.as_str());

    // Against the emulator, a push needs --registry: its ECR has no registry behind it.
    project
        .shopctl()
        .args([
            "up",
            "staging",
            "--until",
            "image-push",
            "--yes",
            "--aws-endpoint",
            &moto.url(),
            "--app-bin",
        ])
        .arg(&binary)
        .assert()
        .failure()
        .stderr(predicate::str::contains("[3/6] image-push refused"))
        .stderr(predicate::str::contains("no registry behind its URI"));

    // One step further: the kubeconfig of the emulator's EKS cluster.
    let kube = up(&["--until", "kubeconfig", "--yes"]).assert().success();
    let stderr = stderr_of(&kube);
    for expected in [
        "same commit and binary; skipped",
        "[4/6] kubeconfig: cluster shop-staging (Kubernetes 1.33)",
        "stopped after kubeconfig (--until); next: deploy",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let config = read_json(&state.join("kubeconfig"));
    assert_eq!(config["clusters"][0]["name"], "shop-staging");
    assert!(config["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert_eq!(
        config["users"][0]["user"]["exec"]["env"][0]["value"],
        moto.url().as_str()
    );

    // All the way: deploy refuses, the emulator's cluster has no Kubernetes API.
    let refused = up(&["--yes"]).assert().failure();
    let stderr = stderr_of(&refused);
    for expected in [
        "[4/6] kubeconfig: done ",
        "[5/6] deploy refused: the AWS API is an emulator",
        "has no Kubernetes API",
        "--until kubeconfig",
        "--kubeconfig PATH",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let progress = read_json(&state.join("up.json"));
    assert!(progress["steps"].get("deploy").is_none(), "{progress:#}");
    assert!(
        progress["steps"].get("kubeconfig").is_some(),
        "{progress:#}"
    );

    // Down without a terminal and without --yes: refused, everything still there.
    project
        .shopctl()
        .args(["down", "staging", "--aws-endpoint", &moto.url()])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to take down staging without --yes",
        ));
    assert_eq!(status(&project, &moto)["vpc"]["state"], "available");
    assert!(state.join("up.json").exists());

    // Down: Kubernetes skipped (and why), the stack destroyed, the progress forgotten.
    let started = Instant::now();
    let down = project
        .shopctl()
        .args(["down", "staging", "--yes", "--aws-endpoint", &moto.url()])
        .timeout(Duration::from_secs(600))
        .assert()
        .success();
    let stderr = stderr_of(&down);
    eprintln!("down: {:.0?}", started.elapsed());
    for expected in [
        "[1/3] kubernetes: skipped: the AWS API is an emulator",
        "has no Kubernetes API",
        "[2/3] terraform: destroyed (0 to add, 0 to change, ",
        "[3/3] the progress of `up` forgotten",
        "staging: down in ",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let gone = status(&project, &moto);
    assert!(
        gone["vpc"].is_null() && gone["cluster"].is_null() && gone["repository"].is_null(),
        "{gone:#}"
    );
    assert!(!state.join("up.json").exists());
}

#[test]
fn until_takes_only_a_step_name() {
    let project = Project::new();
    project
        .shopctl()
        .args(["up", "staging", "--until", "nosuchstep"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value 'nosuchstep' for '--until <STEP>'",
        ))
        .stderr(predicate::str::contains(
            "[possible values: terraform, image-build, image-push, kubeconfig, deploy, smoke]",
        ));
    // The local path takes none of the EKS path's flags.
    project
        .shopctl()
        .args(["up", "local", "--until", "terraform"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--until is for `shopctl up <env>` of an environment on EKS; local is a local environment",
        ));
}
