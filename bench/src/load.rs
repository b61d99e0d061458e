//! Load against the running api: a burst over a fixed number of connections, a fixed
//! rate, and waiting for the sandbox to receive what was accepted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use otp_api::phone::PhoneNumber;
use serde_json::{Value, json};
use wati_sandbox::Sandbox;

use crate::stats::summary;
use wati_sandbox::http1::Connection;

/// What came back for each request.
pub struct Responses {
    /// The status that counts as success.
    ok: u16,
    pub latencies: Vec<Duration>,
    /// Phone → when its successful answer arrived (Unix ms).
    pub accepted_at: HashMap<String, u64>,
    pub statuses: HashMap<u16, usize>,
    pub transport_errors: usize,
}

impl Responses {
    fn expecting(ok: u16) -> Self {
        Self {
            ok,
            latencies: Vec::new(),
            accepted_at: HashMap::new(),
            statuses: HashMap::new(),
            transport_errors: 0,
        }
    }

    fn merge(&mut self, other: Responses) {
        self.latencies.extend(other.latencies);
        self.accepted_at.extend(other.accepted_at);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }

    pub fn errors(&self) -> usize {
        self.transport_errors
            + self
                .statuses
                .iter()
                .filter(|(s, _)| **s != self.ok)
                .map(|(_, n)| n)
                .sum::<usize>()
    }
}

/// Records one answer.
fn record(into: &mut Responses, phone: &str, latency: Duration, answer: std::io::Result<u16>) {
    match answer {
        Ok(status) => {
            into.latencies.push(latency);
            *into.statuses.entry(status).or_default() += 1;
            if status == into.ok {
                into.accepted_at
                    .insert(phone.to_owned(), otp_shared::now_ms());
            }
        }
        Err(_) => into.transport_errors += 1,
    }
}

const SEND_PATH: &str = "/api/auth/send-otp";

fn body(phone: &str) -> String {
    format!(r#"{{"phone":"{phone}"}}"#)
}

/// Sends one request per phone over `connections` keep-alive connections.
pub async fn burst(
    api: SocketAddr,
    phones: &[PhoneNumber],
    connections: usize,
) -> anyhow::Result<(Value, Responses)> {
    let phones: Arc<[String]> = phones.iter().map(|p| p.as_str().to_owned()).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(Connection::open(api).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = open
        .into_iter()
        .map(|mut connection| {
            let (phones, next) = (phones.clone(), next.clone());
            tokio::spawn(async move {
                let mut mine = Responses::expecting(202);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(phone) = phones.get(i) else { break };
                    let began = Instant::now();
                    let answer = connection.post_json(SEND_PATH, &body(phone)).await;
                    let failed = answer.is_err();
                    record(&mut mine, phone, began.elapsed(), answer);
                    if failed {
                        match Connection::open(api).await {
                            Ok(fresh) => connection = fresh,
                            Err(_) => break,
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Responses::expecting(202);
    for task in tasks {
        all.merge(task.await?);
    }
    let elapsed = started.elapsed();
    let stage = json!({
        "stage": "intake",
        "requests": phones.len(),
        "concurrency": connections,
        "per_second": (all.latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency": summary(&mut all.latencies.clone()),
        "accepted": all.accepted_at.len(),
        "errors": all.errors(),
        "statuses": all.statuses,
    });
    Ok((stage, all))
}

/// Sends `rate` requests a second for `seconds`, one phone each, over `connections`
/// keep-alive connections.
pub async fn steady(
    api: SocketAddr,
    phones: &[PhoneNumber],
    rate: u32,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<(Value, Responses)> {
    let total = (u64::from(rate) * seconds) as usize;
    let requests = phones
        .iter()
        .take(total)
        .map(|p| (p.as_str().to_owned(), body(p.as_str())))
        .collect();
    let (all, elapsed) = paced(api, SEND_PATH, requests, rate, connections, 202).await?;
    let stage = json!({
        "stage": "steady",
        "target_per_second": rate,
        "seconds": seconds,
        "per_second": (all.latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency": summary(&mut all.latencies.clone()),
        "errors": all.errors(),
    });
    Ok((stage, all))
}

/// Posts each `(key, body)` of `requests` to `path` at `rate` a second over
/// `connections` keep-alive connections; `ok` is the status that counts as success.
/// Latency counts from when a request was due, not when a connection was free to send
/// it, so a slow server cannot hide in a queue. Returns the answers and the time taken.
pub async fn paced(
    api: SocketAddr,
    path: &'static str,
    requests: Vec<(String, String)>,
    rate: u32,
    connections: usize,
    ok: u16,
) -> anyhow::Result<(Responses, Duration)> {
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String, Instant)>();
    let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut connection = Connection::open(api).await?;
        let due_rx = due_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Responses::expecting(ok);
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((key, body, due)) = next else { break };
                let answer = connection.post_json(path, &body).await;
                record(&mut mine, &key, due.elapsed(), answer);
            }
            mine
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    for (key, body) in requests {
        let due = tick.tick().await.into_std();
        let _ = due_tx.send((key, body, due));
    }
    drop(due_tx);
    let mut all = Responses::expecting(ok);
    for task in tasks {
        all.merge(task.await?);
    }
    Ok((all, started.elapsed()))
}

/// Polls `count` every `every` until it reaches `target`, or has not moved for 30 s.
pub async fn until_done_or_stalled(target: usize, every: Duration, count: impl Fn() -> usize) {
    let mut last_progress = Instant::now();
    let mut seen = 0;
    loop {
        let now = count();
        if now >= target || last_progress.elapsed() >= Duration::from_secs(30) {
            return;
        }
        if now != seen {
            seen = now;
            last_progress = Instant::now();
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until the sandbox holds a message for every accepted phone (or stops making
/// progress), then reports rate, accepted→received latency, duplicates, missing, and
/// late (received after the code's life from its 202). `baseline` is what the sandbox
/// had accepted before the load began.
pub async fn delivery(
    sandbox: &Sandbox,
    responses: &Responses,
    stage: &str,
    code_life: Duration,
    baseline: u64,
) -> Value {
    let expected = responses.accepted_at.len();
    let baseline = baseline as usize;
    until_done_or_stalled(baseline + expected, Duration::from_millis(50), || {
        sandbox.accepted() as usize
    })
    .await;
    let mut latencies = Vec::with_capacity(expected);
    let (mut duplicates, mut missing, mut late) = (0usize, 0usize, 0usize);
    let code_life_ms = code_life.as_millis() as u64;
    let (mut first_accepted, mut last_received) = (u64::MAX, 0u64);
    for (phone, accepted_at) in &responses.accepted_at {
        let messages = sandbox.messages(phone);
        match messages.first() {
            None => missing += 1,
            Some(first) => {
                latencies.push(Duration::from_millis(
                    first.received_at_ms.saturating_sub(*accepted_at),
                ));
                last_received = last_received.max(first.received_at_ms);
                if first.received_at_ms > accepted_at + code_life_ms {
                    late += 1;
                }
            }
        }
        duplicates += messages.len().saturating_sub(1);
        first_accepted = first_accepted.min(*accepted_at);
    }
    let span_s = (last_received.saturating_sub(first_accepted) as f64 / 1000.0).max(0.001);
    json!({
        "stage": stage,
        "expected": expected,
        "delivered": latencies.len(),
        "per_second": (latencies.len() as f64 / span_s).round(),
        "accepted_to_received": summary(&mut latencies),
        "duplicates": duplicates,
        "missing": missing,
        "late": late,
    })
}

/// Waits (`longest` at most) for a second in which the machine is less than 10% busy,
/// so that each burst that is compared with another starts on cores nobody else is
/// using (on a shared machine a build next door moves the intake rate more than what
/// the comparison measures), and on a stack whose workers are consuming; returns the
/// last second's busy share, in percent.
pub async fn quiet_machine(longest: Duration) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut busy = 100.0;
    for _ in 0..longest.as_secs().max(1) {
        let before = crate::stack::cpu_seconds_machine().unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = crate::stack::cpu_seconds_machine().unwrap_or(before);
        busy = ((after - before) / cores * 100.0 * 10.0).round() / 10.0;
        if busy < 10.0 {
            break;
        }
    }
    busy
}
