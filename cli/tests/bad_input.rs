//! Every bad input meets a clear message naming what is wrong and where, a
//! non-zero exit, and nothing written or applied.

mod common;

use common::Project;
use predicates::prelude::*;

/// Runs `shopctl render <env>` and checks it fails with all of `expected`,
/// leaving no output behind.
fn render_fails(project: &Project, env: &str, expected: &[&str]) {
    let out = project.path().join("out");
    let mut assert = project
        .shopctl()
        .args(["render", env, "--out"])
        .arg(&out)
        .assert()
        .failure();
    for text in expected {
        assert = assert.stderr(predicate::str::contains(*text));
    }
    assert!(!out.exists(), "render wrote files despite an error");
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let project = Project::new();
    render_fails(
        &project,
        "qa",
        &[
            "unknown environment `qa`",
            "environments/qa.toml",
            "allowed: local, production, staging",
        ],
    );
    render_fails(&project, "../etc/passwd", &["unknown environment"]);
}

#[test]
fn malformed_toml_names_file_and_line() {
    let project = Project::new();
    project.edit("staging", "region = \"eu-west-1\"", "region = eu-west-1");
    render_fails(
        &project,
        "staging",
        &["environments/staging.toml:6:10: string values must be quoted"],
    );
}

#[test]
fn unknown_key_names_the_key_and_what_is_allowed() {
    let project = Project::new();
    project.edit("staging", "[ecr]\n", "[ecr]\nscan = true\n");
    render_fails(
        &project,
        "staging",
        &[
            "environments/staging.toml:32:1: ecr.scan: unknown field `scan`",
            "allowed: `repository` or `keep_images`",
        ],
    );
}

#[test]
fn wrong_type_names_the_key_and_type() {
    let project = Project::new();
    project.edit("staging", "keep_images = 30", "keep_images = \"thirty\"");
    render_fails(
        &project,
        "staging",
        &[
            "environments/staging.toml:33:15: ecr.keep_images: invalid type",
            "allowed: a whole number",
        ],
    );
}

#[test]
fn invalid_cidr_is_rejected_at_its_line() {
    let project = Project::new();
    project.edit(
        "staging",
        "vpc_cidr = \"10.20.0.0/16\"",
        "vpc_cidr = \"10.20.0.0/33\"",
    );
    render_fails(
        &project,
        "staging",
        &["staging.toml:12:12: network.vpc_cidr: `10.20.0.0/33` is not an IPv4 CIDR"],
    );
    let project = Project::new();
    project.edit(
        "staging",
        "vpc_cidr = \"10.20.0.0/16\"",
        "vpc_cidr = \"10.20.0.1/16\"",
    );
    render_fails(
        &project,
        "staging",
        &["host bits set; did you mean \"10.20.0.0/16\"?"],
    );
}

#[test]
fn overlapping_and_outside_subnets_are_rejected() {
    let project = Project::new();
    project.edit("staging", "\"10.20.1.0/24\"", "\"10.20.0.128/25\"");
    project.edit("staging", "\"10.20.96.0/19\"", "\"10.99.0.0/19\"");
    render_fails(
        &project,
        "staging",
        &[
            "staging.toml:13:35: network.public_subnets[1]: 10.20.0.128/25 overlaps network.public_subnets[0] (10.20.0.0/24)",
            "staging.toml:14:54: network.private_subnets[2]: 10.99.0.0/19 is outside the VPC 10.20.0.0/16",
        ],
    );
}

#[test]
fn scaling_bounds_must_be_ordered() {
    let project = Project::new();
    project.edit("staging", "max = 6", "max = 2");
    render_fails(
        &project,
        "staging",
        &[
            "eks.node_groups[0].desired: desired 3 is above max 2",
            "allowed: min <= desired <= max",
        ],
    );
}

#[test]
fn even_quorums_are_rejected() {
    let project = Project::new();
    let text = project.env_text("staging").replacen(
        "[services.kafka]\nreplicas = 3",
        "[services.kafka]\nreplicas = 4",
        1,
    );
    project.write_env("staging", &text);
    render_fails(
        &project,
        "staging",
        &[
            "services.kafka.replicas: 4 members",
            "allowed: an odd number",
        ],
    );
}

#[test]
fn production_refuses_weak_topologies() {
    let project = Project::new();
    project.edit(
        "production",
        "single_nat_gateway = false",
        "single_nat_gateway = true",
    );
    project.edit(
        "production",
        "\"eu-west-1b\", \"eu-west-1c\"",
        "\"eu-west-1a\", \"eu-west-1a\"",
    );
    let text = project.env_text("production").replacen(
        "[services.rabbitmq]\nreplicas = 3",
        "[services.rabbitmq]\nreplicas = 1",
        1,
    );
    project.write_env("production", &text);
    render_fails(
        &project,
        "production",
        &[
            "network.single_nat_gateway: production must not route all egress through one zone",
            "aws.availability_zones[1]: `eu-west-1a` is listed twice",
            "services.rabbitmq.replicas: 1 replica in production",
        ],
    );
}

#[test]
fn a_template_naming_a_missing_value_fails_with_its_name_and_line() {
    let project = Project::new();
    std::fs::write(
        project.path().join("templates/k8s/broken.yaml.hbs"),
        "kind: ConfigMap\nname: {{kubernetes.nope}}\n",
    )
    .unwrap();
    render_fails(
        &project,
        "staging",
        &["templates/k8s/broken.yaml.hbs", "kubernetes.nope", "line 2"],
    );
}

#[test]
fn one_bad_environment_stops_all_of_render_all() {
    let project = Project::new();
    project.edit("local", "keep_images = 10", "keep_images = -1");
    let out = project.path().join("out");
    project
        .shopctl()
        .args(["render", "--all", "--out"])
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("local.toml"));
    assert!(!out.exists());
}

#[test]
fn missing_terraform_is_named_with_a_hint() {
    let project = Project::new();
    project
        .shopctl()
        .args(["plan", "local"])
        .env("PATH", "/nonexistent")
        .assert()
        .failure()
        .stderr(predicate::str::contains("Terraform is not installed"))
        .stderr(predicate::str::contains("shopctl doctor"));
}

#[test]
fn unreachable_endpoint_fails_fast_before_terraform_runs() {
    let project = Project::new();
    let port = common::free_port();
    let started = std::time::Instant::now();
    project
        .shopctl()
        .args([
            "plan",
            "local",
            "--aws-endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "the AWS endpoint http://127.0.0.1:{port} is unreachable"
        )));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        !project
            .path()
            .join(".shopctl/local/rendered/terraform/.terraform")
            .exists(),
        "terraform ran"
    );
    project
        .shopctl()
        .args([
            "status",
            "local",
            "--aws-endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unreachable"));
}

#[test]
fn bad_endpoint_url_is_a_usage_error() {
    let project = Project::new();
    project
        .shopctl()
        .args(["plan", "local", "--aws-endpoint", "localhost:5000"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not an endpoint URL"));
}

#[test]
fn destructive_commands_refuse_without_yes_and_without_a_terminal() {
    let project = Project::new();
    for action in ["apply", "destroy"] {
        project
            .shopctl()
            .args([action, "staging"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(format!(
                "refusing to {action} staging without --yes"
            )));
    }
    assert!(
        !project.path().join(".shopctl").exists(),
        "something was prepared before refusing"
    );
}

#[test]
fn outside_a_project_the_error_says_how_to_point_at_one() {
    let empty = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("shopctl")
        .unwrap()
        .current_dir(empty.path())
        .args(["render", "staging"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no shopctl project here"))
        .stderr(predicate::str::contains("-C <dir>"));
}

#[test]
fn service_cidr_must_be_private_sized_and_clear_of_the_vpc() {
    let line = "public_access_cidrs = [\"203.0.113.0/24\"]\n";
    for (cidr, expected) in [
        (
            "8.8.0.0/16",
            "staging.toml:21:1: eks.service_cidr: 8.8.0.0/16 is not a private range\n  allowed: a CIDR inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
        ),
        (
            "10.20.0.0/16",
            "staging.toml:21:1: eks.service_cidr: 10.20.0.0/16 overlaps the VPC 10.20.0.0/16 (network.vpc_cidr)\n  allowed: a private range outside 10.20.0.0/16",
        ),
        (
            "10.16.0.0/12",
            "eks.service_cidr: 10.16.0.0/12 overlaps the VPC 10.20.0.0/16",
        ),
        (
            "172.20.0.0/25",
            "eks.service_cidr: 172.20.0.0/25 has a prefix EKS does not accept for Services\n  allowed: a prefix length of /12 to /24",
        ),
        (
            "172.20.0.0/33",
            "staging.toml:21:16: eks.service_cidr: `172.20.0.0/33` is not an IPv4 CIDR",
        ),
    ] {
        let project = Project::new();
        project.edit(
            "staging",
            line,
            &format!("{line}service_cidr = \"{cidr}\"\n"),
        );
        render_fails(&project, "staging", &[expected]);
    }
}

#[test]
fn an_eks_version_without_pinned_addons_is_refused() {
    let project = Project::new();
    project.edit("staging", "version = \"1.33\"", "version = \"1.30\"");
    render_fails(
        &project,
        "staging",
        &[
            "staging.toml:18:1: eks.version: EKS 1.30 has no pinned cluster add-on versions",
            "allowed: one of 1.31, 1.32, 1.33",
        ],
    );
}
