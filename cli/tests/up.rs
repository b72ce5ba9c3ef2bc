//! `shopctl up local --aws` / `down local`: the AWS emulator started on the
//! configured loopback port, the Terraform stack applied on it, a second `up`
//! reusing what runs, and `down` asking first and cleaning up.

mod common;

use std::net::TcpStream;

use common::Project;
use predicates::prelude::*;

/// Stops an emulator left behind by a failing test.
struct StopOnDrop<'a>(&'a Project);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.shopctl().args(["down", "local", "--yes"]).output();
    }
}

#[test]
fn up_is_idempotent_and_down_cleans_up() {
    let project = Project::new();
    let port = common::free_port();
    project.edit(
        "local",
        "endpoint_url = \"http://127.0.0.1:5000\"",
        &format!("endpoint_url = \"http://127.0.0.1:{port}\""),
    );
    let _guard = StopOnDrop(&project);

    project
        .shopctl()
        .args(["up", "local", "--aws"])
        .assert()
        .success()
        .stderr(predicate::str::contains("started moto_server"))
        .stderr(
            predicate::str::is_match(
                r"local: up in .* \(\d+ to add, 0 to change, 0 to destroy applied\)",
            )
            .unwrap(),
        )
        .stdout(predicate::str::contains("shop-local"))
        .stdout(predicate::str::contains("missing").not());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the emulator is not running after up"
    );

    project
        .shopctl()
        .args(["up", "local", "--aws"])
        .assert()
        .success()
        .stderr(predicate::str::contains("already running; reusing it"))
        .stderr(predicate::str::contains(
            "(0 to add, 0 to change, 0 to destroy applied)",
        ));

    project
        .shopctl()
        .args(["down", "local"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to take down local without --yes",
        ));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "down without --yes stopped something"
    );

    project
        .shopctl()
        .args(["down", "local", "--yes", "--purge"])
        .assert()
        .success()
        .stderr(
            predicate::str::is_match(r"local: destroyed \(0 to add, 0 to change, \d+ to destroy\)")
                .unwrap(),
        )
        .stderr(predicate::str::contains("emulator stopped; state deleted"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the emulator still runs after down"
    );
    assert!(!project.path().join(".shopctl/local").exists());

    // Down with nothing running is not an error.
    project
        .shopctl()
        .args(["down", "local", "--yes"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no emulator of ours was running"));
}

#[test]
fn up_refuses_remote_endpoints_and_other_tiers_take_the_eks_path() {
    let project = Project::new();
    // `up staging` is the EKS path (cli/tests/up_env.rs): without a terminal it wants --yes.
    project
        .shopctl()
        .args(["up", "staging"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "refusing to bring up staging without --yes",
        ));
    project
        .shopctl()
        .args(["up", "staging", "--aws", "--yes"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--aws is for local environments"));
    project.edit(
        "local",
        "endpoint_url = \"http://127.0.0.1:5000\"",
        "endpoint_url = \"http://192.0.2.10:5000\"",
    );
    project
        .shopctl()
        .args(["up", "local", "--aws"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not on this machine"));
}
