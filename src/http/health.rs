//! Liveness and readiness. `/healthz` answers as long as the process serves HTTP; `/readyz`
//! also requires the database to answer and an active signing key to be loaded, so a load
//! balancer only sends token requests to an instance that can complete them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// `GET /healthz`.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.store.ping().await;
    let key = state.keys.active_kid().is_some();
    let status = if database && key {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": if database { "ok" } else { "unreachable" },
            "signing_key": if key { "active" } else { "missing" },
        })),
    )
}
