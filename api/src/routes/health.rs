//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when Redis, RabbitMQ and PostgreSQL answer; the body says which one does not.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let redis_up = otp_shared::redis::conn::answers(&state.redis).await;
    let rabbitmq_up = state.publisher.is_connected().await;
    let postgres_up = sqlx::query("SELECT 1").execute(&state.db).await.is_ok();
    let word = |up: bool| if up { "up" } else { "down" };
    let status = if redis_up && rabbitmq_up && postgres_up {
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
            "postgres": word(postgres_up),
        })),
    )
}
