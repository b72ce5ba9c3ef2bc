//! The `app` binary's commands and its configuration errors.

use std::process::{Command, Output};

fn app(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running app")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const SECRETS: [(&str, &str); 2] = [
    ("APP_AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ("APP_PAYMENTS__WEBHOOK_SECRET", "0123456789abcdef"),
];

#[test]
fn openapi_prints_the_document() {
    let output = app(&["openapi"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn a_missing_setting_is_named_with_where_to_set_it() {
    let output = app(&["migrate"], &SECRETS);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("missing `database.url`: set APP_DATABASE__URL"),
        "{err}"
    );
}

#[test]
fn a_weak_secret_is_refused() {
    let output = app(
        &["migrate"],
        &[
            ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
            ("APP_AUTH__JWT_SECRET", "short"),
            ("APP_PAYMENTS__WEBHOOK_SECRET", "0123456789abcdef"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("auth.jwt_secret: must be at least 32 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("short"),
        "the secret itself is never printed: {err}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let mut env = SECRETS.to_vec();
    env.extend([
        ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
        ("APP_HTTP__BODY_LIMIT_BYTES", "lots"),
    ]);
    let output = app(&["migrate"], &env);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output).to_lowercase();
    assert!(
        err.contains("http.body_limit_bytes") && err.contains("lots"),
        "{err}"
    );
}

#[test]
fn a_config_file_that_does_not_exist_is_named() {
    let output = app(&["migrate"], &[("APP_CONFIG", "/nonexistent/shop.toml")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("/nonexistent/shop.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn settings_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"postgres://shop@127.0.0.1:1/shop\"\nacquire_timeout_ms = 200\n\
         [auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n\
         [payments]\nwebhook_secret = \"0123456789abcdef\"\n[http]\nunknown = 1\n",
    )
    .unwrap();
    let output = app(&["migrate"], &[("APP_CONFIG", file.to_str().unwrap())]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err.contains("unknown") && err.contains("shop.toml"),
        "unknown keys are refused: {err}"
    );
}

#[test]
fn an_unreachable_database_fails_migrate_clearly() {
    let mut env = SECRETS.to_vec();
    env.extend([
        ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
        ("APP_DATABASE__ACQUIRE_TIMEOUT_MS", "300"),
    ]);
    let output = app(&["migrate"], &env);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("applying migrations"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_redis_setting_names_its_key_and_variable() {
    let mut env = SECRETS.to_vec();
    env.extend([
        ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
        ("APP_REDIS__URL", "http://user:hunter2@cache:6379"),
    ]);
    let output = app(&["migrate"], &env);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("redis.url: not a Redis URL") && err.contains("APP_REDIS__URL"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the URL's password is never printed: {err}"
    );

    let mut env = SECRETS.to_vec();
    env.extend([
        ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
        ("APP_REDIS__RATE_LIMIT__API__PER_S", "0"),
    ]);
    let err = stderr(&app(&["migrate"], &env));
    assert!(
        err.contains("redis.rate_limit.api.per_s: must be at least 1 (set APP_REDIS__RATE_LIMIT__API__PER_S)"),
        "{err}"
    );
    // A comma-separated list from one variable; each entry is checked.
    let mut env = SECRETS.to_vec();
    env.extend([
        ("APP_DATABASE__URL", "postgres://shop@127.0.0.1:1/shop"),
        ("APP_REDIS__URL", "redis://:hunter2@cache:6379/0"),
        ("APP_REDIS__SENTINELS", "sentinel-0:26379, sentinel-1"),
    ]);
    let err = stderr(&app(&["migrate"], &env));
    assert!(
        err.contains("redis.sentinels: \"sentinel-1\" is not host:port")
            && err.contains("APP_REDIS__SENTINELS"),
        "{err}"
    );
}
