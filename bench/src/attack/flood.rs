//! Issue 24, item 4: a flood of new numbers from many networks against
//! `SENDS_PER_MINUTE`, while people try to log in. Before the fixes, 12 IPv6 /64s
//! served 2 of 22 people while 415 billed sends went out.
//!
//! The attacker holds 12 /64s, each in its own /48 (so no network budget joins them),
//! and sends new numbers from [`ATTACKER_CONCURRENCY`] connections as fast as the api
//! takes them: a network told to wait (`Retry-After`) waits, since the client windows
//! count its refusals too, and the others go on; it never solves a check. [`USERS`]
//! people, one address each, arrive spread over the flood and ask for a code as the
//! login page does: after a 429 or 503 they wait `Retry-After` and ask again while the
//! flood lasts; asked for a check, they solve it and ask again with its token.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Api, Tally, count, merge};
use super::{Settings, Target, on_stack};
use crate::stats::summary;

/// The flood's global budget, as in the issue.
const SENDS_PER_MINUTE: u32 = 200;
/// The attacker's networks: a /64 in its own /48 each.
const ATTACKER_NETWORKS: usize = 12;
/// The attacker's requests in flight.
const ATTACKER_CONCURRENCY: usize = 32;
/// The people who try to log in during the flood.
const USERS: usize = 20;
/// After the flood, the longest wait for WATI to have every accepted send.
const DRAIN_QUIET: Duration = Duration::from_secs(10);

/// What the attacker's connections got.
#[derive(Default)]
struct Attacker {
    requests: u64,
    accepted: u64,
    answers: Tally,
    errors: u64,
}

/// What one person got.
#[derive(Default)]
struct User {
    /// From arriving to the 202.
    served_after: Option<Duration>,
    answers: Tally,
    checks_solved: u64,
    /// Why no code came, when none did.
    why_not: Option<String>,
    errors: u64,
}

/// Runs one variant; returns its line.
pub async fn run(settings: &Settings<'_>, human_check: bool) -> anyhow::Result<Value> {
    let flood = Duration::from_secs(settings.flood_seconds);
    // The client windows are fixed minutes: the attacker's requests fit in one window
    // more than the flood's minutes.
    let windows = settings.flood_seconds.div_ceil(60) as usize + 1;
    let phones: Vec<String> = crate::phones::distinct(USERS + ATTACKER_NETWORKS * 60 * windows)
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let (users_phones, attackers_phones) = phones.split_at(USERS);
    let extra = [("SENDS_PER_MINUTE", SENDS_PER_MINUTE.to_string())];
    on_stack(settings, "f", human_check, &extra, async |target| {
        let started = Instant::now();
        let until = started + flood;
        let attack = attack(target, attackers_phones.into(), until);
        let people = users(target, users_phones, started, flood);
        let (attacker, users) = tokio::join!(attack, people);
        let (attacker, users) = (attacker?, users?);
        let accepted =
            attacker.accepted + users.iter().filter(|u| u.served_after.is_some()).count() as u64;
        let billed = drain(target, accepted).await;
        Ok(line(human_check, flood, &attacker, &users, billed))
    })
    .await
}

/// The variant's line.
fn line(
    human_check: bool,
    flood: Duration,
    attacker: &Attacker,
    users: &[User],
    billed: u64,
) -> Value {
    let mut served: Vec<Duration> = users.iter().filter_map(|u| u.served_after).collect();
    let (mut answers, mut why_not) = (Tally::new(), Tally::new());
    for user in users {
        merge(&mut answers, user.answers.clone());
        if let Some(why) = &user.why_not {
            count(&mut why_not, why.as_str());
        }
    }
    json!({
        "stage": "attack_flood",
        "human_check": human_check,
        "seconds": flood.as_secs(),
        "sends_per_minute": SENDS_PER_MINUTE,
        "users": users.len(),
        "users_served": served.len(),
        "users_time_to_code": summary(&mut served),
        "users_checks_solved": users.iter().map(|u| u.checks_solved).sum::<u64>(),
        "users_answers": answers,
        "users_not_served_because": why_not,
        "attacker": {
            "networks": ATTACKER_NETWORKS,
            "concurrency": ATTACKER_CONCURRENCY,
            "requests": attacker.requests,
            "accepted": attacker.accepted,
            "answers": attacker.answers,
        },
        "billed": billed,
        "errors": attacker.errors + users.iter().map(|u| u.errors).sum::<u64>(),
    })
}

/// When each of the attacker's networks may send again.
struct Networks {
    free_at: Mutex<Vec<Instant>>,
    next: AtomicUsize,
}

impl Networks {
    /// A network free now (taking turns), or when the first will be.
    fn take(&self) -> Result<usize, Instant> {
        let free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..free_at.len())
            .map(|i| (start + i) % free_at.len())
            .find(|i| free_at[*i] <= now)
            .ok_or_else(|| free_at.iter().min().copied().unwrap_or(now))
    }

    fn park(&self, network: usize, until: Instant) {
        let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
        free_at[network] = free_at[network].max(until);
    }
}

/// An address in the attacker's `network` (2001:db8:<n>::/48, its first /64), a new
/// host each time.
fn attacker_address(network: usize, host: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        network as u16 + 1,
        0,
        0,
        0,
        (host >> 16) as u16,
        host as u16 | 1,
    ))
}

/// The flood: new numbers from every network, as fast as the api takes them.
async fn attack(
    target: &Target,
    phones: Arc<[String]>,
    until: Instant,
) -> anyhow::Result<Attacker> {
    let networks = Arc::new(Networks {
        free_at: Mutex::new(vec![Instant::now(); ATTACKER_NETWORKS]),
        next: AtomicUsize::new(0),
    });
    let next_phone = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ATTACKER_CONCURRENCY {
        let (api, networks, phones, next_phone) = (
            target.api.clone(),
            networks.clone(),
            phones.clone(),
            next_phone.clone(),
        );
        tasks.spawn(async move {
            let mut mine = Attacker::default();
            while Instant::now() < until {
                let network = match networks.take() {
                    Ok(network) => network,
                    Err(free_at) => {
                        tokio::time::sleep_until(free_at.min(until).into()).await;
                        continue;
                    }
                };
                let n = next_phone.fetch_add(1, Ordering::Relaxed);
                let Some(phone) = phones.get(n) else { break };
                mine.requests += 1;
                match api
                    .send_otp(attacker_address(network, n), phone, None)
                    .await
                {
                    Err(_) => mine.errors += 1,
                    Ok(answer) => {
                        mine.accepted += u64::from(answer.status == 202);
                        count(&mut mine.answers, answer.kind());
                        if let Some(wait) = answer.retry_after {
                            networks.park(network, Instant::now() + wait);
                        }
                    }
                }
            }
            mine
        });
    }
    let mut all = Attacker::default();
    while let Some(mine) = tasks.join_next().await {
        let mine = mine.context("an attacker's task")?;
        all.requests += mine.requests;
        all.accepted += mine.accepted;
        all.errors += mine.errors;
        merge(&mut all.answers, mine.answers);
    }
    Ok(all)
}

/// The people, arriving evenly over the flood, each on its own address
/// (198.18.<n>.7, a /24 each).
async fn users(
    target: &Target,
    phones: &[String],
    started: Instant,
    flood: Duration,
) -> anyhow::Result<Vec<User>> {
    let until = started + flood;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, phone) in phones.iter().enumerate() {
        let arrives = started + flood.mul_f64((i as f64 + 0.5) / phones.len() as f64);
        let address = IpAddr::V4(Ipv4Addr::new(198, 18, i as u8 + 1, 7));
        let (api, phone) = (target.api.clone(), phone.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(arrives.into()).await;
            get_a_code(&api, address, &phone, until).await
        });
    }
    let mut all = Vec::new();
    while let Some(user) = tasks.join_next().await {
        all.push(user.context("a user's task")?);
    }
    Ok(all)
}

/// One person asking for a code as the login page does, until `until`.
async fn get_a_code(api: &Api, address: IpAddr, phone: &str, until: Instant) -> User {
    let arrived = Instant::now();
    let mut user = User::default();
    let mut token: Option<String> = None;
    loop {
        let answer = match api.send_otp(address, phone, token.take().as_deref()).await {
            Ok(answer) => answer,
            Err(e) => {
                user.errors += 1;
                user.why_not = Some(format!("send-otp failed: {e:#}"));
                return user;
            }
        };
        count(&mut user.answers, answer.kind());
        match (answer.status, answer.code()) {
            (202, _) => {
                user.served_after = Some(arrived.elapsed());
                return user;
            }
            (403, Some("CAPTCHA_REQUIRED" | "CAPTCHA_INVALID")) => match api.solve_check().await {
                Ok(solved) => {
                    user.checks_solved += 1;
                    token = Some(solved);
                }
                Err(e) => {
                    user.errors += 1;
                    user.why_not = Some(format!("the check could not be solved: {e:#}"));
                    return user;
                }
            },
            (429 | 503, _) if answer.retry_after.is_some() => {
                let wait = answer.retry_after.unwrap_or_default();
                if Instant::now() + wait > until {
                    user.why_not = Some(format!("{} past the flood's end", answer.kind()));
                    return user;
                }
                tokio::time::sleep(wait).await;
            }
            _ => {
                user.why_not = Some(answer.kind());
                return user;
            }
        }
    }
}

/// Waits until WATI has every accepted send (or nothing more arrives for
/// [`DRAIN_QUIET`]); returns the messages it accepted: the billed sends.
async fn drain(target: &Target, accepted: u64) -> u64 {
    let mut last = (target.sandbox.accepted(), Instant::now());
    while target.sandbox.accepted() < accepted && last.1.elapsed() < DRAIN_QUIET {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = target.sandbox.accepted();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    target.sandbox.accepted()
}
