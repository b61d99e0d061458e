//! Delivery receipts posted to a webhook, heard by a small receiver on a local port.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wati_sandbox::{ReceiptSettings, ScriptedReply};

mod common;
#[path = "common/receiver.rs"]
mod receiver;

use common::{KEY, Served};
use receiver::receiver;

const SENT: &str = "templateMessageSent_v2";
const DELIVERED: &str = "sentMessageDELIVERED_v2";
const READ: &str = "sentMessageREAD_v2";
const FAILED: &str = "templateMessageFailed";
/// Longest wait for something the sandbox is due to do; a deadline, not a delay.
const PATIENCE: Duration = Duration::from_secs(5);
/// Longest wait for a burst's receipts, which a busy machine posts slowly.
const BURST_PATIENCE: Duration = Duration::from_secs(30);

/// Short delays, so a test is over in well under a second unless it retries.
fn quick(webhook_url: &str) -> ReceiptSettings {
    ReceiptSettings {
        webhook_url: Some(webhook_url.to_owned()),
        delivered_after: Duration::from_millis(50),
        read_after: Duration::from_millis(100),
        repeat: 1,
        reorder: false,
    }
}

async fn serve() -> Served {
    common::serve_with(reqwest::Client::new()).await
}

fn recipient(phone: &str, code: &str) -> Value {
    json!({
        "phone_number": phone,
        "local_message_id": format!("id-{phone}"),
        "custom_params": [{"name": "1", "value": code}],
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
                "broadcast_name": "receipts",
                "recipients": recipients,
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.json().await.expect("a JSON body")
    }

    async fn v1(&self, phone: &str, code: &str) {
        let response = self
            .http
            .post(format!("{}/tenant-1/api/v1/sendTemplateMessage", self.root))
            .query(&[("whatsappNumber", phone)])
            .bearer_auth(KEY)
            .json(&json!({
                "template_name": "login_otp",
                "broadcast_name": "receipts",
                "parameters": [{"name": "1", "value": code}],
            }))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
}

/// Polls `done` until it holds, failing the test after [`PATIENCE`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    wait_up_to(PATIENCE, what, done).await;
}

async fn wait_up_to(patience: Duration, what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + patience;
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_v3_send_gets_sent_delivered_and_read_for_each_recipient_in_order() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    s.v3(vec![
        recipient("911111111111", "111111"),
        recipient("912222222222", "222222"),
    ])
    .await;

    wait_until("six receipts are recorded", || {
        s.sandbox.receipts_posted() == 6
    })
    .await;
    assert_eq!(heard.all().len(), 6, "nothing posted twice or answered 500");
    for (phone, code) in [("911111111111", "111111"), ("912222222222", "222222")] {
        assert_eq!(heard.events_for(phone), [SENT, DELIVERED, READ], "{phone}");
        let bodies = heard.taken_for(phone);
        let sent = &bodies[0];
        assert_eq!(sent["statusString"], "SENT");
        assert_eq!(sent["templateName"], "login_otp");
        assert_eq!(sent["sourceType"], "API");
        let text = sent["text"].as_str().expect("sent carries the text");
        assert!(text.contains(code), "{text}");
        assert_eq!(bodies[1]["statusString"], "Delivered");
        assert_eq!(bodies[2]["statusString"], "Read");
        for body in &bodies {
            assert_eq!(body["localMessageId"], format!("id-{phone}"));
            assert_eq!(body["waId"], phone);
            // Every event about one message names it by the same WATI ids.
            assert_eq!(body["id"], sent["id"]);
            assert_eq!(body["whatsappMessageId"], sent["whatsappMessageId"]);
            assert!(
                body["timestamp"]
                    .as_str()
                    .is_some_and(|t| t.parse::<u64>().is_ok())
            );
        }
        assert_eq!(bodies[1]["text"], Value::Null);
        assert_eq!(bodies[2]["type"], "template");
    }
    assert_ne!(
        heard.taken_for("911111111111")[0]["id"],
        heard.taken_for("912222222222")[0]["id"]
    );

    let receipts = s.sandbox.receipts();
    assert!(
        receipts
            .iter()
            .all(|r| r.status == Some(200) && r.attempts == 1),
        "{receipts:?}"
    );
    let accepted_at = s.sandbox.messages("911111111111")[0].received_at_ms;
    let read = receipts
        .iter()
        .find(|r| r.phone == "911111111111" && r.event == READ)
        .expect("a read receipt");
    assert!(read.posted_at_ms >= accepted_at + 100, "read came too soon");
    assert_eq!(s.sandbox.receipts_failed(), 0);
}

#[tokio::test]
async fn a_scripted_failed_code_gets_sent_then_failed_and_no_delivered_or_read() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    // Over HTTP, to check the script's field names.
    let response = s
        .http
        .post(format!("{}/sandbox/script", s.root))
        .json(&json!({"phone": "911111111111", "replies": [{"failedCode": "131026"}]}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let answer = s
        .v3(vec![
            recipient("911111111111", "111111"),
            recipient("912222222222", "222222"),
        ])
        .await;
    // WATI took the message: its failure shows only in the receipts.
    assert_eq!(answer["recipients"][0]["errors"], json!([]));
    assert_eq!(s.sandbox.messages("911111111111").len(), 1);

    // The other message is read after the failure is due, and the sandbox records a
    // receipt after the receiver answers it.
    wait_until("both messages' last receipts are recorded", || {
        s.sandbox.receipts_posted() == 5
    })
    .await;
    assert_eq!(heard.events_for("911111111111"), [SENT, FAILED]);
    let failed = &heard.taken_for("911111111111")[1];
    assert_eq!(failed["statusString"], "Failed");
    assert_eq!(failed["failedCode"], "131026");
    assert_eq!(failed["failedDetail"], "Message undeliverable");
    assert_eq!(failed["localMessageId"], "id-911111111111");
    assert_eq!(heard.events_for("912222222222"), [SENT, DELIVERED, READ]);

    let listed = s.get_json("/sandbox/receipts").await;
    let failed_record = listed["receipts"]
        .as_array()
        .expect("receipts")
        .iter()
        .find(|r| r["event"] == FAILED)
        .expect("the failure is recorded")
        .clone();
    assert_eq!(failed_record["localMessageId"], "id-911111111111");
    assert_eq!(failed_record["phone"], "911111111111");
    assert_eq!(failed_record["status"], 200);
    assert_eq!(failed_record["attempts"], 1);
    assert!(failed_record["postedAtMs"].as_u64().is_some());
    let stats = s.get_json("/sandbox/stats").await;
    assert_eq!(stats["receiptsPosted"], 5);
    assert_eq!(stats["receiptsFailed"], 0);
}

#[tokio::test]
async fn repeat_posts_every_event_that_many_times() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(ReceiptSettings {
        repeat: 2,
        ..quick(&url)
    });
    s.v3(vec![recipient("911111111111", "111111")]).await;

    wait_until("six receipts are recorded", || {
        s.sandbox.receipts_posted() == 6
    })
    .await;
    assert_eq!(
        heard.events_for("911111111111"),
        [SENT, SENT, DELIVERED, DELIVERED, READ, READ]
    );
    let bodies = heard.taken();
    for pair in bodies.chunks(2) {
        assert_eq!(pair[0], pair[1], "a repeat is the same event");
    }
    assert_eq!(s.sandbox.receipts().len(), 6);
}

#[tokio::test]
async fn reorder_posts_read_before_delivered() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(ReceiptSettings {
        reorder: true,
        ..quick(&url)
    });
    s.v3(vec![recipient("911111111111", "111111")]).await;

    wait_until("three receipts are recorded", || {
        s.sandbox.receipts_posted() == 3
    })
    .await;
    assert_eq!(heard.events_for("911111111111"), [SENT, READ, DELIVERED]);
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_event_on_the_third_attempt() {
    let (url, heard) = receiver(2).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    s.v3(vec![recipient("911111111111", "111111")]).await;

    // Retries come after 1 s and 2 s more.
    wait_until("three receipts are recorded", || {
        s.sandbox.receipts_posted() == 3
    })
    .await;
    let statuses: Vec<(String, u16)> = heard
        .all()
        .into_iter()
        .map(|(b, status)| (b["eventType"].as_str().unwrap_or_default().into(), status))
        .collect();
    assert_eq!(
        statuses,
        [
            (SENT.into(), 500),
            (SENT.into(), 500),
            (SENT.into(), 200),
            (DELIVERED.into(), 200),
            (READ.into(), 200),
        ]
    );
    let receipts = s.sandbox.receipts();
    assert_eq!(receipts[0].event, SENT);
    assert_eq!(receipts[0].attempts, 3);
    assert_eq!(receipts[0].status, Some(200));
    assert_eq!(receipts[1].attempts, 1);
    assert_eq!(s.sandbox.receipts_failed(), 0);
}

#[tokio::test]
async fn without_a_webhook_url_nothing_is_posted() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    assert_eq!(s.sandbox.receipt_settings().webhook_url, None);
    s.v3(vec![recipient("911111111111", "111111")]).await;
    s.v1("912222222222", "222222").await;
    // A message sent later, with a webhook, has had all its receipts; the first two
    // would have had theirs by then.
    s.sandbox.set_receipts(quick(&url));
    s.v3(vec![recipient("913333333333", "333333")]).await;

    wait_until("the later message is read", || {
        heard.events_for("913333333333").len() == 3
    })
    .await;
    assert_eq!(heard.all().len(), 3, "only the later message was posted");
    assert_eq!(s.sandbox.messages("911111111111").len(), 1);
}

#[tokio::test]
async fn a_recipient_scripted_with_no_receipts_hears_nothing() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    s.sandbox.script(
        "911111111111",
        vec![ScriptedReply {
            no_receipts: Some(true),
            ..Default::default()
        }],
    );
    s.v3(vec![
        recipient("911111111111", "111111"),
        recipient("912222222222", "222222"),
    ])
    .await;

    wait_until("the other recipient's receipts are recorded", || {
        s.sandbox.receipts_posted() == 3
    })
    .await;
    assert!(heard.taken_for("911111111111").is_empty());
    assert_eq!(heard.all().len(), 3);
    assert_eq!(s.sandbox.messages("911111111111").len(), 1);
    assert!(
        s.sandbox
            .receipts()
            .iter()
            .all(|r| r.phone == "912222222222")
    );
}

#[tokio::test]
async fn a_v1_send_gets_receipts_under_a_made_up_local_message_id() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    s.v1("911111111111", "111111").await;
    s.v1("911111111111", "222222").await;

    wait_until("both messages' receipts are recorded", || {
        s.sandbox.receipts_posted() == 6
    })
    .await;
    let bodies = heard.taken_for("911111111111");
    let sent: Vec<&Value> = bodies.iter().filter(|b| b["eventType"] == SENT).collect();
    assert_eq!(sent.len(), 2);
    let ids: Vec<&str> = sent
        .iter()
        .map(|b| b["localMessageId"].as_str().expect("a localMessageId"))
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 36, "a UUID: {id}");
        let events: Vec<&str> = bodies
            .iter()
            .filter(|b| b["localMessageId"] == *id)
            .filter_map(|b| b["eventType"].as_str())
            .collect();
        assert_eq!(events, [SENT, DELIVERED, READ]);
    }
}

#[tokio::test]
async fn receipts_of_messages_accepted_before_a_reset_go_out_but_are_not_recorded() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(ReceiptSettings {
        delivered_after: Duration::from_millis(200),
        read_after: Duration::from_millis(300),
        ..quick(&url)
    });
    s.v3(vec![recipient("911111111111", "111111")]).await;
    wait_until("the first sent is recorded", || {
        s.sandbox.receipts_posted() == 1
    })
    .await;
    s.sandbox.reset();
    assert!(s.sandbox.receipts().is_empty());
    assert_eq!(s.sandbox.receipt_settings().webhook_url, Some(url.clone()));

    wait_until("the old message is read", || {
        heard.events_for("911111111111").len() == 3
    })
    .await;
    // A message after the reset is recorded; its receipts end after the old ones.
    s.v3(vec![recipient("912222222222", "222222")]).await;
    wait_until("the new message is read", || {
        heard.events_for("912222222222").len() == 3
    })
    .await;
    wait_until("the new message's receipts are recorded", || {
        s.sandbox.receipts_posted() == 3
    })
    .await;
    assert!(
        s.sandbox
            .receipts()
            .iter()
            .all(|r| r.phone == "912222222222")
    );
}

#[tokio::test]
async fn a_burst_of_accepted_messages_gets_every_receipt() {
    // Small enough for a busy test machine; 20,000 (two full batches) take about 15 s
    // in a debug build.
    const MESSAGES: usize = 1_000;
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    let recipients: Vec<Value> = (0..MESSAGES)
        .map(|i| recipient(&format!("91{i:010}"), "123456"))
        .collect();
    s.v3(recipients).await;

    wait_up_to(BURST_PATIENCE, "every receipt is recorded", || {
        s.sandbox.receipts_posted() == 3 * MESSAGES as u64
    })
    .await;
    assert_eq!(heard.all().len(), 3 * MESSAGES);
    assert_eq!(s.sandbox.receipts_failed(), 0);
}

#[test]
fn the_binary_flags_set_the_receipts() {
    use clap::Parser;
    // The flags' defaults match `Default`, unless the environment sets some of them.
    if std::env::vars().all(|(name, _)| !name.starts_with("SANDBOX_")) {
        let defaults = wati_sandbox::SandboxArgs::try_parse_from(["wati-sandbox"])
            .expect("no flags are needed")
            .into_config()
            .expect("the defaults are valid");
        assert_eq!(defaults.receipts, ReceiptSettings::default());
        assert_eq!(defaults.templates, wati_sandbox::templates::defaults());
    }
    let args = wati_sandbox::SandboxArgs::try_parse_from([
        "wati-sandbox",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        "--delivered-after-ms",
        "20",
        "--read-after-ms",
        "40",
        "--receipt-repeat",
        "3",
        "--receipt-reorder",
        "true",
    ])
    .expect("the flags parse");
    assert_eq!(
        args.into_config().expect("valid").receipts,
        ReceiptSettings {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            delivered_after: Duration::from_millis(20),
            read_after: Duration::from_millis(40),
            repeat: 3,
            reorder: true,
        }
    );
}

#[tokio::test]
async fn a_send_is_answered_while_the_webhook_hangs() {
    // Takes connections and never answers them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let url = format!(
        "http://{}/webhook",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            held.push(connection);
        }
    });
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    // The v3 answer comes back while every receipt post hangs.
    s.v3(vec![
        recipient("911111111111", "111111"),
        recipient("912222222222", "222222"),
    ])
    .await;
    s.v1("913333333333", "333333").await;
    assert_eq!(s.sandbox.accepted(), 3);
    assert_eq!(s.sandbox.receipts_posted(), 0);
}

#[tokio::test]
async fn a_message_without_its_parameter_is_taken_then_failed_by_meta_with_132000() {
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    let answer = s
        .v3(vec![
            json!({"phone_number": "911111111111", "local_message_id": "id-bare"}),
        ])
        .await;
    // WATI takes it; the phone never shows it; Meta's failure comes back as a receipt.
    assert_eq!(answer["recipients"][0]["errors"], json!([]));
    assert_eq!(s.sandbox.accepted(), 1);
    assert!(s.sandbox.messages("911111111111").is_empty());
    wait_until("the failure is recorded", || {
        s.sandbox.receipts_posted() == 2
    })
    .await;
    assert_eq!(heard.events_for("911111111111"), [SENT, FAILED]);
    let failed = &heard.taken_for("911111111111")[1];
    assert_eq!(failed["failedCode"], "132000");
    assert_eq!(
        failed["failedDetail"],
        "(#132000) Number of parameters does not match the expected number of params"
    );
    assert_eq!(failed["templateName"], "login_otp");
}

#[tokio::test]
async fn the_population_fails_some_messages_and_silences_others_unless_scripted() {
    const MESSAGES: usize = 200;
    let (url, heard) = receiver(0).await;
    let s = serve().await;
    s.sandbox.set_receipts(quick(&url));
    let population = wati_sandbox::Population {
        not_on_whatsapp_percent: 0.0,
        failed_receipt_percent: 10.0,
        no_receipt_percent: 10.0,
    };
    s.sandbox.set_population(population).expect("valid shares");
    let phones: Vec<String> = (0..MESSAGES).map(|i| format!("91{i:010}")).collect();
    let fates: Vec<wati_sandbox::Fate> = phones.iter().map(|p| population.fate(p)).collect();
    let count = |fate| fates.iter().filter(|f| **f == fate).count();
    let (failed, silent) = (
        count(wati_sandbox::Fate::FailedReceipt),
        count(wati_sandbox::Fate::NoReceipt),
    );
    assert!(failed > 0 && silent > 0, "{failed} failed, {silent} silent");
    // One fated to fail is scripted otherwise: its script wins.
    let scripted = fates
        .iter()
        .position(|f| *f == wati_sandbox::Fate::FailedReceipt)
        .expect("one fails");
    s.sandbox
        .script(&phones[scripted], vec![ScriptedReply::default()]);
    let answer = s
        .v3(phones.iter().map(|p| recipient(p, "123456")).collect())
        .await;
    // Every one of them was accepted.
    assert!(
        answer["recipients"]
            .as_array()
            .expect("recipients")
            .iter()
            .all(|r| r["errors"] == json!([]))
    );
    assert_eq!(s.sandbox.accepted(), MESSAGES as u64);

    let expected_posts = 3 * (MESSAGES - failed - silent + 1) + 2 * (failed - 1);
    wait_up_to(BURST_PATIENCE, "every receipt is recorded", || {
        s.sandbox.receipts_posted() == expected_posts as u64
    })
    .await;
    for (i, (phone, fate)) in phones.iter().zip(&fates).enumerate() {
        let events = heard.events_for(phone);
        match fate {
            _ if i == scripted => assert_eq!(events, [SENT, DELIVERED, READ], "{phone}"),
            wati_sandbox::Fate::FailedReceipt => {
                assert_eq!(events, [SENT, FAILED], "{phone}");
                assert_eq!(heard.taken_for(phone)[1]["failedCode"], "131026");
            }
            wati_sandbox::Fate::NoReceipt => assert!(events.is_empty(), "{phone}"),
            _ => assert_eq!(events, [SENT, DELIVERED, READ], "{phone}"),
        }
    }
}
