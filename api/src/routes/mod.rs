//! The HTTP surface: routes, the JSON body extractor, the client-address limit, and
//! the answers for unknown routes and methods.

mod health;
mod otp;
mod session;

pub use session::REFRESHES_PER_SESSION_PER_MINUTE;
mod webhooks;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::client::TrustedProxies;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body; the real ones are well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One route the api serves.
struct Route {
    method: &'static str,
    path: &'static str,
    handler: MethodRouter<AppState>,
    /// A sign-in route: counts against `IP_REQUESTS_PER_MINUTE`, and as sign-in load.
    sign_in: Option<SignIn>,
}

/// A sign-in route, and what it answers when Redis cannot count its client's requests:
/// the route's own outage error, so a send says "Failed to send OTP" whichever of its
/// steps met the outage.
#[derive(Clone, Copy)]
struct SignIn {
    outage: fn(crate::error::Cause) -> ApiError,
}

const SEND: Option<SignIn> = Some(SignIn {
    outage: ApiError::SendUnavailable,
});
const VERIFY: Option<SignIn> = Some(SignIn {
    outage: ApiError::Unavailable,
});
/// A refresh is a way in too: it counts against the client's budget like a sign-in.
const REFRESH: Option<SignIn> = VERIFY;

/// Every route, in one table: the router is built from it and the OpenAPI test reads it.
fn route_table() -> Vec<Route> {
    let route = |method, path, handler, sign_in| Route {
        method,
        path,
        handler,
        sign_in,
    };
    vec![
        route("POST", "/api/auth/send-otp", post(otp::send_otp), SEND),
        route(
            "POST",
            "/api/auth/verify-otp",
            post(otp::verify_otp),
            VERIFY,
        ),
        route(
            "GET",
            "/api/auth/otp-status/{request_id}",
            get(otp::otp_status),
            None,
        ),
        route("GET", "/api/auth/me", get(session::me), None),
        route("POST", "/api/auth/refresh", post(session::refresh), REFRESH),
        route("POST", "/api/auth/logout", post(session::logout), None),
        route("GET", "/.well-known/jwks.json", get(session::jwks), None),
        route("GET", "/", get(login_page), None),
        route(
            "POST",
            "/api/webhooks/wati/{secret}",
            any(webhooks::wati),
            None,
        ),
        route("POST", "/api/webhooks/twilio", post(webhooks::twilio), None),
        route("GET", "/healthz", get(health::healthz), None),
        route("GET", "/readyz", get(health::readyz), None),
    ]
}

/// `(method, path)` of every route the api serves, paths in axum's `{param}` form.
pub fn served_routes() -> Vec<(&'static str, &'static str)> {
    route_table()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

pub fn router(state: AppState) -> Router {
    let routes = route_table()
        .into_iter()
        .fold(Router::new(), |router, route| {
            let handler = match route.sign_in {
                Some(sign_in) => route.handler.route_layer(middleware::from_fn_with_state(
                    (state.clone(), sign_in),
                    sign_in_route,
                )),
                None => route.handler,
            };
            router.route(route.path, handler)
        });
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(record_http_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let path = loggable_path(req.uri().path());
            tracing::info_span!("http", method = %req.method(), path, request_id)
        }))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
        ]))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unfit_request_id))
        .with_state(state)
}

/// `GET /`: the login page, or the unknown-route answer when it is off.
async fn login_page(State(state): State<AppState>) -> Response {
    match &state.settings.login_page {
        Some(page) => page.response(),
        None => ApiError::RouteNotFound.into_response(),
    }
}

/// Longest client-given `X-Request-Id` kept.
const MAX_REQUEST_ID_CHARS: usize = 64;

/// Removes a client's `X-Request-Id` unless it is at most 64 characters of
/// `[A-Za-z0-9._-]`, so that a new one is made instead: whatever is kept is logged and
/// echoed back.
async fn drop_unfit_request_id(mut request: Request) -> Request {
    let fit = |value: &axum::http::HeaderValue| {
        let bytes = value.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_CHARS
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let headers = request.headers_mut();
    let values: Vec<_> = headers.get_all("x-request-id").iter().collect();
    if values.len() != 1 || !fit(values[0]) {
        headers.remove("x-request-id");
    }
    request
}

/// A request's path as it may be logged: a webhook path's secret is left out.
fn loggable_path(path: &str) -> &str {
    if path.starts_with(webhooks::PATH_PREFIX) {
        webhooks::REDACTED_PATH
    } else {
        path
    }
}

/// A JSON object body whose every rejection is answered with the spec's error body.
/// Only an object is a request: serde would read a struct from an array too
/// (`["919876543210"]` as `{"phone": …}`), so the body is checked to be one first.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(body)) => body,
            Err(JsonRejection::MissingJsonContentType(_)) => {
                return Err(ApiError::UnsupportedMediaType);
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge);
            }
            Err(_) => return Err(ApiError::InvalidBody),
        };
        if !body.is_object() {
            return Err(ApiError::InvalidBody);
        }
        serde_json::from_value(body)
            .map(ApiJson)
            .map_err(|_| ApiError::InvalidBody)
    }
}

/// The client a request counts against for `IP_REQUESTS_PER_MINUTE` (see [`crate::client`]).
fn client_of(req: &Request, trusted_proxies: &TrustedProxies) -> Option<IpAddr> {
    client_from(req.extensions(), req.headers(), trusted_proxies)
}

fn client_from(
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    trusted_proxies: &TrustedProxies,
) -> Option<IpAddr> {
    let ConnectInfo(peer) = extensions.get::<ConnectInfo<SocketAddr>>()?;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Some(trusted_proxies.client(peer.ip(), forwarded))
}

/// The request's client (see [`crate::client`]), when the connection says.
pub struct Client(pub Option<IpAddr>);

impl axum::extract::FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(client_from(
            &parts.extensions,
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

/// Around the sign-in routes (send and verify): each counts as sign-in load while it
/// runs (receipts yield to a burst of them) and against `IP_REQUESTS_PER_MINUTE`. The
/// body is read first: a request counts as load only once it is whole, so that bodies
/// trickled in slowly cannot hold receipts back.
async fn sign_in_route(
    State((state, sign_in)): State<(AppState, SignIn)>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // Past the limit, or a client gone mid-body (which reads no answer anyway).
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    let _sign_in = state.pressure.sign_in();
    let Some(client) = client_of(&req, &state.settings.trusted_proxies) else {
        return Ok(next.run(req).await);
    };
    let counted = state
        .store
        .count_client_request(client)
        .await
        .map_err(|e| ApiError::from_dependency(e, sign_in.outage))?;
    if let Some(wait) = counted {
        metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => "client")
            .increment(1);
        return Err(ApiError::RateLimited { retry_after: wait });
    }
    Ok(next.run(req).await)
}

/// Records each request's latency by matched route (never the raw path, which may
/// carry a request id), method and status.
async fn record_http_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    metrics::histogram!(
        otp_shared::metrics::HTTP_DURATION,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: [u8; 4], forwarded: &[&str]) -> Request {
        let mut builder = axum::http::Request::builder();
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut req = builder.body(axum::body::Body::empty()).unwrap_or_default();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 4000))));
        req
    }

    #[test]
    fn a_webhook_secret_never_reaches_a_log_line() {
        assert_eq!(
            loggable_path("/api/webhooks/wati/s3cret-s3cret-s3cret-s3cret-0000"),
            "/api/webhooks/wati/{secret}"
        );
        assert_eq!(loggable_path("/api/auth/send-otp"), "/api/auth/send-otp");
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_names_another() {
        let lan: TrustedProxies = "10.0.0.0/8".parse().expect("networks");
        let none = TrustedProxies::default();
        let forged = request([198, 51, 100, 4], &["203.0.113.9"]);
        let client = |req: &Request, proxies| client_of(req, proxies).map(|ip| ip.to_string());
        assert_eq!(client(&forged, &lan).as_deref(), Some("198.51.100.4"));
        let proxied = request([10, 0, 0, 1], &["6.6.6.6, 203.0.113.9"]);
        assert_eq!(client(&proxied, &lan).as_deref(), Some("203.0.113.9"));
        assert_eq!(client(&proxied, &none).as_deref(), Some("10.0.0.1"));
    }
}
