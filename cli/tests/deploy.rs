//! `shopctl deploy`, `history`, `rollback` with the real binary, up to the boundary of
//! this machine: no Kubernetes API server can run here (docs/deploy.md), so these are the
//! paths a user meets before a cluster answers: what is checked first, and what is said
//! when the API is unreachable or is not a Kubernetes API. The decisions a deploy makes
//! against a cluster are unit-tested in cli/src/deploy/.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, wait_for_port, Project};
use predicates::prelude::*;

fn pinned() -> String {
    format!("127.0.0.1:5000/shop-app@sha256:{}", "ab".repeat(32))
}

/// A kubeconfig whose cluster is `server`, with a static token (no exec plugin).
fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
        "current-context": "x",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn deploy_refuses_without_a_terminal_or_an_image_or_a_kubeconfig() {
    let project = Project::new();
    // No terminal, no --yes: refused before anything is read.
    project
        .shopctl()
        .args(["deploy", "staging"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to deploy to staging without --yes",
        ));
    // Nothing pushed from here, no --image: says how to get one.
    project
        .shopctl()
        .args(["deploy", "staging", "--yes"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no image pushed for staging").and(
            predicate::str::contains("`shopctl image build && shopctl image push staging`"),
        ));
    // A tag is not a pinned image.
    project
        .shopctl()
        .args(["deploy", "staging", "--yes", "--image", "shop-app:latest"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("is not pinned by digest")
                .and(predicate::str::contains("REPOSITORY@sha256:")),
        );
    // A pinned image, but no kubeconfig written yet.
    project
        .shopctl()
        .args(["deploy", "staging", "--yes", "--image", &pinned()])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("no kubeconfig at")
                .and(predicate::str::contains("`shopctl kubeconfig staging`")),
        );
    // The image push records the image; deploy then reads it (and goes on to the cluster).
    let state = project.path().join(".shopctl/staging");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("pushed-image.json"), "{not json").unwrap();
    project
        .shopctl()
        .args(["deploy", "staging", "--dry-run"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "pushed-image.json is not a pushed-image record",
        ));
    // A broken kubeconfig is named.
    let broken = project.path().join("broken-kubeconfig");
    std::fs::write(&broken, "clusters: [").unwrap();
    project
        .shopctl()
        .args([
            "deploy",
            "staging",
            "--dry-run",
            "--image",
            &pinned(),
            "--kubeconfig",
        ])
        .arg(&broken)
        .assert()
        .failure()
        .stderr(predicate::str::contains("broken-kubeconfig is not usable"));
    // Unknown environment: the config error names the file.
    project
        .shopctl()
        .args(["deploy", "nosuch", "--dry-run"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nosuch"));
}

#[test]
fn an_unreachable_api_server_is_named_with_what_to_do() {
    let project = Project::new();
    let port = free_port();
    let config = kubeconfig(project.path(), &format!("https://127.0.0.1:{port}"));
    let started = std::time::Instant::now();
    for args in [
        vec!["deploy", "staging", "--dry-run", "--image", &pinned()],
        vec!["history", "staging"],
        vec!["rollback", "staging", "--yes"],
    ] {
        project
            .shopctl()
            .args(&args)
            .arg("--kubeconfig")
            .arg(&config)
            .assert()
            .failure()
            .stderr(
                predicate::str::contains(format!(
                    "cannot reach the Kubernetes API at https://127.0.0.1:{port}/"
                ))
                .and(predicate::str::contains("`shopctl kubeconfig staging`")),
            );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused connections fail fast"
    );
}

/// An HTTP server that is not Kubernetes (a wrong URL in a kubeconfig): Python's.
struct NotKubernetes {
    child: Child,
    port: u16,
}

impl NotKubernetes {
    fn start(dir: &Path) -> NotKubernetes {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(10));
        NotKubernetes { child, port }
    }
}

impl Drop for NotKubernetes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_that_is_not_kubernetes_is_reported_as_such() {
    let project = Project::new();
    let empty = tempfile::tempdir().unwrap();
    let server = NotKubernetes::start(empty.path());
    let config = kubeconfig(project.path(), &format!("http://127.0.0.1:{}", server.port));
    project
        .shopctl()
        .args(["history", "staging", "--kubeconfig"])
        .arg(&config)
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!("cannot reach the Kubernetes API at http://127.0.0.1:{}/: HTTP 404 to GET /version: this is not a Kubernetes API server", server.port)).and(predicate::str::contains("DOCTYPE").not()));
}

/// The ConfigMap `shop-postgres` of the rendered staging manifests.
fn postgres_config_map(project: &Project) -> serde_json::Value {
    let out = project.render_all();
    let text = std::fs::read_to_string(out.join("staging/k8s/postgres.yaml")).unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let found = documents
        .into_iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "shop-postgres");
    found.expect("the ConfigMap shop-postgres is rendered")
}

/// The post-bootstrap script Patroni runs on a new cluster, run as Patroni runs it
/// (`sh script <superuser URL>`) against a real PostgreSQL: it creates the `shop` role
/// with the password from the Secret and its database, and a password with quotes in it
/// is data, not SQL.
#[test]
fn the_post_bootstrap_script_creates_the_shop_role_and_database() {
    let project = Project::new();
    let config_map = postgres_config_map(&project);
    let patroni: serde_json::Value =
        serde_saphyr::from_str(config_map["data"]["patroni.yml"].as_str().unwrap()).unwrap();
    assert_eq!(
        patroni["bootstrap"]["post_bootstrap"],
        "sh /etc/patroni/post-bootstrap.sh"
    );
    let script = project.path().join("post-bootstrap.sh");
    std::fs::write(
        &script,
        config_map["data"]["post-bootstrap.sh"].as_str().unwrap(),
    )
    .unwrap();

    let pg = common::PgServer::start();
    let psql = common::postgres_bin_dir().join("psql");
    let path = format!(
        "{}:{}",
        common::postgres_bin_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let run = |password: &str| {
        Command::new("sh")
            .arg(&script)
            .arg(pg.url("postgres"))
            .env("SHOP_DB_PASSWORD", password)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let out = run("it's a \"password\"; DROP ROLE postgres; --");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let query = |sql: &str| {
        let out = Command::new(&psql)
            .args(["-XAtq", &pg.url("postgres"), "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(
        query("SELECT rolcanlogin, rolsuper, left(rolpassword, 14) FROM pg_authid WHERE rolname = 'shop'"),
        "t|f|SCRAM-SHA-256$"
    );
    assert_eq!(
        query("SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'"),
        "1"
    );
    assert_eq!(
        query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"),
        "shop"
    );
    // Patroni runs it once; a second run fails loudly rather than half-applying.
    assert!(!run("x").status.success());
    // Without the variable, `set -u` stops it before psql runs.
    let out = Command::new("sh")
        .arg(&script)
        .arg(pg.url("postgres"))
        .env_remove("SHOP_DB_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHOP_DB_PASSWORD"));
}

/// `failover-test <env>` on Kubernetes, up to the cluster: modes a cluster cannot run are
/// refused before anything is asked or contacted, the question is asked (no terminal, no
/// --yes: refused), and an unreachable API is named.
#[test]
fn failover_test_on_a_cluster_checks_its_mode_asks_and_names_an_unreachable_api() {
    let project = Project::new();
    project
        .shopctl()
        .args(["failover-test", "staging", "--mode", "kill-node", "--yes"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--mode kill-node cannot run on a Kubernetes cluster: its modes are switchover, delete-pod, drain-node, all",
        ));
    project
        .shopctl()
        .args(["failover-test", "local", "--mode", "drain-node", "--yes"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "--mode drain-node cannot run on local",
        ));
    project
        .shopctl()
        .args(["failover-test", "staging", "--mode", "delete-pod"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to failover-test staging without --yes",
        ));
    project
        .shopctl()
        .args(["failover-test", "staging", "--mode", "all", "--yes"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("no kubeconfig at")
                .and(predicate::str::contains("`shopctl kubeconfig staging`")),
        );
    let port = free_port();
    let config = kubeconfig(project.path(), &format!("https://127.0.0.1:{port}"));
    project
        .shopctl()
        .args([
            "failover-test",
            "staging",
            "--mode",
            "drain-node",
            "--yes",
            "--kubeconfig",
        ])
        .arg(&config)
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "cannot reach the Kubernetes API at https://127.0.0.1:{port}/"
        )));
}
