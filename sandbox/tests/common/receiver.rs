//! A webhook receiver on a local port that records every post and can answer 500 to
//! the first ones: for the test files that read the receipts the sandbox posts. (Not in
//! `common`, which every test file includes, so the others do not carry it unused.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

/// What a receiver was posted, with what it answered, in arrival order.
#[derive(Default)]
pub struct Heard {
    posts: Mutex<Vec<(Value, u16)>>,
    /// Posts still to answer with 500.
    failures_left: AtomicU32,
}

impl Heard {
    pub fn all(&self) -> Vec<(Value, u16)> {
        self.posts.lock().expect("not poisoned").clone()
    }

    /// Bodies answered 2xx, i.e. events the receiver took.
    pub fn taken(&self) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|(_, status)| *status == 200)
            .map(|(body, _)| body)
            .collect()
    }

    pub fn taken_for(&self, phone: &str) -> Vec<Value> {
        self.taken()
            .into_iter()
            .filter(|b| b["waId"] == phone)
            .collect()
    }

    pub fn events_for(&self, phone: &str) -> Vec<String> {
        self.taken_for(phone)
            .iter()
            .map(|b| b["eventType"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn hear(State(heard): State<Arc<Heard>>, Json(body): Json<Value>) -> StatusCode {
    let fail = heard
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    heard
        .posts
        .lock()
        .expect("not poisoned")
        .push((body, status.as_u16()));
    status
}

/// Starts a receiver that answers 500 to its first `failures` posts; returns its URL.
pub async fn receiver(failures: u32) -> (String, Arc<Heard>) {
    let heard = Arc::new(Heard {
        failures_left: AtomicU32::new(failures),
        ..Heard::default()
    });
    let app = Router::new()
        .route("/webhook", post(hear))
        .with_state(heard.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let url = format!(
        "http://{}/webhook",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}
