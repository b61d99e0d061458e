//! Issue 24, item 1: can a stranger keep a phone's owner out of login, or bomb the
//! phone with messages?
//!
//! A stranger (its own address) asks for a code for the victim's phone whenever the api
//! lets it (at once when a cooldown or `Retry-After` ends; it solves no human check) and
//! burns its unbound wrong guesses on each code. It does the same to a second phone,
//! whose owner (another address) tries to log in once a minute as the login page does:
//! send-otp; on 202 the code WhatsApp brings, bound to the send; on 429 with
//! `codePending` the newest code the phone has; on 403 `CAPTCHA_REQUIRED` the pending
//! code if there is one, else the check solved and the send made again with its token.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Tally, count};
use super::{Settings, Target, on_stack};

/// The stranger's address.
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 66));
/// The owner's address.
const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 7));
/// How far into each minute the owner tries (not at 0, where the stranger's first send
/// is).
const OWNER_INTO_MINUTE: Duration = Duration::from_secs(30);
/// How long the stranger waits after a refusal that names no wait (a human check asked
/// for, which it does not solve) or a failed request.
const NO_WAIT_GIVEN: Duration = Duration::from_secs(10);
/// The stranger's wrong guesses on each code (`OTP_MAX_ATTEMPTS`' default).
const GUESSES_PER_CODE: u32 = 3;
/// The longest the owner waits for WhatsApp to bring a code.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);
/// After the newest code failed, how long the owner waits for a newer one to arrive (a
/// send that crossed the owner's).
const NEWER_CODE_WAIT: Duration = Duration::from_secs(5);
/// "A handful of messages an hour": the product's `PHONE_SENDS_PER_HOUR` default.
const MESSAGES_PER_HOUR_TARGET: usize = 5;
/// "A few minutes an hour" kept out.
const KEPT_OUT_MINUTES_PER_HOUR_TARGET: f64 = 3.0;

/// What the stranger did to one phone.
#[derive(Default)]
struct Stranger {
    /// Its sends the api took.
    accepted: u64,
    /// Its refused sends, by kind.
    refused: Tally,
    /// The answers to its guesses, by kind.
    guesses: Tally,
    /// Requests that got no answer.
    errors: u64,
}

/// One of the owner's tries, a minute each.
struct Try {
    minute: u64,
    /// How the owner got in, or why not.
    outcome: Result<&'static str, String>,
}

/// Runs one variant for `settings.minutes`; returns its line.
pub async fn run(settings: &Settings<'_>, human_check: bool) -> anyhow::Result<Value> {
    let phones = crate::phones::distinct(2);
    let [victim, owners] = [phones[0].as_str(), phones[1].as_str()];
    let minutes = settings.minutes;
    on_stack(settings, "k", human_check, &[], async |target| {
        let started = Instant::now();
        let until = started + Duration::from_secs(minutes * 60);
        let (on_victim, on_owners, (tries, owner_accepted)) = tokio::join!(
            stranger(target, victim, until),
            stranger(target, owners, until),
            owner(target, owners, started, minutes),
        );
        let victim_messages = received_at(target, victim);
        let owners_messages = received_at(target, owners);
        let kept_out: Vec<&Try> = tries.iter().filter(|t| t.outcome.is_err()).collect();
        let mut how = Tally::new();
        let mut why = Tally::new();
        for t in &tries {
            match &t.outcome {
                Ok(path) => count(&mut how, *path),
                Err(reason) => count(&mut why, reason.as_str()),
            }
        }
        let per_hour = kept_out.len() as f64 * 60.0 / minutes.max(1) as f64;
        let busiest = busiest_hour(&victim_messages);
        Ok(json!({
            "stage": "attack_lockout",
            "human_check": human_check,
            "minutes": minutes,
            "owner": {
                "tries": tries.len(),
                "logged_in": tries.len() - kept_out.len(),
                "kept_out_minutes": kept_out.len(),
                "kept_out_minutes_per_hour": (per_hour * 10.0).round() / 10.0,
                "logged_in_by": how,
                "kept_out_because": why,
                "kept_out": kept_out.iter().map(|t| json!({
                    "minute": t.minute,
                    "why": t.outcome.as_ref().err(),
                })).collect::<Vec<_>>(),
                "sends_accepted": owner_accepted,
            },
            "victim": stranger_line(&on_victim, &victim_messages),
            "owners_phone": stranger_line(&on_owners, &owners_messages),
            "targets": {
                "owner_kept_out_minutes_per_hour": {
                    "target": format!("<= {KEPT_OUT_MINUTES_PER_HOUR_TARGET}"),
                    "measured": (per_hour * 10.0).round() / 10.0,
                    "met": per_hour <= KEPT_OUT_MINUTES_PER_HOUR_TARGET,
                },
                "victim_messages_in_busiest_hour": {
                    "target": format!("<= {MESSAGES_PER_HOUR_TARGET}"),
                    "measured": busiest,
                    "met": busiest <= MESSAGES_PER_HOUR_TARGET,
                    "run_shorter_than_an_hour": minutes < 60,
                },
            },
            "errors": on_victim.errors + on_owners.errors,
        }))
    })
    .await
}

/// The stranger's numbers on one phone, and the messages the phone received.
fn stranger_line(stranger: &Stranger, messages: &[u64]) -> Value {
    json!({
        "messages": messages.len(),
        "messages_in_busiest_hour": busiest_hour(messages),
        "stranger_sends_accepted": stranger.accepted,
        "stranger_refusals": stranger.refused,
        "stranger_guesses": stranger.guesses,
    })
}

/// When each of the phone's messages arrived at WATI (Unix ms), oldest first.
fn received_at(target: &Target, phone: &str) -> Vec<u64> {
    let mut at: Vec<u64> = target
        .sandbox
        .messages(phone)
        .iter()
        .map(|m| m.received_at_ms)
        .collect();
    at.sort_unstable();
    at
}

/// The most messages in any hour (of a run shorter than an hour, all of them).
fn busiest_hour(sorted_ms: &[u64]) -> usize {
    const HOUR_MS: u64 = 3_600_000;
    sorted_ms
        .iter()
        .enumerate()
        .map(|(i, start)| {
            sorted_ms[i..]
                .iter()
                .take_while(|t| **t < start + HOUR_MS)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Asks for codes for `phone` whenever the api lets it, until `until`, and burns its
/// guesses on each code it hears of.
async fn stranger(target: &Target, phone: &str, until: Instant) -> Stranger {
    let mut done = Stranger::default();
    let mut guessed = 0u64;
    while Instant::now() < until {
        let wait = match target.api.send_otp(STRANGER, phone, None).await {
            Err(_) => {
                done.errors += 1;
                NO_WAIT_GIVEN
            }
            Ok(answer) => {
                let wait = if answer.status == 202 {
                    done.accepted += 1;
                    answer.resend_after()
                } else {
                    count(&mut done.refused, answer.kind());
                    answer.retry_after.unwrap_or(NO_WAIT_GIVEN)
                };
                if answer.status == 202 || answer.code_pending() {
                    burn_guesses(target, phone, &mut done, &mut guessed).await;
                }
                wait
            }
        };
        let next = Instant::now() + wait.max(Duration::from_secs(1));
        tokio::time::sleep_until(next.min(until).into()).await;
    }
    done
}

/// Up to [`GUESSES_PER_CODE`] wrong guesses at the pending code, unbound (the stranger
/// holds no send of the owner's); stops at the first 429 (it is locked out of the code).
async fn burn_guesses(target: &Target, phone: &str, done: &mut Stranger, guessed: &mut u64) {
    for _ in 0..GUESSES_PER_CODE {
        let known: Vec<String> = target
            .sandbox
            .messages(phone)
            .into_iter()
            .map(|m| m.code)
            .collect();
        let guess = wrong_guess(guessed, &known);
        match target.api.verify_otp(STRANGER, phone, &guess, None).await {
            Err(_) => done.errors += 1,
            Ok(answer) => {
                count(&mut done.guesses, answer.kind());
                if answer.status == 429 {
                    return;
                }
            }
        }
    }
}

/// A six-digit guess that is none of the codes the phone has been sent (a code still
/// on its way is missed once in a million guesses).
fn wrong_guess(guessed: &mut u64, known: &[String]) -> String {
    loop {
        *guessed += 1;
        let guess = format!("{:06}", (*guessed * 7_919 + 104_729) % 1_000_000);
        if !known.contains(&guess) {
            return guess;
        }
    }
}

/// The owner's tries, one a minute ([`OWNER_INTO_MINUTE`] into it); returns them and
/// how many of the owner's sends the api took.
async fn owner(target: &Target, phone: &str, started: Instant, minutes: u64) -> (Vec<Try>, u64) {
    let mut tries = Vec::new();
    let mut accepted = 0;
    for minute in 0..minutes {
        let at = started + Duration::from_secs(minute * 60) + OWNER_INTO_MINUTE;
        tokio::time::sleep_until(at.into()).await;
        let outcome = log_in(target, phone, &mut accepted).await;
        tries.push(Try { minute, outcome });
    }
    (tries, accepted)
}

/// One login as the page does it; how it got in, or why not.
async fn log_in(target: &Target, phone: &str, accepted: &mut u64) -> Result<&'static str, String> {
    let seen = target.sandbox.messages(phone).len();
    let answer = target
        .api
        .send_otp(OWNER, phone, None)
        .await
        .map_err(|e| format!("send-otp failed: {e:#}"))?;
    if answer.status == 202 {
        *accepted += 1;
        enter_new_code(target, phone, seen, answer.request_id()).await?;
        return Ok("code_sent");
    }
    if answer.status == 429 && answer.code_pending() {
        enter_pending_code(target, phone).await?;
        return Ok("code_pending");
    }
    if answer.code() != Some("CAPTCHA_REQUIRED") {
        return Err(format!("send-otp {}", answer.kind()));
    }
    // The page shows the code step for a pending code and the check for another one.
    if answer.code_pending() && enter_pending_code(target, phone).await.is_ok() {
        return Ok("code_pending_past_the_check");
    }
    let token = target
        .api
        .solve_check()
        .await
        .map_err(|e| format!("the human check could not be solved: {e:#}"))?;
    let seen = target.sandbox.messages(phone).len();
    let again = target
        .api
        .send_otp(OWNER, phone, Some(&token))
        .await
        .map_err(|e| format!("send-otp with a check failed: {e:#}"))?;
    if again.status != 202 {
        return Err(format!("send-otp with a check {}", again.kind()));
    }
    *accepted += 1;
    enter_new_code(target, phone, seen, again.request_id()).await?;
    Ok("human_check")
}

/// Waits for the message of the send just made (the phone had `seen` before it) and
/// enters its code, bound to the send.
async fn enter_new_code(
    target: &Target,
    phone: &str,
    seen: usize,
    request_id: Option<&str>,
) -> Result<(), String> {
    let code = newer_code(target, phone, seen, DELIVERY_WAIT)
        .await
        .ok_or("no message came for the code sent")?;
    let answer = target
        .api
        .verify_otp(OWNER, phone, &code, request_id)
        .await
        .map_err(|e| format!("verify-otp failed: {e:#}"))?;
    match answer.status {
        200 => Ok(()),
        _ => Err(format!("verify-otp of the code sent {}", answer.kind())),
    }
}

/// Enters the newest code the phone has (unbound: the page holds no send of its own);
/// if it fails, the newer one that comes within [`NEWER_CODE_WAIT`], if one does.
async fn enter_pending_code(target: &Target, phone: &str) -> Result<(), String> {
    let messages = target.sandbox.messages(phone);
    let newest = messages
        .last()
        .ok_or("a code pending, but none on the phone")?;
    let verify = async |code: &str| {
        target
            .api
            .verify_otp(OWNER, phone, code, None)
            .await
            .map_err(|e| format!("verify-otp failed: {e:#}"))
    };
    let answer = verify(&newest.code).await?;
    if answer.status == 200 {
        return Ok(());
    }
    let Some(newer) = newer_code(target, phone, messages.len(), NEWER_CODE_WAIT).await else {
        return Err(format!("verify-otp of the newest code {}", answer.kind()));
    };
    let again = verify(&newer).await?;
    match again.status {
        200 => Ok(()),
        _ => Err(format!("verify-otp of the newest code {}", again.kind())),
    }
}

/// The code of a message newer than the phone's first `seen`, once one arrives within
/// `wait`.
async fn newer_code(target: &Target, phone: &str, seen: usize, wait: Duration) -> Option<String> {
    let until = Instant::now() + wait;
    loop {
        let messages = target.sandbox.messages(phone);
        if messages.len() > seen {
            return messages.last().map(|m| m.code.clone());
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_hour_counts_the_most_messages_within_any_hour() {
        let minute = 60_000;
        assert_eq!(busiest_hour(&[]), 0);
        assert_eq!(busiest_hour(&[0, minute, 59 * minute]), 3);
        // The hour from minute 30 holds four; the one from 0 only three.
        let at = [0, 30, 59, 61, 62, 90].map(|m| m * minute);
        assert_eq!(busiest_hour(&at), 4);
    }

    #[test]
    fn a_guess_is_never_a_code_the_phone_was_sent() {
        let mut guessed = 0;
        let first = wrong_guess(&mut guessed, &[]);
        let mut again = 0;
        assert_ne!(wrong_guess(&mut again, std::slice::from_ref(&first)), first);
        assert_eq!(first.len(), 6);
    }
}
