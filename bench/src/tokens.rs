//! `tokens`: what signing and checking one access token costs, per algorithm, in this
//! process (no HTTP, no stores): the api signs one per login and refresh, and checks
//! one per authenticated request.

use std::time::{Duration, Instant};

use otp_api::token::keys::generate_pem;
use otp_api::token::{JwtAlgorithm, KeySet, TokenIssuer};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

/// Times `count` signatures and `count` checks with each algorithm; one line each.
pub fn run(count: usize) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    for (name, algorithm) in [
        ("HS256", JwtAlgorithm::Hs256),
        ("EdDSA", JwtAlgorithm::EdDsa),
        ("ES256", JwtAlgorithm::Es256),
    ] {
        let keys = match algorithm {
            JwtAlgorithm::Hs256 => {
                KeySet::hs256(&SecretString::from("bench-jwt-secret-0123456789abcdef0123"))
            }
            other => {
                let pem = generate_pem(other).ok_or_else(|| anyhow::anyhow!("no {name} key"))?;
                KeySet::from_pems(other, &[&pem])?
            }
        };
        let issuer = TokenIssuer::new(keys, "otp-gateway", Duration::from_secs(900));
        let (user, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let started = Instant::now();
        let tokens = (0..count)
            .map(|_| {
                issuer
                    .issue(user, "919876543210", sid)
                    .map(|(token, _)| token)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing = started.elapsed();
        let started = Instant::now();
        for token in &tokens {
            issuer.verify(token)?;
        }
        let checking = started.elapsed();
        let micros = |d: Duration| (d.as_secs_f64() * 1e6 / count as f64 * 10.0).round() / 10.0;
        lines.push(json!({
            "stage": "tokens",
            "algorithm": name,
            "tokens": count,
            "sign_us": micros(signing),
            "verify_us": micros(checking),
            "token_bytes": tokens.first().map_or(0, String::len),
        }));
    }
    Ok(lines)
}
