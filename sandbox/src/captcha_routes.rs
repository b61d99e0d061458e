//! The human check's routes (`captcha.rs` says what they stand in for): the providers'
//! siteverify endpoints, where a person's widget gets its token
//! (`POST /sandbox/captcha/solve`, from the page's origin, so with CORS), the widget stub
//! (`GET /sandbox/captcha/api.js`), and the test's handles: scripts and the log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Sandbox;
use crate::captcha::{CaptchaProvider, VerifyRequest};
use crate::captcha_record::{ScriptedCaptcha, Solve};
use crate::send::now_ms;

/// The widget stub, served as the providers' `api.js`.
const SCRIPT: &str = include_str!("captcha.js");

/// Turnstile's siteverify, which takes JSON as well as a form.
pub(crate) async fn turnstile_siteverify(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let request = if json {
        VerifyRequest::from_json(&body)
    } else {
        Some(VerifyRequest::from_form(&body))
    };
    siteverify(&sandbox, CaptchaProvider::Turnstile, request).await
}

/// hCaptcha's siteverify, which takes a form.
pub(crate) async fn hcaptcha_siteverify(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let request = Some(VerifyRequest::from_form(&body));
    siteverify(&sandbox, CaptchaProvider::Hcaptcha, request).await
}

/// Answers `request` (`None`: malformed) as `provider`, or as scripted.
async fn siteverify(
    sandbox: &Sandbox,
    provider: CaptchaProvider,
    request: Option<VerifyRequest>,
) -> Response {
    let site = sandbox.config.captcha.site(provider);
    let answer = sandbox
        .recorded()
        .captcha
        .siteverify(provider, site, request, now_ms());
    if let Some(hang) = answer.hang {
        tokio::time::sleep(hang).await;
    }
    match answer.json {
        Some(json) => (answer.status, Json(json)).into_response(),
        // An outage answers as a gateway would: no JSON to read.
        None => (
            answer.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("error code: {}", answer.status.as_u16()),
        )
            .into_response(),
    }
}

/// What the widget stub sends when the person clicks; every field may be left out.
#[derive(Default, Deserialize)]
#[serde(default)]
struct SolveBody {
    provider: CaptchaProvider,
    /// The widget's site key: if given, it must be the sandbox's for the provider.
    sitekey: Option<String>,
    action: Option<String>,
    cdata: Option<String>,
}

/// `{"token","provider","expiresInSeconds"}`: a fresh token, good once, for the page the
/// request came from (its `Origin` is the `hostname` siteverify reports).
pub(crate) async fn solve(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let asked = if body.trim_ascii().is_empty() {
        Ok(SolveBody::default())
    } else {
        serde_json::from_slice::<SolveBody>(&body).map_err(|e| format!("not a solve request: {e}"))
    };
    let asked = asked.and_then(|asked| {
        let site = sandbox.config.captcha.site(asked.provider);
        match &asked.sitekey {
            Some(key) if !key.is_empty() && *key != site.site_key => Err(format!(
                "{key} is not the sandbox's {} site key",
                asked.provider.name()
            )),
            _ => Ok(asked),
        }
    });
    let asked = match asked {
        Ok(asked) => asked,
        Err(error) => {
            return with_cors((StatusCode::BAD_REQUEST, Json(json!({ "error": error }))));
        }
    };
    let hostname = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(host_of)
        .unwrap_or_else(|| "localhost".to_owned());
    let provider = asked.provider;
    let solve = Solve {
        hostname,
        action: asked.action.unwrap_or_default(),
        cdata: asked.cdata.unwrap_or_default(),
    };
    let token = sandbox.recorded().captcha.issue(provider, solve, now_ms());
    with_cors(Json(json!({
        "token": token,
        "provider": provider,
        "expiresInSeconds": provider.token_life().as_secs(),
    })))
}

/// The CORS preflight of the stub's solve request, which a page on another origin makes.
pub(crate) async fn solve_preflight(headers: HeaderMap) -> Response {
    let mut response = with_cors(StatusCode::NO_CONTENT);
    let answer = response.headers_mut();
    answer.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    answer.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    answer.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    // Chromium asks before a page reaches a more private address (a LAN page, the
    // sandbox on loopback).
    if headers.contains_key("access-control-request-private-network") {
        answer.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    response
}

fn with_cors(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The host of an `Origin` (`scheme://host[:port]`); `None` for `null` or a broken one.
fn host_of(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The widget stub, as a `<script>` from any page may load it.
pub(crate) async fn api_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::HeaderName::from_static("cross-origin-resource-policy"),
                "cross-origin",
            ),
        ],
        SCRIPT,
    )
        .into_response()
}

/// Queues answers for the next siteverify calls; refuses a status that is not one.
pub(crate) async fn add_script(
    State(sandbox): State<Sandbox>,
    Json(body): Json<crate::control::AnswersBody<ScriptedCaptcha>>,
) -> Response {
    if let Some(refusal) = crate::control::refuse_odd_status(body.answers.iter().map(|a| a.status))
    {
        return refusal;
    }
    sandbox.script_captcha(body.answers);
    StatusCode::NO_CONTENT.into_response()
}

/// `{"verifications":[…]}`: every siteverify call, in arrival order.
pub(crate) async fn verifications(State(sandbox): State<Sandbox>) -> Response {
    Json(json!({ "verifications": sandbox.captcha_verifications() })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hostname_is_the_origins_host() {
        assert_eq!(
            host_of("http://localhost:8080").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            host_of("https://Login.Example.com").as_deref(),
            Some("login.example.com")
        );
        assert_eq!(host_of("http://[::1]:3000").as_deref(), Some("::1"));
        assert_eq!(
            host_of("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host_of("null"), None);
        assert_eq!(host_of("http://"), None);
    }

    #[test]
    fn the_stub_offers_both_providers_apis() {
        for name in [
            "window.turnstile",
            "window.hcaptcha",
            "render",
            "reset",
            "remove",
            "I am human",
            "onload",
            "explicit",
            "cf-turnstile-response",
            "h-captcha-response",
        ] {
            assert!(SCRIPT.contains(name), "{name}");
        }
    }
}
