//! A local stand-in for WATI's `sendTemplateMessage`: checks the key, the template and
//! the `otp` parameter like WATI, records every message so a person or a test can read
//! the code sent to a number, and can be told to be slow or to fail for a number.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The sandbox binary's settings.
#[derive(clap::Parser, Debug)]
#[command(
    name = "wati-sandbox",
    version,
    about = "A local stand-in for WATI's sendTemplateMessage API."
)]
pub struct SandboxArgs {
    /// Listen address.
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: std::net::SocketAddr,
    /// The key callers must send as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "WATI_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// The one template the sandbox knows.
    #[arg(long, env = "WATI_TEMPLATE_NAME", default_value = "login_otp")]
    pub template_name: String,
    /// Delay before every answer, in milliseconds.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

impl SandboxArgs {
    pub fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            api_key: self.api_key,
            template_name: self.template_name,
            latency: Duration::from_millis(self.latency_ms),
        }
    }
}

/// What the sandbox expects and how fast it answers.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The key a caller must send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// The one template it knows.
    pub template_name: String,
    /// Delay before every unscripted answer.
    pub latency: Duration,
}

/// One message the sandbox accepted.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub phone: String,
    pub code: String,
    pub broadcast_name: String,
    pub received_at_ms: u64,
}

/// One call, whatever was answered.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub phone: String,
    /// The code the caller sent, whatever was answered.
    pub code: String,
    pub status: u16,
    pub received_at_ms: u64,
}

/// An answer scripted for a number, used once, in order, before normal service resumes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptedReply {
    /// HTTP status (default 200).
    #[serde(default)]
    pub status: Option<u16>,
    /// `result` in the body (default: true for 2xx, false otherwise).
    #[serde(default)]
    pub result: Option<bool>,
    #[serde(default)]
    pub info: Option<String>,
    /// `Retry-After` header, in seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (longer than the caller's timeout = a hang).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

#[derive(Default)]
struct Recorded {
    messages: HashMap<String, Vec<Message>>,
    calls: HashMap<String, Vec<Call>>,
    scripts: HashMap<String, VecDeque<ScriptedReply>>,
    accepted: u64,
}

/// The sandbox's state; tests in the same process may read and script it directly.
#[derive(Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    recorded: Arc<Mutex<Recorded>>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            config: Arc::new(config),
            recorded: Arc::default(),
        }
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages accepted for `phone`, oldest first.
    pub fn messages(&self, phone: &str) -> Vec<Message> {
        self.recorded()
            .messages
            .get(phone)
            .cloned()
            .unwrap_or_default()
    }

    /// Every call for `phone`, oldest first.
    pub fn calls(&self, phone: &str) -> Vec<Call> {
        self.recorded()
            .calls
            .get(phone)
            .cloned()
            .unwrap_or_default()
    }

    /// Messages accepted in all.
    pub fn accepted(&self) -> u64 {
        self.recorded().accepted
    }

    /// Queues answers for the next calls for `phone`.
    pub fn script(&self, phone: &str, replies: Vec<ScriptedReply>) {
        self.recorded()
            .scripts
            .entry(phone.to_owned())
            .or_default()
            .extend(replies);
    }

    pub fn reset(&self) {
        *self.recorded() = Recorded::default();
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/sandbox/messages", get(list_messages))
            .route("/sandbox/calls", get(list_calls))
            .route("/sandbox/last-code/{phone}", get(last_code))
            .route("/sandbox/script", post(add_script))
            .route("/sandbox/reset", post(reset))
            .route("/sandbox/stats", get(stats))
            .route("/{*path}", post(send_template_message))
            .with_state(self.clone())
    }
}

/// Serves the sandbox on `listener` until `shutdown` completes.
pub async fn serve(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(shutdown)
        .await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Deserialize)]
struct SendQuery {
    #[serde(rename = "whatsappNumber")]
    whatsapp_number: Option<String>,
}

fn wati_answer(status: StatusCode, result: bool, info: &str) -> Response {
    (status, Json(json!({"result": result, "info": info}))).into_response()
}

async fn send_template_message(
    State(sandbox): State<Sandbox>,
    Path(path): Path<String>,
    Query(query): Query<SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !path.ends_with("api/v1/sendTemplateMessage") {
        return wati_answer(StatusCode::NOT_FOUND, false, "Not found");
    }
    let expected = format!("Bearer {}", sandbox.config.api_key);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return wati_answer(StatusCode::UNAUTHORIZED, false, "Unauthorized");
    }
    let Some(phone) = query
        .whatsapp_number
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    else {
        return wati_answer(StatusCode::BAD_REQUEST, false, "whatsappNumber is required");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return wati_answer(StatusCode::BAD_REQUEST, false, "Invalid JSON body");
    };
    if body["template_name"].as_str() != Some(sandbox.config.template_name.as_str()) {
        return wati_answer(StatusCode::NOT_FOUND, false, "Template not found");
    }
    let code = body["parameters"].as_array().and_then(|params| {
        params
            .iter()
            .find(|p| p["name"] == "otp")
            .and_then(|p| p["value"].as_str())
            .map(str::to_owned)
    });
    let Some(code) = code else {
        return wati_answer(StatusCode::BAD_REQUEST, false, "Parameter otp is required");
    };
    let broadcast_name = body["broadcast_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let received_at_ms = now_ms();

    let scripted = sandbox
        .recorded()
        .scripts
        .get_mut(&phone)
        .and_then(VecDeque::pop_front);
    let reply = scripted.unwrap_or_else(|| ScriptedReply {
        delay_ms: Some(sandbox.config.latency.as_millis() as u64),
        ..ScriptedReply::default()
    });
    if let Some(delay) = reply.delay_ms.filter(|d| *d > 0) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = reply
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let result = reply.result.unwrap_or(status.is_success());
    {
        let mut recorded = sandbox.recorded();
        recorded.calls.entry(phone.clone()).or_default().push(Call {
            phone: phone.clone(),
            code: code.clone(),
            status: status.as_u16(),
            received_at_ms,
        });
        if status.is_success() && result {
            recorded.accepted += 1;
            recorded
                .messages
                .entry(phone.clone())
                .or_default()
                .push(Message {
                    phone: phone.clone(),
                    code,
                    broadcast_name,
                    received_at_ms,
                });
        }
    }
    let info = reply.info.unwrap_or_else(|| {
        if result {
            "Message sent"
        } else {
            "Message not sent"
        }
        .to_owned()
    });
    let mut response = (
        status,
        Json(json!({"result": result, "info": info, "validWhatsAppNumber": true})),
    )
        .into_response();
    if let Some(secs) = reply.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[derive(Deserialize)]
struct PhoneQuery {
    phone: String,
}

async fn list_messages(State(sandbox): State<Sandbox>, Query(q): Query<PhoneQuery>) -> Json<Value> {
    Json(json!({ "messages": sandbox.messages(&q.phone) }))
}

async fn list_calls(State(sandbox): State<Sandbox>, Query(q): Query<PhoneQuery>) -> Json<Value> {
    Json(json!({ "calls": sandbox.calls(&q.phone) }))
}

async fn last_code(State(sandbox): State<Sandbox>, Path(phone): Path<String>) -> Response {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match sandbox.messages(&digits).last() {
        Some(m) => Json(json!({"phone": m.phone, "code": m.code})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no message sent to this number yet"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ScriptBody {
    phone: String,
    replies: Vec<ScriptedReply>,
}

async fn add_script(State(sandbox): State<Sandbox>, Json(body): Json<ScriptBody>) -> StatusCode {
    sandbox.script(&body.phone, body.replies);
    StatusCode::NO_CONTENT
}

async fn reset(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.reset();
    StatusCode::NO_CONTENT
}

async fn stats(State(sandbox): State<Sandbox>) -> Json<Value> {
    Json(json!({ "accepted": sandbox.accepted() }))
}
