//! `shopctl render`: snapshots of every environment, byte-identical output
//! on re-runs, and `--check` that catches drift.

mod common;

use std::path::Path;

use common::Project;
use predicates::prelude::*;

/// Every rendered file of one environment, in path order, as one text.
fn tree_text(dir: &Path) -> String {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            format!(
                "==> {} <==\n{}",
                f.strip_prefix(dir).unwrap().display(),
                std::fs::read_to_string(f).unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `shopctl render staging [extra...] --out <out>`, ready for assertions.
fn render_staging(project: &Project, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    project
        .shopctl()
        .args(["render", "staging"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .assert()
}

#[test]
fn renders_every_environment_like_the_snapshots() {
    let project = Project::new();
    let out = project.render_all();
    for env in ["local", "staging", "production"] {
        insta::assert_snapshot!(format!("render_{env}"), tree_text(&out.join(env)));
    }
}

#[test]
fn output_is_byte_identical_on_rerun_and_check_passes() {
    let project = Project::new();
    let out = project.path().join("out");
    render_staging(&project, &out, &[]).success();
    let first = tree_text(&out.join("staging"));
    render_staging(&project, &out, &[])
        .success()
        .stderr(predicate::str::contains("(0 changed)"));
    assert_eq!(first, tree_text(&out.join("staging")));
    render_staging(&project, &out, &["--check"]).success();
}

#[test]
fn check_reports_changed_missing_and_extra_files() {
    let project = Project::new();
    let out = project.path().join("out");
    render_staging(&project, &out, &[]).success();
    let tf = out.join("staging/terraform");
    std::fs::write(tf.join("variables.tf"), "# edited by hand\n").unwrap();
    std::fs::remove_file(tf.join("backend.tf")).unwrap();
    std::fs::write(tf.join("leftover.tf"), "").unwrap();
    // Terraform's own working files are not ours and never count as drift.
    std::fs::create_dir_all(tf.join(".terraform")).unwrap();
    std::fs::write(tf.join("terraform.tfstate"), "{}").unwrap();
    render_staging(&project, &out, &["--check"])
        .code(1)
        .stdout(predicate::str::contains("changed  terraform/variables.tf"))
        .stdout(predicate::str::contains("missing  terraform/backend.tf"))
        .stdout(predicate::str::contains("extra    terraform/leftover.tf"))
        .stdout(predicate::str::contains("tfstate").not());
    // A plain render repairs the tree and removes the stale file.
    render_staging(&project, &out, &[]).success();
    assert!(!tf.join("leftover.tf").exists());
    assert!(tf.join("terraform.tfstate").exists());
    render_staging(&project, &out, &["--check"]).success();
}

#[test]
fn default_output_goes_to_the_state_directory() {
    let project = Project::new();
    project
        .shopctl()
        .args(["render", "local"])
        .assert()
        .success();
    assert!(project
        .path()
        .join(".shopctl/local/rendered/terraform/variables.tf")
        .is_file());
    assert!(project
        .path()
        .join(".shopctl/local/rendered/k8s/namespace.yaml")
        .is_file());
}

/// A line that gives a password a literal value (`password: hunter2`,
/// `PASSWORD = 'x'`, SQL's `PASSWORD 'x'`, JSON's `"password": "x"`), as opposed to
/// naming one: a comment, a shell variable (`password="$SHOP_DB_PASSWORD"`) or a psql
/// variable (`PASSWORD :'password'`).
fn assigns_a_password(line: &str) -> bool {
    let line = line.trim_start().to_lowercase();
    if line.starts_with('#') {
        return false;
    }
    line.match_indices("password").any(|(at, word)| {
        let after = &line[at + word.len()..];
        // The closing quote of a key: `"password": ...`.
        let after = match after.strip_prefix(['"', '\'']) {
            Some(r) if r.trim_start().starts_with([':', '=']) => r,
            _ => after,
        };
        let rest = after.trim_start();
        if rest.starts_with(":'") {
            return false; // psql's :'variable'
        }
        let value = if let Some(v) = rest.strip_prefix([':', '=']) {
            v.trim_start()
        } else if after.starts_with(char::is_whitespace) && rest.starts_with(['"', '\'']) {
            rest
        } else {
            return false;
        };
        let value = value.trim_start_matches(['"', '\'']);
        !(value.is_empty() || value.starts_with('$'))
    })
}

#[test]
fn no_secret_like_values_are_rendered() {
    let project = Project::new();
    let out = project.render_all();
    for env in ["local", "staging", "production"] {
        let text = tree_text(&out.join(env)).to_lowercase();
        for needle in [
            "secret_key",
            "aws_secret_access_key",
            "private_key",
            "token =",
        ] {
            assert!(!text.contains(needle), "{env} renders `{needle}`");
        }
        for line in text.lines() {
            assert!(
                !assigns_a_password(line),
                "{env} renders a password: {line}"
            );
        }
    }
    // The rule catches a literal, however it is written.
    for literal in [
        "password: hunter2",
        "  PATRONI_PASSWORD=\"x\"",
        "CREATE ROLE shop PASSWORD 'x'",
        "password = 'x'",
        "{\"password\": \"x\"}",
    ] {
        assert!(assigns_a_password(literal), "{literal} is not caught");
    }
    for reference in [
        "# the password comes from the Secret",
        "psql \"$1\" -v password=\"$SHOP_DB_PASSWORD\" <<'SQL'",
        "CREATE ROLE shop LOGIN PASSWORD :'password';",
        "\"password_hash\": \"...\"",
    ] {
        assert!(!assigns_a_password(reference), "{reference} is a reference");
    }
}
