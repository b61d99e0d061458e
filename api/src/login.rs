//! The login saga: check a guess, and on a right one claim the code, write the login
//! (the user and a refresh session in PostgreSQL, an access token recorded in Redis),
//! then spend the code. If the login cannot be written, the code is given back, and
//! the same code works on the next try; if the claim lapsed meanwhile and another
//! request logged in with the code, this login is ended.

use otp_shared::events::{Event, EventType};
use otp_shared::redis::status::Channel;
use uuid::Uuid;

use crate::error::ApiError;
use crate::phone::PhoneNumber;
use crate::state::AppState;
use crate::store::VerifyOutcome;
use crate::users::User;

/// A login that holds: the user and a refresh session in PostgreSQL, and an access
/// token recorded in Redis.
pub struct SignedIn {
    pub user: User,
    pub is_new: bool,
    pub session_id: Uuid,
    pub token: String,
    pub refresh_token: String,
    /// How the code came: `sms` when an SMS carried it, else `whatsapp`.
    pub channel: Channel,
}

/// Logs `phone` in with `code`, a guess bound to the send `bound_to` or to none, from
/// `client` (an unbound wrong guess counts against that client's attempts at the code).
pub async fn log_in(
    state: &AppState,
    phone: &PhoneNumber,
    code: &str,
    bound_to: Option<Uuid>,
    client: Option<std::net::IpAddr>,
) -> Result<SignedIn, ApiError> {
    let claim = Uuid::new_v4();
    let verified = state
        .store
        .verify(phone, code, bound_to, client, claim)
        .await?;
    let (channel, code_id) = match verified {
        VerifyOutcome::Verified { by_sms, code_id } => {
            let channel = if by_sms {
                Channel::Sms
            } else {
                Channel::Whatsapp
            };
            (channel, code_id)
        }
        // Another request is logging in with this very code: it verifies only once.
        VerifyOutcome::NotFound | VerifyOutcome::Claimed => return Err(ApiError::OtpNotFound),
        VerifyOutcome::Expired => return Err(ApiError::OtpExpired),
        VerifyOutcome::Locked => return Err(ApiError::TooManyAttempts),
        VerifyOutcome::Wrong { remaining } => {
            if remaining == 0
                && let Some(events) = &state.events
            {
                // The guess that used the last attempt locks the code.
                let locked = Event::about_code(
                    EventType::OtpLocked,
                    Uuid::new_v4(),
                    phone,
                    otp_shared::now_ms(),
                )
                .because("attempts exhausted");
                events.emit_or_log(locked).await;
            }
            return Err(ApiError::OtpInvalid { remaining });
        }
    };
    // The code is spent only once the login is written and its access token recorded.
    let login = match sign_in(state, phone, code_id, channel).await {
        Ok(login) => login,
        Err(e) => {
            if let Err(release_error) = state.store.release(phone, claim).await {
                tracing::warn!(error = %release_error, "could not give back a claimed code; it frees itself in seconds");
            }
            return Err(e);
        }
    };
    if !state.store.spend(phone, claim).await? {
        // The claim lapsed and another request logged in with the code meanwhile.
        state.users.end_session(login.session_id).await?;
        return Err(ApiError::OtpNotFound);
    }
    tracing::info!(user_id = %login.user.id, is_new = login.is_new, "code verified");
    if let Some(events) = &state.events {
        let now = otp_shared::now_ms();
        let verified = Event::about_code(EventType::OtpVerified, code_id, phone, now).with(|d| {
            d.user_id = Some(login.user.id);
            d.request_id = bound_to;
            d.channel = Some(login.channel.as_str().into());
        });
        events.emit_or_log(verified).await;
        if login.is_new {
            let created = Event::about_user(
                EventType::UserCreated,
                login.user.id,
                None,
                Some(phone.as_str()),
                now,
            );
            events.emit_or_log(created).await;
        }
    }
    Ok(login)
}

/// Writes the login: the user and a refresh session, and the access token's session.
async fn sign_in(
    state: &AppState,
    phone: &PhoneNumber,
    code_id: Uuid,
    channel: Channel,
) -> Result<SignedIn, ApiError> {
    let login = state.users.login(phone, code_id).await?;
    let recorded = async {
        let (token, claims) = state
            .tokens
            .issue(login.user.id, &login.user.phone, login.session_id)
            .map_err(|e| ApiError::Internal(Box::new(e)))?;
        state
            .users
            .open_access(claims.sid, claims.jti, login.user.id)
            .await?;
        Ok::<_, ApiError>(token)
    }
    .await;
    match recorded {
        Ok(token) => Ok(SignedIn {
            user: login.user,
            is_new: login.is_new,
            session_id: login.session_id,
            token,
            refresh_token: login.refresh_token,
            channel,
        }),
        Err(e) => {
            // The session was written for nothing: end it (it would expire anyway).
            if let Err(end_error) = state.users.end_session(login.session_id).await {
                tracing::warn!(error = %end_error, "could not end a session whose login failed");
            }
            Err(e)
        }
    }
}
