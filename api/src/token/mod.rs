//! Session tokens: HS256 JWTs with the claims the spec names.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub phone: String,
    pub iat: u64,
    pub exp: u64,
    /// This access token's id; its session in Redis lives as long as it does.
    pub jti: String,
    pub iss: String,
    /// The refresh session it belongs to; logout ends it.
    pub sid: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &SecretString, issuer: &str, ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed access token for a user in refresh session `sid`, with a fresh `jti`.
    pub fn issue(
        &self,
        user_id: Uuid,
        phone: &str,
        sid: Uuid,
    ) -> Result<(String, Claims), TokenError> {
        let iat = otp_shared::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            phone: phone.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            sid,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Checks signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        Ok(jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims)
    }
}
