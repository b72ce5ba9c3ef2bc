//! Schemathesis fuzzes the running app against its own `/openapi.json`: no 5xx anywhere, and
//! every response matches the documented status codes, content types and schemas.

use std::{path::PathBuf, process::Command};

use crate::harness::TestApp;

/// schemathesis from the tools venv (tests/tools.sh), else from PATH.
fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    let venv = cache.join("shopctl/venv/bin/schemathesis");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("schemathesis"))
        .find(|p| p.is_file())
        .expect("schemathesis not found; run: bash tests/tools.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let app = TestApp::spawn().await;
    // Something to find: products with stock, and a staff token so every operation is reachable.
    for (price, units) in [(1999, 10), (500, 0), (12_50, 3)] {
        app.stocked_product(price, units).await;
    }
    let staff = app.staff().await;
    let report = tempfile::tempdir().unwrap();
    let spec_url = app.url("/openapi.json");
    let auth = format!("Authorization: Bearer {}", staff.token);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .args(["--no-color", "run", &spec_url])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing"])
            // One worker: hypothesis can trip over its own source parsing in threads.
            .args(["--max-examples", "30", "--workers", "1", "--request-timeout", "10", "--seed", "42"])
            .args(["--suppress-health-check", "all"])
            .args(["-H", &auth])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(report.path())
            .output()
            .expect("running schemathesis")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // The summary (operations, test cases, checks) goes to the test log either way.
    let summary: Vec<&str> = text.lines().rev().take(25).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
