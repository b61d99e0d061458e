//! The tenant's template lists, v3 and v1, as WATI documents them: the key check, v3's
//! required paging, each API's field names, and the failures a test can ask for.

use serde_json::{Value, json};
use wati_sandbox::Template;

mod common;

use common::{KEY, Served};

async fn serve() -> Served {
    common::serve_with(reqwest::Client::new()).await
}

impl Served {
    async fn list(&self, path: &str, key: Option<&str>) -> (u16, Option<Value>) {
        let mut request = self.http.get(format!("{}/tenant-1{path}", self.root));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the sandbox answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).ok())
    }
}

fn many() -> Vec<Template> {
    let mut templates: Vec<Template> = (0..102)
        .map(|i| Template {
            category: "MARKETING".into(),
            params: vec![],
            ..Template::authentication(&format!("promo_{i}"), "en")
        })
        .collect();
    templates.push(Template::authentication("login_otp", "pt_BR"));
    templates
}

#[tokio::test]
async fn v3_lists_a_page_at_a_time_with_the_documented_fields() {
    let s = serve().await;
    s.sandbox.set_templates(many());
    let (status, body) = s
        .list(
            "/api/ext/v3/messageTemplates?page_number=2&page_size=100",
            Some(KEY),
        )
        .await;
    assert_eq!(status, 200);
    let body = body.expect("JSON");
    assert_eq!(
        (&body["page_number"], &body["page_size"], &body["total"]),
        (&json!(2), &json!(100), &json!(103))
    );
    let page = body["templates"].as_array().expect("templates");
    assert_eq!(page.len(), 3);
    let login = &page[2];
    assert_eq!(login["name"], "login_otp");
    assert_eq!(login["category"], "AUTHENTICATION");
    assert_eq!(login["status"], "APPROVED");
    assert_eq!(login["language_option"]["value"], "pt_BR");
    assert_eq!(login["custom_params"][0]["name"], "1");
    assert_eq!(
        login["body"],
        "{{1}} is your verification code. For your security, do not share this code."
    );
}

#[tokio::test]
async fn v3_paging_is_required_and_at_most_a_hundred() {
    let s = serve().await;
    for query in [
        "",
        "?page_number=1",
        "?page_number=1&page_size=101",
        "?page_number=0&page_size=10",
    ] {
        let (status, body) = s
            .list(&format!("/api/ext/v3/messageTemplates{query}"), Some(KEY))
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body.expect("JSON")["code"], 400);
    }
}

#[tokio::test]
async fn v1_lists_with_its_own_field_names_and_a_default_page_of_ten() {
    let s = serve().await;
    s.sandbox.set_templates(many());
    let (status, body) = s.list("/api/v1/getMessageTemplates", Some(KEY)).await;
    assert_eq!(status, 200);
    let body = body.expect("JSON");
    assert_eq!(body["messageTemplates"].as_array().map(Vec::len), Some(10));
    assert_eq!(body["link"]["total"], 103);
    assert_eq!(body["link"]["nextPage"], 2);
    let (_, body) = s
        .list(
            "/api/v1/getMessageTemplates?pageNumber=2&pageSize=100",
            Some(KEY),
        )
        .await;
    let login = &body.expect("JSON")["messageTemplates"][2];
    assert_eq!(login["elementName"], "login_otp");
    assert_eq!(login["language"]["value"], "pt_BR");
    assert_eq!(login["customParams"][0]["paramName"], "1");
}

#[tokio::test]
async fn a_wrong_key_gets_401_without_a_body_and_failures_can_be_asked_for() {
    let s = serve().await;
    let path = "/api/ext/v3/messageTemplates?page_number=1&page_size=10";
    assert_eq!(s.list(path, Some("wrong")).await, (401, None));
    assert_eq!(s.list(path, None).await, (401, None));
    s.sandbox.fail_listing(Some(403));
    let (status, body) = s.list(path, Some(KEY)).await;
    assert_eq!(status, 403);
    assert_eq!(body.expect("JSON")["code"], 403);
    s.sandbox.fail_listing(Some(503));
    assert_eq!(
        s.list("/api/v1/getMessageTemplates", Some(KEY)).await.0,
        503
    );
    s.sandbox.fail_listing(None);
    assert_eq!(s.list(path, Some(KEY)).await.0, 200);
}

#[tokio::test]
async fn templates_can_be_read_and_replaced_over_http() {
    let s = serve().await;
    let response = s
        .http
        .put(format!("{}/sandbox/templates", s.root))
        .json(
            &json!([{"name": "login_otp", "language": "hi", "category": "AUTHENTICATION",
                       "status": "PAUSED", "params": ["1"]}]),
        )
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), 204);
    let listed: Value = s.get_json("/sandbox/templates").await;
    assert_eq!(listed["templates"][0]["status"], "PAUSED");
    assert_eq!(listed["templates"][0]["securityLine"], true);
    assert_eq!(s.sandbox.templates()[0].language, "hi");
}

#[tokio::test]
async fn each_sending_number_has_its_own_templates() {
    let s = serve().await;
    s.sandbox.set_templates(vec![Template {
        channel: Some("15550001111".into()),
        ..Template::authentication("login_otp", "en_US")
    }]);
    let names = |body: Option<Value>, list: &str| -> Vec<String> {
        body.expect("JSON")[list]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|t| t["name"].as_str().or(t["elementName"].as_str()))
            .map(str::to_owned)
            .collect()
    };
    let v3 = "/api/ext/v3/messageTemplates?page_number=1&page_size=100";
    assert!(names(s.list(v3, Some(KEY)).await.1, "templates").is_empty());
    let (_, on_channel) = s
        .list(&format!("{v3}&channel=15550001111"), Some(KEY))
        .await;
    assert_eq!(names(on_channel, "templates"), ["login_otp"]);
    let (_, v1) = s
        .list(
            "/api/v1/getMessageTemplates?channelPhoneNumber=15550001111",
            Some(KEY),
        )
        .await;
    assert_eq!(names(v1, "messageTemplates"), ["login_otp"]);
    // A send finds the template only from its number.
    let send = |channel: Value| {
        json!({"template_name": "login_otp", "broadcast_name": "b", "channel_number": channel,
               "recipients": [{"phone_number": "911111111111", "custom_params": [{"name": "1", "value": "123456"}]}]})
    };
    let post = |body: Value| {
        s.http
            .post(format!(
                "{}/tenant-1/api/ext/v3/messageTemplates/send",
                s.root
            ))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let default: Value = post(send(Value::Null))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(default["error"], "Template not found");
    let numbered: Value = post(send(json!("15550001111")))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(numbered["success"], true, "{numbered}");
    assert_eq!(s.sandbox.messages("911111111111").len(), 1);
}
