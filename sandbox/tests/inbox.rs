//! The inbox page (`GET /sandbox/`) and the JSON it polls (`GET /sandbox/inbox`), over
//! HTTP, with messages sent through the real v1 and v3 endpoints.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use wati_sandbox::{INBOX_MESSAGES, INBOX_PHONES, ScriptedReply};

mod common;

use common::{KEY, Served};

async fn serve() -> Served {
    // The redirect test reads the redirect itself.
    common::serve_with(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
    )
    .await
}

fn recipient(phone: &str, code: &str) -> Value {
    json!({
        "phone_number": phone,
        "local_message_id": format!("id-{phone}-{code}"),
        "custom_params": [{"name": "1", "value": code}],
    })
}

impl Served {
    async fn v3(&self, recipients: Vec<Value>) {
        let response = self
            .http
            .post(format!(
                "{}/tenant-1/api/ext/v3/messageTemplates/send",
                self.root
            ))
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "inbox-test",
                "channel_number": null,
                "recipients": recipients,
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn v1(&self, phone: &str, code: &str) {
        let response = self
            .http
            .post(format!("{}/tenant-1/api/v1/sendTemplateMessage", self.root))
            .query(&[("whatsappNumber", phone)])
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": format!("v1-{phone}"),
                "parameters": [{"name": "1", "value": code}],
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.root))
            .send()
            .await
            .expect("the sandbox answers")
    }

    async fn inbox(&self) -> Value {
        let response = self.get("/sandbox/inbox").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CACHE_CONTROL), "no-store");
        response.json().await.expect("a JSON body")
    }
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_owned()
}

/// Each listed phone with its codes, in the order the inbox gives them.
fn phones_and_codes(inbox: &Value) -> Vec<(String, Vec<String>)> {
    inbox["phones"]
        .as_array()
        .expect("phones")
        .iter()
        .map(|p| {
            let codes = p["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| m["code"].as_str().expect("a code").to_owned())
                .collect();
            (p["phone"].as_str().expect("a phone").to_owned(), codes)
        })
        .collect()
}

fn owned(expected: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    expected
        .iter()
        .map(|(phone, codes)| {
            (
                (*phone).to_owned(),
                codes.iter().map(|c| (*c).to_owned()).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_self_contained_html_under_a_strict_policy() {
    let s = serve().await;
    let response = s.get("/sandbox/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "text/html; charset=utf-8");
    let csp = header(&response, CONTENT_SECURITY_POLICY);
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for expected in [
        "default-src 'none'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&expected), "{expected} in {csp}");
    }
    assert!(!csp.contains('*') && !csp.contains("http"), "{csp}");
    // The inline script and style are allowed by their hashes, nothing else inline.
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    for directive in ["script-src 'sha256-", "style-src 'sha256-"] {
        assert!(
            directives.iter().any(|d| d.starts_with(directive)),
            "{directive}… in {csp}"
        );
    }
    assert_eq!(
        header(&response, "x-content-type-options".parse().expect("a name")),
        "nosniff"
    );
    let page = response.text().await.expect("a body");

    assert!(page.starts_with("<!doctype html>"), "{page:.80}");
    // Nothing from another host, and nothing from this one either but the JSON.
    let lower = page.to_ascii_lowercase();
    for outside in [
        "http://", "https://", "src=", "href=", "@import", "url(", "<link", "<iframe", "<img",
    ] {
        assert!(!lower.contains(outside), "the page has {outside:?}");
    }
    assert_eq!(lower.matches("<script").count(), 1, "one inline script");
    assert_eq!(lower.matches("<style").count(), 1, "one inline style sheet");
    assert!(page.contains("get('inbox'"), "polls the inbox");
    assert!(
        page.contains("get('app-events?latest='"),
        "polls the events to the app"
    );
    // Caller-given text goes in as text, never parsed as HTML.
    for parsed in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!page.contains(parsed), "the page uses {parsed}");
    }
    assert!(page.contains("No messages yet. Ask the api for a code and it shows up here."));
    // The message as the phone shows it comes from the sandbox's template registry.
    for rendered in ["message.text", "message.footer", "message.button"] {
        assert!(page.contains(rendered), "the page shows {rendered}");
    }
    // What a browser test is told to select on.
    for selector in [
        r#"[data-phone="919876543210"] li:last-child [data-code]"#,
        "'data-phone': entry.phone",
        "'data-code': code",
    ] {
        assert!(page.contains(selector), "the page has {selector}");
    }
}

#[tokio::test]
async fn the_bare_path_leads_to_the_page() {
    let s = serve().await;
    let response = s.get("/sandbox").await;
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(header(&response, LOCATION), "/sandbox/");
}

#[tokio::test]
async fn the_inbox_lists_phones_messaged_last_first_with_their_codes_oldest_first() {
    let s = serve().await;
    let empty = s.inbox().await;
    assert_eq!(empty, json!({"phones": [], "totalPhones": 0}));

    s.v3(vec![
        recipient("911111111111", "111111"),
        recipient("912222222222", "222222"),
    ])
    .await;
    s.v1("913333333333", "333333").await;
    // A second code for the first phone moves it back to the top.
    s.v1("911111111111", "111112").await;
    // A refused message shows nowhere: the phone's WhatsApp never got it.
    s.sandbox.script(
        "914444444444",
        vec![ScriptedReply {
            status: Some(500),
            ..Default::default()
        }],
    );
    let refused = s
        .http
        .post(format!("{}/tenant-1/api/v1/sendTemplateMessage", s.root))
        .query(&[("whatsappNumber", "914444444444")])
        .bearer_auth(KEY)
        .json(&json!({
            "template_name": "login_otp",
            "broadcast_name": "refused",
            "parameters": [{"name": "1", "value": "444444"}],
        }))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let inbox = s.inbox().await;
    assert_eq!(
        phones_and_codes(&inbox),
        owned(&[
            ("911111111111", &["111111", "111112"]),
            ("913333333333", &["333333"]),
            ("912222222222", &["222222"]),
        ])
    );
    assert_eq!(inbox["totalPhones"], 3);
    let first = &inbox["phones"][0];
    assert_eq!(first["totalMessages"], 2);
    assert_eq!(first["messages"][0]["callId"], 1);
    assert_eq!(
        first["messages"][0]["localMessageId"],
        "id-911111111111-111111"
    );
    assert_eq!(first["messages"][1]["callId"], 3);
    assert_eq!(first["messages"][1]["localMessageId"], Value::Null);
    assert_eq!(first["messages"][1]["broadcastName"], "v1-911111111111");
    let received: Vec<u64> = first["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["receivedAtMs"].as_u64().expect("a time"))
        .collect();
    assert!(
        received[0] > 0 && received[0] <= received[1],
        "{received:?}"
    );
    // The same as the library answers.
    assert_eq!(
        serde_json::to_value(s.sandbox.inbox()).expect("serializable"),
        inbox
    );
}

#[tokio::test]
async fn the_inbox_keeps_to_its_bounds_and_reset_empties_it() {
    let s = serve().await;
    let phones = INBOX_PHONES + 5;
    let batch = (0..phones)
        .map(|i| recipient(&format!("91{i:010}"), &format!("{i:06}")))
        .collect();
    s.v3(batch).await;
    let chatty = "919999999999";
    let sent = INBOX_MESSAGES + 3;
    for i in 0..sent {
        s.v1(chatty, &format!("{:06}", 900_000 + i)).await;
    }

    let inbox = s.inbox().await;
    let listed = phones_and_codes(&inbox);
    assert_eq!(listed.len(), INBOX_PHONES);
    assert_eq!(inbox["totalPhones"], phones + 1);
    // The chatty phone was messaged last; then the batch's, last recipient first.
    let (phone, codes) = &listed[0];
    assert_eq!(phone, chatty);
    let latest: Vec<String> = (sent - INBOX_MESSAGES..sent)
        .map(|i| format!("{:06}", 900_000 + i))
        .collect();
    assert_eq!(codes, &latest);
    assert_eq!(inbox["phones"][0]["totalMessages"], sent);
    let batch_order: Vec<String> = listed[1..].iter().map(|(p, _)| p.clone()).collect();
    let expected: Vec<String> = (0..phones)
        .rev()
        .take(INBOX_PHONES - 1)
        .map(|i| format!("91{i:010}"))
        .collect();
    assert_eq!(batch_order, expected);
    assert!(
        listed[1..].iter().all(|(_, codes)| codes.len() == 1),
        "one code each"
    );
    // Still every message on the per-phone endpoint: only the inbox is bounded.
    assert_eq!(s.sandbox.messages(chatty).len(), sent);

    let reset = s
        .http
        .post(format!("{}/sandbox/reset", s.root))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.inbox().await, json!({"phones": [], "totalPhones": 0}));

    // After a reset the inbox fills again from scratch.
    s.v1("910000000003", "123456").await;
    assert_eq!(
        phones_and_codes(&s.inbox().await),
        owned(&[("910000000003", &["123456"])])
    );
}

impl Served {
    /// Sends an SMS through Twilio's Messages endpoint, with the default account.
    async fn sms(&self, to: &str, body: &str) {
        let form = reqwest::Url::parse_with_params(
            "http://form.invalid/",
            &[("To", to), ("From", "+15005550006"), ("Body", body)],
        )
        .expect("a form")
        .query()
        .unwrap_or_default()
        .to_owned();
        let response = self
            .http
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.root,
                wati_sandbox::DEFAULT_TWILIO_ACCOUNT_SID
            ))
            .basic_auth(
                wati_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
                Some(wati_sandbox::DEFAULT_TWILIO_AUTH_TOKEN),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

/// The text between `open` and the next `close` in `page`.
fn between<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page.find(open).expect("the opening tag") + open.len();
    let end = start + page[start..].find(close).expect("the closing tag");
    &page[start..end]
}

fn sha256_source(text: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

#[tokio::test]
async fn the_page_draws_sms_in_bubbles_of_their_own_under_its_hashed_policy() {
    let s = serve().await;
    let response = s.get("/sandbox/").await;
    let csp = header(&response, CONTENT_SECURITY_POLICY);
    let page = response.text().await.expect("a body");
    // The served script and style are exactly what the policy's hashes allow.
    let script = between(&page, "<script>", "</script>");
    let style = between(&page, "<style>", "</style>");
    assert!(
        csp.contains(&format!("script-src {}", sha256_source(script))),
        "{csp}"
    );
    assert!(
        csp.contains(&format!("style-src {}", sha256_source(style))),
        "{csp}"
    );
    // An SMS is drawn apart from a WhatsApp message: its own bubble, an "SMS" label, its
    // body as sent (in a text node), and no code to copy.
    for drawn in [
        "message.channel === 'sms'",
        "class: 'bubble sms'",
        "'data-channel': 'sms'",
        "'data-channel': 'whatsapp'",
        "class: 'label' }, 'SMS'",
        "'data-sms-body': ''",
        "String(message.text || '')",
    ] {
        assert!(script.contains(drawn), "the script has {drawn}");
    }
    for look in [
        "li.bubble.sms {",
        "background: var(--sms)",
        "li.bubble.sms .label",
    ] {
        assert!(style.contains(look), "the style has {look}");
    }
    assert!(page.contains(r#"[data-phone="919876543210"] [data-channel="sms"] [data-sms-body]"#));
    assert!(page.contains("SMS through Twilio"));
}

#[tokio::test]
async fn an_sms_joins_its_phones_conversation_next_to_the_whatsapp_messages() {
    let s = serve().await;
    s.v1("447700900123", "111111").await;
    s.v1("919876543210", "222222").await;
    s.sms(
        "+447700900123",
        "Your code is 333333\n\n@example.com #333333",
    )
    .await;

    let inbox = s.inbox().await;
    // The SMS made its phone the one messaged last.
    assert_eq!(inbox["phones"][0]["phone"], "447700900123");
    assert_eq!(inbox["phones"][0]["totalMessages"], 2);
    assert_eq!(inbox["totalPhones"], 2);
    let messages = inbox["phones"][0]["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["channel"], "whatsapp");
    assert_eq!(messages[0]["code"], "111111");
    assert_eq!(messages[1]["channel"], "sms");
    assert_eq!(
        messages[1]["text"],
        "Your code is 333333\n\n@example.com #333333"
    );
    assert_eq!(messages[1]["from"], "+15005550006");
    assert!(
        messages[1]["sid"]
            .as_str()
            .is_some_and(|sid| sid.starts_with("SM"))
    );
    // WhatsApp's own readers still see only WhatsApp.
    assert_eq!(s.sandbox.messages("447700900123").len(), 1);
    let last_code: Value = s
        .get("/sandbox/last-code/447700900123")
        .await
        .json()
        .await
        .expect("a JSON body");
    assert_eq!(last_code["code"], "111111");
    assert_eq!(s.sandbox.sms_messages("447700900123").len(), 1);
}
