//! The WATI client against a real HTTP server (wiremock): the request shapes of v3 and
//! v1, the tenant path, the auth header, and what each kind of answer means for each
//! recipient; no redirect is followed and no oversized answer is read.

use std::time::Duration;

use otp_shared::budget::WatiApiVersion;
use otp_shared::phone::PhoneNumber;
use otp_shared::seal::{CodeSealer, PlainCode};
use otp_worker::classify::{Provider, Refusal, Trouble, Verdict, classify};
use otp_worker::config::{Preflight, WatiConfig};
use otp_worker::templates::Templates;
use otp_worker::wati::answer::WatiAnswer;
use otp_worker::wati::{Recipient, WatiClient};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const V1_PATH: &str = "/12345/api/v1/sendTemplateMessage";
const V3_PATH: &str = "/api/ext/v3/messageTemplates/send";

/// A recipient with its own phone and code.
struct Send {
    request_id: Uuid,
    phone: PhoneNumber,
    code: PlainCode,
}

fn send(phone: &str, code: &str) -> Send {
    let phone = PhoneNumber::from_e164_digits(phone).expect("phone");
    // A plain code exists only as opened from a sealed one.
    let sealer = CodeSealer::new(b"0123456789abcdef0123456789abcdef");
    let sealed = sealer.seal(&phone, code).expect("seal");
    Send {
        request_id: Uuid::new_v4(),
        code: sealer.open(&phone, &sealed).expect("open"),
        phone,
    }
}

fn recipients(sends: &[Send]) -> Vec<Recipient<'_>> {
    sends
        .iter()
        .map(|s| Recipient {
            request_id: s.request_id,
            phone: &s.phone,
            code: &s.code,
        })
        .collect()
}

fn verdicts(answer: &WatiAnswer, sends: &[Send]) -> Vec<Verdict> {
    let named: Vec<(Uuid, &PhoneNumber)> = sends.iter().map(|s| (s.request_id, &s.phone)).collect();
    classify(answer, &named)
}

fn config(base_url: String, version: WatiApiVersion, timeout: Duration) -> WatiConfig {
    WatiConfig {
        base_url,
        api_key: SecretString::from("key-1"),
        templates: Templates::new("login_otp", "1", "").expect("templates"),
        channel_numbers: vec![None],
        timeout,
        api_version: version,
        preflight: Preflight::On,
        recheck_every: None,
    }
}

fn v1_client(server: &MockServer, timeout: Duration) -> WatiClient {
    let base = format!("{}/12345", server.uri());
    WatiClient::new(&config(base, WatiApiVersion::V1, timeout)).expect("client")
}

fn v3_client(server: &MockServer) -> WatiClient {
    WatiClient::new(&config(
        server.uri(),
        WatiApiVersion::V3,
        Duration::from_secs(2),
    ))
    .expect("client")
}

/// One v1 call to a server answering `template`.
async fn v1_answer(template: ResponseTemplate) -> (WatiAnswer, Send) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V1_PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    let one = send("919876543210", "123456");
    let answer = v1_client(&server, Duration::from_secs(2))
        .send(
            "login_otp",
            &recipients(std::slice::from_ref(&one)),
            None,
            Duration::from_secs(60),
        )
        .await;
    (answer, one)
}

#[tokio::test]
async fn a_v3_call_carries_every_recipient_with_its_own_code_and_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V3_PATH))
        .and(header("authorization", "Bearer key-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .expect(1)
        .mount(&server)
        .await;
    let sends = [
        send("919876543210", "111111"),
        send("14155552671", "222222"),
    ];
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        verdicts(&answer, &sends),
        [Verdict::Accepted, Verdict::Accepted]
    );
    let requests: Vec<Request> = server.received_requests().await.expect("recorded");
    let body: Value = requests[0].body_json().expect("json");
    assert_eq!(body["template_name"], "login_otp");
    assert_eq!(body["channel_number"], Value::Null);
    assert!(
        body["broadcast_name"]
            .as_str()
            .is_some_and(|b| b.starts_with("otp_"))
    );
    assert_eq!(
        body["recipients"],
        json!([
            {"phone_number": "919876543210", "local_message_id": sends[0].request_id.to_string(),
             "custom_params": [{"name": "1", "value": "111111"}]},
            {"phone_number": "14155552671", "local_message_id": sends[1].request_id.to_string(),
             "custom_params": [{"name": "1", "value": "222222"}]},
        ])
    );
}

#[tokio::test]
async fn a_v3_answer_decides_each_recipient_by_its_receivers_entry() {
    let server = MockServer::start().await;
    let sends = [
        send("919876543210", "111111"),
        send("14155552671", "222222"),
        send("447700900123", "333333"),
        send("61412345678", "444444"),
    ];
    let entry = |s: &Send, valid: bool, errors: Value| {
        json!({"localMessageId": s.request_id.to_string(), "waId": s.phone.as_str(),
               "isValidWhatsAppNumber": valid, "errors": errors})
    };
    Mock::given(method("POST"))
        .and(path(V3_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "result": true, "error": null, "templateName": "login_otp",
            "receivers": [
                entry(&sends[0], true, json!([])),
                entry(&sends[1], false, json!([])),
                entry(&sends[2], true, json!(["Template param otp missing"])),
            ],
            "parameters": []
        })))
        .mount(&server)
        .await;
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        verdicts(&answer, &sends),
        [
            Verdict::Accepted,
            Verdict::Permanent {
                refusal: Refusal::InvalidNumber,
                info: None
            },
            Verdict::Permanent {
                refusal: Refusal::RecipientError,
                info: Some("Template param otp missing".into())
            },
            Verdict::Permanent {
                refusal: Refusal::NotListed,
                info: None
            },
        ]
    );
}

#[tokio::test]
async fn a_v3_success_false_refuses_every_recipient_with_watis_words() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V3_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": false, "error": "Template is paused"})),
        )
        .mount(&server)
        .await;
    let sends = [
        send("919876543210", "111111"),
        send("14155552671", "222222"),
    ];
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    let refused = Verdict::Permanent {
        refusal: Refusal::Refused,
        info: Some("Template is paused".into()),
    };
    assert_eq!(verdicts(&answer, &sends), [refused.clone(), refused]);
}

#[tokio::test]
async fn the_v1_request_has_the_shape_wati_expects() {
    let server = MockServer::start().await;
    let one = send("919876543210", "123456");
    Mock::given(method("POST"))
        .and(path(V1_PATH))
        .and(query_param("whatsappNumber", "919876543210"))
        .and(header("authorization", "Bearer key-1"))
        .and(body_json(json!({
            "template_name": "login_otp",
            "broadcast_name": format!("otp_{}", one.request_id.simple()),
            "parameters": [{"name": "1", "value": "123456"}],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .expect(1)
        .mount(&server)
        .await;
    let answer = v1_client(&server, Duration::from_secs(2))
        .send(
            "login_otp",
            &recipients(std::slice::from_ref(&one)),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(verdicts(&answer, &[one]), [Verdict::Accepted]);
}

/// A client whose templates carry the code in `param`, sending from `channel_number`.
fn client_with(
    server: &MockServer,
    version: WatiApiVersion,
    param: &str,
    channel_number: Option<&str>,
) -> WatiClient {
    let base = match version {
        WatiApiVersion::V1 => format!("{}/12345", server.uri()),
        WatiApiVersion::V3 => server.uri(),
    };
    let mut config = config(base, version, Duration::from_secs(2));
    config.templates = Templates::new("login_otp", param, "").expect("templates");
    config.channel_numbers = vec![channel_number.map(str::to_owned)];
    WatiClient::new(&config).expect("client")
}

#[tokio::test]
async fn wati_template_param_names_the_parameter_in_v1_and_v3_and_v1_sends_from_the_channel() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .mount(&server)
        .await;
    let one = send("919876543210", "123456");
    for version in [WatiApiVersion::V1, WatiApiVersion::V3] {
        client_with(&server, version, "otp_code", Some("15550001111"))
            .send(
                "login_otp_pt",
                &recipients(std::slice::from_ref(&one)),
                Some("15550001111"),
                Duration::from_secs(60),
            )
            .await;
    }
    let requests = server.received_requests().await.expect("recorded");
    let v1: Value = requests[0].body_json().expect("json");
    assert_eq!(requests[0].url.path(), V1_PATH);
    assert_eq!(v1["template_name"], "login_otp_pt");
    assert_eq!(v1["channel_number"], "15550001111");
    assert_eq!(
        v1["parameters"],
        json!([{"name": "otp_code", "value": "123456"}])
    );
    let v3: Value = requests[1].body_json().expect("json");
    assert_eq!(requests[1].url.path(), V3_PATH);
    assert_eq!(v3["template_name"], "login_otp_pt");
    assert_eq!(v3["channel_number"], "15550001111");
    assert_eq!(
        v3["recipients"][0]["custom_params"],
        json!([{"name": "otp_code", "value": "123456"}])
    );
}

#[tokio::test]
async fn without_a_channel_number_v1_leaves_the_field_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .mount(&server)
        .await;
    let one = send("919876543210", "123456");
    client_with(&server, WatiApiVersion::V1, "1", None)
        .send(
            "login_otp",
            &recipients(std::slice::from_ref(&one)),
            None,
            Duration::from_secs(60),
        )
        .await;
    let requests = server.received_requests().await.expect("recorded");
    let v1: Value = requests[0].body_json().expect("json");
    assert!(v1.get("channel_number").is_none(), "{v1}");
}

#[tokio::test]
async fn the_documented_v3_answer_decides_each_recipient_by_its_recipients_entry() {
    // docs.wati.io (messagetemplate_sendtemplatemessages): `{success, broadcast_id, error,
    // recipients[{local_message_id, phone_number, errors}]}`; "even when success is true,
    // recipients can contain errors or requested recipients can be absent".
    let server = MockServer::start().await;
    let sends = [
        send("919876543210", "111111"),
        send("14155552671", "222222"),
        send("447700900123", "333333"),
    ];
    Mock::given(method("POST"))
        .and(path(V3_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "success": true, "broadcast_id": "b-1", "error": null,
            "recipients": [
                {"local_message_id": sends[0].request_id.to_string(), "phone_number": "919876543210", "errors": []},
                {"local_message_id": sends[1].request_id.to_string(), "phone_number": "14155552671",
                 "errors": ["Check your template, it cannot have typos or blank text"]},
            ],
        })))
        .mount(&server)
        .await;
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        verdicts(&answer, &sends),
        [
            Verdict::Accepted,
            Verdict::Permanent {
                refusal: Refusal::RecipientError,
                info: Some("Check your template, it cannot have typos or blank text".into())
            },
            Verdict::Permanent {
                refusal: Refusal::NotListed,
                info: None
            },
        ]
    );
}

/// The template list answers of a v3 tenant: two pages, as WATI pages them.
async fn v3_template_pages(server: &MockServer) {
    let template = |i: usize| {
        json!({"name": format!("t{i}"), "category": "MARKETING", "status": "APPROVED",
               "custom_params": [], "language_option": {"key": "English", "value": "en", "text": "English"}})
    };
    let first: Vec<Value> = (0..100).map(template).collect();
    Mock::given(method("GET"))
        .and(path("/api/ext/v3/messageTemplates"))
        .and(query_param("page_number", "1"))
        .and(query_param("page_size", "100"))
        .and(header("authorization", "Bearer key-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"templates": first, "page_number": 1, "page_size": 100, "total": 101}),
        ))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/ext/v3/messageTemplates"))
        .and(query_param("page_number", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "templates": [{"name": "login_otp", "category": "AUTHENTICATION", "status": "APPROVED",
                           "custom_params": [{"name": "1", "value": "123456"}],
                           "language_option": {"key": "English (US)", "value": "en_US", "text": "English (US)"}}],
            "page_number": 2, "page_size": 100, "total": 101
        })))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_template_list_is_read_page_by_page() {
    let server = MockServer::start().await;
    v3_template_pages(&server).await;
    let listed = v3_client(&server)
        .list_templates(None)
        .await
        .expect("a list");
    assert_eq!(listed.len(), 101);
    let login = listed.last().expect("the last");
    assert_eq!(login.name, "login_otp");
    assert_eq!(login.params, ["1"]);
    assert_eq!(login.language.as_deref(), Some("en_US"));
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(2));
}

#[tokio::test]
async fn listing_failures_say_what_to_fix() {
    for (status, body, expected, transient) in [
        (
            401,
            None,
            "WATI refused the API key (HTTP 401): check WATI_API_KEY",
            false,
        ),
        (
            403,
            Some(json!({"code": 403, "message": "Forbidden", "timestamp": "2026-12-05T00:00:00Z"})),
            "WATI would not list the templates (HTTP 403): give the key the template-read scope (messagetemplatev3:read), or set WATI_PREFLIGHT=off",
            false,
        ),
        (
            503,
            None,
            "WATI could not list the templates now (HTTP 503)",
            true,
        ),
        (
            200,
            Some(json!({"success": true})),
            "WATI's template list could not be read (not the JSON WATI documents)",
            false,
        ),
    ] {
        let server = MockServer::start().await;
        let mut answer = ResponseTemplate::new(status);
        if let Some(body) = body {
            answer = answer.set_body_json(body);
        }
        Mock::given(method("GET"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let error = v3_client(&server)
            .list_templates(None)
            .await
            .expect_err("a failure");
        assert_eq!(error.to_string(), expected);
        assert_eq!(error.is_transient(), transient, "{status}");
    }
}

#[tokio::test]
async fn the_check_reads_the_template_list_of_every_number_of_the_pool() {
    let server = MockServer::start().await;
    for number in ["15550001111", "15550002222"] {
        Mock::given(method("GET"))
            .and(path("/api/ext/v3/messageTemplates"))
            .and(query_param("channel", number))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"templates": [], "total": 0})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/12345/api/v1/getMessageTemplates"))
            .and(query_param("channelPhoneNumber", number))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"messageTemplates": []})))
            .expect(1)
            .mount(&server)
            .await;
    }
    for version in [WatiApiVersion::V3, WatiApiVersion::V1] {
        let base = match version {
            WatiApiVersion::V1 => format!("{}/12345", server.uri()),
            WatiApiVersion::V3 => server.uri(),
        };
        let mut config = config(base, version, Duration::from_secs(2));
        config.channel_numbers = vec![Some("15550001111".into()), Some("15550002222".into())];
        let client = WatiClient::new(&config).expect("client");
        let findings = otp_worker::template_check::inspect(&client, &config.templates)
            .await
            .expect("both lists");
        let missing_on: Vec<Option<&str>> = findings.iter().map(|f| f.channel.as_deref()).collect();
        assert_eq!(
            missing_on,
            [Some("15550001111"), Some("15550002222")],
            "{version:?}"
        );
        assert_eq!(
            otp_worker::template_check::problems_line(&findings).as_deref(),
            Some(
                "WATI template \"login_otp\" (default) on 15550001111: not in WATI's template list; \
                 WATI template \"login_otp\" (default) on 15550002222: not in WATI's template list"
            )
        );
    }
}

#[tokio::test]
async fn a_full_page_is_followed_by_the_next_though_an_entry_has_no_name() {
    let server = MockServer::start().await;
    let mut first: Vec<Value> = (0..99)
        .map(|i| json!({"name": format!("t{i}"), "status": "APPROVED"}))
        .collect();
    first.push(json!({"status": "APPROVED"}));
    Mock::given(method("GET"))
        .and(query_param("page_number", "1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"templates": first, "total": 101})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(query_param("page_number", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"templates": [{"name": "login_otp", "status": "APPROVED"}], "total": 101}),
        ))
        .mount(&server)
        .await;
    let listed = v3_client(&server)
        .list_templates(None)
        .await
        .expect("a list");
    assert_eq!(listed.len(), 100);
    assert_eq!(listed.last().map(|t| t.name.as_str()), Some("login_otp"));
}

#[tokio::test]
async fn a_v1_tenant_lists_its_templates_under_its_tenant_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/12345/api/v1/getMessageTemplates"))
        .and(query_param("pageNumber", "1"))
        .and(query_param("pageSize", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "result": "success",
            "messageTemplates": [{"elementName": "login_otp", "category": "AUTHENTICATION",
                "status": "APPROVED", "language": {"key": "English", "value": "en", "text": "English"},
                "customParams": [{"paramName": "1", "paramValue": "123456"}]}],
            "link": {"total": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let listed = v1_client(&server, Duration::from_secs(2))
        .list_templates(None)
        .await
        .expect("a list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "login_otp");
    assert_eq!(listed[0].params, ["1"]);
}

#[tokio::test]
async fn result_false_is_permanent_with_watis_info() {
    let (answer, one) = v1_answer(ResponseTemplate::new(200).set_body_json(
        json!({"result": false, "info": "Invalid WhatsApp number", "validWhatsAppNumber": false}),
    ))
    .await;
    assert_eq!(
        verdicts(&answer, &[one]),
        [Verdict::Permanent {
            refusal: Refusal::Refused,
            info: Some("Invalid WhatsApp number".into())
        }]
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
        let (answer, one) = v1_answer(ResponseTemplate::new(status)).await;
        let verdict = verdicts(&answer, &[one]).remove(0);
        assert!(
            matches!(&verdict, Verdict::Permanent { refusal, .. } if refusal.reason(Provider::Wati) == reason),
            "{status}: {verdict:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_transient_and_retry_after_is_read() {
    let transient = |answer: &WatiAnswer, one: Send| verdicts(answer, &[one]).remove(0);
    let (answer, one) = v1_answer(ResponseTemplate::new(500)).await;
    assert_eq!(
        transient(&answer, one),
        Verdict::Transient {
            trouble: Trouble::ServerError { status: 500 },
            retry_after: None
        }
    );
    let (answer, one) =
        v1_answer(ResponseTemplate::new(429).insert_header("retry-after", "7")).await;
    assert!(matches!(
        transient(&answer, one),
        Verdict::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    let (answer, one) =
        v1_answer(ResponseTemplate::new(503).insert_header("retry-after", "3")).await;
    assert!(matches!(
        transient(&answer, one),
        Verdict::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn a_redirect_is_never_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": true})))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let location = format!("{}{V3_PATH}", elsewhere.uri());
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", location.as_str()))
        .mount(&server)
        .await;
    let sends = [send("919876543210", "111111")];
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        verdicts(&answer, &sends),
        [Verdict::Permanent {
            refusal: Refusal::Redirected { status: 307 },
            info: None
        }]
    );
}

#[tokio::test]
async fn an_answer_longer_than_a_batch_can_need_is_not_read() {
    let server = MockServer::start().await;
    // 64 KiB and 256 bytes per recipient are allowed; this is 200 KiB for one recipient.
    let padding = "x".repeat(200 * 1024);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"result": true, "info": padding})),
        )
        .mount(&server)
        .await;
    let sends = [send("919876543210", "111111")];
    let answer = v3_client(&server)
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert!(matches!(
        answer,
        WatiAnswer::Http {
            status: 200,
            body: None,
            ..
        }
    ));
    assert_eq!(
        verdicts(&answer, &sends),
        [Verdict::Transient {
            trouble: Trouble::Unreadable,
            retry_after: None
        }]
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let one = send("919876543210", "123456");
    let answer = v1_client(&server, Duration::from_millis(200))
        .send(
            "login_otp",
            &recipients(std::slice::from_ref(&one)),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(answer, WatiAnswer::Timeout);
    // The code's remaining life bounds the wait as well.
    let answer = v1_client(&server, Duration::from_secs(10))
        .send(
            "login_otp",
            &recipients(std::slice::from_ref(&one)),
            None,
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(answer, WatiAnswer::Timeout);
}

#[tokio::test]
async fn an_unreachable_wati_is_a_connection_error() {
    // A port that was just free and is now closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let wati =
        WatiClient::new(&config(base, WatiApiVersion::V3, Duration::from_secs(1))).expect("client");
    let sends = [send("919876543210", "123456")];
    let answer = wati
        .send(
            "login_otp",
            &recipients(&sends),
            None,
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(answer, WatiAnswer::Connection);
    assert!(matches!(
        verdicts(&answer, &sends)[0],
        Verdict::Transient {
            trouble: Trouble::Unreachable,
            ..
        }
    ));
}
