//! The WATI client against a real HTTP server (wiremock): request shape, tenant path,
//! auth header, and what each kind of answer is classified as.

use std::time::Duration;

use otp_worker::classify::{Verdict, WatiReply, classify};
use otp_worker::config::WatiConfig;
use otp_worker::wati::WatiClient;
use secrecy::SecretString;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SEND_PATH: &str = "/12345/api/v1/sendTemplateMessage";

fn client(server: &MockServer, timeout: Duration) -> WatiClient {
    WatiClient::new(&WatiConfig {
        base_url: format!("{}/12345", server.uri()),
        api_key: SecretString::from("key-1"),
        template_name: "login_otp".into(),
        timeout,
        sends_per_second: 0,
    })
    .expect("client")
}

async fn answer_with(template: ResponseTemplate) -> WatiReply {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    client(&server, Duration::from_secs(2))
        .send("919876543210", "123456", "otp_x", Duration::from_secs(60))
        .await
}

#[tokio::test]
async fn the_request_has_the_shape_wati_expects() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .and(query_param("whatsappNumber", "919876543210"))
        .and(header("authorization", "Bearer key-1"))
        .and(body_json(json!({
            "template_name": "login_otp",
            "broadcast_name": "otp_abc",
            "parameters": [{"name": "otp", "value": "123456"}],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .expect(1)
        .mount(&server)
        .await;
    let reply = client(&server, Duration::from_secs(2))
        .send("919876543210", "123456", "otp_abc", Duration::from_secs(60))
        .await;
    assert_eq!(classify(&reply), Verdict::Delivered);
}

#[tokio::test]
async fn result_false_is_permanent_with_watis_info() {
    let reply = answer_with(ResponseTemplate::new(200).set_body_json(
        json!({"result": false, "info": "Invalid WhatsApp number", "validWhatsAppNumber": false}),
    ))
    .await;
    assert_eq!(
        classify(&reply),
        Verdict::Permanent {
            reason: "WATI refused the message".into(),
            info: Some("Invalid WhatsApp number".into())
        }
    );
}

#[tokio::test]
async fn auth_and_template_errors_are_permanent() {
    for (status, reason) in [
        (401, "WATI API authentication failed"),
        (403, "WATI API authentication failed"),
        (404, "WATI template not found"),
        (400, "WATI rejected the request (HTTP 400)"),
    ] {
        let reply = answer_with(ResponseTemplate::new(status)).await;
        assert!(
            matches!(classify(&reply), Verdict::Permanent { reason: r, .. } if r == reason),
            "{status}: {reply:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_transient_and_retry_after_is_read() {
    let reply = answer_with(ResponseTemplate::new(500)).await;
    assert!(matches!(
        classify(&reply),
        Verdict::Transient {
            retry_after: None,
            ..
        }
    ));
    let reply = answer_with(ResponseTemplate::new(429).insert_header("retry-after", "7")).await;
    assert!(matches!(
        classify(&reply),
        Verdict::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    let reply = answer_with(ResponseTemplate::new(503).insert_header("retry-after", "3")).await;
    assert!(matches!(
        classify(&reply),
        Verdict::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let reply = client(&server, Duration::from_millis(200))
        .send("919876543210", "123456", "otp_x", Duration::from_secs(60))
        .await;
    assert_eq!(reply, WatiReply::Timeout);
    // The code's remaining life bounds the wait as well.
    let reply = client(&server, Duration::from_secs(10))
        .send(
            "919876543210",
            "123456",
            "otp_x",
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(reply, WatiReply::Timeout);
}

#[tokio::test]
async fn an_unreachable_wati_is_a_connection_error() {
    // A port that was just free and is now closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let wati = WatiClient::new(&WatiConfig {
        base_url: format!("http://127.0.0.1:{port}/12345"),
        api_key: SecretString::from("key-1"),
        template_name: "login_otp".into(),
        timeout: Duration::from_secs(1),
        sends_per_second: 0,
    })
    .expect("client");
    let reply = wati
        .send("919876543210", "123456", "otp_x", Duration::from_secs(60))
        .await;
    assert_eq!(reply, WatiReply::Connection);
    assert!(matches!(classify(&reply), Verdict::Transient { .. }));
}
