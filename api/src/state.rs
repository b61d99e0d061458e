//! What every handler can reach.

use std::sync::Arc;

use otp_shared::redis::conn::RedisConn;
use otp_shared::redis::status::StatusStore;
use secrecy::SecretString;

use crate::store::OtpStore;
use crate::token::TokenIssuer;
use crate::users::UserStore;
use otp_shared::publisher::Publisher;
use otp_shared::redis::admission::Admission;

/// Handler settings that are not owned by a store.
#[derive(Clone, Debug)]
pub struct HandlerSettings {
    pub otp_length: u32,
    pub trusted_proxies: crate::client::TrustedProxies,
    /// `ALLOWED_COUNTRY_CODES`: where codes may be sent.
    pub allowed_countries: crate::phone::AllowedCountries,
    /// `ALLOWED_NUMBER_TYPES`: the kinds of number codes may be sent to.
    pub allowed_number_types: crate::phone::AllowedNumberTypes,
    /// `COUNTRY_SENDS_PER_MINUTE`.
    pub country_budgets: crate::country_budget::CountryBudgets,
    /// The secret of the receipts webhook's path; `None` when receipts are off.
    pub webhook_secret: Option<SecretString>,
    /// `COUNTRY_LOCALES`: the language of a country's codes, unless the app names one.
    pub country_locales: otp_shared::phone::ByCountry<otp_shared::locale::Locale>,
    /// `TEST_PHONES`: phones that log in with a fixed code and get no message.
    pub review_phones: crate::review_phones::ReviewPhones,
    /// The login page at `/`, rendered once at start; `None` when `LOGIN_PAGE` is off.
    pub login_page: Option<crate::login_page::LoginPage>,
}

/// What every handler can reach, behind one `Arc`: axum clones the state for every
/// request, and a clone of this is one reference count, not a dozen stores and strings.
#[derive(Clone)]
pub struct AppState(Arc<Handlers>);

impl AppState {
    pub fn new(handlers: Handlers) -> Self {
        Self(Arc::new(handlers))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handlers;

    fn deref(&self) -> &Handlers {
        &self.0
    }
}

/// The stores, the publisher and the settings handlers use.
pub struct Handlers {
    pub redis: RedisConn,
    /// The names of every Redis key (for the budgets made per request).
    pub keys: otp_shared::redis::keys::Keys,
    /// PostgreSQL, for readiness (the user store holds its own handle).
    pub db: sqlx::PgPool,
    pub store: OtpStore,
    pub users: UserStore,
    pub statuses: StatusStore,
    pub receipts: crate::receipts::ReceiptStore,
    pub publisher: Arc<Publisher>,
    /// Sign-ins in flight: receipts yield to a burst of them.
    pub pressure: Arc<crate::pressure::Pressure>,
    pub admission: Arc<Admission>,
    /// The sending numbers and their health.
    pub pool: crate::pool::SendingPool,
    pub send_budget: otp_shared::redis::send_budget::SendBudget,
    /// SMS (`SMS_PROVIDER`), when it is on.
    pub sms: Option<crate::sms::SmsApi>,
    /// The human check (`CAPTCHA_PROVIDER`), when it is on.
    pub human_check: Option<Arc<crate::human_check::HumanCheck>>,
    /// Tells the app what happened (`APP_WEBHOOK_URL`), when events are on.
    pub events: Option<otp_shared::events::Emitter>,
    pub tokens: Arc<TokenIssuer>,
    pub settings: Arc<HandlerSettings>,
}
