//! A population of numbers on the WATI side (`SANDBOX_*_PERCENT`, `Sandbox::set_population`,
//! `PUT /sandbox/population`): shares of numbers not on WhatsApp, chosen by a hash of the
//! number, answered as WATI answers them, over HTTP.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{Fate, Population, ScriptedReply};

mod common;

use common::{KEY, Served};

async fn serve() -> Served {
    common::serve_with(reqwest::Client::new()).await
}

fn shares(not_on_whatsapp: f64, failed: f64, none: f64) -> Population {
    Population {
        not_on_whatsapp_percent: not_on_whatsapp,
        failed_receipt_percent: failed,
        no_receipt_percent: none,
    }
}

fn phones(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("44{:010}", 7_700_000_000 + i))
        .collect()
}

fn recipient(phone: &str) -> Value {
    json!({
        "phone_number": phone,
        "local_message_id": format!("id-{phone}"),
        "custom_params": [{"name": "1", "value": "123456"}],
    })
}

impl Served {
    async fn v3(&self, recipients: Vec<Value>) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/tenant-1/api/ext/v3/messageTemplates/send",
                self.root
            ))
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "population",
                "recipients": recipients,
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a JSON body")
    }

    async fn v1(&self, phone: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/tenant-1/api/v1/sendTemplateMessage", self.root))
            .query(&[("whatsappNumber", phone)])
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "population",
                "parameters": [{"name": "1", "value": "123456"}],
            }))
            .send()
            .await
            .expect("the sandbox answers");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    /// The phones a v3 answer marks as not on WhatsApp.
    async fn not_on_whatsapp(&self, phones: &[String]) -> BTreeSet<String> {
        let answer = self.v3(phones.iter().map(|p| recipient(p)).collect()).await;
        answer["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .filter(|r| r["errors"] == json!(["Invalid WhatsApp number"]))
            .map(|r| r["phone_number"].as_str().expect("a phone").to_owned())
            .collect()
    }
}

#[tokio::test]
async fn twelve_percent_of_a_thousand_numbers_are_not_on_whatsapp_and_always_the_same() {
    let s = serve().await;
    s.sandbox
        .set_population(shares(12.0, 0.0, 0.0))
        .expect("valid shares");
    let phones = phones(1_000);

    let first = s.not_on_whatsapp(&phones).await;
    // A binomial(1000, 0.12) count: mean 120, standard deviation about 10.
    assert!(
        (90..=150).contains(&first.len()),
        "{} of 1,000 not on WhatsApp",
        first.len()
    );
    // Nothing was sent to them; everyone else was.
    assert_eq!(s.sandbox.accepted(), 1_000 - first.len() as u64);
    for phone in &first {
        assert!(s.sandbox.messages(phone).is_empty(), "{phone}");
    }
    // The library says which numbers those are, and the next call agrees.
    let predicted: BTreeSet<String> = phones
        .iter()
        .filter(|p| s.sandbox.population().fate(p) == Fate::NotOnWhatsApp)
        .cloned()
        .collect();
    assert_eq!(first, predicted);
    assert_eq!(s.not_on_whatsapp(&phones).await, first);
    // A later sandbox with the same shares (a new run) picks the same numbers.
    let again = serve().await;
    again
        .sandbox
        .set_population(shares(12.0, 0.0, 0.0))
        .expect("valid shares");
    assert_eq!(again.not_on_whatsapp(&phones).await, first);
}

#[tokio::test]
async fn v1_answers_a_number_without_whatsapp_as_wati_does_and_sends_nothing() {
    let s = serve().await;
    s.sandbox
        .set_population(shares(100.0, 0.0, 0.0))
        .expect("valid shares");
    let (status, answer) = s.v1("447700900001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"result": false, "info": "Invalid WhatsApp number", "validWhatsAppNumber": false})
    );
    assert!(s.sandbox.messages("447700900001").is_empty());
    assert_eq!(s.sandbox.accepted(), 0);
    assert_eq!(s.sandbox.calls("447700900001")[0].status, 200);

    // A number on WhatsApp is still told so.
    s.sandbox
        .set_population(Population::default())
        .expect("valid shares");
    let (_, answer) = s.v1("447700900001").await;
    assert_eq!(answer["validWhatsAppNumber"], true);
    assert_eq!(answer["result"], true);
}

#[tokio::test]
async fn the_v2_shape_marks_a_number_without_whatsapp_as_invalid() {
    let s = serve().await;
    s.sandbox
        .set_population(shares(100.0, 0.0, 0.0))
        .expect("valid shares");
    // A script wins over the fate: this one is on WhatsApp, and asks for the v2 shape.
    s.sandbox.script(
        "447700900002",
        vec![ScriptedReply {
            shape: Some(wati_sandbox::AnswerShape::Receivers),
            ..ScriptedReply::default()
        }],
    );
    let answer = s
        .v3(vec![recipient("447700900001"), recipient("447700900002")])
        .await;
    let receivers = answer["receivers"].as_array().expect("receivers");
    assert_eq!(receivers[0]["waId"], "447700900001");
    assert_eq!(receivers[0]["isValidWhatsAppNumber"], false);
    assert_eq!(receivers[1]["isValidWhatsAppNumber"], true);
    assert_eq!(s.sandbox.accepted(), 1);
    assert_eq!(s.sandbox.messages("447700900002").len(), 1);
}

#[tokio::test]
async fn the_shares_are_read_and_set_over_http_and_checked() {
    let s = serve().await;
    let url = format!("{}/sandbox/population", s.root);
    let read = || async {
        s.http
            .get(&url)
            .send()
            .await
            .expect("the sandbox answers")
            .json::<Value>()
            .await
            .expect("a JSON body")
    };
    assert_eq!(
        read().await,
        json!({"notOnWhatsAppPercent": 0.0, "failedReceiptPercent": 0.0, "noReceiptPercent": 0.0})
    );
    let set = s
        .http
        .put(&url)
        .json(&json!({"notOnWhatsAppPercent": 12.5, "noReceiptPercent": 2}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.sandbox.population(), shares(12.5, 0.0, 2.0));

    let too_much = s
        .http
        .put(&url)
        .json(&json!({"notOnWhatsAppPercent": 60, "failedReceiptPercent": 50}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(too_much.status(), StatusCode::BAD_REQUEST);
    let error: Value = too_much.json().await.expect("a JSON body");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("100")));
    assert_eq!(s.sandbox.population(), shares(12.5, 0.0, 2.0), "unchanged");

    // A number's fate, for a benchmark that runs the binary.
    let phone = phones(1_000)
        .into_iter()
        .find(|p| s.sandbox.population().fate(p) == Fate::NotOnWhatsApp)
        .expect("some number is not on WhatsApp");
    let fate: Value = s.get_json(&format!("/sandbox/fate/{phone}")).await;
    assert_eq!(fate, json!({"phone": phone, "fate": "notOnWhatsApp"}));
    // The shares outlive a reset, like the templates.
    s.sandbox.reset();
    assert_eq!(s.sandbox.population(), shares(12.5, 0.0, 2.0));
}

#[test]
fn the_binary_flags_set_the_shares_and_refuse_too_much() {
    use clap::Parser;
    let args = wati_sandbox::SandboxArgs::try_parse_from([
        "wati-sandbox",
        "--not-on-whatsapp-percent",
        "12",
        "--failed-receipt-percent",
        "3.5",
        "--no-receipt-percent",
        "1",
    ])
    .expect("the flags parse");
    assert_eq!(
        args.into_config().expect("valid").population,
        shares(12.0, 3.5, 1.0)
    );
    let args = wati_sandbox::SandboxArgs::try_parse_from([
        "wati-sandbox",
        "--not-on-whatsapp-percent",
        "80",
        "--no-receipt-percent",
        "30",
    ])
    .expect("the flags parse");
    assert!(args.into_config().is_err());
}
