//! The tenant's sending numbers over HTTP: Meta's throughput per number (130429 past
//! it), a number in trouble (131048 from a given moment), and the counts per number.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wati_sandbox::{
    DEFAULT_CHANNEL, MessageRates, NumberStats, ReceiptSettings, ScriptedReply, Template,
};

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use common::{KEY, Served};
use receiver::{Heard, receiver};

/// Two of the tenant's sending numbers.
const FIRST: &str = "15550001111";
const SECOND: &str = "15550002222";
const DELIVERED: &str = "sentMessageDELIVERED_v2";
const FAILED: &str = "templateMessageFailed";
/// Longest wait for something the sandbox is due to do; a deadline, not a delay.
const PATIENCE: Duration = Duration::from_secs(10);

/// A sandbox holding every number to `per_second`, with `login_otp` on the default
/// channel and on both numbers, posting receipts at once to a receiver.
async fn serve(per_second: u32) -> (Served, std::sync::Arc<Heard>) {
    let s = common::serve_with(reqwest::Client::new()).await;
    s.sandbox
        .set_message_rates(MessageRates::every_number(per_second));
    s.sandbox.set_templates(
        [None, Some(FIRST), Some(SECOND)]
            .into_iter()
            .map(|channel| Template {
                channel: channel.map(str::to_owned),
                ..Template::authentication("login_otp", "en_US")
            })
            .collect(),
    );
    let (url, heard) = receiver(0).await;
    s.sandbox.set_receipts(ReceiptSettings {
        webhook_url: Some(url),
        delivered_after: Duration::ZERO,
        read_after: Duration::ZERO,
        repeat: 1,
        reorder: false,
    });
    (s, heard)
}

/// `count` phones for a number, each its own.
fn phones(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("91{prefix}{i:06}")).collect()
}

impl Served {
    /// One v3 call from `channel` (`None`: the default channel) to `phones`; asserts that
    /// WATI accepted every recipient, as it does whatever Meta will make of them.
    async fn send_from(&self, channel: Option<&str>, phones: &[String]) {
        let recipients: Vec<Value> = phones
            .iter()
            .map(|phone| {
                json!({
                    "phone_number": phone,
                    "local_message_id": format!("id-{phone}"),
                    "custom_params": [{"name": "1", "value": "123456"}],
                })
            })
            .collect();
        let response = self
            .http
            .post(format!("{}/api/ext/v3/messageTemplates/send", self.root))
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "numbers",
                "channel_number": channel,
                "recipients": recipients,
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["success"], true, "{body}");
        let listed = body["recipients"].as_array().expect("recipients");
        assert_eq!(listed.len(), phones.len());
        assert!(listed.iter().all(|r| r["errors"] == json!([])), "{body}");
    }

    /// One v1 call from `channel` to `phone`, accepted.
    async fn send_v1_from(&self, channel: &str, phone: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/sendTemplateMessage", self.root))
            .query(&[("whatsappNumber", phone)])
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "numbers",
                "channel_number": channel,
                "parameters": [{"name": "1", "value": "123456"}],
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["result"], true, "{body}");
    }

    /// `PUT path` with `body` as JSON, or with no body.
    async fn put(&self, path: &str, body: Option<Value>) -> StatusCode {
        let request = self.http.put(format!("{}{path}", self.root));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.expect("the sandbox answers").status()
    }

    /// The counts of every number, from `GET /sandbox/numbers`.
    async fn numbers(&self) -> Value {
        self.get_json("/sandbox/numbers").await["numbers"].clone()
    }
}

/// The final receipt of each of `phones` (delivered or failed), once all have come.
async fn final_receipts(heard: &Heard, phones: &[String]) -> Vec<Value> {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let finals: Vec<Value> = phones
            .iter()
            .filter_map(|phone| {
                heard
                    .taken_for(phone)
                    .into_iter()
                    .find(|b| b["eventType"] == DELIVERED || b["eventType"] == FAILED)
            })
            .collect();
        if finals.len() == phones.len() {
            return finals;
        }
        assert!(
            Instant::now() < give_up,
            "timed out: {} of {} final receipts",
            finals.len(),
            phones.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn failed_codes(finals: &[Value]) -> Vec<Option<String>> {
    finals
        .iter()
        .map(|b| b["failedCode"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn two_numbers_each_within_its_rate_deliver_everything_and_no_130429() {
    let (s, heard) = serve(5).await;
    let (first, second) = (phones("1", 5), phones("2", 5));
    // Both numbers at their full rate within the same second.
    s.send_from(Some(FIRST), &first).await;
    s.send_from(Some(SECOND), &second).await;

    for (number, phones) in [(FIRST, &first), (SECOND, &second)] {
        let finals = final_receipts(&heard, phones).await;
        assert_eq!(failed_codes(&finals), vec![None; 5]);
        for phone in phones {
            let messages = s.sandbox.messages(phone);
            assert_eq!(messages.len(), 1, "{phone} got its code");
            assert_eq!(messages[0].from.as_deref(), Some(number));
        }
    }
    let numbers = s.numbers().await;
    for number in [FIRST, SECOND] {
        assert_eq!(
            numbers[number],
            json!({"accepted": 5, "delivered": 5, "failed": {}, "noReceipt": 0})
        );
    }
    let log = s.sandbox.call_log();
    let channels: Vec<Option<&str>> = log.iter().map(|c| c.channel_number.as_deref()).collect();
    assert_eq!(channels, [Some(FIRST), Some(SECOND)]);
}

#[tokio::test]
async fn past_one_numbers_rate_the_excess_fails_with_130429_and_the_other_number_is_unaffected() {
    let (s, heard) = serve(80).await;
    assert_eq!(
        s.put(
            &format!("/sandbox/message-rates/{FIRST}"),
            Some(json!({"messagesPerSecond": 3}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get_json("/sandbox/message-rates").await,
        json!({"default": 80, "numbers": {FIRST: 3}})
    );
    let (first, second) = (phones("1", 5), phones("2", 5));
    s.send_from(Some(FIRST), &first).await;
    s.send_from(Some(SECOND), &second).await;

    let finals = final_receipts(&heard, &first).await;
    let throughput = Some(wati_sandbox::THROUGHPUT_CODE.to_owned());
    assert_eq!(
        failed_codes(&finals),
        [None, None, None, throughput.clone(), throughput]
    );
    let failed = &finals[4];
    assert_eq!(failed["statusString"], "Failed");
    assert_eq!(failed["failedDetail"], "Rate limit hit");
    assert_eq!(failed["localMessageId"], format!("id-{}", first[4]));
    assert_eq!(
        heard.events_for(&first[4]),
        ["templateMessageSent_v2", FAILED],
        "a message Meta refused is still sent from WATI's side, then fails"
    );
    assert!(
        s.sandbox.messages(&first[4]).is_empty(),
        "it never reaches the phone"
    );
    assert_eq!(s.sandbox.messages(&first[2]).len(), 1);

    let finals = final_receipts(&heard, &second).await;
    assert_eq!(failed_codes(&finals), vec![None; 5]);
    let numbers = s.numbers().await;
    assert_eq!(
        numbers[FIRST],
        json!({"accepted": 5, "delivered": 3, "failed": {"130429": 2}, "noReceipt": 0})
    );
    assert_eq!(
        numbers[SECOND],
        json!({"accepted": 5, "delivered": 5, "failed": {}, "noReceipt": 0})
    );
}

#[tokio::test]
async fn a_degraded_numbers_messages_fail_with_131048_from_the_moment_given_until_undegraded() {
    let (s, heard) = serve(0).await;
    let from_ms = wall_clock_ms() + 1_000;
    assert_eq!(
        s.put(
            &format!("/sandbox/degraded/{FIRST}"),
            Some(json!({"fromMs": from_ms}))
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let listed = s.get_json("/sandbox/degraded").await;
    let listed_from = listed["degraded"][FIRST].as_u64().expect("listed");
    assert!(listed_from.abs_diff(from_ms) <= 5, "{listed}");

    let before = phones("1", 2);
    s.send_from(Some(FIRST), &before).await;
    // The moment itself is the behaviour under test: wait for it.
    let wait = from_ms.saturating_sub(wall_clock_ms());
    tokio::time::sleep(Duration::from_millis(wait + 20)).await;
    let during = phones("2", 2);
    s.send_from(Some(FIRST), &during).await;
    let other = phones("3", 2);
    s.send_from(Some(SECOND), &other).await;
    s.http
        .delete(format!("{}/sandbox/degraded/{FIRST}", s.root))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(
        s.get_json("/sandbox/degraded").await,
        json!({"degraded": {}})
    );
    let after = phones("4", 2);
    s.send_from(Some(FIRST), &after).await;

    let spam = Some(wati_sandbox::SPAM_RATE_LIMIT_CODE.to_owned());
    assert_eq!(
        failed_codes(&final_receipts(&heard, &before).await),
        [None, None]
    );
    let finals = final_receipts(&heard, &during).await;
    assert_eq!(failed_codes(&finals), [spam.clone(), spam]);
    assert_eq!(finals[0]["failedDetail"], "Spam rate limit hit");
    assert_eq!(
        failed_codes(&final_receipts(&heard, &other).await),
        [None, None]
    );
    assert_eq!(
        failed_codes(&final_receipts(&heard, &after).await),
        [None, None]
    );
    assert_eq!(
        s.numbers().await[FIRST],
        json!({"accepted": 6, "delivered": 4, "failed": {"131048": 2}, "noReceipt": 0})
    );
}

#[tokio::test]
async fn a_number_degraded_from_a_past_moment_fails_at_once_and_takes_none_of_its_rate() {
    let (s, heard) = serve(2).await;
    s.sandbox
        .degrade_number(FIRST, Instant::now() - Duration::from_millis(1));
    let during = phones("1", 3);
    s.send_from(Some(FIRST), &during).await;
    s.sandbox.undegrade_number(FIRST);
    let after = phones("2", 3);
    s.send_from(Some(FIRST), &after).await;
    // Without a moment, the route degrades from now.
    assert_eq!(
        s.put(&format!("/sandbox/degraded/{SECOND}"), None).await,
        StatusCode::NO_CONTENT
    );
    let other = phones("3", 1);
    s.send_from(Some(SECOND), &other).await;

    let spam = Some(wati_sandbox::SPAM_RATE_LIMIT_CODE.to_owned());
    assert_eq!(
        failed_codes(&final_receipts(&heard, &during).await),
        vec![spam.clone(); 3]
    );
    assert_eq!(
        failed_codes(&final_receipts(&heard, &after).await),
        [None, None, Some(wati_sandbox::THROUGHPUT_CODE.to_owned())],
        "the refused messages took no place in the number's second"
    );
    assert_eq!(failed_codes(&final_receipts(&heard, &other).await), [spam]);
}

#[tokio::test]
async fn the_counts_per_number_add_up_to_what_was_accepted() {
    let (s, _heard) = serve(3).await;
    let first = phones("1", 5);
    s.sandbox.script(
        &first[0],
        vec![ScriptedReply {
            failed_code: Some("131026".into()),
            ..ScriptedReply::default()
        }],
    );
    s.sandbox.script(
        &first[1],
        vec![ScriptedReply {
            no_receipts: Some(true),
            ..ScriptedReply::default()
        }],
    );
    s.send_from(Some(FIRST), &first).await;
    for phone in phones("2", 2) {
        s.send_v1_from(SECOND, &phone).await;
    }
    s.send_from(None, &phones("3", 1)).await;
    s.sandbox.set_messages_per_second(DEFAULT_CHANNEL, 0);
    assert_eq!(s.sandbox.message_rates().of(DEFAULT_CHANNEL), 0);
    s.send_from(None, &phones("4", 4)).await;

    let expected = |accepted, delivered, failed: &[(&str, u64)], no_receipt| NumberStats {
        accepted,
        delivered,
        failed: failed.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
        no_receipt,
    };
    let stats = s.sandbox.number_stats();
    assert_eq!(
        stats[FIRST],
        expected(5, 1, &[("131026", 1), ("130429", 2)], 1)
    );
    assert_eq!(stats[SECOND], expected(2, 2, &[], 0));
    assert_eq!(stats[DEFAULT_CHANNEL], expected(5, 5, &[], 0));
    for (number, n) in &stats {
        let failed: u64 = n.failed.values().sum();
        assert_eq!(
            n.accepted,
            n.delivered + failed + n.no_receipt,
            "{number} adds up"
        );
    }
    let all = s.get_json("/sandbox/stats").await;
    let accepted: u64 = stats.values().map(|n| n.accepted).sum();
    assert_eq!(all["accepted"], accepted);
    assert_eq!(all["numbers"], serde_json::to_value(&stats).expect("JSON"));
    assert_eq!(s.numbers().await, all["numbers"]);

    // A reset forgets the counts, and keeps the rates.
    s.sandbox.reset();
    assert!(s.sandbox.number_stats().is_empty());
    assert_eq!(s.sandbox.message_rates().of(FIRST), 3);
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}
