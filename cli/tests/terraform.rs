//! Real Terraform against a real AWS API emulator (moto_server): rendered
//! code is formatted, valid and passes checkov; apply, status and destroy
//! round-trip for staging and production; an interrupted apply leaves state
//! that the next run continues from. The emulator has no EKS add-on API: the
//! add-ons are skipped only for it, say so, and are planned whenever it is not
//! the target.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Moto, Project};
use predicates::prelude::*;
use std::collections::BTreeMap;

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

/// The line `plan`, `apply` and `status` print when the EKS add-ons are skipped.
fn addons_skipped(env: &str) -> String {
    format!(
        "{env}: EKS add-ons (vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver, metrics-server) are skipped \
         because the target is an AWS emulator"
    )
}

/// IAM roles as the emulator's IAM API reports them (boto3, independent of shopctl): by
/// name, null when missing, else the trust policy and attached and inline policy names.
fn iam_roles(moto: &Moto, names: &[String]) -> Value {
    let script = "import boto3, json, sys\n\
        iam = boto3.client('iam', endpoint_url=sys.argv[1], region_name='eu-west-1',\n\
            aws_access_key_id='test', aws_secret_access_key='test')\n\
        out = {}\n\
        for name in sys.argv[2:]:\n\
        \x20   try:\n\
        \x20       role = iam.get_role(RoleName=name)['Role']\n\
        \x20   except iam.exceptions.NoSuchEntityException:\n\
        \x20       out[name] = None\n\
        \x20       continue\n\
        \x20   out[name] = {\n\
        \x20       'trust': role['AssumeRolePolicyDocument'],\n\
        \x20       'attached': [p['PolicyName'] for p in iam.list_attached_role_policies(RoleName=name)['AttachedPolicies']],\n\
        \x20       'inline': iam.list_role_policies(RoleName=name)['PolicyNames'],\n\
        \x20   }\n\
        print(json.dumps(out, default=str))\n";
    let output = std::process::Command::new(common::venv_bin().join("python"))
        .args(["-c", script, &moto.url()])
        .args(names)
        .output()
        .expect("run the venv's python");
    assert!(
        output.status.success(),
        "cannot read IAM roles: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The roles of the cluster's own controllers and the service account each trusts.
fn kube_system_roles(env: &str) -> Vec<(String, &'static str)> {
    [
        ("ebs-csi-driver", "ebs-csi-controller-sa"),
        ("lb-controller", "aws-load-balancer-controller"),
        ("cluster-autoscaler", "cluster-autoscaler"),
    ]
    .into_iter()
    .map(|(role, account)| (format!("shop-{env}-{role}"), account))
    .collect()
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
        )
        .stderr(predicate::str::contains(addons_skipped(env)));

    let status = status_json(&project, env, &moto);
    // The Service CIDR as the EKS API returns it, and the add-ons reported as skipped.
    assert_eq!(
        status["cluster"]["service_cidr"], "172.20.0.0/16",
        "{status:#}"
    );
    assert!(
        status["addons"]["skipped"]
            .as_str()
            .is_some_and(|r| r.contains("AWS emulator")),
        "{status:#}"
    );
    assert_eq!(status["addons"]["installed"], serde_json::json!([]));
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
        .stdout(predicate::str::contains("ACTIVE"))
        .stderr(predicate::str::contains(addons_skipped(env)));

    // The controllers' IRSA roles exist even without the add-ons, each trusting only its
    // kube-system service account, with its policy.
    let roles = kube_system_roles(env);
    let names: Vec<String> = roles.iter().map(|(n, _)| n.clone()).collect();
    let found = iam_roles(&moto, &names);
    for (name, account) in &roles {
        let role = &found[name];
        assert!(role.is_object(), "{name} missing: {found:#}");
        assert!(
            role["trust"]
                .to_string()
                .contains(&format!("system:serviceaccount:kube-system:{account}")),
            "{name} trusts: {}",
            role["trust"]
        );
    }
    assert_eq!(
        found[&names[0]]["attached"],
        serde_json::json!(["AmazonEBSCSIDriverPolicy"])
    );
    assert_eq!(
        found[&names[1]]["inline"],
        serde_json::json!(["aws-load-balancer-controller"])
    );
    assert_eq!(
        found[&names[2]]["inline"],
        serde_json::json!(["cluster-autoscaler"])
    );

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
    // The outputs the deploy's cluster phase reads, by these exact names.
    let outputs = &serde_json::from_str::<Value>(&state).unwrap()["outputs"];
    for (output, role) in [
        ("lb_controller_role_arn", "lb-controller"),
        ("cluster_autoscaler_role_arn", "cluster-autoscaler"),
    ] {
        let arn = outputs[output]["value"].as_str().unwrap_or_default();
        assert!(
            arn.ends_with(&format!(":role/shop-{env}-{role}")),
            "output {output}: {arn:?}"
        );
    }
    assert!(
        outputs["eks_addon_versions"]["value"].is_null(),
        "{outputs:#}"
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
    let found = iam_roles(&moto, &names);
    assert!(
        names.iter().all(|n| found[n].is_null()),
        "roles left after destroy: {found:#}"
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

/// Runs Terraform itself in an environment's rendered directory, with the CLI config and
/// emulator credentials shopctl gives it. AWS_ENDPOINT_URL sends every AWS call the
/// provider makes to the emulator, even with `aws_endpoint_url` null, so nothing leaves
/// the loopback interface.
fn terraform_in(project: &Project, env: &str, moto: &Moto, args: &[&str]) -> std::process::Output {
    let state = project.path().join(".shopctl").join(env);
    std::process::Command::new(common::tool("terraform"))
        .current_dir(state.join("rendered/terraform"))
        .args(args.first())
        .arg("-no-color")
        .args(&args[1..])
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("TF_CLI_CONFIG_FILE", state.join("terraformrc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .env("AWS_ACCESS_KEY_ID", "shopctl-emulator")
        .env("AWS_SECRET_ACCESS_KEY", "shopctl-emulator")
        .output()
        .expect("run terraform")
}

/// The emulator switch: `plan` against the emulator says the add-ons are skipped; the same
/// rendered Terraform with the switch off plans every add-on at its pinned version with
/// the chosen conflict handling and network policy on; the switch is refused without an
/// endpoint; and a real-account render (no endpoint) turns it off and pins every add-on.
#[test]
fn addons_are_skipped_only_for_the_emulator_and_otherwise_planned_pinned() {
    let project = Project::new();
    let moto = Moto::start();
    let url = moto.url();
    project
        .shopctl()
        .args(["plan", "staging", "--local-state", "--aws-endpoint", &url])
        .assert()
        .success()
        .stderr(predicate::str::contains(addons_skipped("staging")))
        .stderr(
            predicate::str::is_match(r"staging: plan: \d+ to add, 0 to change, 0 to destroy")
                .unwrap(),
        );

    // A real-account render: the switch is off and every add-on has an exact version.
    let out = project.path().join("out");
    project
        .shopctl()
        .args(["render", "staging", "--out"])
        .arg(&out)
        .assert()
        .success();
    let tfvars: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("staging/terraform/terraform.tfvars.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tfvars["skip_eks_addons_for_emulator"], false);
    assert!(tfvars["aws_endpoint_url"].is_null());
    assert_eq!(tfvars["service_cidr"], "172.20.0.0/16");
    let versions = tfvars["eks_addon_versions"].as_object().unwrap();
    let exact = predicate::str::is_match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$").unwrap();
    for key in [
        "vpc_cni",
        "coredns",
        "kube_proxy",
        "aws_ebs_csi_driver",
        "metrics_server",
    ] {
        let v = versions[key].as_str().unwrap_or_default();
        assert!(exact.eval(v), "{key} is not pinned exactly: {v:?}");
    }
    assert!(versions["kube_proxy"]
        .as_str()
        .unwrap()
        .starts_with("v1.33."));

    // The emulator render with the switch turned off: Terraform plans all five add-ons.
    let plan = terraform_in(
        &project,
        "staging",
        &moto,
        &[
            "plan",
            "-input=false",
            "-var",
            "skip_eks_addons_for_emulator=false",
            "-out=addons.tfplan",
        ],
    );
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let shown = terraform_in(
        &project,
        "staging",
        &moto,
        &["show", "-json", "addons.tfplan"],
    );
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let plan: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let addons: Vec<&Value> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "aws_eks_addon")
        .collect();
    let planned: BTreeMap<&str, &Value> = addons
        .iter()
        .map(|r| {
            (
                r["change"]["after"]["addon_name"].as_str().unwrap(),
                &r["change"]["after"],
            )
        })
        .collect();
    let expected = [
        ("vpc-cni", "vpc_cni"),
        ("coredns", "coredns"),
        ("kube-proxy", "kube_proxy"),
        ("aws-ebs-csi-driver", "aws_ebs_csi_driver"),
        ("metrics-server", "metrics_server"),
    ];
    assert_eq!(planned.len(), expected.len(), "{planned:#?}");
    for (name, key) in expected {
        let after = planned[name];
        assert_eq!(after["addon_version"], versions[key], "{name}");
        assert_eq!(after["resolve_conflicts_on_create"], "OVERWRITE", "{name}");
        assert_eq!(after["resolve_conflicts_on_update"], "OVERWRITE", "{name}");
        assert_eq!(after["cluster_name"], "shop-staging", "{name}");
    }
    let cni: Value =
        serde_json::from_str(planned["vpc-cni"]["configuration_values"].as_str().unwrap()).unwrap();
    assert_eq!(cni["enableNetworkPolicy"], "true");
    let ebs = addons
        .iter()
        .find(|r| r["change"]["after"]["addon_name"] == "aws-ebs-csi-driver")
        .unwrap();
    assert_eq!(
        ebs["change"]["after_unknown"]["service_account_role_arn"], true,
        "the EBS CSI driver runs with its own role"
    );

    // Skipping without an emulator endpoint is refused by Terraform itself.
    std::fs::write(
        project
            .path()
            .join(".shopctl/staging/rendered/terraform/real.tfvars.json"),
        r#"{"aws_endpoint_url": null, "skip_eks_addons_for_emulator": true}"#,
    )
    .unwrap();
    let refused = terraform_in(
        &project,
        "staging",
        &moto,
        &["plan", "-input=false", "-var-file=real.tfvars.json"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr).replace('\n', " ");
    assert!(
        !refused.status.success(),
        "skipping the add-ons without an endpoint was accepted"
    );
    assert!(
        stderr.contains("EKS add-ons may be skipped only against an AWS emulator"),
        "{stderr}"
    );
}
