//! Liveness and readiness.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use crate::state::AppState;

/// The process is up and serving.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the primary answers (and the read pool, when it is separate).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let write = ping(&state.db.write).await;
    let read = if state.db.read_is_primary {
        write
    } else {
        ping(&state.db.read).await
    };
    let status = if write {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": word(write),
        "checks": { "database": word(write), "database_read": word(read) },
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
