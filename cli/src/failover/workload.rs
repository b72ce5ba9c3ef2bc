//! The bounded workload: numbered ledger writes through the write port and
//! checkouts through the public API, every attempt recorded.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use tokio::task::JoinHandle;

use super::fault::Cluster;
use super::Clock;

/// Connecting through the write port may take this long, like a libpq client's
/// connect_timeout. HAProxy holds a connection that finds no server for up to 1 s (its
/// queue timeout) and hands it to a new leader as soon as that passes its check; a client
/// that gave up sooner would count its own impatience as outage.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// One insert (including its synchronous commit) may take this long.
const STATEMENT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Pause between two writes of one writer: caps the rate (~100/s per writer).
const WRITE_PAUSE: Duration = Duration::from_millis(10);
/// Pause after a failed write before reconnecting.
const ERROR_PAUSE: Duration = Duration::from_millis(25);
/// An API request that takes longer counts as a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two add-to-cart + checkout rounds of one shopper.
const SHOP_PAUSE: Duration = Duration::from_millis(100);

/// One ledger insert attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub seq: i64,
    pub writer: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    /// "ok" or an error kind: connect_refused, read_only, timeout, terminated, other.
    pub outcome: String,
}

impl Attempt {
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }
}

#[derive(Debug, Default, Serialize)]
pub struct LedgerRecords {
    pub attempts: Vec<Attempt>,
    /// The first few messages per error kind, to explain "other".
    pub samples: Vec<String>,
}

/// One API request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub shopper: usize,
    /// register, address, product, add_line, checkout
    pub kind: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// HTTP status; None: no answer (timeout = hang, or connection error).
    pub status: Option<u16>,
    /// The answer carried Retry-After.
    pub retry_after: bool,
    /// "timeout" or "connection" when there was no answer.
    pub error: Option<String>,
}

impl Request {
    /// The shop did what was asked or said why not (a 4xx is an answer, not an outage).
    pub fn ok(&self) -> bool {
        matches!(self.status, Some(s) if s < 500)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ApiRecords {
    pub requests: Vec<Request>,
    /// Shoppers that could not be set up (register, address, product) before the run.
    pub setup_errors: Vec<String>,
}

pub async fn prepare_ledger(cluster: &Cluster) -> Result<()> {
    let mut conn = Cluster::connect(&cluster.write, Duration::from_secs(5))
        .await
        .context("cannot connect through the write port")?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS failover_ledger (run_id text, seq bigint, \
         written_at timestamptz, PRIMARY KEY (run_id, seq))",
    )
    .execute(&mut conn)
    .await
    .context("cannot create failover_ledger")?;
    Ok(())
}

/// An error's kind, for the report.
pub fn classify(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("25006") => "read_only",
            Some("57P01" | "57P02" | "57P03" | "08006" | "08003") => "terminated",
            Some("57014") => "timeout",
            _ => "other",
        },
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect_refused",
            std::io::ErrorKind::TimedOut => "timeout",
            _ => "terminated",
        },
        sqlx::Error::PoolTimedOut => "timeout",
        sqlx::Error::Protocol(_) => "terminated",
        _ => "other",
    }
}

/// Starts the ledger writers; they stop after `deadline` on the run clock.
pub fn start_ledger(
    cluster: Arc<Cluster>,
    run_id: String,
    clock: Clock,
    deadline: Duration,
) -> JoinHandle<LedgerRecords> {
    let seq = Arc::new(AtomicI64::new(1));
    let writers = cluster.target.ledger_writers.max(1);
    let handles: Vec<_> = (0..writers)
        .map(|writer| {
            let cluster = cluster.clone();
            let run_id = run_id.clone();
            let seq = seq.clone();
            tokio::spawn(async move {
                ledger_writer(&cluster, &run_id, writer, &seq, clock, deadline).await
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut all = LedgerRecords::default();
        for h in handles {
            if let Ok(mut part) = h.await {
                all.attempts.append(&mut part.attempts);
                for s in part.samples {
                    if all.samples.len() < 20 {
                        all.samples.push(s);
                    }
                }
            }
        }
        all.attempts.sort_by_key(|a| (a.start_ms, a.seq));
        all
    })
}

async fn ledger_writer(
    cluster: &Cluster,
    run_id: &str,
    writer: usize,
    seq: &AtomicI64,
    clock: Clock,
    deadline: Duration,
) -> LedgerRecords {
    let mut records = LedgerRecords::default();
    let mut conn: Option<PgConnection> = None;
    let deadline_ms = deadline.as_millis() as u64;
    while clock.ms() < deadline_ms {
        let n = seq.fetch_add(1, Ordering::SeqCst);
        let start_ms = clock.ms();
        let result = write_one(cluster, &mut conn, run_id, n).await;
        let end_ms = clock.ms();
        let outcome = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                conn = None;
                let kind = match e.downcast_ref::<sqlx::Error>() {
                    Some(e) => classify(e),
                    None if e.to_string().contains("timed out") => "timeout",
                    None => "other",
                };
                if records.samples.len() < 5 {
                    records.samples.push(format!("{kind}: {e:#}"));
                }
                kind.to_string()
            }
        };
        let failed = outcome != "ok";
        records.attempts.push(Attempt {
            seq: n,
            writer,
            start_ms,
            end_ms,
            outcome,
        });
        tokio::time::sleep(if failed { ERROR_PAUSE } else { WRITE_PAUSE }).await;
    }
    records
}

async fn write_one(
    cluster: &Cluster,
    conn: &mut Option<PgConnection>,
    run_id: &str,
    seq: i64,
) -> Result<()> {
    if conn.is_none() {
        *conn = Some(Cluster::connect(&cluster.write, CONNECT_TIMEOUT).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let insert =
        sqlx::query("INSERT INTO failover_ledger (run_id, seq, written_at) VALUES ($1, $2, now())")
            .bind(run_id)
            .bind(seq)
            .execute(c);
    match tokio::time::timeout(STATEMENT_TIMEOUT, insert).await {
        Ok(r) => {
            r?;
            Ok(())
        }
        Err(_) => bail!("statement timed out"),
    }
}

/// Starts the API shoppers: each registers, adds an address, picks a product
/// in stock, then loops add-to-cart + checkout until `deadline`.
pub fn start_api(
    base: String,
    run_id: String,
    shoppers: usize,
    clock: Clock,
    deadline: Duration,
) -> JoinHandle<ApiRecords> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
            Ok(h) => h,
            Err(e) => {
                return ApiRecords {
                    setup_errors: vec![e.to_string()],
                    ..ApiRecords::default()
                }
            }
        };
        let base = base.trim_end_matches('/').to_string();
        let handles: Vec<_> = (0..shoppers.max(1))
            .map(|i| {
                let http = http.clone();
                let base = base.clone();
                let run_id = run_id.clone();
                tokio::spawn(
                    async move { shopper(&http, &base, &run_id, i, clock, deadline).await },
                )
            })
            .collect();
        let mut all = ApiRecords::default();
        for h in handles {
            match h.await {
                Ok((mut requests, setup)) => {
                    all.requests.append(&mut requests);
                    if let Some(e) = setup {
                        all.setup_errors.push(e);
                    }
                }
                Err(e) => all.setup_errors.push(e.to_string()),
            }
        }
        all.requests.sort_by_key(|r| r.start_ms);
        all
    })
}

struct Call {
    shopper: usize,
    clock: Clock,
    log: Vec<Request>,
}

impl Call {
    async fn send(
        &mut self,
        kind: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, serde_json::Value)> {
        let start_ms = self.clock.ms();
        let result = request.send().await;
        let (status, retry_after, error, body) = match result {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key(reqwest::header::RETRY_AFTER);
                let body = r.json::<serde_json::Value>().await.unwrap_or_default();
                (Some(status), retry_after, None, body)
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                (None, false, Some(kind.to_string()), serde_json::Value::Null)
            }
        };
        self.log.push(Request {
            shopper: self.shopper,
            kind: kind.into(),
            start_ms,
            end_ms: self.clock.ms(),
            status,
            retry_after,
            error,
        });
        status.map(|s| (s, body))
    }
}

async fn shopper(
    http: &reqwest::Client,
    base: &str,
    run_id: &str,
    i: usize,
    clock: Clock,
    deadline: Duration,
) -> (Vec<Request>, Option<String>) {
    let mut call = Call {
        shopper: i,
        clock,
        log: Vec::new(),
    };
    let setup = async {
        let email = format!("failover-{run_id}-{i}@example.com");
        let (status, body) = call
            .send(
                "register",
                http.post(format!("{base}/api/v1/auth/register")).json(
                    &serde_json::json!({"email": email, "password": "failover-test-pw", "full_name": format!("Failover shopper {i}")}),
                ),
            )
            .await
            .context("register: no answer")?;
        if status != 201 {
            bail!("register answered {status}: {body}");
        }
        let token = body["access_token"]
            .as_str()
            .context("register: no access_token")?
            .to_string();
        let (status, body) = call
            .send(
                "address",
                http
                    .post(format!("{base}/api/v1/users/me/addresses"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"recipient": "Failover Shopper", "line1": "1 Test Street",
                        "city": "London", "postal_code": "SW1A 1AA", "country": "GB",
                        "is_default_shipping": true, "is_default_billing": true})),
            )
            .await
            .context("address: no answer")?;
        if status != 201 && status != 200 {
            bail!("address answered {status}: {body}");
        }
        let (status, body) = call
            .send(
                "product",
                http.get(format!("{base}/api/v1/products?in_stock=true&limit=20")),
            )
            .await
            .context("products: no answer")?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if status != 200 || items.is_empty() {
            bail!("products answered {status} with no product in stock");
        }
        let product = items[i % items.len()]["id"]
            .as_i64()
            .context("product id")?;
        let (status, body) = call
            .send(
                "product",
                http.get(format!("{base}/api/v1/products/{product}")),
            )
            .await
            .context("product: no answer")?;
        let variant = body["variants"][0]["id"]
            .as_i64()
            .with_context(|| format!("product {product} answered {status} without a variant"))?;
        Ok::<_, anyhow::Error>((token, variant))
    };
    let (token, variant) = match setup.await {
        Ok(v) => v,
        Err(e) => return (call.log, Some(format!("shopper {i}: {e:#}"))),
    };
    let deadline_ms = deadline.as_millis() as u64;
    let mut round = 0u64;
    while clock.ms() < deadline_ms {
        round += 1;
        let add = http
            .post(format!("{base}/api/v1/cart/lines"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"variant_id": variant, "quantity": 1}));
        let added = call.send("add_line", add).await;
        if matches!(added, Some((200 | 201, _))) {
            let checkout = http
                .post(format!("{base}/api/v1/checkout"))
                .bearer_auth(&token)
                .header("Idempotency-Key", format!("{run_id}-{i}-{round}"))
                .json(&serde_json::json!({}));
            call.send("checkout", checkout).await;
        }
        tokio::time::sleep(SHOP_PAUSE).await;
    }
    (call.log, None)
}
