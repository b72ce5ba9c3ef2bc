//! The test harness: one real PostgreSQL server per test binary (initdb into a temporary
//! directory, loopback port), a migrated template database, and for each test its own
//! database and its own app serving real HTTP on a loopback port.

use crate::ports::free_port;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use shop::{config::Config, db::Db, AppState};
use sqlx::{postgres::PgPoolOptions, PgPool};
use uuid::Uuid;

const TEMPLATE: &str = "shop_template";

pub struct PgServer {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: Child,
}

/// Directory of the PostgreSQL server binaries: on PATH, or Debian's versioned directory.
fn pg_bin(name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("bin").join(name))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.components()
            .nth(3)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .unwrap_or_else(|| panic!("PostgreSQL's {name} not found; run: bash tests/tools.sh"))
}

/// PostgreSQL refuses to run as root; as root we run it as the `postgres` account.
fn as_postgres(command: &mut Command, dir: &Path) {
    use std::os::unix::process::CommandExt;
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let user = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(user.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root needs a `postgres` account (Debian's postgresql package makes it)"
    );
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    unsafe { libc::chown(c_dir.as_ptr(), uid, gid) };
    unsafe {
        command.pre_exec(move || {
            if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Ends the server when the test process exits, however it exits.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl PgServer {
    fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-pg")
            .tempdir()
            .unwrap();
        // Permissions: the postgres account must reach the directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let data = dir.path().join("data");
        let mut initdb = Command::new(pg_bin("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
                "-D",
            ])
            .arg(&data);
        as_postgres(&mut initdb, dir.path());
        let out = initdb.output().expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let port = free_port();
        let mut postgres = Command::new(pg_bin("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k", ""])
            // Durability is not under test here; speed is welcome.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=400", "-c", "shared_buffers=128MB"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut postgres, dir.path());
        die_with_parent(&mut postgres);
        let child = postgres.spawn().expect("starting postgres");

        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start listening within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PgServer {
            port,
            _dir: dir,
            _child: child,
        }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Servers this process started and directories they used, stopped and removed at exit.
static CLEANUP: Mutex<Vec<(u32, Option<PathBuf>)>> = Mutex::new(Vec::new());

/// Registers a process to kill (pid 0: none) and a directory to remove when the test process
/// exits; the first registration installs the exit hook.
pub fn on_exit(pid: u32, dir: Option<PathBuf>) {
    let mut cleanup = CLEANUP.lock().unwrap();
    if cleanup.is_empty() {
        unsafe { libc::atexit(cleanup_at_exit) };
    }
    cleanup.push((pid, dir));
}

/// Runs at process exit (the test harness exits through `exit`): stops the servers, then
/// removes their directories, which would otherwise stay behind in the temporary directory.
extern "C" fn cleanup_at_exit() {
    let entries = CLEANUP
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for (pid, dir) in entries {
        if pid != 0 {
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let mut status = 0;
            unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        }
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The server is started from a thread that lives as long as the process: the parent-death
/// signal follows the thread that spawned the child, and test threads come and go.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<&'static PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server: &'static PgServer = Box::leak(Box::new(PgServer::start()));
            on_exit(server._child.id(), Some(server._dir.path().to_owned()));
            tx.send(server).unwrap();
            loop {
                std::thread::park();
            }
        });
        let server = rx.recv().expect("postgres failed to start");
        prepare_template(server);
        server
    })
}

/// Migrates the template once, with a runtime of its own (tests each have theirs).
fn prepare_template(server: &PgServer) {
    let url = server.url("postgres");
    let template = server.url(TEMPLATE);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let admin = PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {TEMPLATE}"))
                .execute(&admin)
                .await
                .unwrap();
            let pool = PgPool::connect(&template).await.unwrap();
            Db::single(pool.clone())
                .migrate()
                .await
                .expect("migrations apply to an empty database");
            pool.close().await;
            admin.close().await;
        });
    })
    .join()
    .unwrap();
}

/// A fresh database, copied from the migrated template.
pub async fn database() -> (String, PgPool) {
    // CREATE DATABASE ... TEMPLATE refuses to run while another copy is being made.
    static CREATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let server = server();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&server.url("postgres"))
        .await
        .unwrap();
    {
        let _guard = CREATE.lock().await;
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
    let url = server.url(&name);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await
        .unwrap();
    (url, pool)
}

/// Configuration for a test app: cheap password hashing, random secrets.
pub fn config(database_url: &str) -> Config {
    std::env::remove_var("APP_CONFIG");
    let database = database_url.rsplit('/').next().unwrap();
    let figment = figment::Figment::new().merge(figment::providers::Serialized::defaults(json!({
        "http": { "bind": "127.0.0.1:0", "cors_origins": ["https://shop.example"] },
        "database": { "url": database_url, "max_connections": 40 },
        "auth": {
            "jwt_secret": format!("test-secret-{}", Uuid::new_v4()),
            "argon2": { "memory_kib": 1024, "iterations": 1, "parallelism": 1 },
        },
        "payments": { "webhook_secret": WEBHOOK_SECRET },
        "log": { "format": "json", "filter": "warn" },
        // Off, so tests see their writes at once; tests of the cache turn it on.
        "catalog": { "cache_ttl_ms": 0 },
        // Each app its own topic and consumer groups on the process's broker.
        "events": {
            "brokers": crate::kafka::shared().address(),
            "topic": format!("order-events-{database}"),
            "group_prefix": format!("{database}-"),
            "partitions": 2,
            "relay_poll_ms": 200,
        },
        "worker": { "metrics_bind": "127.0.0.1:0", "sample_ms": 500 },
    })));
    let mut config: Config = figment.extract().unwrap();
    config.http = figment::Figment::from(figment::providers::Serialized::defaults(&config.http))
        .extract()
        .unwrap();
    config
}

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// A running app on its own database.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub state: AppState,
    pub database_url: String,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The in-process worker (relay and consumers), started by the first `settle`.
    pub worker: tokio::sync::OnceCell<tokio_util::sync::CancellationToken>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_with_state(adjust, |_| {}).await
    }

    /// With the configuration and then the state adjusted (another payment gateway, say).
    pub async fn spawn_with_state(
        adjust: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut AppState),
    ) -> TestApp {
        let (url, pool) = database().await;
        Self::serve(url, pool, adjust, adjust_state).await
    }

    /// Another app on this app's database: a second replica.
    pub async fn replica(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let url = self.state.config.database.url.expose_secret().to_owned();
        Self::serve(url, self.pool.clone(), adjust, |_| {}).await
    }

    async fn serve(
        url: String,
        pool: PgPool,
        adjust: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut AppState),
    ) -> TestApp {
        let mut config = config(&url);
        adjust(&mut config);
        let database_url = url.clone();
        let db = Db::connect_lazy(&config.database).unwrap();
        let mut state = AppState::new(config, db);
        adjust_state(&mut state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(shop::http::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            pool,
            state,
            database_url,
            shutdown: Some(tx),
            server: Some(server),
            worker: tokio::sync::OnceCell::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and body
    /// (Null when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the app");
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The app's Prometheus metrics, as text.
    pub async fn metrics_text(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A user made directly in the database, with a valid access token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

/// A product with one variant stocked in one warehouse, made directly in the database.
#[derive(Debug, Clone, Copy)]
pub struct Stocked {
    pub product_id: i64,
    pub variant_id: i64,
    pub warehouse_id: i64,
}

impl TestApp {
    async fn user(&self, role: shop::auth::Role) -> User {
        let id = Uuid::now_v7();
        let email = format!("{}@example.com", id.simple());
        let hash = shop::auth::password::hash(&self.state.config.auth.argon2, PASSWORD.into())
            .await
            .unwrap();
        sqlx::query("INSERT INTO users (id, email, password_hash, full_name, role) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(&email)
            .bind(hash)
            .bind("Test User")
            .bind(role)
            .execute(&self.pool)
            .await
            .unwrap();
        User {
            id,
            email,
            token: self.state.jwt.issue(id, role),
        }
    }

    pub async fn customer(&self) -> User {
        self.user(shop::auth::Role::Customer).await
    }

    pub async fn staff(&self) -> User {
        self.user(shop::auth::Role::Staff).await
    }

    /// A product priced `price_minor` EUR with `units` on hand in a warehouse of its own.
    pub async fn stocked_product(&self, price_minor: i64, units: i32) -> Stocked {
        let tag = Uuid::new_v4().simple().to_string();
        let product_id: i64 = sqlx::query_scalar(
            "INSERT INTO products (slug, name, description, price_minor, currency)
             VALUES ($1, $2, 'A test product', $3, 'EUR') RETURNING id",
        )
        .bind(format!("product-{tag}"))
        .bind(format!("Product {tag}"))
        .bind(price_minor)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let variant_id: i64 = sqlx::query_scalar(
            "INSERT INTO variants (product_id, sku, name, price_minor, currency)
             VALUES ($1, $2, 'Default', $3, 'EUR') RETURNING id",
        )
        .bind(product_id)
        .bind(format!("SKU-{tag}"))
        .bind(price_minor)
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let warehouse_id: i64 = sqlx::query_scalar(
            "INSERT INTO warehouses (code, name) VALUES ($1, 'Test warehouse') RETURNING id",
        )
        .bind(format!("WH-{tag}"))
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        if units > 0 {
            shop::inventory::ledger::restock(
                &mut tx,
                variant_id,
                warehouse_id,
                units,
                Uuid::nil(),
                Some("fixture"),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        Stocked {
            product_id,
            variant_id,
            warehouse_id,
        }
    }
}

impl TestApp {
    /// Gives the user an address; a default one serves for shipping and billing.
    pub async fn address(&self, user: &User, default: bool) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO addresses (id, user_id, recipient, line1, city, postal_code, country,
                                    is_default_shipping, is_default_billing)
             VALUES ($1, $2, 'Test User', '1 Test Street', 'Berlin', '10115', 'DE', $3, $3)",
        )
        .bind(id)
        .bind(user.id)
        .bind(default)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// A customer with a default address and `quantity` units of `variant_id` in the cart.
    pub async fn shopper_with(&self, variant_id: i64, quantity: i32) -> User {
        let user = self.customer().await;
        self.address(&user, true).await;
        let (status, body) = self
            .post(
                "/api/v1/cart/lines",
                Some(&user.token),
                json!({ "variant_id": variant_id, "quantity": quantity }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user
    }

    /// Waits until every order event is published and applied by every consumer (the
    /// worker runs in this process from the first call on).
    pub async fn settle(&self) {
        self.worker
            .get_or_init(|| async {
                let token = tokio_util::sync::CancellationToken::new();
                tokio::spawn(shop::worker::run(self.state.clone(), token.clone()));
                token
            })
            .await;
        self.settled().await;
    }

    /// Waits until every order event is published and applied by every consumer, by
    /// whatever worker runs.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (unpublished, unapplied): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM order_events WHERE published_at IS NULL),
                        (SELECT count(*) FROM order_events e
                           CROSS JOIN (VALUES ('inventory'), ('notifications'), ('fulfilment'), ('analytics')) c(name)
                          WHERE NOT EXISTS (SELECT 1 FROM processed_events p
                                             WHERE p.consumer = c.name AND p.event_id = e.id))",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if unpublished == 0 && unapplied == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "events not settled within 60 s: {unpublished} unpublished, {unapplied} consumer applications missing"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// For every stock row: (on_hand, reserved) and what the ledger sums to, once the order
    /// events have been applied.
    pub async fn ledger_mismatches(&self) -> Vec<(i64, i64, i32, i32, i64, i64)> {
        self.settle().await;
        sqlx::query_as(
            "SELECT s.variant_id, s.warehouse_id, s.on_hand, s.reserved,
                    coalesce(sum(m.on_hand_delta), 0)::bigint, coalesce(sum(m.reserved_delta), 0)::bigint
             FROM stock s LEFT JOIN inventory_movements m USING (variant_id, warehouse_id)
             GROUP BY 1, 2, 3, 4
             HAVING s.on_hand <> coalesce(sum(m.on_hand_delta), 0) OR s.reserved <> coalesce(sum(m.reserved_delta), 0)",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// (on_hand, reserved) of the product's stock row, once the order events have been
    /// applied.
    pub async fn stock(&self, s: &Stocked) -> (i32, i32) {
        self.settle().await;
        sqlx::query_as(
            "SELECT on_hand, reserved FROM stock WHERE variant_id = $1 AND warehouse_id = $2",
        )
        .bind(s.variant_id)
        .bind(s.warehouse_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}
