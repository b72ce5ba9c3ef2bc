//! `shopctl capacity`: the real binary on the project's environments. Staging and
//! production fit with headroom; 3 x t3.medium does not, and render, plan and deploy
//! refuse it before writing or applying anything; the connection budget is a config error.

mod common;

use common::Project;
use predicates::prelude::*;
use serde_json::Value;

fn json(project: &Project, env: &str) -> Value {
    let output = project
        .shopctl()
        .args(["capacity", env, "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn staging_and_production_fit_with_headroom() {
    let project = Project::new();
    for env in ["staging", "production"] {
        project
            .shopctl()
            .args(["capacity", env])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "{env}: minimum (node groups at min"
            )))
            .stdout(predicate::str::contains(format!(
                "{env}: peak (node groups at max"
            )))
            .stdout(predicate::str::contains("headroom cpu / memory / pods"))
            .stdout(predicate::str::contains("general-1"))
            .stdout(predicate::str::contains("total"))
            .stdout(predicate::str::contains("PostgreSQL connections:"));
        let report = json(&project, env);
        assert_eq!(report["fits"], true, "{report}");
        let scenarios = report["scenarios"].as_array().unwrap();
        assert_eq!(scenarios.len(), 2);
        for scenario in scenarios {
            assert!(scenario["unplaced"].as_array().unwrap().is_empty());
            for node in scenario["nodes"].as_array().unwrap() {
                let (alloc, used) = (&node["allocatable"], &node["requested"]);
                assert!(used["cpu_millis"].as_u64() <= alloc["cpu_millis"].as_u64());
                assert!(used["memory_bytes"].as_u64() <= alloc["memory_bytes"].as_u64());
                let pods = node["pods"].as_array().unwrap();
                // Every node runs the three node daemons.
                for daemon in ["aws-node-", "kube-proxy-", "ebs-csi-node-"] {
                    assert!(
                        pods.iter().any(|p| p.as_str().unwrap().starts_with(daemon)),
                        "{daemon} on {node}"
                    );
                }
            }
        }
        // The stores are one per node: three nodes each hold one PostgreSQL member.
        let minimum = &scenarios[0]["nodes"];
        let holding = |prefix: &str| {
            minimum
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| {
                    n["pods"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p.as_str().unwrap().starts_with(prefix))
                })
                .count()
        };
        assert_eq!(holding("shop-postgres-"), 3, "{env}");
        assert_eq!(holding("shop-kafka-"), 3, "{env}");
        assert!(report["connections"]["max_connections"].as_u64().unwrap() > 0);
    }
}

#[test]
fn three_t3_medium_do_not_fit_and_nothing_is_rendered_planned_or_deployed() {
    let project = Project::new();
    project.edit(
        "staging",
        "instance_types = [\"m6i.xlarge\", \"m5.xlarge\"]",
        "instance_types = [\"t3.medium\"]",
    );
    project.edit("staging", "max = 6", "max = 3");
    let expected = [
        "staging: the workloads do not fit the nodes of eks.node_groups[0] general (t3.medium, min 3, max 3)",
        "pods do not fit",
        "(Deployment shop/shop-app, k8s/app.yaml#",
        "every node (3): memory: ",
        "any one of these changes in environments/staging.toml fits:",
        "eks.node_groups[0].instance_types = [\"",
        "eks.node_groups[0].min = ",
    ];
    let mut capacity = project
        .shopctl()
        .args(["capacity", "staging"])
        .assert()
        .failure();
    for text in expected {
        capacity = capacity.stderr(predicate::str::contains(text));
    }
    let output = project
        .shopctl()
        .args(["capacity", "staging", "--json"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["fits"], false);
    let unplaced: Vec<&str> = report["scenarios"][0]["unplaced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["pod"].as_str().unwrap())
        .collect();
    assert!(
        unplaced.iter().any(|p| p.starts_with("shop-app-")),
        "{unplaced:?}"
    );
    assert!(!report["suggestions"].as_array().unwrap().is_empty());

    // The preflight of render, plan and deploy: the same message, nothing written.
    let out = project.path().join("out");
    let mut render = project
        .shopctl()
        .args(["render", "staging", "--out"])
        .arg(&out)
        .assert()
        .failure();
    for text in expected {
        render = render.stderr(predicate::str::contains(text));
    }
    assert!(!out.exists(), "render wrote files despite the error");
    for args in [
        &["plan", "staging", "--local-state"][..],
        &["deploy", "staging", "--dry-run"][..],
    ] {
        project
            .shopctl()
            .args(args)
            .assert()
            .failure()
            .stderr(predicate::str::contains(expected[0]))
            .stderr(predicate::str::contains("terraform").not());
    }
    assert!(
        !project.path().join(".shopctl/staging/rendered").exists(),
        "plan rendered to disk despite the error"
    );
}

#[test]
fn the_connection_budget_names_the_keys() {
    let project = Project::new();
    project.edit("staging", "max_connections = 200", "max_connections = 100");
    for command in ["capacity", "render"] {
        project
            .shopctl()
            .args([command, "staging"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "environments/staging.toml:57:1: services.patroni.max_connections: 116 connections may be open at once but max_connections is 100: app 10 x 6 (services.app.db_pool x HPA maximum) + worker 10 x 4 (services.worker.db_pool x HPA maximum) + reserve 16 = 116",
            ))
            .stderr(predicate::str::contains(
                "allowed: services.patroni.max_connections >= 116, or services.app.db_pool <= 8 and services.worker.db_pool <= 8",
            ));
    }
}

#[test]
fn unknown_instance_types_and_local_are_refused() {
    let project = Project::new();
    project.edit(
        "staging",
        "instance_types = [\"m6i.xlarge\", \"m5.xlarge\"]",
        "instance_types = [\"m6i.xlarge\", \"m6i.huge\"]",
    );
    project
        .shopctl()
        .args(["capacity", "staging"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "environments/staging.toml:24:33: eks.node_groups[0].instance_types[1]: `m6i.huge` is not in shopctl's instance type catalog",
        ))
        .stderr(predicate::str::contains("allowed: one of t3.medium, t3.large,"));
    project
        .shopctl()
        .args(["capacity", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("local is a local environment"));
}

#[test]
fn staging_on_its_former_m6i_large_nodes_does_not_fit() {
    // Issue 17's finding 3: the one-per-node stores and the node daemons leave 200m per
    // m6i.large, and the app's 500m pods stay Pending.
    let project = Project::new();
    project.edit(
        "staging",
        "instance_types = [\"m6i.xlarge\", \"m5.xlarge\"]",
        "instance_types = [\"m6i.large\", \"m5.large\"]",
    );
    project
        .shopctl()
        .args(["capacity", "staging"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "shop-app-0 (Deployment shop/shop-app, k8s/app.yaml#3) requests 500m / 256Mi:\n      every node (3): CPU: 200m free, short 300m",
        ))
        .stderr(predicate::str::contains("eks.node_groups[0].instance_types = [\"m5.xlarge\"]"))
        .stderr(predicate::str::contains("eks.node_groups[0].min = 4"));
}
