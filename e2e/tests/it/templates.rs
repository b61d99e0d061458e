//! Codes a real WATI tenant delivers: the template's parameter by name (`1` by default),
//! the template check before the worker takes traffic and again now and then, a
//! template per language, and review phones that reach no provider. Against the real
//! Redis and RabbitMQ and the sandbox as WATI's template registry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use otp_e2e::{DEADLINE, TestEnv, budgets, eventually};
use otp_shared::budget::WatiApiVersion;
use otp_worker::config::{Preflight, WorkerConfig};
use otp_worker::templates::Templates;
use serde_json::json;
use wati_sandbox::Template;

/// A worker's start, awaited: the error it stopped with, or `None` once it consumes
/// (it is then stopped).
async fn start_outcome(env: &TestEnv, config: WorkerConfig) -> Option<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(otp_worker::run(config, listener, async {
        let _ = stopped.await;
    }));
    let send_queue = env.queues().send;
    let consuming = eventually("the worker to stop or consume", DEADLINE, || async {
        if run.is_finished() {
            return Some(false);
        }
        let queue = env.queue_counts(&send_queue).await?;
        (queue.consumers > 0).then_some(true)
    })
    .await;
    let _ = stop.send(());
    let finished = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the worker returns")
        .expect("the worker's task");
    match (consuming, finished) {
        (true, Ok(())) => None,
        (false, Err(e)) => Some(e.to_string()),
        (consuming, finished) => panic!("consuming {consuming}, then {finished:?}"),
    }
}

fn worker(env: &TestEnv, version: WatiApiVersion) -> WorkerConfig {
    let mut config = env.worker_config();
    config.common.budgets = budgets(version, 0, 0, otp_e2e::TEST_BATCH_MAX);
    config.wati.api_version = version;
    if version == WatiApiVersion::V1 {
        config.concurrency = 8;
    }
    config
}

fn authentication(name: &str, language: &str) -> Template {
    Template::authentication(name, language)
}

#[tokio::test]
async fn the_worker_refuses_to_start_for_a_missing_unapproved_or_parameterless_template() {
    let env = TestEnv::new().await;
    for version in [WatiApiVersion::V3, WatiApiVersion::V1] {
        // Missing: the tenant has only another template.
        env.sandbox
            .set_templates(vec![authentication("welcome", "en")]);
        assert_eq!(
            start_outcome(&env, worker(&env, version)).await.as_deref(),
            Some("WATI template \"login_otp\" (default): not in WATI's template list"),
            "{version:?}"
        );
        // Not approved.
        env.sandbox.set_templates(vec![Template {
            status: "PENDING".into(),
            ..authentication("login_otp", "en_US")
        }]);
        assert_eq!(
            start_outcome(&env, worker(&env, version)).await.as_deref(),
            Some("WATI template \"login_otp\" (default): not APPROVED (status PENDING)"),
            "{version:?}"
        );
        // Approved, but its parameter is not the one the worker fills.
        env.sandbox.set_templates(vec![Template {
            params: vec!["otp".into()],
            ..authentication("login_otp", "en_US")
        }]);
        assert_eq!(
            start_outcome(&env, worker(&env, version)).await.as_deref(),
            Some(
                "WATI template \"login_otp\" (default): has no parameter named \"1\" (it has \"otp\"); set WATI_TEMPLATE_PARAM"
            ),
            "{version:?}"
        );
        // And it starts for a good one.
        env.sandbox
            .set_templates(vec![authentication("login_otp", "en_US")]);
        assert_eq!(
            start_outcome(&env, worker(&env, version)).await,
            None,
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn every_configured_language_is_checked_and_warn_and_off_start_anyway() {
    let env = TestEnv::new().await;
    env.sandbox
        .set_templates(vec![authentication("login_otp", "en_US")]);
    let mut config = worker(&env, WatiApiVersion::V3);
    config.wati.templates =
        Templates::new("login_otp", "1", "pt_BR=login_otp_pt").expect("templates");
    assert_eq!(
        start_outcome(&env, config.clone()).await.as_deref(),
        Some("WATI template \"login_otp_pt\" (pt_BR): not in WATI's template list")
    );
    config.wati.preflight = Preflight::Warn;
    assert_eq!(start_outcome(&env, config.clone()).await, None);
    // Off: not even a list WATI refuses to give stops it.
    env.sandbox.fail_listing(Some(403));
    config.wati.preflight = Preflight::Off;
    assert_eq!(start_outcome(&env, config.clone()).await, None);
    config.wati.preflight = Preflight::On;
    assert_eq!(
        start_outcome(&env, config).await.as_deref(),
        Some(
            "WATI would not list the templates (HTTP 403): give the key the template-read scope (messagetemplatev3:read), or set WATI_PREFLIGHT=off"
        )
    );
}

#[tokio::test]
async fn while_wati_cannot_list_the_templates_the_worker_waits_then_starts() {
    let env = TestEnv::new().await;
    env.sandbox.fail_listing(Some(503));
    let config = worker(&env, WatiApiVersion::V3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let running = tokio::spawn(otp_worker::run(config, listener, std::future::pending()));
    // It tries again (1 s after the first), and takes no job meanwhile.
    eventually("a second try at the list", DEADLINE, || async {
        (env.sandbox.list_requests() >= 2).then_some(())
    })
    .await;
    assert!(!running.is_finished());
    let consumers = env
        .queue_counts(&env.queues().send)
        .await
        .map_or(0, |q| q.consumers);
    assert_eq!(consumers, 0);
    env.sandbox.fail_listing(None);
    env.wait_for_a_consumer().await;
    running.abort();
}

#[tokio::test]
async fn with_warn_a_list_wati_cannot_give_is_logged_and_the_worker_starts() {
    let env = TestEnv::new().await;
    env.sandbox.fail_listing(Some(503));
    let mut config = worker(&env, WatiApiVersion::V3);
    config.wati.preflight = Preflight::Warn;
    assert_eq!(start_outcome(&env, config).await, None);
}

#[tokio::test]
async fn the_check_and_the_sends_use_the_templates_of_the_sending_number() {
    let mut env = TestEnv::new().await;
    env.sandbox.set_templates(vec![Template {
        channel: Some("15550001111".into()),
        ..authentication("login_otp", "en_US")
    }]);
    // From the default channel the template is not there.
    assert_eq!(
        start_outcome(&env, env.worker_config()).await.as_deref(),
        Some("WATI template \"login_otp\" (default): not in WATI's template list")
    );
    let _api = env.start_api().await;
    let mut config = env.worker_config();
    config.wati.channel_numbers = vec![Some("15550001111".into())];
    config.common.budgets.senders = otp_shared::senders::Senders::numbers(&["15550001111"], 0);
    let _worker = env.start_worker_with(config).await;
    assert_eq!(env.log_in(UK).await["verified"], true);
}

#[tokio::test]
async fn the_old_otp_parameter_fails_on_the_sandbox_the_way_wati_fails_it_and_1_delivers() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    // A worker that fills `otp` (as this product once did), with the check off.
    let mut old = env.worker_config();
    old.wati.templates = Templates::new("login_otp", "otp", "").expect("templates");
    old.wati.preflight = Preflight::Off;
    let old_worker = env.start_worker_with(old).await;
    let request_id = env.send_accepted("919876543210").await;
    let failed = env.wait_for_status(&request_id, "failed").await;
    assert_eq!(failed["reason"], "WATI refused the recipient");
    assert_eq!(
        failed["info"],
        "Check your template, it cannot have typos or blank text"
    );
    assert!(env.sandbox.messages("919876543210").is_empty());
    old_worker.stop().await;
    // The default parameter, `1`, is the one the authentication template has.
    let _worker = env.start_worker().await;
    let login = env.log_in("919876543211").await;
    assert_eq!(login["verified"], true);
    let message = &env.sandbox.messages("919876543211")[0];
    assert_eq!(message.template, "login_otp");
    assert!(
        message
            .text
            .starts_with(&format!("{} is your verification code.", message.code)),
        "{message:?}"
    );
}

#[tokio::test]
async fn wati_template_param_names_the_parameter_end_to_end_in_v1_and_v3() {
    let mut env = TestEnv::new().await;
    env.sandbox.set_templates(vec![Template {
        params: vec!["code".into()],
        ..authentication("login_otp", "en_US")
    }]);
    let _api = env.start_api().await;
    for (version, phone) in [
        (WatiApiVersion::V3, "919876543210"),
        (WatiApiVersion::V1, "919876543211"),
    ] {
        let mut config = worker(&env, version);
        config.wati.templates = Templates::new("login_otp", "code", "").expect("templates");
        let worker = env.start_worker_with(config).await;
        let login = env.log_in(phone).await;
        assert_eq!(login["verified"], true, "{version:?}");
        worker.stop().await;
    }
}

/// Phones of three countries: Brazil, India, the UK.
const BR: &str = "5511987654321";
const IN: &str = "919876543210";
const UK: &str = "447911123456";

fn numbered(country: &str, n: u32) -> String {
    let base = &country[..country.len() - 3];
    format!("{base}{n:03}")
}

/// An api and a worker with templates in English (the default), Brazilian Portuguese
/// and Hindi, Brazil's and India's numbers in their languages, and `budgets` on both.
async fn in_three_languages(
    env: &mut TestEnv,
    budgets: otp_shared::budget::Budgets,
) -> (otp_e2e::Running, otp_e2e::Running) {
    env.sandbox.set_templates(vec![
        authentication("login_otp", "en_US"),
        authentication("login_otp_pt", "pt_BR"),
        authentication("login_otp_hi", "hi"),
    ]);
    let mut api = env.api_config();
    api.common.budgets = budgets.clone();
    api.country_locales = otp_shared::phone::ByCountry::parse("55=pt_BR,91=hi", |l| {
        otp_shared::locale::Locale::parse(l)
    })
    .expect("country locales");
    let api = env.start_api_with(api).await;
    let mut config = env.worker_config();
    config.common.budgets = budgets.clone();
    config.wati.templates =
        Templates::new("login_otp", "1", "pt_BR=login_otp_pt,hi=login_otp_hi").expect("templates");
    let worker = env.start_worker_with(config).await;
    env.wait_for_a_consumer().await;
    (api, worker)
}

#[tokio::test]
async fn locales_pick_templates_in_the_documented_order() {
    let mut env = TestEnv::new().await;
    let no_limits = env.api_config().common.budgets;
    let _running = in_three_languages(&mut env, no_limits).await;
    // (phone, the app's locale, the template it must go out in)
    let cases = [
        (numbered(BR, 1), None, "login_otp_pt"), // the country's locale
        (numbered(IN, 2), Some("pt-BR"), "login_otp_pt"), // the app's, exactly
        (numbered(IN, 3), Some("pt_PT"), "login_otp_hi"), // no pt_PT, no pt: the country's
        (numbered(UK, 4), Some("hi_IN"), "login_otp_hi"), // no hi_IN: its language alone
        (numbered(UK, 5), Some("fr"), "login_otp"), // nothing: the default
        (numbered(IN, 6), None, "login_otp_hi"),
        (numbered(UK, 7), Some("hi-Deva-IN"), "login_otp_hi"), // as a device writes it
        (numbered(BR, 8), Some("portuguese"), "login_otp_pt"), // no locale: the country's
    ];
    for (phone, locale, _) in &cases {
        let (status, body) = env
            .post(
                "/api/auth/send-otp",
                json!({"phone": phone, "locale": locale}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    for (phone, locale, template) in &cases {
        let message = &env.wait_for_messages(phone, 1).await[0];
        assert_eq!(message.template, *template, "{phone} with {locale:?}");
    }
    let (status, body) = env
        .post(
            "/api/auth/send-otp",
            json!({"phone": numbered(UK, 9), "locale": 42}),
        )
        .await;
    assert_eq!(
        (status, &body["code"], &body["message"]),
        (400, &json!("LOCALE_INVALID"), &json!("Invalid locale"))
    );
}

#[tokio::test]
async fn a_mixed_burst_never_mixes_templates_in_a_call_and_every_language_is_served() {
    let mut env = TestEnv::new().await;
    // One call a second of at most four: sends wait for calls together, batches form,
    // and the default template's sends outnumber a call for many seconds.
    let one_call_a_second = budgets(WatiApiVersion::V3, 10, 0, 4);
    let _running = in_three_languages(&mut env, one_call_a_second.clone()).await;
    env.occupy_call_slot(&one_call_a_second).await;
    // 40 sends: mostly the default, a few in Portuguese, one in Hindi.
    let mut expected = BTreeMap::new();
    for n in 0..40u32 {
        let (locale, template) = match n % 10 {
            3 | 7 => (Some("pt_BR"), "login_otp_pt"),
            _ if n == 21 => (Some("hi"), "login_otp_hi"),
            _ => (None, "login_otp"),
        };
        let phone = numbered(UK, n);
        let (status, body) = env
            .post(
                "/api/auth/send-otp",
                json!({"phone": phone, "locale": locale}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        expected.insert(phone, template);
    }
    for (phone, template) in &expected {
        let message = &env.wait_for_messages(phone, 1).await[0];
        assert_eq!(message.template, *template, "{phone}");
    }
    let log = env.sandbox.call_log();
    for call in &log {
        let templates: BTreeSet<&str> = call
            .recipients
            .iter()
            .map(|phone| expected[phone])
            .collect();
        assert_eq!(
            templates,
            BTreeSet::from([call.template_name.as_str()]),
            "call {} carried {:?}",
            call.call_id,
            call.recipients
        );
    }
    assert!(
        log.iter().any(|c| c.recipients.len() > 1),
        "batches formed: {log:?}"
    );
    // Served in the order the codes expire: the Hindi send (the 22nd) went before the
    // default sends that came after it, though they always filled a call.
    let call_of = |phone: &str| {
        log.iter()
            .find(|c| c.recipients.iter().any(|r| r == phone))
            .map(|c| c.call_id)
            .expect("a call")
    };
    let hindi = call_of(&numbered(UK, 21));
    let last_default = call_of(&numbered(UK, 39));
    assert!(hindi < last_default, "call {hindi} vs {last_default}");
}

#[tokio::test]
async fn review_phones_reach_no_provider_spend_no_budget_and_their_code_verifies() {
    let mut env = TestEnv::new().await;
    let mut api = env.api_config();
    api.review_phones = "+44 7911 123456=4242424242".parse().expect("review phones");
    api.limits.sends_per_minute = 1;
    let _api = env.start_api_with(api).await;
    let _worker = env.start_worker().await;
    let review = UK;
    // Twice (the test cooldown is 0): neither spends the one send a minute.
    for _ in 0..2 {
        let (status, body) = env.send_otp(review).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["channel"], "test");
        let status = env
            .wait_for_status(body["requestId"].as_str().expect("an id"), "sent")
            .await;
        assert_eq!(status["channel"], "test");
        assert_eq!(status["attempts"], 0);
    }
    let (status, body) = env.verify(review, "4242424242").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["phone"], review);
    // Nothing went to WATI, and the minute's one send is still there for a real phone.
    let (status, body) = env.send_otp(IN).await;
    assert_eq!((status, &body["channel"]), (202, &json!("whatsapp")));
    env.wait_for_messages(IN, 1).await;
    assert_eq!(env.send_otp(BR).await.0, 429);
    assert!(env.sandbox.calls(review).is_empty());
    assert_eq!(env.sandbox.call_log().len(), 1);
    // A wrong guess counts as for any phone.
    env.send_otp(review).await;
    let (status, body) = env.verify(review, "000000").await;
    assert_eq!((status, &body["code"]), (401, &json!("OTP_INVALID")));
}

#[tokio::test]
async fn a_template_paused_after_start_is_reported_by_the_next_check() {
    let env = TestEnv::new().await;
    // A name of this test's own: the metrics registry is shared by the whole binary.
    let name = format!("login_otp_{}", env.prefix);
    env.sandbox
        .set_templates(vec![authentication(&name, "en_US")]);
    let mut config = env.worker_config();
    config.wati.templates = Templates::new(&name, "1", "").expect("templates");
    config.wati.recheck_every = Some(Duration::from_millis(200));
    let worker = env.start_worker_with(config).await;
    env.wait_for_a_consumer().await;
    let metrics_url = format!("{}/metrics", worker.metrics_url);
    let series = format!("otp_wati_template_usable{{template=\"{name}\"}}");
    let usable = |value: &'static str| {
        let metrics_url = metrics_url.clone();
        let http = env.http.clone();
        let series = series.clone();
        async move {
            let text = http
                .get(&metrics_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| l.starts_with(&series) && l.ends_with(value))
                .then_some(())
        }
    };
    eventually("the template to be reported usable", DEADLINE, || {
        usable(" 1")
    })
    .await;
    env.sandbox.set_templates(vec![Template {
        status: "PAUSED".into(),
        ..authentication(&name, "en_US")
    }]);
    eventually("the paused template to be reported", DEADLINE, || {
        usable(" 0")
    })
    .await;
}
