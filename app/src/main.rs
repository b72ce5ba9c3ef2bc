//! `app`: the shop API server and its maintenance commands.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shop::{config::Config, db::Db, AppState};

#[derive(Parser)]
#[command(
    name = "app",
    version,
    about = "The shop API: serve, run background work, migrate, seed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (runs until SIGTERM or Ctrl-C, then drains requests in flight).
    Serve {
        /// Apply pending migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Run the background work: relay order events to Kafka and run their consumers; publish
    /// the job outbox to RabbitMQ and work the emails and payments queues. Runs until SIGTERM
    /// or Ctrl-C, then finishes work in flight.
    Worker {
        /// Serve Prometheus metrics at http://ADDR/metrics (default: worker.metrics_bind).
        #[arg(long, value_name = "ADDR")]
        metrics_bind: Option<std::net::SocketAddr>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Load demo data: categories, brands, tags, products with variants, stock; and, when
    /// APP_SEED_PASSWORD is set, the accounts staff@shop.local and customer@shop.local.
    Seed {
        /// Number of products to create.
        #[arg(long, default_value_t = 1000)]
        products: u32,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Create a staff account, or give an existing account the staff role.
    /// The password is read from APP_STAFF_PASSWORD.
    Staff {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Staff")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(run(cli));
    // Work still running now was given its grace period already; a client stuck talking to
    // a broker that is gone must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi = cli.command {
        println!("{}", serde_json::to_string_pretty(&shop::openapi::spec())?);
        return Ok(());
    }
    let config = Config::load()?;
    shop::telemetry::init(&config.log);
    let db = Db::connect_lazy(&config.database).context("database configuration")?;
    match cli.command {
        Command::Serve { migrate } => {
            if migrate {
                db.migrate().await.context("applying migrations")?;
            }
            let listener = tokio::net::TcpListener::bind(config.http.bind)
                .await
                .with_context(|| format!("binding {}", config.http.bind))?;
            tracing::info!(address = %listener.local_addr()?, "serving");
            shop::http::serve(
                listener,
                AppState::new(config, db),
                shop::http::shutdown_signal(),
            )
            .await?;
        }
        Command::Worker { metrics_bind } => {
            let bind = metrics_bind.unwrap_or(config.worker.metrics_bind);
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding the metrics listener {bind}"))?;
            tracing::info!(address = %listener.local_addr()?, "worker metrics at /metrics");
            let state = AppState::new(config, db);
            let shutdown = tokio_util::sync::CancellationToken::new();
            let metrics = axum::serve(listener, shop::http::worker_router(state.clone()))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned());
            let metrics = tokio::spawn(async move { metrics.await });
            let signal = shutdown.clone();
            tokio::spawn(async move {
                shop::http::shutdown_signal().await;
                tracing::info!("shutting down: finishing work in flight");
                signal.cancel();
            });
            tracing::info!("worker started");
            let result = shop::worker::run(state, shutdown.clone()).await;
            shutdown.cancel();
            let _ = metrics.await;
            result?;
        }
        Command::Migrate => {
            db.migrate().await.context("applying migrations")?;
            eprintln!("migrations applied");
        }
        Command::Seed { products } => {
            let password = std::env::var("APP_SEED_PASSWORD").ok();
            let summary = shop::seed::run(&db, &config, products, password.as_deref()).await?;
            eprintln!("{summary}");
        }
        Command::Staff { email, name } => {
            let password =
                std::env::var("APP_STAFF_PASSWORD").context("APP_STAFF_PASSWORD is not set")?;
            let state = AppState::new(config, db);
            let id = shop::users::ensure_staff(&state, &email, &name, password).await?;
            eprintln!("staff account {email} ({id})");
        }
        Command::Openapi => unreachable!("handled above"),
    }
    Ok(())
}
