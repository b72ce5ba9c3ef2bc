//! Email jobs: a template rendered to plain text and handed to the SMTP server, once.
//!
//! Once: the job's key is inserted into `sent_emails` in a transaction that stays open
//! while the SMTP server takes the message and is committed right after it accepted it. A
//! redelivered job finds the key and does nothing; a concurrent duplicate waits on the key's
//! row lock and then finds it. The window left: the process dies (or the database fails)
//! after the server's `250 OK` and before the commit; the job is redelivered and the email
//! sent a second time, with the same Message-ID (built from the key), which mail clients use
//! to fold duplicates.

use anyhow::Context;
use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
        AsyncSmtpTransport,
    },
    AsyncTransport, Message, Tokio1Executor,
};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::{
    config::{SmtpConfig, SmtpTls},
    consumer::{JobContext, JobError},
    Job,
};

/// Every template and the fields its payload needs.
pub const TEMPLATES: [(&str, &[&str]); 3] = [
    ("password_reset", &["token"]),
    ("payment_receipt", &["order_id", "total"]),
    (
        "order_confirmation",
        &["order_id", "total_minor", "currency"],
    ),
];

/// The SMTP client of the worker: plain (`smtp.tls = "none"`, the loopback sink) or with
/// STARTTLS required, logged in when `smtp.username`/`smtp.password` are set.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Self> {
        let from: Mailbox = config.from.parse()?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout()));
        if config.tls == SmtpTls::Starttls {
            // Required: a server that does not offer STARTTLS, or whose certificate is not
            // valid for `host`, gets nothing (the job fails and is retried).
            builder = builder.tls(Tls::Required(tls_parameters(config)?));
        }
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.expose_secret().to_owned(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            domain: from.email.domain().to_owned(),
            from,
            transport: builder.build(),
        })
    }
}

/// rustls verifying the relay's certificate for `host` against the system's CAs and, if
/// given, those of `ca_file`.
fn tls_parameters(config: &SmtpConfig) -> anyhow::Result<TlsParameters> {
    let mut parameters = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let key = "smtp.ca_file (APP_SMTP__CA_FILE)";
        let pem = std::fs::read(path).with_context(|| format!("{key}: {}", path.display()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            anyhow::bail!("{key}: {} holds no PEM certificate", path.display());
        }
        let certificate =
            Certificate::from_pem(&pem).with_context(|| format!("{key}: {}", path.display()))?;
        parameters = parameters.add_root_certificate(certificate);
    }
    Ok(parameters.build()?)
}

#[derive(Deserialize)]
struct EmailJob {
    recipient: String,
    template: String,
    data: Value,
}

/// Subject and plain-text body of `template` with `data`.
pub fn render(template: &str, data: &Value) -> Result<(String, String), String> {
    let field = |name: &str| -> Result<String, String> {
        match data.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) if !v.is_null() => Ok(v.to_string()),
            _ => Err(format!("template {template} needs `{name}` in its payload")),
        }
    };
    let amount = |minor: i64, currency: &str| {
        format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
    };
    match template {
        "password_reset" => Ok((
            "Reset your password".into(),
            format!(
                "Someone asked to reset the password of your shop account.\n\n\
                 Your reset token: {}\n\n\
                 It works once and expires soon. If you did not ask for it, ignore this email;\n\
                 your password stays as it is.\n",
                field("token")?
            ),
        )),
        "payment_receipt" => {
            let total = data
                .get("total")
                .ok_or("template payment_receipt needs `total`")?;
            let minor = total["amount_minor"]
                .as_i64()
                .ok_or("`total.amount_minor` must be a number")?;
            let currency = total["currency"]
                .as_str()
                .ok_or("`total.currency` must be text")?;
            Ok((
                "Your payment was received".into(),
                format!(
                    "Thank you: we received your payment of {}.\n\n\
                     Order: {}\n\n\
                     We will let you know when it ships.\n",
                    amount(minor, currency),
                    field("order_id")?
                ),
            ))
        }
        "order_confirmation" => {
            let minor = data["total_minor"]
                .as_i64()
                .ok_or("`total_minor` must be a number")?;
            Ok((
                "Your order is confirmed".into(),
                format!(
                    "Thank you for your order {}.\n\nTotal: {}\n",
                    field("order_id")?,
                    amount(minor, &field("currency")?)
                ),
            ))
        }
        other => Err(format!("unknown email template `{other}`")),
    }
}

/// A Message-ID made of the job's key: the same key, the same id.
pub fn message_id(key: &str, domain: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@{domain}>")
}

pub(super) async fn perform(ctx: &JobContext, job: &Job) -> Result<(), JobError> {
    let email: EmailJob = serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::Permanent(format!("not an email job: {e}")))?;
    let (subject, body) = render(&email.template, &email.data).map_err(JobError::Permanent)?;
    let to: Mailbox = email
        .recipient
        .parse()
        .map_err(|e| JobError::Permanent(format!("recipient `{}`: {e}", email.recipient)))?;
    let mailer = &ctx.mailer;
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id(&job.key, &mailer.domain)))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| JobError::Permanent(format!("building the email: {e}")))?;

    let mut tx = ctx.state.db.write.begin().await?;
    // Taken first: a concurrent delivery of the same job waits here until this one is done.
    let claimed = sqlx::query_scalar!(
        "INSERT INTO sent_emails (key, recipient, template) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO NOTHING RETURNING key",
        job.key,
        email.recipient,
        email.template,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        tracing::info!(key = %job.key, "email sent before; not sending again");
        return Ok(());
    }
    match mailer.transport.send(message).await {
        Ok(_) => {}
        Err(e) if e.is_permanent() => {
            return Err(JobError::Permanent(format!(
                "the SMTP server refused the email: {e}"
            )))
        }
        Err(e) => return Err(JobError::Transient(format!("SMTP: {e}"))),
    }
    tx.commit().await?;
    metrics::counter!("emails_sent_total", "template" => email.template).increment(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_with_their_fields() {
        let (subject, body) = render("password_reset", &json!({ "token": "abc" })).unwrap();
        assert_eq!(subject, "Reset your password");
        assert!(body.contains("abc"));
        let (_, body) = render(
            "payment_receipt",
            &json!({ "order_id": "o1", "total": { "amount_minor": 3750, "currency": "EUR" } }),
        )
        .unwrap();
        assert!(body.contains("37.50 EUR") && body.contains("o1"), "{body}");
        let (_, body) = render(
            "order_confirmation",
            &json!({ "order_id": "o2", "total_minor": 1005, "currency": "EUR" }),
        )
        .unwrap();
        assert!(body.contains("10.05 EUR") && body.contains("o2"), "{body}");
        for (template, fields) in TEMPLATES {
            assert!(
                render(template, &json!({})).is_err(),
                "{template} {fields:?}"
            );
        }
        assert!(render("nope", &json!({})).unwrap_err().contains("unknown"));
    }

    #[test]
    fn message_ids_come_from_keys() {
        assert_eq!(
            message_id("password-reset:0190-ab", "shop.example"),
            "<password-reset.0190-ab@shop.example>"
        );
    }
}
