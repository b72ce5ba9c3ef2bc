//! `shopctl doctor`: finds the real tools, and names what is missing with
//! how to install it.

use predicates::prelude::*;
use serde_json::Value;

#[test]
fn reports_terraform_and_the_provider_mirror() {
    let out = assert_cmd::Command::cargo_bin("shopctl")
        .unwrap()
        .args(["doctor", "--json"])
        .assert()
        .success();
    let checks: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let terraform = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "terraform")
        .unwrap();
    assert_eq!(terraform["found"], true);
    assert!(
        terraform["version"]
            .as_str()
            .unwrap()
            .starts_with("Terraform v"),
        "{terraform}"
    );
}

#[test]
fn a_missing_required_tool_fails_with_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("shopctl")
        .unwrap()
        .args(["doctor"])
        .env("PATH", empty.path())
        .env("XDG_CACHE_HOME", empty.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISSING"))
        .stdout(predicate::str::contains(
            "terraform: install Terraform 1.6 or newer",
        ));
}
