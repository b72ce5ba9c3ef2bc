//! The real `app worker` binary as a child process of the test, configured for a test app's
//! database and broker through `APP_*` variables, killed when the test ends.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;

use crate::harness::{die_with_parent, TestApp};
use crate::ports::free_port;

pub struct WorkerProcess {
    child: Child,
    /// Where it serves /metrics.
    pub metrics: u16,
    log: tempfile::NamedTempFile,
}

impl WorkerProcess {
    /// A worker for `app`'s database and secrets, with `settings` (the order-event broker of
    /// [`events_settings`], the job broker, SMTP, …) on top.
    pub fn start(app: &TestApp, settings: &[(&str, String)]) -> WorkerProcess {
        let config = &app.state.config;
        let metrics = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
        for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("APP_")) {
            command.env_remove(name);
        }
        command
            .args(["worker", "--metrics-bind", &format!("127.0.0.1:{metrics}")])
            .env("APP_DATABASE__URL", config.database.url.expose_secret())
            .env(
                "APP_AUTH__JWT_SECRET",
                config.auth.jwt_secret.expose_secret(),
            )
            .env(
                "APP_PAYMENTS__WEBHOOK_SECRET",
                config.payments.webhook_secret.expose_secret(),
            )
            .env("APP_WORKER__SHUTDOWN_GRACE_MS", "10000")
            .env("APP_LOG__FILTER", "info")
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap());
        die_with_parent(&mut command);
        WorkerProcess {
            child: command.spawn().expect("starting app worker"),
            metrics,
            log,
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Its Prometheus metrics, as text.
    pub async fn metrics_text(&self) -> String {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit within {limit:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The settings that make a worker relay and consume `app`'s order events.
pub fn events_settings(app: &TestApp) -> Vec<(&'static str, String)> {
    let events = &app.state.config.events;
    vec![
        (
            "APP_EVENTS__BROKERS",
            events.brokers.clone().unwrap_or_default(),
        ),
        ("APP_EVENTS__TOPIC", events.topic.clone()),
        ("APP_EVENTS__GROUP_PREFIX", events.group_prefix.clone()),
        ("APP_EVENTS__PARTITIONS", events.partitions.to_string()),
    ]
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
