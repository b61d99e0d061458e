//! The inbox page, `GET /sandbox/`: every phone's messages as it would show them
//! (WhatsApp templates, and SMS in bubbles of their own), for a person following the
//! login flow in a browser, and the JSON it polls, `GET /sandbox/inbox`; above them, the
//! events to the app (`app_webhook.rs`), polled from `GET /sandbox/app-events`.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Sandbox;

/// Phones the inbox lists: the benchmarks leave tens of thousands behind, and a page
/// polled every second should stay small.
pub const INBOX_PHONES: usize = 50;

/// Messages the inbox shows a phone, its latest.
pub const INBOX_MESSAGES: usize = 20;

const TEMPLATE: &str = include_str!("inbox.html");
const SCRIPT: &str = include_str!("inbox.js");
const STYLE: &str = include_str!("inbox.css");

/// The page, and its policy: nothing but its own inline script and style (allowed by
/// hash) and fetches back to the sandbox, since the phone numbers it shows come from
/// callers.
static PAGE: LazyLock<(String, String)> = LazyLock::new(|| {
    let html = TEMPLATE
        .replace("{{style}}", STYLE)
        .replace("{{script}}", SCRIPT);
    let csp = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(SCRIPT),
        sha256_source(STYLE)
    );
    (html, csp)
});

/// A CSP source that allows exactly this inline text.
fn sha256_source(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    format!("sha256-{}", STANDARD.encode(digest.as_ref()))
}

/// The page fetches `inbox` relative to itself, which from `/sandbox` would be `/inbox`.
pub(crate) async fn to_page() -> Redirect {
    Redirect::temporary("/sandbox/")
}

pub(crate) async fn page() -> impl IntoResponse {
    let (html, csp) = &*PAGE;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, csp.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html.as_str(),
    )
}

pub(crate) async fn inbox(State(sandbox): State<Sandbox>) -> impl IntoResponse {
    // Polled every second: a cached answer would show a code late.
    ([(header::CACHE_CONTROL, "no-store")], Json(sandbox.inbox()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_allows_exactly_the_inline_script_and_style() {
        let (html, csp) = &*PAGE;
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(csp.contains(&format!("script-src '{}'", sha256_source(SCRIPT))));
        assert!(csp.contains(&format!("style-src '{}'", sha256_source(STYLE))));
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!html.contains("{{"), "a placeholder was left in the page");
    }
}
