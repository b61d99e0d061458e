//! What the worker's HTTP clients (WATI's and Twilio's) share: a client that never
//! follows a redirect (a redirect could carry codes elsewhere), a provider's
//! `Retry-After` in whole seconds, and an answer read only up to a limit.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;

/// A client whose connects take at most `timeout` (and never over 5 s), that follows
/// no redirect.
pub fn client(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
}

/// The answer's `Retry-After`, when it gives whole seconds.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The body, or `None` when it is longer than `limit` bytes (the rest is not read).
pub async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
