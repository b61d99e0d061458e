//! The send saga: store a code for a phone (or find its pending one), index the send,
//! count it against the budget of sends per minute, reserve room with WATI's budgets
//! for what is left of the code's life (or, for an SMS, count it against the SMS
//! budget), and publish its job. Each step that fails takes
//! back every step before it, so a refused send leaves no code without a job, no index
//! without a status, and nothing counted or held for a send that was not queued.

use otp_shared::job::{JobChannel, SendJob};
use otp_shared::locale::Locale;
use otp_shared::redis::admission::Reservation;
use otp_shared::redis::send_budget::{Counted, SendBudget};
use otp_shared::redis::status::Channel;
use uuid::Uuid;

use crate::error::{ApiError, DependencyError};
use crate::phone::PhoneNumber;
use crate::state::AppState;
use crate::store::{AcceptedSend, HowSent, SendDecision, SendKind};

/// What to send: a code to a phone, in a language if the app names one.
#[derive(Clone, Debug)]
pub struct SendRequest {
    pub phone: PhoneNumber,
    /// Its country calling code (`COUNTRY_SENDS_PER_MINUTE`).
    pub calling_code: u16,
    /// The app's `locale`, if it gave one.
    pub locale: Option<Locale>,
    /// WhatsApp, or SMS where the app asked for it (and it is allowed: the route checks).
    pub channel: JobChannel,
    /// The request passed a human check.
    pub checked: bool,
}

/// A send that was taken: stored, and queued for a worker (or, for a review phone,
/// settled at once).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub send: AcceptedSend,
    pub channel: Channel,
}

/// Accepts a send of a code, or says why not. It runs in its own task: if the client
/// hangs up, hyper drops the handler, and a send cut between storing the code and
/// publishing its job would leave a code without a job.
pub async fn accept(state: &AppState, request: SendRequest) -> Result<Accepted, ApiError> {
    let code = match state.settings.review_phones.code_of(&request.phone) {
        Some(fixed) => fixed.to_owned(),
        None => crate::code::generate(state.settings.otp_length)
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    };
    tokio::spawn(run(state.clone(), request, code))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
}

/// The languages a send's code may go out in, most wanted first: the app's, then the
/// phone's country's (`COUNTRY_LOCALES`). Which of them has a template is the worker's
/// to know.
fn locales(state: &AppState, request: &SendRequest) -> Vec<Locale> {
    let country = state.settings.country_locales.of(&request.phone);
    let mut locales: Vec<Locale> = request.locale.iter().chain(country).cloned().collect();
    locales.dedup();
    locales
}

/// What a send took so far, given back in reverse if a later step fails.
#[derive(Default)]
struct Taken {
    /// The code record's send (its code, its place in the phone's limits, its status).
    stored: Option<AcceptedSend>,
    /// Counted against `SENDS_PER_MINUTE` in this minute.
    minute: Option<u64>,
    /// Counted against `SMS_SENDS_PER_MINUTE` in this minute.
    sms_minute: Option<u64>,
    /// Counted against the country's `COUNTRY_SENDS_PER_MINUTE` in this minute.
    country_minute: Option<u64>,
    /// Holds room with WATI's budgets.
    admitted: bool,
}

async fn run(state: AppState, request: SendRequest, code: String) -> Result<Accepted, ApiError> {
    let request_id = Uuid::new_v4();
    let mut taken = Taken::default();
    let sent = steps(&state, &request, request_id, code, &mut taken).await;
    if sent.is_err() {
        give_back(&state, &request, request_id, taken).await;
    }
    sent
}

/// An error on the send path: an outage is "Failed to send OTP".
fn send_error<E: DependencyError>(e: E) -> ApiError {
    ApiError::from_dependency(e, ApiError::SendUnavailable)
}

/// Every step of a send, each noting in `taken` what it took.
async fn steps(
    state: &AppState,
    request: &SendRequest,
    request_id: Uuid,
    code: String,
    taken: &mut Taken,
) -> Result<Accepted, ApiError> {
    let phone = &request.phone;
    let review_phone = state.settings.review_phones.code_of(phone).is_some();
    let by_sms = request.channel == JobChannel::Sms;
    let how = HowSent {
        by_sms,
        checked: request.checked,
    };
    let mut decision = state
        .store
        .begin_send(phone, &code, request_id, how)
        .await
        .map_err(send_error)?;
    // A review phone's code is long already (TEST_PHONES takes no shorter one): it is
    // never asked to grow, and is never swapped for a random one.
    if let SendDecision::NeedsLongerCode = decision
        && !review_phone
    {
        let code = crate::code::generate(crate::store::LONG_CODE_DIGITS)
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        decision = state
            .store
            .begin_send(phone, &code, request_id, how)
            .await
            .map_err(send_error)?;
    }
    let send = match decision {
        SendDecision::Limited {
            retry_after,
            code_pending,
        } => {
            metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => "phone")
                .increment(1);
            return Err(if code_pending {
                ApiError::RateLimitedCodePending { retry_after }
            } else {
                ApiError::RateLimited { retry_after }
            });
        }
        SendDecision::CheckRequired { code_pending } => {
            return Err(human_check_required(state, code_pending));
        }
        SendDecision::Accepted(send) => send,
        SendDecision::NeedsLongerCode => {
            return Err(ApiError::Internal(
                "send.lua asked for a longer code than the longest, or a review phone's to grow"
                    .into(),
            ));
        }
    };
    taken.stored = Some(send.clone());
    // Without the index the send's status could not be found from its id.
    state
        .store
        .index_request(phone, request_id)
        .await
        .map_err(send_error)?;
    if review_phone {
        // Nothing goes out: no budget is spent and no job is published.
        state
            .statuses
            .settle_review_send(phone, request_id)
            .await
            .map_err(send_error)?;
        return Ok(Accepted {
            send,
            channel: Channel::Test,
        });
    }
    taken.minute = count_in(state, request, &send, &state.send_budget, "global").await?;
    if let Some(limit) = state
        .settings
        .country_budgets
        .limit_of(request.calling_code)
    {
        let budget = country_budget(state, request.calling_code, limit);
        taken.country_minute = count_in(state, request, &send, &budget, "country").await?;
    }
    if by_sms {
        taken.sms_minute = count_sms(state, request, &send).await?;
    } else {
        match state
            .admission
            .reserve(request_id, send.expires_in, send.budget_kind())
            .await
            .map_err(send_error)?
        {
            Reservation::Admitted => taken.admitted = true,
            Reservation::Unlimited => {}
            Reservation::Full { retry_after } => {
                return Err(ApiError::OverCapacity { retry_after });
            }
        }
    }
    let job = SendJob::new(
        request_id,
        send.code_id,
        phone.clone(),
        otp_shared::now_ms(),
    )
    .in_locales(locales(state, request));
    let job = if by_sms { job.by_sms(false) } else { job };
    state
        .publisher
        .publish(&job)
        .await
        .map_err(|e| ApiError::SendUnavailable(Box::new(e)))?;
    if by_sms {
        metrics::counter!(otp_shared::metrics::SMS_BUDGET_USED).increment(1);
    }
    Ok(Accepted {
        send,
        channel: if by_sms {
            Channel::Sms
        } else {
            Channel::Whatsapp
        },
    })
}

/// Counts a send against `budget` (`SENDS_PER_MINUTE`, a country's): the minute it is
/// counted in, to give it back to. With the human check on, a new code without one may
/// fill only `CAPTCHA_BUDGET_PERCENT` of it, and past that is asked for a check: the
/// rest is for people, whatever a script fills.
async fn count_in(
    state: &AppState,
    request: &SendRequest,
    send: &AcceptedSend,
    budget: &SendBudget,
    scope: &'static str,
) -> Result<Option<u64>, ApiError> {
    let kind = send.budget_kind();
    let unchecked_share = state
        .human_check
        .as_ref()
        .filter(|_| !request.checked && kind == SendKind::New)
        .map(|check| check.settings.budget_percent);
    let counted = budget
        .count_within(kind, unchecked_share.unwrap_or(100))
        .await
        .map_err(send_error)?;
    match counted {
        Counted::In { minute } => Ok(Some(minute)),
        Counted::Unlimited => Ok(None),
        Counted::Over { .. } if unchecked_share.is_some() => {
            Err(human_check_required(state, send.kind == SendKind::Resend))
        }
        Counted::Over { retry_after } => {
            metrics::counter!(otp_shared::metrics::RATE_LIMIT_REJECTIONS, "scope" => scope)
                .increment(1);
            Err(ApiError::RateLimited { retry_after })
        }
    }
}

/// "Complete the human check", with what the page's widget needs; only asked where the
/// check is on.
fn human_check_required(state: &AppState, code_pending: bool) -> ApiError {
    match &state.human_check {
        Some(check) => ApiError::HumanCheckRequired {
            provider: check.settings.provider.name(),
            site_key: check.settings.site_key.as_str().into(),
            code_pending,
        },
        None => ApiError::Internal("a human check asked for while the check is off".into()),
    }
}

fn country_budget(state: &AppState, calling_code: u16, limit: u32) -> SendBudget {
    SendBudget::country(state.redis.clone(), &state.keys, calling_code, limit)
}

/// Counts an SMS the app asked for against `SMS_SENDS_PER_MINUTE`: SMS is where
/// pumping costs money. (WATI's admission is no SMS's business.)
async fn count_sms(
    state: &AppState,
    request: &SendRequest,
    send: &AcceptedSend,
) -> Result<Option<u64>, ApiError> {
    let Some(sms) = &state.sms else {
        return Err(ApiError::ChannelNotAllowed);
    };
    count_in(state, request, send, &sms.budget, "sms").await
}

/// Takes back what a send that was not queued took: its code (unless a re-send uses
/// it), its index, its count and its room.
async fn give_back(state: &AppState, request: &SendRequest, request_id: Uuid, taken: Taken) {
    let phone = &request.phone;
    if let Some(send) = &taken.stored
        && let Err(undo_error) = state.store.undo_send(phone, send).await
    {
        tracing::error!(%request_id, %undo_error, "could not undo a send that was not queued");
    }
    // The index goes with the stored send, written or not: a write may have landed
    // although its answer did not.
    if taken.stored.is_some()
        && let Err(e) = state.store.unindex_request(request_id).await
    {
        tracing::warn!(%request_id, error = %e, "could not remove the index of a send that was not queued");
    }
    if let Some(minute) = taken.minute
        && let Err(e) = state.send_budget.give_back(minute).await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the count of a send that was not queued");
    }
    if let (Some(minute), Some(limit)) = (
        taken.country_minute,
        state
            .settings
            .country_budgets
            .limit_of(request.calling_code),
    ) && let Err(e) = country_budget(state, request.calling_code, limit)
        .give_back(minute)
        .await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the country count of a send that was not queued");
    }
    if let (Some(minute), Some(sms)) = (taken.sms_minute, &state.sms)
        && let Err(e) = sms.budget.give_back(minute).await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the SMS count of a send that was not queued");
    }
    if taken.admitted
        && let Err(e) = state.admission.release(request_id).await
    {
        tracing::warn!(%request_id, error = %e, "could not give back the room of a send that was not queued");
    }
}
