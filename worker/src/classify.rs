//! Says what a WATI answer means (delivered, permanent failure, transient failure),
//! apart from when to try again, which is the retry schedule's business.

use std::time::Duration;

/// What came back from one call to WATI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatiReply {
    /// An HTTP answer.
    Http {
        status: u16,
        /// `Retry-After` in seconds, where given.
        retry_after: Option<Duration>,
        /// `result` of the JSON body, where the body had one.
        result: Option<bool>,
        /// `info` of the JSON body, where given.
        info: Option<String>,
    },
    /// No answer within the timeout: the message may or may not have gone out.
    Timeout,
    /// The connection failed.
    Connection,
}

/// What the worker does with an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Will not succeed if tried again.
    Permanent {
        reason: String,
        info: Option<String>,
    },
    /// May succeed later; `retry_after` is WATI's own wait, where it gave one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// The `result` label of a WATI call: a small fixed set, for metrics and alerts.
pub fn result_class(reply: &WatiReply) -> &'static str {
    match reply {
        WatiReply::Timeout => "timeout",
        WatiReply::Connection => "connection_error",
        WatiReply::Http { status, result, .. } => match status {
            200..=299 if *result == Some(true) => "accepted",
            200..=299 if *result == Some(false) => "refused",
            200..=299 => "unreadable",
            401 | 403 => "auth_failed",
            404 => "template_not_found",
            429 => "rate_limited",
            400..=499 => "client_error",
            _ => "server_error",
        },
    }
}

pub fn classify(reply: &WatiReply) -> Verdict {
    let transient = |reason: &str, retry_after| Verdict::Transient {
        reason: reason.to_owned(),
        retry_after,
    };
    let permanent = |reason: &str, info: &Option<String>| Verdict::Permanent {
        reason: reason.to_owned(),
        info: info.clone(),
    };
    match reply {
        WatiReply::Timeout => transient("WATI did not answer in time", None),
        WatiReply::Connection => transient("WATI could not be reached", None),
        WatiReply::Http {
            status,
            retry_after,
            result,
            info,
        } => match status {
            200..=299 => match result {
                Some(true) => Verdict::Delivered,
                Some(false) => permanent("WATI refused the message", info),
                // Accepted by HTTP but not readable: the outcome is unknown.
                None => transient("WATI answered without a result", None),
            },
            401 | 403 => permanent("WATI API authentication failed", info),
            404 => permanent("WATI template not found", info),
            429 => transient("WATI rate limited the request", *retry_after),
            503 => transient("WATI is unavailable", *retry_after),
            400..=499 => permanent(&format!("WATI rejected the request (HTTP {status})"), info),
            _ => transient(&format!("WATI failed (HTTP {status})"), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, result: Option<bool>) -> WatiReply {
        WatiReply::Http {
            status,
            retry_after: None,
            result,
            info: None,
        }
    }

    #[test]
    fn only_result_true_is_delivered() {
        assert_eq!(classify(&http(200, Some(true))), Verdict::Delivered);
        assert!(matches!(
            classify(&http(200, Some(false))),
            Verdict::Permanent { .. }
        ));
        assert!(matches!(
            classify(&http(200, None)),
            Verdict::Transient { .. }
        ));
    }

    #[test]
    fn client_errors_are_permanent_with_the_spec_reasons() {
        let reason = |status| match classify(&http(status, None)) {
            Verdict::Permanent { reason, .. } => reason,
            other => panic!("{status}: {other:?}"),
        };
        assert_eq!(reason(401), "WATI API authentication failed");
        assert_eq!(reason(403), "WATI API authentication failed");
        assert_eq!(reason(404), "WATI template not found");
        assert_eq!(reason(400), "WATI rejected the request (HTTP 400)");
        assert_eq!(reason(422), "WATI rejected the request (HTTP 422)");
    }

    #[test]
    fn server_errors_timeouts_and_rate_limits_are_transient() {
        for reply in [
            http(500, None),
            http(502, None),
            http(503, None),
            http(429, None),
            WatiReply::Timeout,
            WatiReply::Connection,
        ] {
            assert!(
                matches!(classify(&reply), Verdict::Transient { .. }),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_passed_on_for_429_and_503() {
        for status in [429, 503] {
            let reply = WatiReply::Http {
                status,
                retry_after: Some(Duration::from_secs(2)),
                result: None,
                info: None,
            };
            assert_eq!(
                classify(&reply),
                Verdict::Transient {
                    reason: classify_reason(&reply),
                    retry_after: Some(Duration::from_secs(2))
                }
            );
        }
    }

    fn classify_reason(reply: &WatiReply) -> String {
        match classify(reply) {
            Verdict::Transient { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }
}
