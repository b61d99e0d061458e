//! Falling back to SMS: the decision both processes take when WhatsApp cannot deliver a
//! request's code (the worker when WATI refuses it or its receipt timer runs out, the
//! api when a failure receipt comes). The code goes by SMS, the same code, at most once
//! per code, only to a country in `SMS_ALLOWED_COUNTRY_CODES` and within
//! `SMS_SENDS_PER_MINUTE`: the budget is counted first, the fallback begun in Redis
//! (which says whether this request may send it), and its SMS job published.

use std::sync::Arc;

use crate::job::SendJob;
use crate::publisher::{PublishError, Publisher};
use crate::redis::codes::SendKind;
use crate::redis::fallback::{Begun, Fallbacks};
use crate::redis::send_budget::{Counted, SendBudget};
use crate::sms::SmsSettings;

/// What made WhatsApp's trouble known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// WATI refused the recipient for good (not on WhatsApp, …).
    Refused,
    /// WhatsApp's failure receipt (`templateMessageFailed`).
    Receipt,
    /// No `delivered` receipt came within `FALLBACK_AFTER_SECONDS`.
    Timer,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Refused, Trigger::Receipt, Trigger::Timer];

    /// The metric's `trigger` label.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Refused => "refused",
            Trigger::Receipt => "receipt",
            Trigger::Timer => "timer",
        }
    }
}

/// What came of a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FellBack {
    /// Its SMS job is published.
    BySms,
    /// SMS is not allowed to the phone's country.
    NotAllowed,
    /// `SMS_SENDS_PER_MINUTE` had no room.
    OverBudget,
    /// Nothing to send: delivered after all, gone, or another SMS carries the code.
    Needless(Begun),
}

impl FellBack {
    /// The metric's `result` label.
    pub fn label(self) -> &'static str {
        match self {
            FellBack::BySms => "sms",
            FellBack::NotAllowed => "not_allowed",
            FellBack::OverBudget => "over_budget",
            FellBack::Needless(_) => "needless",
        }
    }

    pub const LABELS: [&'static str; 4] = ["sms", "not_allowed", "over_budget", "needless"];
}

/// Whether the caller repeats a fallback that failed (the worker hands its job back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    Yes,
    No,
}

#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Publish(#[from] PublishError),
}

/// Everything a fallback needs.
#[derive(Clone)]
pub struct SmsFallback {
    settings: SmsSettings,
    budget: SendBudget,
    records: Fallbacks,
    publisher: Arc<Publisher>,
    /// Tells the app of each fallback, where events are on.
    events: Option<crate::events::Emitter>,
}

impl SmsFallback {
    pub fn new(
        settings: SmsSettings,
        budget: SendBudget,
        records: Fallbacks,
        publisher: Arc<Publisher>,
    ) -> Self {
        Self {
            settings,
            budget,
            records,
            publisher,
            events: None,
        }
    }

    /// Tells the app of each fallback.
    pub fn with_events(self, events: Option<crate::events::Emitter>) -> Self {
        Self { events, ..self }
    }

    /// Whether SMS may go to the job's phone at all: a fallback to another country is
    /// never begun, and no timer is set for it.
    pub fn allows(&self, job: &SendJob) -> bool {
        self.settings.allows(&job.phone)
    }

    /// Sends the code of WhatsApp job `job` by SMS, if it may and must. Safe to repeat:
    /// a fallback begun before publishes its job again (its delivery sends it once).
    pub async fn fall_back(
        &self,
        job: &SendJob,
        trigger: Trigger,
    ) -> Result<FellBack, FallbackError> {
        self.fall_back_as(job, trigger, Repeat::Yes).await
    }

    /// [`Self::fall_back`] for a caller that does not repeat it (the api, answering a
    /// failure receipt WATI does not send again): when the SMS job cannot be published,
    /// the fallback is undone and its count given back, so that the caller can retire
    /// the code, rather than left begun for a repeat that never comes.
    pub async fn fall_back_once(
        &self,
        job: &SendJob,
        trigger: Trigger,
    ) -> Result<FellBack, FallbackError> {
        self.fall_back_as(job, trigger, Repeat::No).await
    }

    async fn fall_back_as(
        &self,
        job: &SendJob,
        trigger: Trigger,
        repeat: Repeat,
    ) -> Result<FellBack, FallbackError> {
        let fell_back = self.try_fall_back(job, trigger, repeat).await?;
        let country = self.settings.country_of(&job.phone).unwrap_or("other");
        metrics::counter!(
            crate::metrics::FALLBACKS,
            "trigger" => trigger.label(),
            "result" => fell_back.label(),
            "country" => country.to_owned()
        )
        .increment(1);
        if fell_back == FellBack::BySms {
            tracing::info!(request_id = %job.request_id, trigger = trigger.label(), "the code goes by SMS");
            if let Some(events) = &self.events {
                use crate::events::{Event, EventType};
                let event = Event::about_send(
                    EventType::OtpFallback,
                    job.request_id,
                    &job.phone,
                    "sms",
                    crate::now_ms(),
                )
                .with(|d| {
                    d.from = Some("whatsapp".into());
                    d.to = Some("sms".into());
                    d.reason = Some(trigger.label().into());
                });
                events.emit_or_log(event).await;
            }
        }
        Ok(fell_back)
    }

    async fn try_fall_back(
        &self,
        job: &SendJob,
        trigger: Trigger,
        repeat: Repeat,
    ) -> Result<FellBack, FallbackError> {
        if !self.allows(job) {
            return Ok(FellBack::NotAllowed);
        }
        // Most timers find their send delivered: they take no budget to find out.
        if trigger == Trigger::Timer
            && self
                .records
                .first_delivered(&job.phone, job.request_id)
                .await?
        {
            return Ok(FellBack::Needless(Begun::Delivered));
        }
        // Counted before it is begun: a fallback begun and then refused by the budget
        // would hold the code for an SMS that never goes.
        let minute = match self.budget.count(SendKind::Resend).await? {
            Counted::In { minute } => Some(minute),
            Counted::Unlimited => None,
            Counted::Over { .. } => return Ok(FellBack::OverBudget),
        };
        let begun = match self.records.begin(&job.phone, job.request_id).await {
            Ok(begun) => begun,
            Err(e) => {
                self.give_back(minute).await;
                return Err(e.into());
            }
        };
        match begun {
            Begun::New => {}
            // Counted when it was begun; this repeat publishes its job again.
            Begun::Again => self.give_back(minute).await,
            Begun::Taken | Begun::Delivered | Begun::Gone => {
                self.give_back(minute).await;
                return Ok(FellBack::Needless(begun));
            }
        }
        // A publish that fails keeps the count: the repeat that publishes the job again
        // finds the fallback begun, and counts nothing. Without a repeat, it is undone.
        if let Err(e) = self.publisher.publish(&job.clone().by_sms(true)).await {
            if repeat == Repeat::No && begun == Begun::New {
                self.abandon(job, minute).await;
            }
            return Err(e.into());
        }
        if begun == Begun::New {
            metrics::counter!(crate::metrics::SMS_BUDGET_USED).increment(1);
        }
        Ok(FellBack::BySms)
    }

    async fn abandon(&self, job: &SendJob, minute: Option<u64>) {
        match self
            .records
            .abandon(&job.phone, job.request_id, "could not be queued")
            .await
        {
            Ok(true) => self.give_back(minute).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "could not undo a fallback whose SMS job was not published; the code lapses at its expiry");
            }
        }
    }

    async fn give_back(&self, minute: Option<u64>) {
        if let Some(minute) = minute
            && let Err(e) = self.budget.give_back(minute).await
        {
            tracing::warn!(error = %e, "could not give back an SMS that was not sent");
        }
    }
}
