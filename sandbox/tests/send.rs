//! The v1 and v3 send endpoints and WATI's plan limit, over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{AnswerShape, Api, Sandbox, SandboxConfig, ScriptedReply};

const KEY: &str = "test-key";

struct Served {
    sandbox: Sandbox,
    base: String,
    http: reqwest::Client,
}

async fn serve(calls_per_10s: u32) -> Served {
    let sandbox = Sandbox::new(SandboxConfig {
        api_key: KEY.into(),
        calls_per_10s,
        ..SandboxConfig::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let base = format!(
        "http://{}/tenant-1",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(wati_sandbox::serve(
        sandbox.clone(),
        listener,
        std::future::pending(),
    ));
    Served {
        sandbox,
        base,
        http: reqwest::Client::new(),
    }
}

fn recipient(phone: &str, code: &str) -> Value {
    json!({
        "phone_number": phone,
        "local_message_id": format!("id-{phone}"),
        "custom_params": [{"name": "1", "value": code}],
    })
}

fn batch(broadcast: &str, recipients: Vec<Value>) -> Value {
    json!({
        "template_name": "login_otp",
        "broadcast_name": broadcast,
        "channel_number": null,
        "recipients": recipients,
    })
}

impl Served {
    async fn v3(&self, body: &Value) -> (StatusCode, Option<u64>, Value) {
        let response = self
            .http
            .post(format!("{}/api/ext/v3/messageTemplates/send", self.base))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("the sandbox answers");
        answer(response).await
    }

    async fn v1(&self, phone: &str, code: &str) -> (StatusCode, Option<u64>, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/sendTemplateMessage", self.base))
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
        answer(response).await
    }

    async fn get(&self, path: &str) -> Value {
        let root = self.base.trim_end_matches("/tenant-1");
        self.http
            .get(format!("{root}{path}"))
            .send()
            .await
            .expect("the sandbox answers")
            .json()
            .await
            .expect("a JSON body")
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Option<u64>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.json().await.expect("a JSON body");
    (status, retry_after, body)
}

#[tokio::test]
async fn a_batch_answers_each_recipient_and_sends_only_to_valid_error_free_ones() {
    let s = serve(0).await;
    s.sandbox.script(
        "911111111111",
        vec![ScriptedReply {
            valid_whatsapp_number: Some(false),
            ..Default::default()
        }],
    );
    s.sandbox.script(
        "912222222222",
        vec![ScriptedReply {
            errors: Some(vec!["Contact blocked".into()]),
            ..Default::default()
        }],
    );
    let (status, _, body) = s
        .v3(&batch(
            "b-1",
            vec![
                recipient("911111111111", "111111"),
                recipient("912222222222", "222222"),
                recipient("913333333333", "333333"),
            ],
        ))
        .await;

    assert_eq!(status, StatusCode::OK);
    // The shape docs.wati.io documents for v3.
    assert_eq!(body["success"], true);
    assert_eq!(body["error"], Value::Null);
    assert!(body["broadcast_id"].is_string(), "{body}");
    assert_eq!(
        body["recipients"],
        json!([
            {"local_message_id": "id-911111111111", "phone_number": "911111111111",
             "errors": ["Invalid WhatsApp number"]},
            {"local_message_id": "id-912222222222", "phone_number": "912222222222",
             "errors": ["Contact blocked"]},
            {"local_message_id": "id-913333333333", "phone_number": "913333333333",
             "errors": []},
        ])
    );
    assert_eq!(s.sandbox.accepted(), 1);
    assert!(s.sandbox.messages("911111111111").is_empty());
    assert!(s.sandbox.messages("912222222222").is_empty());
    let sent = s.sandbox.messages("913333333333");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].code, "333333");
    assert_eq!(sent[0].broadcast_name, "b-1");
    assert_eq!(sent[0].local_message_id.as_deref(), Some("id-913333333333"));
    assert_eq!(sent[0].call_id, 1);
    for phone in ["911111111111", "912222222222", "913333333333"] {
        let calls = s.sandbox.calls(phone);
        assert_eq!(calls.len(), 1, "{phone} has one call entry");
        assert_eq!(
            (calls[0].api, calls[0].status, calls[0].call_id),
            (Api::V3, 200, 1)
        );
    }
    let log = s.sandbox.call_log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].recipients,
        ["911111111111", "912222222222", "913333333333"]
    );
}

#[tokio::test]
async fn an_omitted_recipient_is_left_out_of_receivers_and_not_sent() {
    let s = serve(0).await;
    s.sandbox.script(
        "914444444444",
        vec![ScriptedReply {
            omit: Some(true),
            ..Default::default()
        }],
    );
    let (status, _, body) = s
        .v3(&batch(
            "b-omit",
            vec![
                recipient("914444444444", "444444"),
                recipient("915555555555", "555555"),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let wa_ids: Vec<&str> = body["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .filter_map(|r| r["phone_number"].as_str())
        .collect();
    assert_eq!(wa_ids, ["915555555555"]);
    assert!(s.sandbox.messages("914444444444").is_empty());
    assert_eq!(s.sandbox.accepted(), 1);
}

#[tokio::test]
async fn a_scripted_500_for_one_recipient_fails_the_whole_call_and_sends_nothing() {
    let s = serve(0).await;
    s.sandbox.script(
        "912222222222",
        vec![ScriptedReply {
            status: Some(500),
            retry_after: Some(3),
            ..Default::default()
        }],
    );
    let (status, retry_after, body) = s
        .v3(&batch(
            "b-500",
            vec![
                recipient("911111111111", "111111"),
                recipient("912222222222", "222222"),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(retry_after, Some(3));
    assert_eq!(
        (&body["code"], &body["message"]),
        (&json!(500), &json!("Request failed"))
    );
    assert_eq!(s.sandbox.accepted(), 0);
    assert!(s.sandbox.messages("911111111111").is_empty());
    assert_eq!(s.sandbox.calls("911111111111")[0].status, 500);
    // The script was used up: the retry goes through.
    let (status, _, _) = s
        .v3(&batch(
            "b-500-again",
            vec![recipient("912222222222", "222222")],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.sandbox.messages("912222222222").len(), 1);
}

#[tokio::test]
async fn a_scripted_false_result_refuses_the_whole_call_with_200() {
    let s = serve(0).await;
    s.sandbox.script(
        "911111111111",
        vec![ScriptedReply {
            result: Some(false),
            info: Some("Insufficient credit".into()),
            ..Default::default()
        }],
    );
    let (status, _, body) = s
        .v3(&batch(
            "b-refused",
            vec![
                recipient("911111111111", "111111"),
                recipient("912222222222", "222222"),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"success": false, "broadcast_id": null, "error": "Insufficient credit", "recipients": []})
    );
    assert_eq!(s.sandbox.accepted(), 0);
}

#[tokio::test]
async fn the_success_shape_answers_without_receivers_and_sends_to_everyone() {
    let s = serve(0).await;
    s.sandbox.script(
        "911111111111",
        vec![ScriptedReply {
            valid_whatsapp_number: Some(false),
            ..Default::default()
        }],
    );
    s.sandbox.script(
        "912222222222",
        vec![ScriptedReply {
            shape: Some(AnswerShape::Success),
            ..Default::default()
        }],
    );
    let (status, _, body) = s
        .v3(&batch(
            "b-success",
            vec![
                recipient("911111111111", "111111"),
                recipient("912222222222", "222222"),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": true, "error": null}));
    assert_eq!(s.sandbox.accepted(), 2);
    assert_eq!(s.sandbox.messages("911111111111")[0].code, "111111");
}

#[tokio::test]
async fn scripts_with_the_new_fields_can_be_queued_over_http() {
    let s = serve(0).await;
    let root = s.base.trim_end_matches("/tenant-1");
    let response = s
        .http
        .post(format!("{root}/sandbox/script"))
        .json(&json!({"phone": "911111111111", "replies": [
            {"validWhatsAppNumber": false},
            {"errors": ["x"], "omit": false},
            {"shape": "success", "delayMs": 1},
        ]}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let one = || batch("b", vec![recipient("911111111111", "111111")]);
    let (_, _, first) = s.v3(&one()).await;
    assert_eq!(
        first["recipients"][0]["errors"],
        json!(["Invalid WhatsApp number"])
    );
    let (_, _, second) = s.v3(&one()).await;
    assert_eq!(second["recipients"][0]["errors"], json!(["x"]));
    let (_, _, third) = s.v3(&one()).await;
    assert_eq!(third, json!({"success": true, "error": null}));
}

#[tokio::test]
async fn the_plan_limit_answers_429_once_v1_and_v3_calls_fill_the_window() {
    let s = serve(3).await;
    assert_eq!(s.v1("911111111111", "111111").await.0, StatusCode::OK);
    let one = |phone: &str| batch("b", vec![recipient(phone, "222222")]);
    assert_eq!(s.v3(&one("912222222222")).await.0, StatusCode::OK);
    assert_eq!(s.v1("913333333333", "333333").await.0, StatusCode::OK);

    s.sandbox.script(
        "914444444444",
        vec![ScriptedReply {
            status: Some(500),
            ..Default::default()
        }],
    );
    let (status, retry_after, body) = s.v3(&one("914444444444")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(body, json!({"result": false, "info": "Too many requests"}));
    let (status, _, _) = s.v1("914444444444", "444444").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(s.sandbox.rate_limited(), 2);
    assert_eq!(s.sandbox.accepted(), 3);
    assert!(s.sandbox.calls("914444444444").is_empty());
    assert_eq!(s.sandbox.call_log().len(), 3);
    let stats = s.get("/sandbox/stats").await;
    assert_eq!(
        stats,
        json!({"accepted": 3, "calls": 3, "rateLimited": 2,
               "receiptsPosted": 0, "receiptsFailed": 0,
               "smsCalls": 0, "smsAccepted": 0,
               "smsCallbacksPosted": 0, "smsCallbacksFailed": 0,
               "appEventsReceived": 0, "appEventsVerified": 0,
               "numbers": {"default": {"accepted": 3, "delivered": 3, "failed": {},
                                       "noReceipt": 0}}})
    );

    // Reset empties the window along with everything else.
    s.sandbox.reset();
    assert_eq!(s.sandbox.rate_limited(), 0);
    assert_eq!(s.v3(&one("914444444444")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_fourth_call_in_ten_seconds_is_refused_once_three_are_allowed() {
    let s = serve(3).await;
    for phone in ["911111111111", "912222222222", "913333333333"] {
        let (status, _, _) = s.v3(&batch("b", vec![recipient(phone, "123456")])).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, retry_after, _) = s.v1("914444444444", "444444").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|secs| (1..=10).contains(&secs)));
    assert_eq!(s.sandbox.rate_limited(), 1);
}

#[tokio::test]
async fn a_call_without_recipients_is_refused_with_400_and_logged() {
    let s = serve(0).await;
    let (status, _, body) = s.v3(&batch("b-empty", vec![])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|i| i.contains("recipients"))
    );

    let mut missing = batch("b-missing", vec![]);
    missing
        .as_object_mut()
        .expect("an object")
        .remove("recipients");
    assert_eq!(s.v3(&missing).await.0, StatusCode::BAD_REQUEST);

    let log = s.get("/sandbox/call-log").await;
    let statuses: Vec<&Value> = log["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| &c["status"])
        .collect();
    assert_eq!(statuses, [400, 400]);
    assert_eq!(log["calls"][0]["api"], "v3");
    assert_eq!(log["calls"][1]["callId"], 2);
}

#[tokio::test]
async fn a_recipient_whose_parameter_names_do_not_match_is_refused_on_its_own() {
    let s = serve(0).await;
    let (status, _, body) = s
        .v3(&batch(
            "b-mismatch",
            vec![
                recipient("911111111111", "111111"),
                json!({
                    "phone_number": "912222222222",
                    "local_message_id": "id-912222222222",
                    "custom_params": [{"name": "name", "value": "A"}],
                }),
                json!({
                    "phone_number": "913333333333",
                    "local_message_id": "id-913333333333",
                    "custom_params": [{"name": "1", "value": " "}],
                }),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let errors: Vec<&Value> = body["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| &r["errors"])
        .collect();
    let check = json!(["Check your template, it cannot have typos or blank text"]);
    assert_eq!(errors, [&json!([]), &check, &check]);
    assert_eq!(s.sandbox.accepted(), 1);
    assert!(s.sandbox.messages("912222222222").is_empty());
    assert!(s.sandbox.messages("913333333333").is_empty());
}

#[tokio::test]
async fn the_old_otp_parameter_fails_against_an_authentication_template_as_wati_fails_it() {
    let s = serve(0).await;
    // v1: WATI's reported answer to a parameter it cannot match.
    let response = s
        .http
        .post(format!("{}/api/v1/sendTemplateMessage", s.base))
        .query(&[("whatsappNumber", "911111111111")])
        .bearer_auth(KEY)
        .json(
            &json!({"template_name": "login_otp", "broadcast_name": "old",
                      "parameters": [{"name": "otp", "value": "123456"}]}),
        )
        .send()
        .await
        .expect("the sandbox answers");
    let (status, _, body) = answer(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"result": false, "info": "Check your template, it cannot have typos or blank text"})
    );
    // v3: the recipient is refused with the same words.
    let old = json!({"phone_number": "912222222222", "local_message_id": "x",
                     "custom_params": [{"name": "otp", "value": "123456"}]});
    let (status, _, body) = s.v3(&batch("old", vec![old])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["recipients"][0]["errors"],
        json!(["Check your template, it cannot have typos or blank text"])
    );
    assert_eq!(s.sandbox.accepted(), 0);
}

#[tokio::test]
async fn an_unapproved_template_is_refused_by_both_apis_with_its_status() {
    let s = serve(0).await;
    s.sandbox.set_templates(vec![wati_sandbox::Template {
        status: "PAUSED".into(),
        ..wati_sandbox::Template::authentication("login_otp", "en_US")
    }]);
    let (status, _, body) = s.v1("911111111111", "111111").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"result": false, "info": "Template login_otp is not approved (status PAUSED)"})
    );
    let (status, _, body) = s
        .v3(&batch("b", vec![recipient("912222222222", "222222")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], false);
    assert_eq!(
        body["error"],
        "Template login_otp is not approved (status PAUSED)"
    );
    assert_eq!(s.sandbox.accepted(), 0);
    let log = s.sandbox.call_log();
    assert_eq!(log.len(), 2, "both calls are logged: {log:?}");
    assert!(log.iter().all(|c| c.template_name == "login_otp"));
}

#[tokio::test]
async fn each_message_is_shown_as_its_template_renders_it() {
    let s = serve(0).await;
    s.sandbox.set_templates(vec![
        wati_sandbox::Template::authentication("login_otp", "en_US"),
        wati_sandbox::Template {
            security_line: false,
            expiry_minutes: None,
            ..wati_sandbox::Template::authentication("login_otp_pt", "pt_BR")
        },
    ]);
    s.v1("911111111111", "111111").await;
    let mut pt = batch("b", vec![recipient("911111111111", "222222")]);
    pt["template_name"] = json!("login_otp_pt");
    s.v3(&pt).await;
    let messages = s.sandbox.messages("911111111111");
    assert_eq!(
        (messages[0].template.as_str(), messages[0].text.as_str()),
        (
            "login_otp",
            "111111 is your verification code. For your security, do not share this code."
        )
    );
    assert_eq!(
        messages[0].footer.as_deref(),
        Some("This code expires in 5 minutes.")
    );
    assert_eq!(messages[0].button.as_deref(), Some("Copy code"));
    assert_eq!(
        (messages[1].template.as_str(), messages[1].text.as_str()),
        ("login_otp_pt", "222222 is your verification code.")
    );
    assert_eq!(messages[1].footer, None);
}

#[tokio::test]
async fn a_recipient_without_a_number_is_refused_but_target_stands_in_for_phone_number() {
    let s = serve(0).await;
    let no_number = json!({"custom_params": [{"name": "1", "value": "1"}]});
    assert_eq!(
        s.v3(&batch("b", vec![no_number])).await.0,
        StatusCode::BAD_REQUEST
    );
    let by_target =
        json!({"target": "916666666666", "custom_params": [{"name": "1", "value": "666666"}]});
    let (status, _, body) = s.v3(&batch("b", vec![by_target])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recipients"][0]["phone_number"], "916666666666");
    assert_eq!(body["recipients"][0]["local_message_id"], Value::Null);
    assert_eq!(s.sandbox.messages("916666666666")[0].code, "666666");
}

#[tokio::test]
async fn an_unknown_template_or_a_broken_body_refuses_the_call() {
    let s = serve(0).await;
    let mut other = batch("b", vec![recipient("911111111111", "111111")]);
    other["template_name"] = json!("marketing");
    let (status, _, body) = s.v3(&other).await;
    // "A 200 can report a failed request" (docs.wati.io); the text is the sandbox's.
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"success": false, "broadcast_id": null, "error": "Template not found", "recipients": []})
    );
    assert_eq!(s.sandbox.accepted(), 0);

    let response = s
        .http
        .post(format!("{}/api/ext/v3/messageTemplates/send", s.base))
        .bearer_auth(KEY)
        .body("{not json")
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let many: Vec<Value> = (0..10_001)
        .map(|i| recipient(&format!("91{i:010}"), "1"))
        .collect();
    assert_eq!(s.v3(&batch("b", many)).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_call_without_the_right_key_is_refused_with_401_and_not_logged() {
    let s = serve(1).await;
    for key in [Some("wrong"), None] {
        let mut request = s
            .http
            .post(format!("{}/api/ext/v3/messageTemplates/send", s.base))
            .json(&batch("b", vec![recipient("911111111111", "111111")]));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let (status, _, body) = answer(request.send().await.expect("the sandbox answers")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"result": false, "info": "Unauthorized"}));
    }
    assert!(s.sandbox.call_log().is_empty());
    // Refused calls take no room in the plan window.
    assert_eq!(s.v1("911111111111", "111111").await.0, StatusCode::OK);
}

#[tokio::test]
async fn v1_calls_are_numbered_and_logged_like_v3_calls() {
    let s = serve(0).await;
    s.v1("911111111111", "111111").await;
    s.v3(&batch(
        "b-2",
        vec![
            recipient("911111111111", "222222"),
            recipient("912222222222", "333333"),
        ],
    ))
    .await;
    let calls = s.sandbox.calls("911111111111");
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.api, c.call_id, c.local_message_id.clone()))
            .collect::<Vec<_>>(),
        [
            (Api::V1, 1, None),
            (Api::V3, 2, Some("id-911111111111".to_owned()))
        ]
    );
    let log = s.sandbox.call_log();
    assert_eq!(
        log.iter().map(|r| (r.call_id, r.api)).collect::<Vec<_>>(),
        [(1, Api::V1), (2, Api::V3)]
    );
    assert_eq!(log[0].broadcast_name, "v1-911111111111");
    // The base URL's path, as WATI's tenant id would be.
    assert!(log.iter().all(|c| c.path_prefix == "/tenant-1"), "{log:?}");
    assert_eq!(log[1].recipients, ["911111111111", "912222222222"]);
    let messages = s.get("/sandbox/messages?phone=911111111111").await;
    assert_eq!(messages["messages"][1]["callId"], 2);
    assert_eq!(messages["messages"][1]["localMessageId"], "id-911111111111");
}

#[tokio::test]
async fn the_longest_scripted_delay_holds_the_whole_batch() {
    let s = serve(0).await;
    s.sandbox.script(
        "912222222222",
        vec![ScriptedReply {
            delay_ms: Some(300),
            ..Default::default()
        }],
    );
    let started = std::time::Instant::now();
    let (status, _, _) = s
        .v3(&batch(
            "b",
            vec![
                recipient("911111111111", "111111"),
                recipient("912222222222", "222222"),
            ],
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn a_call_counts_as_arrived_while_it_is_still_being_answered() {
    let s = serve(0).await;
    s.sandbox.script(
        "911111111111",
        vec![ScriptedReply {
            delay_ms: Some(1_000),
            ..Default::default()
        }],
    );
    let body = batch("b", vec![recipient("911111111111", "111111")]);
    let call = s.v3(&body);
    let watch = async {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.sandbox.arrived() == 0 {
            assert!(
                std::time::Instant::now() < give_up,
                "the call never arrived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Arrived, not yet answered: nothing logged.
        assert!(s.sandbox.call_log().is_empty());
    };
    let ((status, _, _), ()) = tokio::join!(call, watch);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.sandbox.arrived(), 1);
    assert_eq!(s.sandbox.call_log().len(), 1);
}
