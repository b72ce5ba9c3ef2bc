//! Redis behind Sentinel, as the Kubernetes manifests run it: the app asks real Sentinels,
//! which require a password, for the primary, and after a failover writes reach the new
//! primary, not the demoted one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    harness::TestApp,
    redis::{RedisServer, SentinelServer},
    revocation::{me, revoked, sign_in},
};

/// The Sentinels' password (their `requirepass`), as the Secret would hold it.
const SENTINEL_PASSWORD: &str = "sentinel-secret";

async fn connect(port: u16) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
    ::redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await
}

async fn connect_sentinel(
    port: u16,
    password: Option<&str>,
) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
    let auth = password.map_or(String::new(), |p| format!(":{p}@"));
    ::redis::Client::open(format!("redis://{auth}127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await
}

/// A Redis handle that asks `sentinels` for the primary, with `password` for them.
fn sentinel_config(
    sentinels: &[SentinelServer],
    password: Option<&str>,
) -> shop::redis::RedisConfig {
    shop::redis::RedisConfig {
        url: Some("redis://127.0.0.1:1/0".to_owned().into()),
        sentinels: sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect(),
        sentinel_password: password.map(|p| p.to_owned().into()),
        ..Default::default()
    }
}

/// The first element of `ROLE`: `master`, `slave` or `sentinel`; None while the server
/// cannot be asked (Sentinel closes every client of a server it reconfigures).
async fn role(port: u16) -> Option<String> {
    let reply: Vec<::redis::Value> = ::redis::cmd("ROLE")
        .query_async(&mut connect(port).await.ok()?)
        .await
        .ok()?;
    match reply.first() {
        Some(::redis::Value::BulkString(role)) => Some(String::from_utf8_lossy(role).into_owned()),
        _ => None,
    }
}

async fn revoked_keys(port: u16) -> Vec<String> {
    ::redis::cmd("KEYS")
        .arg("shop:revoked:*")
        .query_async(&mut connect(port).await.unwrap())
        .await
        .unwrap()
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `within`.
async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_out(app: &TestApp, access: &str, refresh: &str) {
    let (status, body) = app
        .post(
            "/api/v1/auth/logout",
            Some(access),
            json!({ "refresh_token": refresh }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_follows_a_sentinel_failover_to_the_new_primary() {
    let first = RedisServer::start();
    let second = RedisServer::start_replica_of(&first);
    let sentinels: Vec<SentinelServer> = (0..3)
        .map(|_| SentinelServer::start(&first, SENTINEL_PASSWORD))
        .collect();
    let sentinel = sentinels[0].port;

    // The Sentinels refuse commands without their password, and so a client without it
    // finds no primary; with it, the primary is found.
    let anonymous = ::redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg("shop")
        .query_async::<Vec<String>>(&mut connect_sentinel(sentinel, None).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Some("NOAUTH"), "{anonymous}");
    let without = shop::redis::Redis::new(&sentinel_config(&sentinels, None)).unwrap();
    assert_eq!(without.health().await, shop::redis::Health::Down);
    let with =
        shop::redis::Redis::new(&sentinel_config(&sentinels, Some(SENTINEL_PASSWORD))).unwrap();
    wait_for(
        "the primary found with the Sentinels' password",
        Duration::from_secs(10),
        || async {
            // The URL's address is a placeholder: only the password and database are used.
            with.health().await == shop::redis::Health::Ok
        },
    )
    .await;

    // Nothing listens at the URL's address: only the Sentinels say where the primary is.
    let nowhere = crate::ports::free_port();
    let app = TestApp::spawn_with(|c| {
        c.redis.url = Some(format!("redis://127.0.0.1:{nowhere}/0").into());
        c.redis.sentinels = sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        c.redis.sentinel_password = Some(SENTINEL_PASSWORD.to_owned().into());
        c.redis.breaker_ms = 200;
    })
    .await;
    let user = app.customer().await;
    let (before, refresh) = sign_in(&app, &user.email).await;
    log_out(&app, &before, &refresh).await;
    assert_eq!(me(&app, &before).await, revoked());
    assert!(!revoked_keys(first.port).await.is_empty());
    // The replica has the entry before the primary changes.
    let _: i64 = ::redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query_async(&mut connect(first.port).await.unwrap())
        .await
        .unwrap();

    // Refused (NOGOODSLAVE) until the Sentinel has heard from the replica.
    wait_for("a failover started", Duration::from_secs(20), || async {
        let Ok(mut conn) = connect_sentinel(sentinel, Some(SENTINEL_PASSWORD)).await else {
            return false;
        };
        ::redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("shop")
            .query_async::<()>(&mut conn)
            .await
            .is_ok()
    })
    .await;
    wait_for("the replica promoted", Duration::from_secs(20), || async {
        role(second.port).await.as_deref() == Some("master")
    })
    .await;
    // Sentinel demotes the old primary and closes its clients in one step.
    wait_for(
        "the old primary demoted",
        Duration::from_secs(20),
        || async { role(first.port).await.as_deref() == Some("slave") },
    )
    .await;

    // /readyz asks ROLE: it is ok again only once the app is on the new primary.
    wait_for("/readyz: redis ok", Duration::from_secs(10), || async {
        let (_, body) = app.get("/readyz", None).await;
        body["checks"]["redis"] == "ok"
    })
    .await;
    let (after, refresh) = sign_in(&app, &user.email).await;
    log_out(&app, &after, &refresh).await;
    assert_eq!(
        me(&app, &after).await,
        revoked(),
        "revoked on the new primary"
    );
    assert_eq!(me(&app, &before).await, revoked(), "replicated before");
    // Each logout writes two entries (the token and its session); a replica takes none.
    assert_eq!(revoked_keys(second.port).await.len(), 4);
}

#[test]
fn sentinels_must_be_host_port_with_a_url() {
    let mut config = shop::redis::RedisConfig {
        sentinels: vec!["127.0.0.1:26379".into()],
        ..Default::default()
    };
    let (key, problem) = config.check().unwrap_err();
    assert_eq!(key, "redis.sentinels");
    assert!(problem.contains("redis.url"), "{problem}");

    config.url = Some(
        "redis://:secret@shop-redis-primary:6379/0"
            .to_owned()
            .into(),
    );
    assert_eq!(config.check(), Ok(()));
    config.sentinel_password = Some("secret".to_owned().into());
    assert_eq!(config.check(), Ok(()));
    for bad in [
        "shop-redis-sentinel",
        "host:port",
        "host:0",
        ":26379",
        "redis://h:1/0",
    ] {
        config.sentinels = vec![bad.into()];
        let (key, problem) = config.check().unwrap_err();
        assert_eq!(key, "redis.sentinels", "{bad}");
        assert!(problem.contains(&format!("{bad:?}")), "{problem}");
    }
    // A Sentinel password with no Sentinels is a mistake, not something to ignore.
    config.sentinels.clear();
    let (key, problem) = config.check().unwrap_err();
    assert_eq!(key, "redis.sentinel_password");
    assert!(problem.contains("APP_REDIS__SENTINELS"), "{problem}");
}
