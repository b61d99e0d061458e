//! A local stand-in for WATI's template API (v1 `sendTemplateMessage` and the v3
//! batched `messageTemplates/send`, and both template lists): keeps the tenant's
//! templates (`templates`) and checks each send against them as WATI does (the key,
//! the template, its status and its parameters by name), enforces WATI's plan limit if
//! asked, records every message so a person or a test can read the code sent to a
//! number, can be told to be slow or to fail for a number, models a population in which
//! some numbers are not on WhatsApp or never get their message (`population`), holds
//! each of the tenant's sending numbers to Meta's throughput and can mark one as in
//! trouble (`numbers`, `throughput`, which cite Meta's and WATI's pages), and posts
//! delivery receipts to a webhook as WATI does.
//!
//! It also stands in for Twilio Programmable Messaging's send (`sms`, with Twilio's
//! answers in `twilio`, scripts in `sms_script`, signed status callbacks in
//! `sms_callback` and `signature`), modelled on Twilio's documentation, which those
//! modules cite.
//!
//! And it stands in for the app that receives the product's "events to the app":
//! `POST /sandbox/app-webhook` checks each delivery as a Standard Webhooks receiver does
//! (`app_webhook`, `standard_webhooks`, which cite the spec), records it, and answers as
//! scripted (`app_record`).
//!
//! And it stands in for the human-check providers, Cloudflare Turnstile and hCaptcha:
//! their siteverify APIs (`captcha`, which cites their documentation), the tokens a
//! person's widget gets (`POST /sandbox/captcha/solve`, `Sandbox::solve_captcha`) and a
//! widget stub for the login page (`GET /sandbox/captcha/api.js`), with scripted
//! outages (`captcha_record`, `captcha_routes`).
//!
//! `GET /sandbox/` is an inbox page for a person following the login flow in a browser:
//! each phone's messages as its WhatsApp (and its SMS app) would show them, refreshed
//! every second from `GET /sandbox/inbox`, so the code can be read (and copied) without
//! curl; above them, the events posted to the app's webhook, from `GET
//! /sandbox/app-events`.

mod app_record;
mod app_webhook;
mod captcha;
mod captcha_record;
mod captcha_routes;
mod control;
mod event;
mod form;
pub mod http1;
mod ids;
mod inbox;
mod limit;
mod listing;
mod numbers;
mod population;
mod receipt;
mod record;
mod script;
mod send;
mod signature;
mod sms;
mod sms_callback;
mod sms_record;
mod sms_script;
mod standard_webhooks;
pub mod templates;
mod throughput;
mod twilio;
mod v1;
mod v3;
mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

pub use app_record::{AppEventRecord, ScriptedAppAnswer};
pub use app_webhook::DEFAULT_APP_WEBHOOK_SECRET;
pub use captcha::{
    CaptchaKeys, CaptchaProvider, CaptchaSite, DEFAULT_HCAPTCHA_SECRET, DEFAULT_HCAPTCHA_SITE_KEY,
    DEFAULT_TURNSTILE_SECRET, DEFAULT_TURNSTILE_SITE_KEY,
};
pub use captcha_record::{CaptchaOutcome, CaptchaVerification, ScriptedCaptcha};
pub use inbox::{INBOX_MESSAGES, INBOX_PHONES};
pub use numbers::{
    DEFAULT_CHANNEL, META_MESSAGES_PER_SECOND, MessageRates, NumberStats, SPAM_RATE_LIMIT_CODE,
    THROUGHPUT_CODE,
};
pub use population::{Fate, Population};
pub use receipt::ReceiptSettings;
pub use record::{Api, Call, CallRecord, Channel, Conversation, Inbox, Message, ReceiptRecord};
pub use script::{AnswerShape, ScriptedReply};
pub use signature::twilio_signature;
pub use sms::{DEFAULT_TWILIO_ACCOUNT_SID, DEFAULT_TWILIO_AUTH_TOKEN, TwilioAccount};
pub use sms_callback::SmsSettings;
pub use sms_record::{SmsCall, SmsCallbackRecord};
pub use sms_script::{ScriptedSms, SmsOutcome};
pub use standard_webhooks::{AppWebhookRejection, SignatureMatch};
pub use templates::Template;

/// The sandbox binary's settings.
#[derive(clap::Parser, Debug)]
#[command(
    name = "wati-sandbox",
    version,
    about = "A local stand-in for WATI's template API, Twilio's Messages API, the app's webhook receiver and the human-check providers (Turnstile, hCaptcha)."
)]
pub struct SandboxArgs {
    /// Listen address.
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: std::net::SocketAddr,
    /// The key callers must send as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "WATI_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// The tenant's templates, `name:language:category:status:param|param`,
    /// comma-separated; by default one approved authentication template, `login_otp`,
    /// whose parameter is `1`.
    #[arg(
        long,
        env = "SANDBOX_TEMPLATES",
        default_value = "login_otp:en_US:AUTHENTICATION:APPROVED:1"
    )]
    pub templates: String,
    /// Delay before every answer, in milliseconds.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// WATI's plan limit: send calls (v1 and v3 together) admitted per sliding 10 s;
    /// 0 means no limit.
    #[arg(
        long = "calls-per-10s",
        env = "SANDBOX_CALLS_PER_10S",
        default_value_t = 0
    )]
    pub calls_per_10s: u32,
    /// Meta's throughput of each sending number, in messages per second: a rate for
    /// every number, and `number=rate` for one (`default` is the channel of calls without
    /// `channel_number`), comma-separated; 0 means no limit. Messages past it in any 1 s
    /// are accepted, then fail with 130429.
    #[arg(long, env = "SANDBOX_MESSAGES_PER_SECOND", default_value = "80")]
    pub messages_per_second: String,
    /// Where to post delivery receipts (WATI's webhook events); none by default.
    #[arg(long, env = "SANDBOX_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// From acceptance to the `delivered` (or `failed`) receipt, in milliseconds.
    #[arg(long, env = "SANDBOX_DELIVERED_AFTER_MS", default_value_t = 300)]
    pub delivered_after_ms: u64,
    /// From acceptance to the `read` receipt, in milliseconds (never before `delivered`).
    #[arg(long, env = "SANDBOX_READ_AFTER_MS", default_value_t = 1_000)]
    pub read_after_ms: u64,
    /// How many times each receipt is posted.
    #[arg(long, env = "SANDBOX_RECEIPT_REPEAT", default_value_t = 1)]
    pub receipt_repeat: u32,
    /// Post `read` before `delivered`, both at the delivered time.
    #[arg(
        long,
        env = "SANDBOX_RECEIPT_REORDER",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub receipt_reorder: bool,
    /// The Twilio Account SID callers must name in the path and authenticate as.
    #[arg(
        long,
        env = "TWILIO_ACCOUNT_SID",
        default_value = sms::DEFAULT_TWILIO_ACCOUNT_SID
    )]
    pub twilio_account_sid: String,
    /// The Twilio Auth Token: the basic-auth password, and the key of every status
    /// callback's `X-Twilio-Signature`.
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        default_value = sms::DEFAULT_TWILIO_AUTH_TOKEN,
        hide_env_values = true
    )]
    pub twilio_auth_token: String,
    /// From an SMS's `sent` callback to its final one, in milliseconds.
    #[arg(long, env = "SANDBOX_SMS_DELIVERED_AFTER_MS", default_value_t = 300)]
    pub sms_delivered_after_ms: u64,
    /// The Standard Webhooks secrets `POST /sandbox/app-webhook` verifies with,
    /// comma-separated `whsec_…` (a signature under any one of them verifies).
    #[arg(
        long,
        env = "SANDBOX_APP_WEBHOOK_SECRET",
        default_value = app_webhook::DEFAULT_APP_WEBHOOK_SECRET,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub app_webhook_secret: String,
    /// The site key the Turnstile stand-in knows (its widget stub takes only this one).
    #[arg(
        long,
        env = "SANDBOX_TURNSTILE_SITE_KEY",
        default_value = captcha::DEFAULT_TURNSTILE_SITE_KEY
    )]
    pub turnstile_site_key: String,
    /// The secret Turnstile's siteverify takes.
    #[arg(
        long,
        env = "SANDBOX_TURNSTILE_SECRET",
        default_value = captcha::DEFAULT_TURNSTILE_SECRET,
        hide_env_values = true
    )]
    pub turnstile_secret: String,
    /// The site key the hCaptcha stand-in knows (siteverify's `sitekey` must be it).
    #[arg(
        long,
        env = "SANDBOX_HCAPTCHA_SITE_KEY",
        default_value = captcha::DEFAULT_HCAPTCHA_SITE_KEY
    )]
    pub hcaptcha_site_key: String,
    /// The secret hCaptcha's siteverify takes.
    #[arg(
        long,
        env = "SANDBOX_HCAPTCHA_SECRET",
        default_value = captcha::DEFAULT_HCAPTCHA_SECRET,
        hide_env_values = true
    )]
    pub hcaptcha_secret: String,
    /// Percent of numbers not on WhatsApp, chosen by a hash of the number.
    #[arg(long, env = "SANDBOX_NOT_ON_WHATSAPP_PERCENT", default_value_t = 0.0)]
    pub not_on_whatsapp_percent: f64,
    /// Percent of numbers whose messages are accepted, then fail (131026).
    #[arg(long, env = "SANDBOX_FAILED_RECEIPT_PERCENT", default_value_t = 0.0)]
    pub failed_receipt_percent: f64,
    /// Percent of numbers whose messages are accepted and get no receipt.
    #[arg(long, env = "SANDBOX_NO_RECEIPT_PERCENT", default_value_t = 0.0)]
    pub no_receipt_percent: f64,
}

impl SandboxArgs {
    /// The settings, checked; an error names the one that does not read.
    pub fn into_config(self) -> Result<SandboxConfig, String> {
        let population = Population {
            not_on_whatsapp_percent: self.not_on_whatsapp_percent,
            failed_receipt_percent: self.failed_receipt_percent,
            no_receipt_percent: self.no_receipt_percent,
        };
        population.check()?;
        Ok(SandboxConfig {
            api_key: self.api_key,
            templates: templates::parse(&self.templates)?,
            latency: Duration::from_millis(self.latency_ms),
            calls_per_10s: self.calls_per_10s,
            message_rates: MessageRates::parse(&self.messages_per_second)?,
            receipts: ReceiptSettings {
                // An empty value, as a compose file leaves it, means no webhook.
                webhook_url: self.webhook_url.filter(|url| !url.is_empty()),
                delivered_after: Duration::from_millis(self.delivered_after_ms),
                read_after: Duration::from_millis(self.read_after_ms),
                repeat: self.receipt_repeat,
                reorder: self.receipt_reorder,
            },
            population,
            twilio: TwilioAccount {
                account_sid: self.twilio_account_sid,
                auth_token: self.twilio_auth_token,
            },
            sms: SmsSettings {
                delivered_after: Duration::from_millis(self.sms_delivered_after_ms),
            },
            app_webhook_secrets: app_webhook::parse_secrets(&self.app_webhook_secret)?,
            captcha: CaptchaKeys {
                turnstile: captcha::site(
                    "SANDBOX_TURNSTILE",
                    self.turnstile_site_key,
                    self.turnstile_secret,
                )?,
                hcaptcha: captcha::site(
                    "SANDBOX_HCAPTCHA",
                    self.hcaptcha_site_key,
                    self.hcaptcha_secret,
                )?,
            },
        })
    }
}

/// What the sandbox expects and how fast it answers.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The key a caller must send as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// The tenant's templates at start; [`Sandbox::set_templates`] changes them later.
    pub templates: Vec<Template>,
    /// Delay before every unscripted answer.
    pub latency: Duration,
    /// Send calls (v1 and v3 together) admitted per sliding 10 s, like WATI's plan
    /// limit; the rest get 429. 0 means no limit.
    pub calls_per_10s: u32,
    /// Each sending number's throughput at start; [`Sandbox::set_message_rates`] and
    /// [`Sandbox::set_messages_per_second`] change it later.
    pub message_rates: MessageRates,
    /// Delivery receipts at start; [`Sandbox::set_receipts`] changes them later.
    pub receipts: ReceiptSettings,
    /// The numbers' fates at start; [`Sandbox::set_population`] changes them later.
    pub population: Population,
    /// The Twilio account the Messages endpoint answers to.
    pub twilio: TwilioAccount,
    /// SMS status callbacks at start; [`Sandbox::set_sms_settings`] changes them later.
    pub sms: SmsSettings,
    /// The Standard Webhooks secrets (`whsec_` and Base64 of at least 24 bytes) the app
    /// webhook verifies deliveries with; a signature under any one verifies. One that
    /// does not read verifies nothing (`SandboxArgs` refuses it at start).
    pub app_webhook_secrets: Vec<String>,
    /// The one site the sandbox knows with each human-check provider.
    pub captcha: CaptchaKeys,
}

impl Default for SandboxConfig {
    /// The binary's defaults but for the numbers' throughput: key `sandbox-key`, one
    /// approved authentication template `login_otp` with the parameter `1`, no delay, no
    /// plan limit, no limit on any sending number (the binary holds each to Meta's 80 a
    /// second: [`MessageRates::default`]), no receipts, every number on WhatsApp; Twilio
    /// account [`DEFAULT_TWILIO_ACCOUNT_SID`] with token
    /// `sandbox-token`, SMS delivered 300 ms after they are sent; the app webhook verifies
    /// with [`DEFAULT_APP_WEBHOOK_SECRET`]; the human-check providers' documented test keys
    /// ([`CaptchaKeys::default`]).
    fn default() -> Self {
        Self {
            api_key: "sandbox-key".into(),
            templates: templates::defaults(),
            latency: Duration::ZERO,
            calls_per_10s: 0,
            message_rates: MessageRates::unlimited(),
            receipts: ReceiptSettings::default(),
            population: Population::default(),
            twilio: TwilioAccount::default(),
            sms: SmsSettings::default(),
            app_webhook_secrets: vec![DEFAULT_APP_WEBHOOK_SECRET.to_owned()],
            captcha: CaptchaKeys::default(),
        }
    }
}

/// The sandbox's state; tests in the same process may read and script it directly.
#[derive(Clone)]
pub struct Sandbox {
    config: Arc<SandboxConfig>,
    recorded: Arc<Mutex<record::Recorded>>,
    /// The receipt settings in force; each accepted message takes a snapshot.
    receipts: Arc<Mutex<Arc<ReceiptSettings>>>,
    /// The tenant's templates, and how the list answers: kept across [`Sandbox::reset`].
    registry: Arc<Mutex<Registry>>,
    /// The numbers' fates in force: kept across [`Sandbox::reset`].
    population: Arc<Mutex<Population>>,
    /// The SMS callback settings in force: kept across [`Sandbox::reset`].
    sms: Arc<Mutex<SmsSettings>>,
    webhook: Arc<webhook::Webhook>,
    /// The HMAC keys of `config.app_webhook_secrets`, in order.
    app_keys: Arc<Vec<Option<aws_lc_rs::hmac::Key>>>,
}

#[derive(Default)]
struct Registry {
    templates: Vec<Template>,
    /// A status the template lists answer with instead of the list (403, 5xx).
    listing_failure: Option<axum::http::StatusCode>,
    /// Template list requests that passed the key check, answered or failed.
    list_requests: u64,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            receipts: Arc::new(Mutex::new(Arc::new(config.receipts.clone()))),
            registry: Arc::new(Mutex::new(Registry {
                templates: config.templates.clone(),
                ..Registry::default()
            })),
            population: Arc::new(Mutex::new(config.population)),
            sms: Arc::new(Mutex::new(config.sms.clone())),
            app_keys: Arc::new(standard_webhooks::keys_of(&config.app_webhook_secrets)),
            recorded: Arc::new(Mutex::new(record::Recorded::new(
                config.message_rates.clone(),
            ))),
            config: Arc::new(config),
            webhook: Arc::new(webhook::Webhook::new()),
        }
    }

    fn recorded(&self) -> MutexGuard<'_, record::Recorded> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.recorded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn app_keys(&self) -> &[Option<aws_lc_rs::hmac::Key>] {
        &self.app_keys
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's templates, as WATI would list them.
    pub fn templates(&self) -> Vec<Template> {
        self.registry().templates.clone()
    }

    /// The templates of `channel` (`None`: the default one), as WATI lists them.
    pub fn templates_of(&self, channel: Option<&str>) -> Vec<Template> {
        self.registry()
            .templates
            .iter()
            .filter(|t| t.channel.as_deref() == channel)
            .cloned()
            .collect()
    }

    /// The template a send from `channel` names, or WATI's words for why it cannot be
    /// sent (unknown there, or not approved).
    fn template_for_send(&self, name: &str, channel: Option<&str>) -> Result<Template, String> {
        match self
            .templates_of(channel)
            .into_iter()
            .find(|t| t.name == name)
        {
            Some(template) if template.approved() => Ok(template),
            Some(t) => Err(format!(
                "Template {} is not approved (status {})",
                t.name, t.status
            )),
            None => Err("Template not found".to_owned()),
        }
    }

    /// Replaces the tenant's templates (a template paused by Meta, a new language).
    pub fn set_templates(&self, templates: Vec<Template>) {
        self.registry().templates = templates;
    }

    /// Moves the tenant's templates onto each of `numbers` (WATI lists templates per
    /// number): a pool of sending numbers, each with the same templates.
    pub fn put_templates_on(&self, numbers: &[&str]) {
        let mut registry = self.registry();
        registry.templates = registry
            .templates
            .iter()
            .flat_map(|t| {
                numbers.iter().map(move |number| Template {
                    channel: Some((*number).to_owned()),
                    ..t.clone()
                })
            })
            .collect();
    }

    /// Makes the template lists answer `status` (403 for a key without the read scope,
    /// 5xx for an outage) until called with `None`.
    pub fn fail_listing(&self, status: Option<u16>) {
        self.registry().listing_failure =
            status.and_then(|s| axum::http::StatusCode::from_u16(s).ok());
    }

    /// Counts a list request that passed the key check; the failure it gets, if any.
    fn list_request(&self) -> Option<axum::http::StatusCode> {
        let mut registry = self.registry();
        registry.list_requests += 1;
        registry.listing_failure
    }

    /// Template list requests that passed the key check, answered or failed.
    pub fn list_requests(&self) -> u64 {
        self.registry().list_requests
    }

    fn receipt_settings_now(&self) -> Arc<ReceiptSettings> {
        Arc::clone(&self.receipts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes where and how receipts are posted, for messages accepted from now on
    /// (those accepted before keep the settings they were accepted under).
    pub fn set_receipts(&self, settings: ReceiptSettings) {
        *self.receipts.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    /// The receipt settings in force.
    pub fn receipt_settings(&self) -> ReceiptSettings {
        ReceiptSettings::clone(&self.receipt_settings_now())
    }

    /// Changes the shares of numbers not on WhatsApp, failed and without receipts, for
    /// calls from now on; refuses shares that are not percentages adding up to at most 100.
    pub fn set_population(&self, population: Population) -> Result<(), String> {
        population.check()?;
        *self.population.lock().unwrap_or_else(|e| e.into_inner()) = population;
        Ok(())
    }

    /// The shares in force.
    pub fn population(&self) -> Population {
        *self.population.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each sending number's throughput in force.
    pub fn message_rates(&self) -> MessageRates {
        self.recorded().numbers.rates().clone()
    }

    /// Replaces every number's throughput, for calls judged from now on.
    pub fn set_message_rates(&self, rates: MessageRates) {
        self.recorded().numbers.set_rates(rates);
    }

    /// Sets one number's throughput (`number` as calls name it in `channel_number`, or
    /// [`DEFAULT_CHANNEL`]), in messages per second; 0 is no limit.
    pub fn set_messages_per_second(&self, number: &str, per_second: u32) {
        self.recorded().numbers.set_rate(number, per_second);
    }

    /// Marks `number` as in trouble from `from` on (past or future): the messages of
    /// every call that arrives then or later are accepted, then fail with 131048 (spam
    /// rate limit hit), until [`Sandbox::undegrade_number`]. Kept across a reset.
    pub fn degrade_number(&self, number: &str, from: Instant) {
        let now = Instant::now();
        let now_ms = send::now_ms();
        let from_ms = if from >= now {
            now_ms + (from - now).as_millis() as u64
        } else {
            now_ms.saturating_sub((now - from).as_millis() as u64)
        };
        self.recorded().numbers.degrade(number, from, from_ms);
    }

    /// Ends `number`'s trouble: calls arriving from now on are judged as usual.
    pub fn undegrade_number(&self, number: &str) {
        self.recorded().numbers.undegrade(number);
    }

    /// The numbers in trouble, each with the Unix time in ms it began.
    pub fn degraded_numbers(&self) -> BTreeMap<String, u64> {
        self.recorded().numbers.degraded()
    }

    /// Each sending number's messages since start or reset, by what became of them; a
    /// number appears once a call names it.
    pub fn number_stats(&self) -> BTreeMap<String, NumberStats> {
        self.recorded().numbers.stats()
    }

    /// Every receipt posting that ended (answered 2xx or given up), in the order they
    /// ended.
    pub fn receipts(&self) -> Vec<ReceiptRecord> {
        self.recorded().receipts()
    }

    /// Receipts the webhook answered with 2xx.
    pub fn receipts_posted(&self) -> u64 {
        self.recorded().receipts_posted()
    }

    /// Receipts given up on after the last retry.
    pub fn receipts_failed(&self) -> u64 {
        self.recorded().receipts_failed()
    }

    /// Messages accepted for `phone`, oldest first.
    pub fn messages(&self, phone: &str) -> Vec<Message> {
        self.recorded().messages(phone)
    }

    /// The [`INBOX_PHONES`] phones messaged last, latest first, each with its last
    /// [`INBOX_MESSAGES`] messages, oldest first: what `GET /sandbox/inbox` answers.
    pub fn inbox(&self) -> Inbox {
        self.recorded().inbox(INBOX_PHONES, INBOX_MESSAGES)
    }

    /// Every recipient entry for `phone` of every answered call, oldest first.
    pub fn calls(&self, phone: &str) -> Vec<Call> {
        self.recorded().calls(phone)
    }

    /// Every call that passed the key check and the plan limit, in arrival order.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.recorded().call_log()
    }

    /// Messages accepted in all.
    pub fn accepted(&self) -> u64 {
        self.recorded().accepted()
    }

    /// Calls that passed the key check and the plan limit, counted when they arrive, so
    /// a test can act while WATI is still holding a call.
    pub fn arrived(&self) -> u64 {
        self.recorded().arrived()
    }

    /// Calls refused with 429 by the plan limit.
    pub fn rate_limited(&self) -> u64 {
        self.recorded().rate_limited()
    }

    /// Queues answers for the next calls for `phone` (one per recipient per call).
    pub fn script(&self, phone: &str, replies: Vec<ScriptedReply>) {
        self.recorded().script(phone, replies);
    }

    /// Queues answers for the next SMS sends to `phone` (its digits; a `+` is ignored),
    /// one per send.
    pub fn script_sms(&self, phone: &str, replies: Vec<ScriptedSms>) {
        self.recorded().sms.script(&sms::digits(phone), replies);
    }

    /// The SMS accepted for `phone` (its digits; a `+` is ignored), oldest first; each
    /// [`Message::text`] is the `Body` as sent.
    pub fn sms_messages(&self, phone: &str) -> Vec<Message> {
        self.recorded().sms_messages(&sms::digits(phone))
    }

    /// Every request to the Messages endpoint for `phone` that passed the credentials
    /// check, whatever was answered, oldest first.
    pub fn sms_calls(&self, phone: &str) -> Vec<SmsCall> {
        self.recorded().sms.calls(&sms::digits(phone))
    }

    /// SMS accepted in all.
    pub fn sms_accepted(&self) -> u64 {
        self.recorded().sms.accepted()
    }

    /// Every status callback whose posting ended (answered, or given up), in the order
    /// they ended.
    pub fn sms_callbacks(&self) -> Vec<SmsCallbackRecord> {
        self.recorded().sms.callbacks()
    }

    /// Status callbacks the receiver answered with 2xx.
    pub fn sms_callbacks_posted(&self) -> u64 {
        self.recorded().sms.callbacks_posted()
    }

    /// Status callbacks answered otherwise, or never.
    pub fn sms_callbacks_failed(&self) -> u64 {
        self.recorded().sms.callbacks_failed()
    }

    /// Changes how SMS callbacks are paced, for messages accepted from now on.
    pub fn set_sms_settings(&self, settings: SmsSettings) {
        *self.sms.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// The SMS callback settings in force.
    pub fn sms_settings(&self) -> SmsSettings {
        self.sms.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Queues answers for the next verified deliveries to the app webhook, one each, in
    /// order, after those already queued; deliveries that do not verify pop none.
    pub fn script_app_webhook(&self, answers: Vec<ScriptedAppAnswer>) {
        self.recorded().app.script(answers);
    }

    /// Every delivery attempt to the app webhook, verified or not, in arrival order.
    pub fn app_events(&self) -> Vec<AppEventRecord> {
        self.recorded().app.events()
    }

    /// Delivery attempts to the app webhook, verified or not.
    pub fn app_events_received(&self) -> u64 {
        self.recorded().app.received()
    }

    /// Delivery attempts to the app webhook that verified.
    pub fn app_events_verified(&self) -> u64 {
        self.recorded().app.verified()
    }

    /// A fresh human-check token of `provider`, as its widget would hand the page after a
    /// person solved it (hostname `localhost`): good once, for the provider's life (300 s
    /// for Turnstile, 120 s for hCaptcha) on the captcha clock.
    pub fn solve_captcha(&self, provider: CaptchaProvider) -> String {
        let solve = captcha_record::Solve {
            hostname: "localhost".into(),
            ..captcha_record::Solve::default()
        };
        self.recorded()
            .captcha
            .issue(provider, solve, send::now_ms())
    }

    /// Queues answers for the next siteverify calls (either provider), one each, in order,
    /// after those already queued: a status, `internal-error`, a hang.
    pub fn script_captcha(&self, answers: Vec<ScriptedCaptcha>) {
        self.recorded().captcha.script(answers);
    }

    /// Every siteverify call, whatever it was answered, in arrival order.
    pub fn captcha_verifications(&self) -> Vec<CaptchaVerification> {
        self.recorded().captcha.verifications()
    }

    /// Moves the captcha clock forward, so that tokens handed out age by `by` (a token
    /// past its life is refused as expired); [`Sandbox::reset`] sets it back.
    pub fn advance_captcha_clock(&self, by: Duration) {
        self.recorded().captcha.advance(by);
    }

    /// Forgets messages, calls, scripts, receipts, callbacks, app events, human-check
    /// tokens and siteverify calls, counters, the plan window (of both WATI and Twilio)
    /// and the numbers' throughput windows; keeps the settings, templates, population,
    /// the numbers' rates and which are degraded.
    /// Receipts and callbacks of messages accepted before still go out but are not
    /// recorded.
    pub fn reset(&self) {
        self.recorded().reset();
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/sandbox", get(inbox::to_page))
            .route("/sandbox/", get(inbox::page))
            .route("/sandbox/inbox", get(inbox::inbox))
            .route("/sandbox/messages", get(control::list_messages))
            .route("/sandbox/calls", get(control::list_calls))
            .route("/sandbox/call-log", get(control::call_log))
            .route("/sandbox/last-code/{phone}", get(control::last_code))
            .route("/sandbox/receipts", get(control::list_receipts))
            .route("/sandbox/script", post(control::add_script))
            .route("/sandbox/script-sms", post(control::add_sms_script))
            .route("/sandbox/sms/{phone}", get(control::sms_messages))
            .route("/sandbox/sms-calls", get(control::sms_calls))
            .route("/sandbox/sms-callbacks", get(control::sms_callbacks))
            .route(
                "/sandbox/population",
                get(control::population).put(control::set_population),
            )
            .route("/sandbox/fate/{phone}", get(control::fate))
            .route("/sandbox/app-webhook", post(app_webhook::receive))
            .route("/sandbox/script-app-webhook", post(app_webhook::add_script))
            .route("/sandbox/app-events", get(app_webhook::events))
            .route(
                "/turnstile/v0/siteverify",
                post(captcha_routes::turnstile_siteverify),
            )
            .route(
                "/hcaptcha/siteverify",
                post(captcha_routes::hcaptcha_siteverify),
            )
            .route(
                "/sandbox/captcha/solve",
                post(captcha_routes::solve).options(captcha_routes::solve_preflight),
            )
            .route("/sandbox/captcha/script", post(captcha_routes::add_script))
            .route(
                "/sandbox/captcha/verifications",
                get(captcha_routes::verifications),
            )
            .route("/sandbox/captcha/api.js", get(captcha_routes::api_js))
            .route("/sandbox/reset", post(control::reset))
            .route("/sandbox/stats", get(control::stats))
            .route("/sandbox/numbers", get(control::number_stats))
            .route(
                "/sandbox/message-rates",
                get(control::message_rates).put(control::set_message_rates),
            )
            .route(
                "/sandbox/message-rates/{number}",
                put(control::set_messages_per_second),
            )
            .route("/sandbox/degraded", get(control::degraded_numbers))
            .route(
                "/sandbox/degraded/{number}",
                put(control::degrade_number).delete(control::undegrade_number),
            )
            .route(
                "/sandbox/templates",
                get(control::list_templates).put(control::set_templates),
            )
            // 10,000 recipients with a few parameters each outgrow axum's 2 MB default;
            // a full batch should meet WATI's checks, not a 413.
            .route(
                "/{*path}",
                post(send::send)
                    .layer(DefaultBodyLimit::max(send::MAX_BODY_BYTES))
                    .get(listing::list),
            )
            .with_state(self.clone())
    }
}

/// Serves the sandbox on `listener` until `shutdown` completes.
pub async fn serve(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(shutdown)
        .await
}
