//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when both Redis and RabbitMQ answer; the body says which one does not.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let redis_up = redis::cmd("PING")
        .query_async::<String>(&mut state.redis.clone())
        .await
        .is_ok();
    let rabbitmq_up = state.publisher.is_connected().await;
    let word = |up: bool| if up { "up" } else { "down" };
    let status = if redis_up && rabbitmq_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "unavailable" },
            "redis": word(redis_up),
            "rabbitmq": word(rabbitmq_up),
        })),
    )
}
