//! `shopctl jobs dlq list|replay`: the dead-letter queues of the shop's background jobs on
//! RabbitMQ (the topology is declared by the app's worker; see docs/jobs.md).
//!
//! The dead-letter queues are quorum queues, which count every message handed back
//! (a nack with requeue, a channel closed with messages unacknowledged) as a delivery:
//! RabbitMQ 4.x drops a message past 20 of them by default. So nothing here hands a message
//! back. Reading one message is: take it, publish a copy to the back of the same queue
//! with a publisher confirm, then acknowledge the one taken. A pass over the `count`
//! messages the queue held at the start reads each once and leaves them in their order,
//! with fresh delivery counts. Replaying publishes a message to its work queue instead of
//! back to the dead-letter queue, with a confirm, before acknowledging it. A crash between
//! a confirm and its acknowledgement leaves a message twice, never nowhere (the worker's
//! handlers are idempotent on the job key).

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{bail, Context, Result};
use lapin::{
    message::BasicGetMessage,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, Connection, ConnectionProperties,
};
use serde::Serialize;

use crate::cli::{BrokerArgs, DlqCommand, DlqListArgs, DlqReplayArgs, JobsCommand};
use crate::config::Tier;
use crate::confirm::{confirm, Question};
use crate::project::Project;

const QUEUES: [&str; 2] = ["emails", "payments"];
/// The exchange the worker's dispatcher publishes new jobs to (routing key: the queue).
const WORK_EXCHANGE: &str = "jobs";

pub async fn run(project_dir: Option<&Path>, command: JobsCommand) -> Result<ExitCode> {
    match command {
        JobsCommand::Dlq(DlqCommand::List(args)) => list(project_dir, &args).await,
        JobsCommand::Dlq(DlqCommand::Replay(args)) => replay(project_dir, &args).await,
    }
}

/// Where the broker is, as shown to people (no password), and how to reach it.
struct Broker {
    /// What the confirmation names: the environment, or "the broker".
    name: String,
    tier: Tier,
    shown: String,
    url: String,
    /// What to check when the broker cannot be reached.
    hint: String,
}

fn broker(project_dir: Option<&Path>, args: &BrokerArgs) -> Result<Broker> {
    if let Some(url) = &args.amqp_url {
        return Ok(Broker {
            name: "the broker".into(),
            tier: Tier::Staging,
            shown: redact(url),
            url: url.clone(),
            hint: "is the broker running, and is --amqp-url (or SHOPCTL_AMQP_URL) right?".into(),
        });
    }
    let name = args
        .env
        .as_deref()
        .expect("clap requires ENV or --amqp-url");
    let project = Project::find(project_dir)?;
    let env = project.load(name)?;
    let Some(jobs) = &env.config.jobs else {
        bail!(
            "environments/{name}.toml has no [jobs] section with the broker's amqp_url; add one or pass --amqp-url"
        );
    };
    let password = std::env::var(&jobs.password_env).ok();
    Ok(Broker {
        name: name.to_owned(),
        tier: env.config.tier,
        shown: jobs.amqp_url.clone(),
        url: with_password(&jobs.amqp_url, password.as_deref()),
        hint: format!(
            "is the broker running, is jobs.amqp_url in environments/{name}.toml right, and is {} set{}?",
            jobs.password_env,
            if password.is_some() { "" } else { " (it is not)" }
        ),
    })
}

/// The URL without the password of its user, if any.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}/{path}")
        }
        None => url.to_owned(),
    }
}

/// `amqp://user@host/vhost` with the (URL-encoded) password inserted after the user.
fn with_password(url: &str, password: Option<&str>) -> String {
    let (Some(password), Some((scheme, rest))) = (password, url.split_once("://")) else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((user, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let encoded: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    match path {
        Some(path) => format!("{scheme}://{user}:{encoded}@{host}/{path}"),
        None => format!("{scheme}://{user}:{encoded}@{host}"),
    }
}

async fn connect(broker: &Broker) -> Result<Connection> {
    let timeout = Duration::from_secs(10);
    let attempt = Connection::connect(
        &broker.url,
        ConnectionProperties::default().with_connection_name("shopctl jobs".into()),
    );
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => bail!(
            "cannot reach the RabbitMQ broker at {}: {e}\n  check: {}",
            broker.shown,
            broker.hint
        ),
        Err(_) => bail!(
            "the RabbitMQ broker at {} did not answer within {timeout:?}\n  check: {}",
            broker.shown,
            broker.hint
        ),
    }
}

fn queues(args: &BrokerArgs) -> Vec<&'static str> {
    QUEUES
        .into_iter()
        .filter(|q| args.queue.as_deref().is_none_or(|only| only == *q))
        .collect()
}

/// A dead-lettered job as listed.
#[derive(Debug, Serialize)]
struct DeadJob {
    queue: String,
    key: String,
    kind: String,
    attempts: Option<i64>,
    last_error: String,
    first_failed_at: Option<String>,
}

fn int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some((*v).into()),
        AMQPValue::ShortInt(v) => Some((*v).into()),
        AMQPValue::LongInt(v) => Some((*v).into()),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::ShortShortUInt(v) => Some((*v).into()),
        AMQPValue::ShortUInt(v) => Some((*v).into()),
        AMQPValue::LongUInt(v) => Some((*v).into()),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn rfc3339(seconds: i64, millis: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(seconds).ok()?
        + time::Duration::milliseconds(millis);
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn describe(queue: &str, message: &BasicGetMessage) -> DeadJob {
    let properties = &message.delivery.properties;
    let headers = properties.headers().clone().unwrap_or_default();
    let get = |name: &str| headers.inner().get(name).cloned();
    // The broker's own dead-lettering (a job that crashed the worker `x-delivery-limit`
    // times) leaves an x-death record instead of the worker's headers.
    let death = match get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().first().and_then(|d| match d {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    };
    let from_death = |name: &str| death.as_ref().and_then(|d| d.inner().get(name).cloned());
    // Not x-delivery-count: the broker sets it per queue, and this one's is not the job's.
    let attempts = get("x-attempts").as_ref().and_then(int);
    let last_error =
        get("x-last-error")
            .as_ref()
            .and_then(text)
            .unwrap_or_else(
                || match from_death("reason").as_ref().and_then(text).as_deref() {
                    Some("delivery_limit") => {
                        "delivery limit reached: the job stopped the worker every time it ran"
                            .into()
                    }
                    Some(reason) => format!("dead-lettered by the broker ({reason})"),
                    None => "unknown".into(),
                },
            );
    let first_failed_at = get("x-first-failed-at")
        .as_ref()
        .and_then(int)
        .and_then(|ms| rfc3339(ms.div_euclid(1000), ms.rem_euclid(1000)))
        .or_else(|| {
            from_death("time")
                .as_ref()
                .and_then(int)
                .and_then(|s| rfc3339(s, 0))
        });
    DeadJob {
        queue: queue.to_owned(),
        key: properties
            .message_id()
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "(none)".into()),
        kind: properties
            .kind()
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_default(),
        attempts,
        last_error,
        first_failed_at,
    }
}

/// Opens a channel in confirm mode on `queue.dlq` and returns it with the number of
/// messages in it.
async fn open_dlq(connection: &Connection, queue: &str) -> Result<(Channel, u32)> {
    let channel = connection.create_channel().await?;
    let dlq = format!("{queue}.dlq");
    let declared = channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!("{dlq} does not exist on this broker; it is declared when `app worker` first starts")
        })?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((channel, declared.message_count()))
}

/// Takes the next message of `queue.dlq`, unacknowledged.
async fn take(channel: &Channel, queue: &str) -> Result<Option<BasicGetMessage>> {
    let dlq = format!("{queue}.dlq");
    Ok(channel
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: false })
        .await?)
}

/// The message's headers without the counters the broker keeps per queue, which a copy
/// must not carry over.
fn headers_without_broker_counters(message: &BasicGetMessage) -> FieldTable {
    let mut headers = FieldTable::default();
    if let Some(old) = message.delivery.properties.headers() {
        for (k, v) in old.inner() {
            if !matches!(k.as_str(), "x-delivery-count" | "x-acquired-count") {
                headers.insert(k.clone(), v.clone());
            }
        }
    }
    headers
}

/// Publishes `properties`/`body` with a confirm and acknowledges `message` once the broker
/// has taken the copy; `what` names the target in errors.
async fn move_to(
    channel: &Channel,
    message: &BasicGetMessage,
    exchange: &str,
    routing_key: &str,
    headers: FieldTable,
    what: &str,
) -> Result<()> {
    let delivery = &message.delivery;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &delivery.data,
            delivery
                .properties
                .clone()
                .with_headers(headers)
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    if !confirm.is_ack() || confirm.take_message().is_some() {
        bail!("the broker did not take the copy into {what}; the message stays where it was");
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Reads `message` without removing it: a confirmed copy to the back of `queue.dlq`, then
/// the acknowledgement of the one taken.
async fn keep(channel: &Channel, queue: &str, message: &BasicGetMessage) -> Result<()> {
    let dlq = format!("{queue}.dlq");
    let headers = headers_without_broker_counters(message);
    move_to(channel, message, "", &dlq, headers, &dlq).await
}

async fn scan(connection: &Connection, args: &BrokerArgs) -> Result<Vec<DeadJob>> {
    let mut jobs = Vec::new();
    for queue in queues(args) {
        let (channel, count) = open_dlq(connection, queue).await?;
        for _ in 0..count {
            let Some(message) = take(&channel, queue).await? else {
                break;
            };
            jobs.push(describe(queue, &message));
            keep(&channel, queue, &message).await?;
        }
        channel.close(200, "listed".into()).await?;
    }
    Ok(jobs)
}

async fn list(project_dir: Option<&Path>, args: &DlqListArgs) -> Result<ExitCode> {
    let broker = broker(project_dir, &args.broker)?;
    let connection = connect(&broker).await?;
    let jobs = scan(&connection, &args.broker).await?;
    let _ = connection.close(200, "done".into()).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        eprintln!("no dead-lettered jobs ({})", broker.shown);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(["queue", "key", "attempts", "last error", "first failed at"]);
    for job in &jobs {
        table.add_row([
            job.queue.clone(),
            job.key.clone(),
            job.attempts.map(|a| a.to_string()).unwrap_or_default(),
            job.last_error.clone(),
            job.first_failed_at.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    eprintln!("{} dead-lettered jobs", jobs.len());
    Ok(ExitCode::SUCCESS)
}

fn selected(args: &DlqReplayArgs, message: &BasicGetMessage) -> bool {
    match &args.key {
        Some(key) => message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .is_some_and(|id| id.as_str() == key),
        None => args.all,
    }
}

async fn replay(project_dir: Option<&Path>, args: &DlqReplayArgs) -> Result<ExitCode> {
    let broker = broker(project_dir, &args.broker)?;
    let connection = connect(&broker).await?;
    // What would be replayed, for the question (and to stop early when nothing matches).
    let chosen: Vec<DeadJob> = scan(&connection, &args.broker)
        .await?
        .into_iter()
        .filter(|j| args.key.as_ref().is_none_or(|k| *k == j.key))
        .collect();
    if chosen.is_empty() {
        let _ = connection.close(200, "done".into()).await;
        match &args.key {
            Some(key) => bail!("no dead-lettered job with key `{key}` ({})", broker.shown),
            None => {
                eprintln!("no dead-lettered jobs to replay ({})", broker.shown);
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let mut per_queue: Vec<String> = Vec::new();
    for queue in QUEUES {
        let n = chosen.iter().filter(|j| j.queue == queue).count();
        if n > 0 {
            per_queue.push(format!("{n} from {queue}.dlq"));
        }
    }
    let detail = format!(
        "move {} dead-lettered jobs ({}) back to their work queues at {}",
        chosen.len(),
        per_queue.join(", "),
        broker.shown
    );
    confirm(
        &Question {
            action: "replay dead-lettered jobs of",
            env: &broker.name,
            tier: broker.tier,
            detail,
        },
        args.yes,
    )
    .await?;

    let mut replayed = 0;
    for queue in queues(&args.broker) {
        let (channel, count) = open_dlq(&connection, queue).await?;
        for _ in 0..count {
            let Some(message) = take(&channel, queue).await? else {
                break;
            };
            if !selected(args, &message) {
                keep(&channel, queue, &message).await?;
                continue;
            }
            // A fresh start: the worker counts attempts from the headers.
            let mut headers = FieldTable::default();
            if let Some(old) = message.delivery.properties.headers() {
                for (k, v) in old.inner() {
                    if !k.as_str().starts_with("x-") {
                        headers.insert(k.clone(), v.clone());
                    }
                }
            }
            move_to(&channel, &message, WORK_EXCHANGE, queue, headers, queue)
                .await
                .with_context(|| {
                    format!(
                        "replaying into {queue} (is the exchange `{WORK_EXCHANGE}` bound?); \
                         {replayed} replayed before it"
                    )
                })?;
            replayed += 1;
        }
        channel.close(200, "replayed".into()).await?;
    }
    let _ = connection.close(200, "done".into()).await;
    eprintln!("replayed {replayed} jobs");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_inserted_encoded_and_never_shown() {
        assert_eq!(
            with_password("amqp://shop@127.0.0.1:5672/%2f", Some("p@ss:w/rd")),
            "amqp://shop:p%40ss%3Aw%2Frd@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            with_password("amqp://shop@host", Some("x")),
            "amqp://shop:x@host"
        );
        assert_eq!(
            with_password("amqp://host/%2f", Some("x")),
            "amqp://host/%2f"
        );
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1/%2f"), "amqp://127.0.0.1/%2f");
    }
}
