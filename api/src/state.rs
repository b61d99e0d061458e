//! What every handler can reach.

use std::sync::Arc;

use otp_shared::status::StatusStore;
use redis::aio::ConnectionManager;

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
}

#[derive(Clone)]
pub struct AppState {
    pub redis: ConnectionManager,
    pub store: OtpStore,
    pub users: UserStore,
    pub statuses: StatusStore,
    pub publisher: Arc<Publisher>,
    pub admission: Arc<Admission>,
    pub tokens: Arc<TokenIssuer>,
    pub settings: Arc<HandlerSettings>,
}
