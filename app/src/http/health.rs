//! Liveness and readiness.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use crate::state::AppState;

/// The process is up and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the primary answers. The read pool and Redis are reported but do not decide:
/// without them the app still serves (from the primary, and from PostgreSQL alone).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (write, read, redis) = tokio::join!(
        ping(&state.db.write),
        async {
            if state.db.read_is_primary {
                None
            } else {
                Some(ping(&state.db.read).await)
            }
        },
        state.redis.health(),
    );
    let read = read.unwrap_or(write);
    let status = if write {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": word(write),
        "checks": {
            "database": word(write),
            "database_read": word(read),
            "redis": redis.as_str(),
        },
    });
    (status, Json(body))
}

async fn ping(pool: &sqlx::PgPool) -> bool {
    let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), query).await,
        Ok(Ok(1))
    )
}
