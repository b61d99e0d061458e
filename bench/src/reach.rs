//! The reach stage: how many phones end up with a code in hand when some of them cannot
//! get it by WhatsApp, with WhatsApp only and with the SMS fallback.
//!
//! The same phones (valid UK mobiles) meet the same population twice, each time on a
//! fresh stack and sandbox: 12% not on WhatsApp, 3% accepted then failed, 2% accepted and
//! never heard of (the sandbox picks a number's fate by a fixed hash of the number, so
//! both halves meet the same fates). Receipts are on in both halves, so "a code in hand"
//! is what the product itself knows: a delivered (or read) receipt on either channel, as
//! recorded in each delivery's status in Redis.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use otp_api::phone::PhoneNumber;
use otp_shared::redis::records::{state, status};
use serde_json::{Value, json};
use wati_sandbox::{Fate, Population, ReceiptSettings, Sandbox};

use crate::stack::{BurstCpu, Services, Stack, StackBudgets, StackSettings, StackSms, with_stack};
use crate::stats::summary;
use crate::{load, start_sandbox};

const WEBHOOK_SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// The population: 12% not on WhatsApp, 3% failed receipts, 2% no receipt.
pub const POPULATION: Population = Population {
    not_on_whatsapp_percent: 12.0,
    failed_receipt_percent: 3.0,
    no_receipt_percent: 2.0,
};

/// The first window: a code in hand within this long of the send's acceptance.
const SOON: Duration = Duration::from_secs(30);
/// otp-status answers checked against Redis, per fate: enough to catch a disagreement
/// that is not a rare race, few enough to take a moment.
const STATUS_CHECKS_PER_FATE: usize = 50;
/// Between two reads of the statuses.
const POLL: Duration = Duration::from_millis(500);

/// What the stage runs against.
pub struct Settings<'a> {
    pub services: &'a Services,
    pub prefix: &'a str,
    pub log_level: &'a str,
    pub workers: usize,
    /// `WORKER_CONCURRENCY` and `WATI_BATCH_MAX`; the product's defaults when `None`.
    pub worker_concurrency: Option<u16>,
    pub concurrency: usize,
    /// When the sandbox posts `delivered` and `read` after accepting a message.
    pub delivered_after: Duration,
    pub read_after: Duration,
    /// `FALLBACK_AFTER_SECONDS` of the half with fallback.
    pub fallback_after_seconds: u64,
    /// The code's life (`OTP_TTL_SECONDS`) in both halves.
    pub ttl_seconds: u64,
    /// The longest wait for quiet cores before each half's burst.
    pub quiet_start: Duration,
    /// Waiting ends when nothing has changed this long (no send can then settle: a send
    /// that WATI accepted without a receipt stays `sent` forever with WhatsApp only).
    pub quiet: Duration,
}

/// Runs WhatsApp only, then with fallback, over the same phones; returns their lines,
/// the comparison last.
pub async fn run(settings: &Settings<'_>, phones: &[PhoneNumber]) -> anyhow::Result<Vec<Value>> {
    let without = half(settings, phones, false).await?;
    let with = half(settings, phones, true).await?;
    let comparison = compare(&without, &with);
    Ok(vec![without, with, comparison])
}

/// The targets of the issue, each measured and met or not.
fn compare(without: &Value, with: &Value) -> Value {
    let number = |line: &Value, field: &str| line[field].as_f64().unwrap_or(0.0);
    let ratio = crate::stats::ratio(
        number(with, "intake_per_second"),
        number(without, "intake_per_second"),
    );
    let with_share = number(with, "in_hand_within_life_percent");
    let without_share = number(without, "in_hand_within_life_percent");
    let accepted = without["accepted"].as_u64().unwrap_or(0) as usize;
    let on_whatsapp = without["fates"]["on_whatsapp"].as_u64().unwrap_or(0);
    let reached_exactly = without["in_hand_within_life"].as_u64() == Some(on_whatsapp)
        && without["by_fate"]["on_whatsapp"]["in_hand_within_life"].as_u64() == Some(on_whatsapp);
    let on_whatsapp = on_whatsapp as usize;
    let double = with["sms"]["phones_with_two_or_more"].as_u64().unwrap_or(0)
        + without["sms"]["phones_with_two_or_more"]
            .as_u64()
            .unwrap_or(0);
    let targets = json!({
        "with_fallback_in_hand_within_life_percent": {
            "target": ">= 99.9", "measured": with_share, "met": with_share >= 99.9,
        },
        // 83% is what the shares leave on WhatsApp; the hash gives a given list of
        // phones a little more or less, so the share it gave these is shown beside it.
        "whatsapp_only_in_hand_within_life_percent": {
            "target": "<= 83", "measured": without_share, "met": without_share <= 83.0,
            "phones_on_whatsapp_percent": percent(on_whatsapp, accepted),
            "reached_exactly_the_phones_on_whatsapp": reached_exactly,
        },
        "phones_with_two_automatic_sms": {"target": "0", "measured": double, "met": double == 0},
        "intake_with_over_without": {"target": ">= 0.9", "measured": ratio, "met": ratio >= 0.9},
    });
    let met = targets
        .as_object()
        .map_or(0, |t| t.values().filter(|t| t["met"] == true).count());
    json!({
        "stage": "reach_comparison",
        "intake_with_over_without": ratio,
        "in_hand_within_30s_percent": {
            "whatsapp_only": without["in_hand_within_30s_percent"],
            "with_fallback": with["in_hand_within_30s_percent"],
        },
        "in_hand_within_life_percent": {
            "whatsapp_only": without_share,
            "with_fallback": with_share,
        },
        "targets": targets,
        "targets_met": format!("{met}/4"),
    })
}

async fn half(
    settings: &Settings<'_>,
    phones: &[PhoneNumber],
    fallback: bool,
) -> anyhow::Result<Value> {
    let label = if fallback {
        "reach_with_fallback"
    } else {
        "reach_whatsapp_only"
    };
    let (sandbox, sandbox_url) = start_sandbox(Duration::ZERO, 0).await?;
    sandbox
        .set_population(POPULATION)
        .map_err(|e| anyhow::anyhow!("the sandbox's population: {e}"))?;
    let prefix = format!("{}{}", settings.prefix, if fallback { "f1" } else { "f0" });
    let stack_settings = StackSettings {
        services: settings.services,
        prefix: &prefix,
        api_binary: None,
        wati_base_url: &sandbox_url,
        workers: settings.workers,
        worker_concurrency: settings.worker_concurrency,
        log_level: settings.log_level,
        webhook_secret: Some(WEBHOOK_SECRET),
        budgets: StackBudgets {
            api_version: "v3",
            calls_per_10s: 0,
            messages_per_second: 0,
            batch_max: settings.worker_concurrency.map(u32::from),
            ttl_seconds: settings.ttl_seconds,
            numbers: 0,
        },
        sms: fallback.then_some(StackSms {
            twilio_base_url: &sandbox_url,
            allowed_country_codes: "44",
            // Off: the benchmark measures reach, not the budget that guards spend.
            sends_per_minute: 0,
            fallback_after_seconds: settings.fallback_after_seconds,
        }),
        limits: crate::stack::ApiLimits::Off,
        api_env: &[],
    };
    with_stack(&stack_settings, async |stack| {
        sandbox.set_receipts(ReceiptSettings {
            webhook_url: Some(format!(
                "{}/api/webhooks/wati/{WEBHOOK_SECRET}",
                stack.api_url
            )),
            delivered_after: settings.delivered_after,
            read_after: settings.read_after,
            repeat: 1,
            reorder: false,
        });
        let busy_before = load::quiet_machine(settings.quiet_start).await;
        let before = BurstCpu::now(stack);
        let (intake, responses) = load::burst(stack.api_addr, phones, settings.concurrency).await?;
        let burst_cpu = before.until_now(stack);
        let wait = wait_until_settled(settings, &prefix, &responses, fallback).await?;
        let mut line = measure(settings, &sandbox, phones, &responses, &wait, fallback);
        line["stage"] = json!(label);
        line["intake_per_second"] = intake["per_second"].clone();
        line["intake_latency"] = intake["latency"].clone();
        line["intake_statuses"] = intake["statuses"].clone();
        line["burst_cpu_seconds"] = burst_cpu;
        line["machine_busy_before_burst_percent"] = json!(busy_before);
        line["errors"] = intake["errors"].clone();
        line["sms_on"] = json!(fallback);
        if fallback {
            line["fallback_after_seconds"] = json!(settings.fallback_after_seconds);
            line["sms_sends_per_minute"] =
                json!("0: off, so the SMS budget does not cap the benchmark");
            line["sms"]["by_trigger"] = fallbacks_by_trigger(stack).await;
            // Every accepted phone should hold its code: one that does not was lost.
            line["lost"] = line["without_code_within_life"].clone();
        }
        line["receipts_failed"] = json!(sandbox.receipts_failed());
        line["sms_callbacks_failed"] = json!(sandbox.sms_callbacks_failed());
        let (checked, disagreements) = check_otp_status(stack, &wait.phones, fallback).await;
        line["otp_status_checked"] = json!(checked);
        line["otp_status_disagreements"] = json!(disagreements);
        let (api_mb, worker_mb) = stack.peak_rss_mb();
        let (api_cpu, worker_cpu) = stack.cpu_seconds();
        line["api_peak_rss_mb"] = json!(api_mb);
        line["worker_peak_rss_mb"] = json!(worker_mb);
        line["api_cpu_seconds"] = json!(api_cpu);
        line["worker_cpu_seconds"] = json!(worker_cpu);
        anyhow::Ok(line)
    })
    .await
}

/// One delivery of a send (its first, by WhatsApp, or its SMS fallback), as its status
/// record in Redis says.
#[derive(Clone, Debug, Default)]
struct Delivery {
    state: String,
    /// Unix ms: the api's acceptance (first), or the fallback's beginning (SMS).
    accepted_at: Option<u64>,
    delivered_at: Option<u64>,
    failed_code: Option<String>,
}

impl Delivery {
    fn final_failure(&self) -> bool {
        self.state == state::FAILED || self.state == state::EXPIRED
    }
}

/// What Redis holds of one phone's send.
#[derive(Clone, Debug, Default)]
struct PhoneSends {
    request_id: String,
    first: Option<Delivery>,
    sms: Option<Delivery>,
    /// Send requests found for the phone: 1 (each phone is sent to once).
    requests: usize,
}

/// When and by which channel a phone got its code.
struct InHand {
    channel: &'static str,
    after: Duration,
}

impl PhoneSends {
    /// The first delivered receipt on either channel, counted from the send's
    /// acceptance.
    fn in_hand(&self) -> Option<InHand> {
        let accepted = self.first.as_ref()?.accepted_at?;
        let at = |d: &Option<Delivery>| d.as_ref().and_then(|d| d.delivered_at);
        let (channel, at) = match (at(&self.first), at(&self.sms)) {
            (Some(w), Some(s)) if s < w => ("sms", s),
            (Some(w), _) => ("whatsapp", w),
            (None, Some(s)) => ("sms", s),
            (None, None) => return None,
        };
        Some(InHand {
            channel,
            after: Duration::from_millis(at.saturating_sub(accepted)),
        })
    }

    /// Nothing more will happen to it: a code in hand, or every way tried failed. With
    /// fallback a WhatsApp failure is not the end (its SMS is to come), and a send still
    /// `sent` without a receipt never ends with WhatsApp only (the quiet rule ends it).
    fn settled(&self, fallback: bool) -> bool {
        if self.in_hand().is_some() {
            return true;
        }
        let failed = |d: &Option<Delivery>| d.as_ref().is_some_and(Delivery::final_failure);
        if fallback {
            failed(&self.sms)
        } else {
            failed(&self.first)
        }
    }
}

/// Why waiting ended, and what was read last.
struct Wait {
    phones: HashMap<String, PhoneSends>,
    stopped: &'static str,
    waited: Duration,
}

/// Reads every send's statuses until each accepted phone is settled, the code's life
/// has passed since the last acceptance, or nothing has changed for `quiet` (at least
/// the fallback timer and a few seconds more, so that waiting never ends between a
/// send's acceptance and its timer).
async fn wait_until_settled(
    settings: &Settings<'_>,
    prefix: &str,
    responses: &load::Responses,
    fallback: bool,
) -> anyhow::Result<Wait> {
    let mut redis = otp_shared::redis::conn::connect(&settings.services.redis_url).await?;
    let quiet = settings
        .quiet
        .max(Duration::from_secs(settings.fallback_after_seconds + 5));
    let last_accepted = responses.accepted_at.values().max().copied().unwrap_or(0);
    let code_life_ends = last_accepted + settings.ttl_seconds * 1000;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut seen = BTreeMap::new();
    loop {
        let phones = read_sends(&mut redis, prefix).await?;
        let unsettled = responses
            .accepted_at
            .keys()
            .filter(|p| !phones.get(*p).is_some_and(|s| s.settled(fallback)))
            .count();
        // Progress: any delivery changed state or got its delivered time.
        let mut now_seen: BTreeMap<(String, bool), usize> = BTreeMap::new();
        for sends in phones.values() {
            for d in [&sends.first, &sends.sms].into_iter().flatten() {
                *now_seen
                    .entry((d.state.clone(), d.delivered_at.is_some()))
                    .or_default() += 1;
            }
        }
        if now_seen != seen {
            seen = now_seen;
            last_progress = Instant::now();
        }
        let stopped = if unsettled == 0 {
            Some("settled")
        } else if otp_shared::now_ms() > code_life_ends {
            Some("code_life")
        } else if last_progress.elapsed() > quiet {
            Some("quiet")
        } else {
            None
        };
        if let Some(stopped) = stopped {
            return Ok(Wait {
                phones,
                stopped,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every send of `prefix` by phone, from its status records
/// (`{prefix}:{<phone>}:status:<request>`, and `…:sms` for its SMS fallback).
async fn read_sends(
    redis: &mut otp_shared::redis::conn::RedisConn,
    prefix: &str,
) -> redis::RedisResult<HashMap<String, PhoneSends>> {
    let mut phones: HashMap<String, PhoneSends> = HashMap::new();
    let head = format!("{prefix}:{{");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:{{*}}:status:*"))
            .arg("COUNT")
            .arg(5_000)
            .query_async(redis)
            .await?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("HMGET").arg(key).arg(&[
                    status::STATE,
                    status::ACCEPTED_AT,
                    status::DELIVERED_AT,
                    status::FAILED_CODE,
                ]);
            }
            let found: Vec<[Option<String>; 4]> = pipe.query_async(redis).await?;
            for (key, [state, accepted_at, delivered_at, failed_code]) in keys.iter().zip(found) {
                let Some((phone, request)) = key
                    .strip_prefix(&head)
                    .and_then(|rest| rest.split_once("}:status:"))
                else {
                    continue;
                };
                let Some(state) = state else { continue };
                let delivery = Delivery {
                    state,
                    accepted_at: accepted_at.and_then(|t| t.parse().ok()),
                    delivered_at: delivered_at.and_then(|t| t.parse().ok()),
                    failed_code: failed_code.filter(|c| !c.is_empty()),
                };
                let sends = phones.entry(phone.to_owned()).or_default();
                match request.strip_suffix(":sms") {
                    Some(_) => sends.sms = Some(delivery),
                    None => {
                        sends.requests += 1;
                        sends.request_id = request.to_owned();
                        sends.first = Some(delivery);
                    }
                }
            }
        }
        if next == 0 {
            return Ok(phones);
        }
        cursor = next;
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    (part as f64 / whole.max(1) as f64 * 100.0 * 100.0).round() / 100.0
}

fn fate_name(fate: Fate) -> &'static str {
    match fate {
        Fate::OnWhatsApp => "on_whatsapp",
        Fate::NotOnWhatsApp => "not_on_whatsapp",
        Fate::FailedReceipt => "failed_receipt",
        Fate::NoReceipt => "no_receipt",
    }
}

/// The half's numbers: shares with a code in hand, time to code per channel, the SMS
/// sent, and the same by the fate the sandbox gave each phone.
fn measure(
    settings: &Settings<'_>,
    sandbox: &Sandbox,
    phones: &[PhoneNumber],
    responses: &load::Responses,
    wait: &Wait,
    fallback: bool,
) -> Value {
    let life = Duration::from_secs(settings.ttl_seconds);
    let accepted = responses.accepted_at.len();
    let (mut soon, mut in_life) = (0usize, 0usize);
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let (mut sms_sent, mut sms_calls, mut double_sms, mut both_channels) = (0, 0, 0, 0);
    let (mut extra_requests, mut unsettled) = (0, 0);
    let mut by_fate: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut unreached_examples: Vec<Value> = Vec::new();
    for phone in phones {
        let phone = phone.as_str();
        if !responses.accepted_at.contains_key(phone) {
            continue;
        }
        let sends = wait.phones.get(phone).cloned().unwrap_or_default();
        let fate = fate_name(POPULATION.fate(phone));
        let counts = by_fate.entry(fate).or_default();
        *counts.entry("phones").or_default() += 1;
        let sms = sandbox.sms_messages(phone).len();
        sms_sent += sms;
        sms_calls += sandbox.sms_calls(phone).len();
        double_sms += usize::from(sms >= 2);
        if sms > 0 {
            *counts.entry("sms_sent").or_default() += sms;
        }
        extra_requests += sends.requests.saturating_sub(1);
        unsettled += usize::from(!sends.settled(fallback));
        let delivered = |d: &Option<Delivery>| d.as_ref().is_some_and(|d| d.delivered_at.is_some());
        both_channels += usize::from(delivered(&sends.first) && delivered(&sends.sms));
        match sends.in_hand() {
            Some(hand) => {
                soon += usize::from(hand.after <= SOON);
                if hand.after <= life {
                    in_life += 1;
                    *counts.entry("in_hand_within_life").or_default() += 1;
                    *counts
                        .entry(if hand.channel == "sms" {
                            "by_sms"
                        } else {
                            "by_whatsapp"
                        })
                        .or_default() += 1;
                }
                times.entry(hand.channel).or_default().push(hand.after);
            }
            None => {
                *counts.entry("without_code").or_default() += 1;
                if unreached_examples.len() < 5 {
                    unreached_examples.push(json!({
                        "phone": phone,
                        "fate": fate,
                        "whatsapp": sends.first.as_ref().map(|d| &d.state),
                        "whatsapp_failed_code": sends.first.as_ref().and_then(|d| d.failed_code.as_ref()),
                        "sms": sends.sms.as_ref().map(|d| &d.state),
                        "sms_sent": sms,
                    }));
                }
            }
        }
    }
    let mut time_to_code = serde_json::Map::new();
    for channel in ["whatsapp", "sms"] {
        let samples = times.entry(channel).or_default();
        let mut entry = summary(samples);
        entry["count"] = json!(samples.len());
        time_to_code.insert(channel.to_owned(), entry);
    }
    let fates: BTreeMap<&str, usize> = by_fate
        .iter()
        .map(|(fate, counts)| (*fate, counts.get("phones").copied().unwrap_or(0)))
        .collect();
    json!({
        "phones": phones.len(),
        "accepted": accepted,
        "population_percent": {
            "not_on_whatsapp": POPULATION.not_on_whatsapp_percent,
            "failed_receipt": POPULATION.failed_receipt_percent,
            "no_receipt": POPULATION.no_receipt_percent,
        },
        "fates": fates,
        "code_life_seconds": settings.ttl_seconds,
        "in_hand_within_30s": soon,
        "in_hand_within_30s_percent": percent(soon, accepted),
        "in_hand_within_life": in_life,
        "in_hand_within_life_percent": percent(in_life, accepted),
        "without_code_within_life": accepted - in_life,
        "time_to_code": time_to_code,
        "delivered_on_both_channels": both_channels,
        "sms": {
            "sent": sms_sent,
            "twilio_calls": sms_calls,
            "phones_with_two_or_more": double_sms,
        },
        "double_sms": double_sms,
        "by_fate": by_fate,
        "without_code_examples": unreached_examples,
        "extra_requests": extra_requests,
        "unsettled": unsettled,
        "stopped": wait.stopped,
        "waited_s": (wait.waited.as_secs_f64() * 10.0).round() / 10.0,
    })
}

/// `otp_fallbacks_total` of the api (failure receipts) and the workers (refusals,
/// timers), summed by trigger and result: what set off each SMS, as the product counts.
async fn fallbacks_by_trigger(stack: &Stack) -> Value {
    let http = reqwest::Client::new();
    let mut counts: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for url in &stack.metrics_urls {
        let Ok(answer) = http.get(url).send().await else {
            continue;
        };
        let Ok(text) = answer.text().await else {
            continue;
        };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&format!("{}{{", otp_shared::metrics::FALLBACKS))
            else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            *counts
                .entry(label("trigger"))
                .or_default()
                .entry(label("result"))
                .or_default() += value;
        }
    }
    json!(counts)
}

/// Asks otp-status about a sample of settled sends (every fate's first few) and counts
/// those whose answer disagrees with Redis: the channel of the newest delivery, the
/// channels tried, and whether one was delivered.
async fn check_otp_status(
    stack: &Stack,
    phones: &HashMap<String, PhoneSends>,
    fallback: bool,
) -> (usize, usize) {
    let http = reqwest::Client::new();
    let mut per_fate: HashMap<&str, usize> = HashMap::new();
    let mut sample: Vec<&PhoneSends> = Vec::new();
    let mut ordered: Vec<(&String, &PhoneSends)> = phones.iter().collect();
    ordered.sort_by(|a, b| a.0.cmp(b.0));
    for (phone, sends) in ordered {
        let taken = per_fate
            .entry(fate_name(POPULATION.fate(phone)))
            .or_default();
        if *taken < STATUS_CHECKS_PER_FATE && sends.settled(fallback) {
            *taken += 1;
            sample.push(sends);
        }
    }
    let mut disagreements = 0;
    for sends in &sample {
        let url = format!("{}/api/auth/otp-status/{}", stack.api_url, sends.request_id);
        let body: Option<Value> = match http.get(url).send().await {
            Ok(answer) => answer.json().await.ok(),
            Err(_) => None,
        };
        let Some(body) = body else {
            disagreements += 1;
            continue;
        };
        let channels: Vec<&str> = body["deliveries"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| d["channel"].as_str()).collect())
            .unwrap_or_default();
        let delivered = body["deliveries"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| matches!(d["status"].as_str(), Some(state::DELIVERED | state::READ)))
        });
        let expected: &[&str] = if sends.sms.is_some() {
            &["whatsapp", "sms"]
        } else {
            &["whatsapp"]
        };
        let agrees = channels == expected
            && body["channel"].as_str() == expected.last().copied()
            && delivered == sends.in_hand().is_some();
        disagreements += usize::from(!agrees);
    }
    (sample.len(), disagreements)
}
