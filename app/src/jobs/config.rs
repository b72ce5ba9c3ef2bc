//! Settings of the background jobs (`[jobs]`), the SMTP server the email jobs send through
//! (`[smtp]`) and the `app worker` process (`[worker]`).

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[jobs]`. Without `amqp_url` there is no broker: requests still write jobs to the outbox
/// (so nothing is lost), and `app worker` refuses to start; they are published as soon as a
/// worker with a broker runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// `amqp://user:password@host:5672/vhost`; a secret (it carries the password).
    pub amqp_url: Option<SecretString>,
    pub emails: QueueConfig,
    pub payments: QueueConfig,
    /// Delays before the 1st, 2nd, ... retry of a failed job; the last one repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Attempts before a job goes to its dead-letter queue (the first run counts).
    pub max_attempts: u32,
    /// Deliveries of one message before the broker dead-letters it by itself: a job that
    /// kills the worker every time cannot loop forever.
    pub delivery_limit: u32,
    /// How often the dispatcher looks at the outbox when no notification woke it.
    pub poll_interval_ms: u64,
    /// Wait between attempts to reach the broker (or the database) again.
    pub reconnect_delay_ms: u64,
    /// How often queue depths are sampled for the metrics.
    pub depth_interval_ms: u64,
}

/// One queue's consumer: how many messages the broker hands out ahead (`prefetch`) and how
/// many run at once (`concurrency`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub prefetch: u16,
    pub concurrency: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            prefetch: 8,
            concurrency: 4,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            amqp_url: None,
            emails: QueueConfig::default(),
            payments: QueueConfig::default(),
            retry_delays_ms: vec![1_000, 5_000, 25_000],
            max_attempts: 5,
            delivery_limit: 10,
            poll_interval_ms: 1_000,
            reconnect_delay_ms: 1_000,
            depth_interval_ms: 5_000,
        }
    }
}

impl JobsConfig {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect()
    }
    /// The delay before retry number `attempt` (1-based): the last delay repeats.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        let i = (attempt.max(1) as usize - 1).min(self.retry_delays_ms.len() - 1);
        self.retry_delays_ms[i]
    }
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    pub fn reconnect_delay(&self) -> Duration {
        Duration::from_millis(self.reconnect_delay_ms)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        if self.retry_delays_ms.is_empty() || self.retry_delays_ms.contains(&0) {
            return invalid(
                "jobs.retry_delays_ms (APP_JOBS__RETRY_DELAYS_MS)",
                "must list at least one delay, each above 0",
            );
        }
        if self.max_attempts == 0 {
            return invalid(
                "jobs.max_attempts (APP_JOBS__MAX_ATTEMPTS)",
                "must be at least 1",
            );
        }
        if self.delivery_limit == 0 {
            return invalid(
                "jobs.delivery_limit (APP_JOBS__DELIVERY_LIMIT)",
                "must be at least 1",
            );
        }
        for (key, q) in [
            (
                "jobs.emails (APP_JOBS__EMAILS__PREFETCH, APP_JOBS__EMAILS__CONCURRENCY)",
                &self.emails,
            ),
            (
                "jobs.payments (APP_JOBS__PAYMENTS__PREFETCH, APP_JOBS__PAYMENTS__CONCURRENCY)",
                &self.payments,
            ),
        ] {
            if q.prefetch == 0 || q.concurrency == 0 {
                return invalid(key, "prefetch and concurrency must be at least 1");
            }
        }
        if self.poll_interval_ms == 0 || self.reconnect_delay_ms == 0 || self.depth_interval_ms == 0
        {
            return invalid(
                "jobs.poll_interval_ms, jobs.reconnect_delay_ms, jobs.depth_interval_ms",
                "must be above 0",
            );
        }
        Ok(())
    }
}

/// `[smtp]`: the server email jobs are handed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// `none`: plain SMTP (the loopback sink of `shopctl up local` and the tests);
    /// `starttls`: every connection is upgraded before anything is sent, and refused when the
    /// server does not offer STARTTLS or its certificate is not trusted for `host`.
    pub tls: SmtpTls,
    /// PEM CA certificates trusted for the relay on top of the system's (a relay whose
    /// certificate comes from a private CA). Only with `tls = "starttls"`.
    pub ca_file: Option<PathBuf>,
    /// The relay's login (AUTH PLAIN/LOGIN), both or neither, only over TLS. From a Secret
    /// (`shop-smtp` in Kubernetes), never from a rendered file.
    pub username: Option<SecretString>,
    pub password: Option<SecretString>,
    /// The From address of every email.
    pub from: String,
    /// Limit of each SMTP exchange (connect, each command); past it the job is retried.
    pub timeout_ms: u64,
}

/// How the connection to the SMTP server is protected (`smtp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password: None,
            from: "Shop <no-reply@shop.localhost>".into(),
            timeout_ms: 10_000,
        }
    }
}

impl SmtpConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return invalid(
                "smtp.from (APP_SMTP__FROM)",
                &format!("`{}` is not an email address", self.from),
            );
        }
        if self.host.is_empty() {
            return invalid("smtp.host (APP_SMTP__HOST)", "must not be empty");
        }
        if self.ca_file.is_some() && self.tls == SmtpTls::None {
            return invalid(
                "smtp.ca_file (APP_SMTP__CA_FILE)",
                "only with smtp.tls = \"starttls\" (APP_SMTP__TLS)",
            );
        }
        match (&self.username, &self.password) {
            (None, None) => {}
            (Some(_), Some(_)) if self.tls == SmtpTls::None => {
                return invalid(
                    "smtp.username, smtp.password (APP_SMTP__USERNAME, APP_SMTP__PASSWORD)",
                    "a login is sent only over TLS: set smtp.tls = \"starttls\" (APP_SMTP__TLS)",
                )
            }
            (Some(_), Some(_)) => {}
            _ => {
                return invalid(
                    "smtp.username, smtp.password (APP_SMTP__USERNAME, APP_SMTP__PASSWORD)",
                    "give both or neither",
                )
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_retry_delay_repeats() {
        let config = JobsConfig::default();
        let delays: Vec<u64> = (1..=5).map(|a| config.retry_delay_ms(a)).collect();
        assert_eq!(delays, [1_000, 5_000, 25_000, 25_000, 25_000]);
    }

    #[test]
    fn bad_values_name_their_key_and_variable() {
        let message = |config: JobsConfig| config.check().unwrap_err().to_string();
        let no_delays = JobsConfig {
            retry_delays_ms: vec![],
            ..JobsConfig::default()
        };
        assert!(message(no_delays).contains("jobs.retry_delays_ms (APP_JOBS__RETRY_DELAYS_MS)"));
        let no_attempts = JobsConfig {
            max_attempts: 0,
            ..JobsConfig::default()
        };
        assert!(message(no_attempts).contains("APP_JOBS__MAX_ATTEMPTS"));
        let idle = JobsConfig {
            emails: QueueConfig {
                prefetch: 1,
                concurrency: 0,
            },
            ..JobsConfig::default()
        };
        assert!(message(idle).contains("APP_JOBS__EMAILS__CONCURRENCY"));
        let smtp = SmtpConfig {
            from: "not an address".into(),
            ..SmtpConfig::default()
        };
        assert!(smtp
            .check()
            .unwrap_err()
            .to_string()
            .contains("smtp.from (APP_SMTP__FROM)"));
        assert!(JobsConfig::default().check().is_ok() && SmtpConfig::default().check().is_ok());
    }

    #[test]
    fn smtp_logins_and_ca_files_need_tls() {
        let message = |config: SmtpConfig| config.check().unwrap_err().to_string();
        let secret = |s: &str| Some(SecretString::from(s.to_owned()));
        let plain_login = SmtpConfig {
            username: secret("shop"),
            password: secret("pw"),
            ..SmtpConfig::default()
        };
        assert!(message(plain_login.clone()).contains("only over TLS"));
        let login = SmtpConfig {
            tls: SmtpTls::Starttls,
            ..plain_login
        };
        assert!(login.check().is_ok());
        let half = SmtpConfig {
            password: None,
            ..login
        };
        assert!(message(half).contains("give both or neither"));
        let plain_ca = SmtpConfig {
            ca_file: Some("/etc/relay-ca.pem".into()),
            ..SmtpConfig::default()
        };
        assert!(message(plain_ca).contains("smtp.ca_file (APP_SMTP__CA_FILE)"));
    }
}
