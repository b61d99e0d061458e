//! Every error the api answers with, mapped once to a status, a stable `code` and the
//! spec's exact `message`. A dependency that cannot answer is a 503; our own code
//! going wrong is a 500; either way the cause is kept and logged once, here.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otp_shared::telemetry::error_chain;
use serde_json::json;

/// What went wrong below the api, kept for the log line.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("phone missing")]
    PhoneRequired,
    #[error("phone invalid")]
    PhoneInvalid,
    #[error("country not allowed")]
    PhoneNotAllowed,
    #[error("locale invalid")]
    LocaleInvalid,
    #[error("code missing")]
    CodeRequired,
    #[error("no code for phone")]
    OtpNotFound,
    #[error("code expired")]
    OtpExpired,
    #[error("wrong code")]
    OtpInvalid { remaining: u32 },
    #[error("attempt cap reached")]
    TooManyAttempts,
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    /// A send to a phone refused by its limits while a code is pending for it: the user
    /// may have that code (say so, so that the app lets them enter it).
    #[error("rate limited, a code pending")]
    RateLimitedCodePending { retry_after: Duration },
    /// The send needs a human check (`captchaToken`) the request did not bring.
    #[error("a human check is needed")]
    HumanCheckRequired {
        /// The provider and site key the page's widget needs.
        provider: &'static str,
        site_key: std::sync::Arc<str>,
        /// A code is pending for the phone (its user may have it).
        code_pending: bool,
    },
    /// The provider did not accept the request's `captchaToken` (wrong, spent, expired).
    #[error("the human check failed")]
    HumanCheckFailed,
    /// Redis or RabbitMQ could not take a send request.
    #[error("send not possible")]
    SendUnavailable(#[source] Cause),
    /// The budgets cannot hand another code to WATI before it would expire.
    #[error("sends waiting for WATI fill the budgets for a code's life")]
    OverCapacity { retry_after: Duration },
    /// Redis could not answer another request.
    #[error("dependency unavailable")]
    Unavailable(#[source] Cause),
    #[error("unauthorized")]
    Unauthorized,
    #[error("unknown request id")]
    StatusNotFound,
    #[error("invalid request body")]
    InvalidBody,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("body too large")]
    PayloadTooLarge,
    #[error("route not found")]
    RouteNotFound,
    /// A webhook whose signature is wrong or missing.
    #[error("bad webhook signature")]
    BadSignature,
    /// SMS asked for where SMS is off, or to a country without it.
    #[error("sms not allowed")]
    ChannelNotAllowed,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// How long a client is told to wait after a 503 of an outage.
pub const OUTAGE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whole seconds a client should wait, never 0.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

impl ApiError {
    /// The `outcome` label of a refused send or verify request.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::PhoneRequired
            | ApiError::PhoneInvalid
            | ApiError::LocaleInvalid
            | ApiError::CodeRequired
            | ApiError::InvalidBody
            | ApiError::UnsupportedMediaType
            | ApiError::PayloadTooLarge => "bad_request",
            ApiError::OtpNotFound | ApiError::StatusNotFound | ApiError::RouteNotFound => {
                "not_found"
            }
            ApiError::OtpExpired => "expired",
            ApiError::PhoneNotAllowed => "country_not_allowed",
            ApiError::ChannelNotAllowed => "channel_not_allowed",
            ApiError::BadSignature => "bad_signature",
            ApiError::OtpInvalid { .. } => "invalid_code",
            ApiError::TooManyAttempts => "locked",
            ApiError::RateLimited { .. } | ApiError::RateLimitedCodePending { .. } => {
                "rate_limited"
            }
            ApiError::OverCapacity { .. } => "over_capacity",
            ApiError::HumanCheckRequired { .. } => "human_check_required",
            ApiError::HumanCheckFailed => "human_check_failed",
            ApiError::SendUnavailable(_) | ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "error",
        }
    }

    /// A dependency's error: `outage` (a 503) when it could not answer, a 500 when it
    /// answered something our code did not expect.
    pub fn from_dependency<E: DependencyError>(error: E, outage: fn(Cause) -> ApiError) -> Self {
        if error.is_outage() {
            outage(Box::new(error))
        } else {
            ApiError::Internal(Box::new(error))
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        use ApiError::*;
        let (status, code, message) = match self {
            PhoneRequired => (
                StatusCode::BAD_REQUEST,
                "PHONE_REQUIRED",
                "Please provide phone number",
            ),
            PhoneInvalid => (
                StatusCode::BAD_REQUEST,
                "PHONE_INVALID",
                "Invalid phone number format",
            ),
            PhoneNotAllowed => (
                StatusCode::BAD_REQUEST,
                "PHONE_NOT_ALLOWED",
                "Sending to this country is not enabled",
            ),
            LocaleInvalid => (StatusCode::BAD_REQUEST, "LOCALE_INVALID", "Invalid locale"),
            CodeRequired => (
                StatusCode::BAD_REQUEST,
                "CODE_REQUIRED",
                "Please provide OTP code",
            ),
            OtpNotFound => (
                StatusCode::NOT_FOUND,
                "OTP_NOT_FOUND",
                "No OTP found for phone",
            ),
            OtpExpired => (StatusCode::GONE, "OTP_EXPIRED", "OTP has expired"),
            OtpInvalid { remaining } => {
                let noun = if *remaining == 1 {
                    "attempt"
                } else {
                    "attempts"
                };
                return (
                    StatusCode::UNAUTHORIZED,
                    "OTP_INVALID",
                    format!("Invalid OTP. {remaining} {noun} remaining"),
                );
            }
            TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_ATTEMPTS",
                "Too many failed attempts",
            ),
            RateLimited { .. } | RateLimitedCodePending { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests, please try again later",
            ),
            HumanCheckRequired { .. } => (
                StatusCode::FORBIDDEN,
                "CAPTCHA_REQUIRED",
                "Complete the human check to get a code",
            ),
            HumanCheckFailed => (
                StatusCode::FORBIDDEN,
                "CAPTCHA_INVALID",
                "The human check failed, please try it again",
            ),
            SendUnavailable(_) | OverCapacity { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Failed to send OTP",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "Service temporarily unavailable",
            ),
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Invalid or expired token",
            ),
            StatusNotFound => (
                StatusCode::NOT_FOUND,
                "REQUEST_NOT_FOUND",
                "No OTP request with this id",
            ),
            InvalidBody => (
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "Invalid request body",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ),
            PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body too large",
            ),
            RouteNotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "Route not found"),
            BadSignature => (StatusCode::FORBIDDEN, "FORBIDDEN", "Invalid signature"),
            ChannelNotAllowed => (
                StatusCode::BAD_REQUEST,
                "CHANNEL_NOT_ALLOWED",
                "SMS to this country is not enabled",
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal server error",
            ),
        };
        (status, code, message.to_owned())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        match &self {
            ApiError::SendUnavailable(cause) | ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %error_chain(cause.as_ref()), "dependency unavailable")
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %error_chain(cause.as_ref()), "internal error")
            }
            _ => {}
        }
        let mut body = json!({"status": "error", "code": code, "message": message});
        let mut retry_after = None;
        match self {
            ApiError::OtpInvalid { remaining } => body["attemptsRemaining"] = json!(remaining),
            ApiError::RateLimitedCodePending { retry_after: wait } => {
                let secs = retry_after_seconds(wait);
                body["retryAfterSeconds"] = json!(secs);
                body["codePending"] = json!(true);
                retry_after = Some(secs);
            }
            ApiError::HumanCheckRequired {
                provider,
                site_key,
                code_pending,
            } => {
                body["captcha"] = json!({"provider": provider, "siteKey": &*site_key});
                body["codePending"] = json!(code_pending);
            }
            ApiError::RateLimited { retry_after: wait }
            | ApiError::OverCapacity { retry_after: wait } => {
                let secs = retry_after_seconds(wait);
                body["retryAfterSeconds"] = json!(secs);
                retry_after = Some(secs);
            }
            // An outage (Redis, or RabbitMQ while the api reconnects) is usually over in
            // seconds; the client is told when to try again rather than left to guess.
            ApiError::SendUnavailable(_) | ApiError::Unavailable(_) => {
                let secs = retry_after_seconds(OUTAGE_RETRY_AFTER);
                body["retryAfterSeconds"] = json!(secs);
                retry_after = Some(secs);
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// An error of something the api depends on (Redis, PostgreSQL) that can tell an
/// outage (it did not answer: a 503) from a bug (it answered what our code did not
/// expect: a 500).
pub trait DependencyError: std::error::Error + Send + Sync + 'static {
    fn is_outage(&self) -> bool;
}

impl DependencyError for redis::RedisError {
    fn is_outage(&self) -> bool {
        otp_shared::redis::is_outage(self)
    }
}

/// Outside the send path, a dependency's outage is "Service temporarily unavailable".
macro_rules! unavailable_on_outage {
    ($($error:ty),+) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                ApiError::from_dependency(e, ApiError::Unavailable)
            }
        }
    )+};
}

unavailable_on_outage!(
    redis::RedisError,
    crate::users::UserError,
    crate::store::StoreError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_in_words() {
        let message = |remaining| ApiError::OtpInvalid { remaining }.parts().2;
        assert_eq!(message(2), "Invalid OTP. 2 attempts remaining");
        assert_eq!(message(1), "Invalid OTP. 1 attempt remaining");
        assert_eq!(message(0), "Invalid OTP. 0 attempts remaining");
    }

    #[test]
    fn an_unexpected_script_reply_is_a_500_and_an_outage_a_503() {
        let bug =
            redis::RedisError::from(redis::ParsingError::from("verify.lua answered \"maybe\""));
        assert_eq!(
            ApiError::from(bug).parts().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let outage =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            ApiError::from(outage).parts().0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn the_log_line_keeps_the_cause() {
        let outage = redis::RedisError::from(std::io::Error::other("connection reset"));
        let error = ApiError::SendUnavailable(Box::new(outage));
        assert_eq!(error_chain(&error), "send not possible: connection reset");
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
