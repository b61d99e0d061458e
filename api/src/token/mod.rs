//! Access tokens: JWTs with the claims the spec names, signed by the active key of a
//! [`KeySet`] (HS256, EdDSA or ES256) and checked against whichever key their `kid` names.

pub mod keys;

use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use keys::{JwtAlgorithm, KeyError, KeySet};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    pub phone: String,
    pub iat: u64,
    pub exp: u64,
    /// This access token's id; its session in Redis lives as long as it does.
    pub jti: Uuid,
    pub iss: String,
    /// The refresh session it belongs to; logout ends it.
    pub sid: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("cannot sign a token: {0}")]
    Signing(#[from] keys::SignError),
    #[error("token rejected: its header names no key")]
    NoKeyId,
    /// A key that was removed from the set, or never in it.
    #[error("token rejected: signed by a key that is not in the set")]
    UnknownKey,
}

pub struct TokenIssuer {
    keys: KeySet,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(keys: KeySet, issuer: &str, ttl: Duration) -> Self {
        // One algorithm only: a token cannot pick a weaker one for itself.
        let mut validation = Validation::new(keys.algorithm());
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            keys,
            validation,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The public keys other services verify tokens with.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.keys.jwks()
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
            sub: user_id,
            phone: phone.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: Uuid::new_v4(),
            iss: self.issuer.clone(),
            sid,
        };
        let key = self.keys.signing();
        let mut header = Header::new(self.keys.algorithm());
        header.kid = Some(key.kid.clone());
        let token = key.sign(&header, &claims)?;
        Ok((token, claims))
    }

    /// Checks the key (named by `kid` and still in the set), signature, algorithm,
    /// issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let key = match jsonwebtoken::decode_header(token)?.kid {
            Some(kid) => self.keys.by_kid(&kid).ok_or(TokenError::UnknownKey)?,
            // HS256 tokens issued before tokens named their key have one key to be.
            None if self.keys.algorithm() == jsonwebtoken::Algorithm::HS256 => self.keys.signing(),
            None => return Err(TokenError::NoKeyId),
        };
        Ok(jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)?.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::keys::generate_pem;
    use super::*;
    use secrecy::SecretString;

    fn issuer(algorithm: JwtAlgorithm, pems: &[&str]) -> TokenIssuer {
        let keys = KeySet::from_pems(algorithm, pems).expect("a key set");
        TokenIssuer::new(keys, "otp-gateway", Duration::from_secs(60))
    }

    fn token(issuer: &TokenIssuer) -> String {
        issuer
            .issue(Uuid::new_v4(), "919876543210", Uuid::new_v4())
            .expect("issued")
            .0
    }

    #[test]
    fn old_key_tokens_verify_while_their_key_is_in_the_set_and_not_after() {
        for algorithm in [JwtAlgorithm::EdDsa, JwtAlgorithm::Es256] {
            let (old, new) = (
                generate_pem(algorithm).expect("key"),
                generate_pem(algorithm).expect("key"),
            );
            let before = issuer(algorithm, &[&old]);
            let during = issuer(algorithm, &[&new, &old]);
            let after = issuer(algorithm, &[&new]);
            let old_token = token(&before);
            assert!(during.verify(&old_token).is_ok(), "{algorithm:?}");
            assert!(matches!(
                after.verify(&old_token),
                Err(TokenError::UnknownKey)
            ));
            let new_token = token(&during);
            let header = jsonwebtoken::decode_header(&new_token).expect("header");
            assert_eq!(
                header.kid.as_deref(),
                Some(during.keys.signing().kid.as_str())
            );
            assert_eq!(header.alg, during.keys.algorithm());
            assert!(after.verify(&new_token).is_ok());
            assert!(before.verify(&new_token).is_err());
        }
    }

    #[test]
    fn a_token_cannot_choose_its_algorithm_or_omit_its_key_id() {
        let pem = generate_pem(JwtAlgorithm::EdDsa).expect("key");
        let ed = issuer(JwtAlgorithm::EdDsa, &[&pem]);
        let claims = ed.verify(&token(&ed)).expect("a good token verifies");
        // HS256 keyed with the published public key, naming the Ed25519 key's id.
        let public = ed.jwks().keys[0].clone();
        let jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(params) = &public.algorithm else {
            panic!("an OKP key")
        };
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = public.common.key_id.clone();
        let forged = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(params.x.as_bytes()),
        )
        .expect("encoded");
        assert!(ed.verify(&forged).is_err(), "an HS256 token was accepted");
        let mut no_kid = Header::new(jsonwebtoken::Algorithm::EdDSA);
        no_kid.kid = None;
        let signed = ed.keys.signing().sign(&no_kid, &claims).expect("signed");
        assert!(matches!(ed.verify(&signed), Err(TokenError::NoKeyId)));
    }

    #[test]
    fn hs256_tokens_carry_a_key_id_and_older_ones_without_it_still_verify() {
        let keys = KeySet::hs256(&SecretString::from("0123456789abcdef0123456789abcdef"));
        let hs = TokenIssuer::new(keys, "otp-gateway", Duration::from_secs(60));
        let token = token(&hs);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
        assert!(header.kid.is_some());
        let claims = hs.verify(&token).expect("verifies");
        let older = hs
            .keys
            .signing()
            .sign(&Header::new(jsonwebtoken::Algorithm::HS256), &claims)
            .expect("signed");
        assert!(
            hs.verify(&older).is_ok(),
            "a kid-less HS256 token of this key"
        );
        let mut unknown = Header::new(jsonwebtoken::Algorithm::HS256);
        unknown.kid = Some("another".into());
        let other = hs.keys.signing().sign(&unknown, &claims).expect("signed");
        assert!(matches!(hs.verify(&other), Err(TokenError::UnknownKey)));
    }
}
