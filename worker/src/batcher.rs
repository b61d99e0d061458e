//! The batcher, one per worker: every send the worker is delivering waits here for its
//! call. A call carries one template, so sends wait by template. When the shared budget
//! lets a call leave, it takes the template of the send whose code expires first, and
//! carries every waiting send of that template, earliest expiry first, up to the batch
//! size: sends of every template are served in the order their codes expire, so a rare
//! language never starves behind a busy one. A lone send goes out at once, and batches
//! form only while calls wait for budget. Right before a call, the leases of
//! its sends are confirmed in one round trip, and a send whose code expired meanwhile
//! is left out. Each call runs in its own task, so the next call never waits for WATI's
//! answer; a 429 holds every worker's calls for WATI's `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use otp_shared::phone::PhoneNumber;
use otp_shared::seal::PlainCode;
use otp_shared::senders::SentFrom;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::classify::{Trouble, Verdict, call_class, classify};
use crate::templates::TemplateName;
use crate::wati::{Recipient, WatiClient};
use otp_shared::redis::lease::{self, Holding, Lease};
use otp_shared::redis::wati_budget::{Budget, Claim, HOLD_WITHOUT_RETRY_AFTER};

/// Pause after Redis failed to answer the batcher, before it tries again.
const REDIS_PAUSE: Duration = Duration::from_millis(200);

/// A send ready for its call.
#[derive(Debug)]
pub struct Outgoing {
    /// The template it goes out in: only sends of one template share a call.
    pub template: TemplateName,
    pub request_id: Uuid,
    pub phone: PhoneNumber,
    pub code: PlainCode,
    /// When the code expires: the send is never in a call that starts later.
    pub deadline: Instant,
    /// The delivery's lease, confirmed right before the call.
    pub lease: Lease,
}

/// What became of a send handed to the batcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// It was in a call (from `from`, the sending number, for WhatsApp); this is the
    /// provider's answer for it.
    Called {
        verdict: Verdict,
        from: Option<SentFrom>,
    },
    /// It was not in a call.
    NotCalled(Skipped),
}

/// Why a send left the batcher without a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Its code expired while it waited for budget.
    Expired,
    /// Another worker holds its lease and delivers a copy of the job.
    LeaseTaken,
    /// Its lease lapsed: a copy may have finished meanwhile.
    LeaseLapsed,
    /// The worker is stopping.
    Stopping,
}

/// What the batcher needs.
pub struct BatcherSettings {
    /// The budgets shared with every other worker.
    pub budget: Budget,
    pub wati: WatiClient,
    /// Most recipients in one call: `WATI_BATCH_MAX` for v3, 1 for v1.
    pub recipients_per_call: u32,
}

/// Hands sends to the batcher. Cheap to clone; the batcher stops when the worker stops.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

struct Waiting {
    send: Outgoing,
    joined: Instant,
    reply: oneshot::Sender<CallResult>,
}

impl Waiting {
    fn answer(self, result: CallResult) {
        // The delivery may have given up waiting (its task was dropped): nothing to tell.
        let _ = self.reply.send(result);
    }
}

impl Batcher {
    /// Starts the batcher's task; it runs until `shutdown` turns true. The handle ends
    /// early only if the task panicked.
    pub fn start(
        settings: BatcherSettings,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(settings, incoming, shutdown));
        (Self { queue }, task)
    }

    /// Waits for `send`'s call and returns what came of it.
    pub async fn send(&self, send: Outgoing) -> CallResult {
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            send,
            joined: Instant::now(),
            reply,
        };
        if self.queue.send(waiting).is_err() {
            return CallResult::NotCalled(Skipped::Stopping);
        }
        answer.await.unwrap_or_else(|_| {
            // Every path answers; only a panic in the batcher or a call task drops one.
            tracing::error!("the batcher dropped a send without answering");
            CallResult::NotCalled(Skipped::Stopping)
        })
    }
}

/// Sends waiting for a call, by template, each template's earliest expiry first.
#[derive(Default)]
struct Pool {
    by_template: HashMap<TemplateName, BTreeMap<(Instant, u64), Waiting>>,
    arrivals: u64,
}

/// The template whose send expires first, when that is, and how many of its sends wait.
struct Urgent {
    template: TemplateName,
    deadline: Instant,
    waiting: usize,
}

impl Pool {
    fn add(&mut self, waiting: Waiting) {
        self.arrivals += 1;
        self.by_template
            .entry(waiting.send.template.clone())
            .or_default()
            .insert((waiting.send.deadline, self.arrivals), waiting);
    }

    fn is_empty(&self) -> bool {
        self.by_template.is_empty()
    }

    fn most_urgent(&self) -> Option<Urgent> {
        self.by_template
            .iter()
            .filter_map(|(template, waiting)| {
                let (first, _) = waiting.keys().next()?;
                Some(Urgent {
                    template: template.clone(),
                    deadline: *first,
                    waiting: waiting.len(),
                })
            })
            .min_by_key(|urgent| urgent.deadline)
    }

    /// The `n` sends of `template` whose codes expire first.
    fn take(&mut self, template: &TemplateName, n: usize) -> Vec<Waiting> {
        let Some(waiting) = self.by_template.get_mut(template) else {
            return Vec::new();
        };
        let taken = std::iter::from_fn(|| waiting.pop_first().map(|(_, w)| w))
            .take(n)
            .collect();
        if waiting.is_empty() {
            self.by_template.remove(template);
        }
        taken
    }

    /// Answers every send whose code has expired by `now`.
    fn expire_overdue(&mut self, now: Instant) {
        for waiting in self.by_template.values_mut() {
            while let Some(entry) = waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry
                    .remove()
                    .answer(CallResult::NotCalled(Skipped::Expired));
            }
        }
        self.by_template.retain(|_, waiting| !waiting.is_empty());
    }

    fn stop_all(&mut self) {
        for (_, waiting) in self.by_template.drain() {
            for (_, one) in waiting {
                one.answer(CallResult::NotCalled(Skipped::Stopping));
            }
        }
    }
}

/// What the loop does after one turn.
enum Next {
    /// A call left (or nothing could): look again at once.
    Continue,
    /// Nothing may leave before this instant.
    WaitUntil(Instant),
}

async fn run(
    settings: BatcherSettings,
    mut incoming: mpsc::UnboundedReceiver<Waiting>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pool = Pool::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if pool.is_empty() {
            tokio::select! {
                waiting = incoming.recv() => match waiting {
                    Some(waiting) => pool.add(waiting),
                    None => return,
                },
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }
        while let Ok(waiting) = incoming.try_recv() {
            pool.add(waiting);
        }
        pool.expire_overdue(Instant::now());
        if pool.is_empty() {
            continue;
        }
        if let Next::WaitUntil(until) = next_call(&settings, &mut pool).await {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }
    }
    pool.stop_all();
    incoming.close();
    while let Ok(waiting) = incoming.try_recv() {
        waiting.answer(CallResult::NotCalled(Skipped::Stopping));
    }
}

/// Claims budget for a call and launches it, or says how long to wait.
async fn next_call(settings: &BatcherSettings, pool: &mut Pool) -> Next {
    let Some(urgent) = pool.most_urgent() else {
        return Next::Continue;
    };
    let wanted = urgent.waiting.min(settings.recipients_per_call as usize) as u32;
    let claim = match settings.budget.claim(wanted).await {
        Ok(claim) => claim,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim WATI budget; trying again");
            return Next::WaitUntil(Instant::now() + REDIS_PAUSE);
        }
    };
    match claim {
        Claim::Wait { wait, limit } => {
            metrics::counter!(otp_shared::metrics::BUDGET_LIMITED, "limit" => limit.label())
                .increment(1);
            // Wake for the earliest expiry too: that send leaves without a call then.
            Next::WaitUntil(urgent.deadline.min(Instant::now() + wait))
        }
        Claim::Granted { recipients, from } => {
            let batch = pool.take(&urgent.template, recipients as usize);
            let (calling, unchecked) = confirm(batch, &from).await;
            // Confirming took a round trip: a code may have expired meanwhile.
            let calling = without_expired(calling, Instant::now());
            if !calling.is_empty() {
                tokio::spawn(call(
                    settings.wati.clone(),
                    settings.budget.clone(),
                    urgent.template,
                    from,
                    calling,
                ));
            }
            if unchecked.is_empty() {
                Next::Continue
            } else {
                for waiting in unchecked {
                    pool.add(waiting);
                }
                Next::WaitUntil(Instant::now() + REDIS_PAUSE)
            }
        }
    }
}

/// Confirms each send's lease for the call from `from` (recording the number in its
/// status). Returns the sends still held by this worker (the others are answered), and
/// those whose lease Redis could not check (their master is down or failing over),
/// which wait for a later call.
async fn confirm(batch: Vec<Waiting>, from: &SentFrom) -> (Vec<Waiting>, Vec<Waiting>) {
    let leases: Vec<&Lease> = batch.iter().map(|w| &w.send.lease).collect();
    let holdings = lease::confirm_all(&leases, from).await;
    let mut calling = Vec::with_capacity(batch.len());
    let mut unchecked = Vec::new();
    for (waiting, holding) in batch.into_iter().zip(holdings) {
        match holding {
            Ok(Holding::Held) => calling.push(waiting),
            Ok(Holding::TakenByAnother) => {
                waiting.answer(CallResult::NotCalled(Skipped::LeaseTaken));
            }
            Ok(Holding::Lapsed) => waiting.answer(CallResult::NotCalled(Skipped::LeaseLapsed)),
            Err(e) => {
                tracing::warn!(error = %e, "could not confirm a delivery lease; its send waits");
                unchecked.push(waiting);
            }
        }
    }
    (calling, unchecked)
}

/// The sends of `batch` whose codes are still alive at `now`; the others are answered
/// as expired, so no call starts after a code's expiry.
fn without_expired(batch: Vec<Waiting>, now: Instant) -> Vec<Waiting> {
    let (alive, expired): (Vec<_>, Vec<_>) = batch.into_iter().partition(|w| w.send.deadline > now);
    for waiting in expired {
        waiting.answer(CallResult::NotCalled(Skipped::Expired));
    }
    alive
}

/// Makes one call to WATI in `template` from the number `from` and answers each of its
/// sends.
async fn call(
    wati: WatiClient,
    budget: Budget,
    template: TemplateName,
    from: SentFrom,
    batch: Vec<Waiting>,
) {
    let now = Instant::now();
    let sender = from.sender.name().to_owned();
    for waiting in &batch {
        metrics::histogram!(otp_shared::metrics::BUDGET_WAIT, "sender" => sender.clone())
            .record(now - waiting.joined);
    }
    metrics::histogram!(otp_shared::metrics::WATI_BATCH_RECIPIENTS).record(batch.len() as f64);
    // The call is cut when the last of its codes expires; a send whose code expired
    // meanwhile is decided by its own retry schedule.
    let time_left = batch
        .iter()
        .map(|w| w.send.deadline.saturating_duration_since(now))
        .max()
        .unwrap_or_default();
    let recipients: Vec<Recipient<'_>> = batch
        .iter()
        .map(|w| Recipient {
            request_id: w.send.request_id,
            phone: &w.send.phone,
            code: &w.send.code,
        })
        .collect();
    let started = std::time::Instant::now();
    let answer = wati
        .send(
            &template,
            &recipients,
            from.sender.number.as_deref(),
            time_left,
        )
        .await;
    let class = call_class(&answer);
    metrics::histogram!(otp_shared::metrics::WATI_DURATION).record(started.elapsed());
    metrics::counter!(otp_shared::metrics::WATI_REQUESTS, "result" => class).increment(1);
    tracing::debug!(
        recipients = batch.len(),
        result = class,
        elapsed_ms = started.elapsed().as_millis() as u64,
        sender = %sender,
        probe = from.probe,
        "WATI call"
    );
    let named: Vec<(Uuid, &PhoneNumber)> = batch
        .iter()
        .map(|w| (w.send.request_id, &w.send.phone))
        .collect();
    let verdicts = classify(&answer, &named);
    drop(named);
    drop(recipients);
    if let Some(hold) = rate_limited_for(&verdicts)
        && let Err(e) = budget.hold_calls(hold).await
    {
        tracing::warn!(error = %e, "could not hold the other workers' calls after a 429");
    }
    for (waiting, verdict) in batch.into_iter().zip(verdicts) {
        metrics::counter!(otp_shared::metrics::WATI_RECIPIENTS, "result" => verdict.label())
            .increment(1);
        metrics::counter!(otp_shared::metrics::SENDER_RECIPIENTS, "sender" => sender.clone(), "result" => verdict.label())
            .increment(1);
        waiting.answer(CallResult::Called {
            verdict,
            from: Some(from.clone()),
        });
    }
}

/// How long every worker holds its calls when WATI answered the call with 429: WATI's
/// `Retry-After`, but no longer than its plan window (a 429 says the window is full;
/// an hour's `Retry-After` would let every pending code expire unsent).
fn rate_limited_for(verdicts: &[Verdict]) -> Option<Duration> {
    let longest = otp_shared::budget::CALL_WINDOW + otp_shared::budget::CALL_WINDOW_SLACK;
    verdicts.iter().find_map(|verdict| match verdict {
        Verdict::Transient {
            trouble: Trouble::RateLimited,
            retry_after,
        } => Some(retry_after.unwrap_or(HOLD_WITHOUT_RETRY_AFTER).min(longest)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Refusal;

    #[test]
    fn only_a_429_holds_the_calls_and_for_watis_wait_or_a_second() {
        let limited = |retry_after| Verdict::Transient {
            trouble: Trouble::RateLimited,
            retry_after,
        };
        let server_error = Verdict::Transient {
            trouble: Trouble::ServerError { status: 500 },
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            rate_limited_for(&[limited(Some(Duration::from_secs(3)))]),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            rate_limited_for(&[limited(None)]),
            Some(HOLD_WITHOUT_RETRY_AFTER)
        );
        assert_eq!(
            rate_limited_for(&[limited(Some(Duration::from_secs(3600)))]),
            Some(Duration::from_millis(10_250)),
            "never longer than WATI's plan window"
        );
        assert_eq!(rate_limited_for(&[server_error]), None);
        assert_eq!(
            rate_limited_for(&[
                Verdict::Accepted,
                Verdict::Permanent {
                    refusal: Refusal::InvalidNumber,
                    info: None
                }
            ]),
            None
        );
    }
}
