//! The inbox page, `GET /sandbox/`: every phone's messages as its WhatsApp would show
//! them, for a person following the login flow in a browser, and the JSON it polls,
//! `GET /sandbox/inbox`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};

use crate::Sandbox;

/// Phones the inbox lists: the benchmarks leave tens of thousands behind, and a page
/// polled every second should stay small.
pub const INBOX_PHONES: usize = 50;

/// Messages the inbox shows a phone, its latest.
pub const INBOX_MESSAGES: usize = 20;

const PAGE: &str = include_str!("inbox.html");

/// Nothing but the page's own inline script and style, and fetches back to the sandbox:
/// the phone numbers it shows come from callers.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page fetches `inbox` relative to itself, which from `/sandbox` would be `/inbox`.
pub(crate) async fn to_page() -> Redirect {
    Redirect::temporary("/sandbox/")
}

pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

pub(crate) async fn inbox(State(sandbox): State<Sandbox>) -> impl IntoResponse {
    // Polled every second: a cached answer would show a code late.
    ([(header::CACHE_CONTROL, "no-store")], Json(sandbox.inbox()))
}
