//! What every handler can reach.

use std::sync::Arc;

use otp_shared::status::StatusStore;
use redis::aio::ConnectionManager;
use secrecy::SecretString;

use crate::admission::Admission;
use crate::publisher::Publisher;
use crate::store::OtpStore;
use crate::token::TokenIssuer;
use crate::users::UserStore;

/// Handler settings that are not owned by a store.
#[derive(Clone, Debug)]
pub struct HandlerSettings {
    pub otp_length: u32,
    pub trust_forwarded_for: bool,
    /// The secret of the receipts webhook's path; `None` when receipts are off.
    pub webhook_secret: Option<SecretString>,
}

#[derive(Clone)]
pub struct AppState {
    pub redis: ConnectionManager,
    pub store: OtpStore,
    pub users: UserStore,
    pub statuses: StatusStore,
    pub receipts: crate::receipts::ReceiptStore,
    pub publisher: Arc<Publisher>,
    pub admission: Arc<Admission>,
    pub tokens: Arc<TokenIssuer>,
    pub settings: Arc<HandlerSettings>,
}
