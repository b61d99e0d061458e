//! Token signing keys: the HS256 secret, or Ed25519 / P-256 private keys read from PEM
//! files, each with its key id and (for the asymmetric ones) the public JWK we publish.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// `JWT_ALGORITHM`: what signs access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// A shared secret (`JWT_SECRET`): whoever verifies can also sign.
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519 private keys (`JWT_PRIVATE_KEY_FILE`); verifiers need only the JWKS.
    #[value(name = "EdDSA")]
    EdDsa,
    /// P-256 private keys (`JWT_PRIVATE_KEY_FILE`); verifiers need only the JWKS.
    #[value(name = "ES256")]
    Es256,
}

impl JwtAlgorithm {
    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// Why a key file cannot sign tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read it: {cause}")]
    Unreadable { path: String, cause: std::io::Error },
    #[error("{path}: not a PEM private key (make one with `openssl genpkey -algorithm {openssl}`)")]
    NotPem { path: String, openssl: &'static str },
    #[error(
        "{path}: not an {expected} private key in PKCS#8 (`-----BEGIN PRIVATE KEY-----`; `openssl pkcs8 -topk8 -nocrypt` converts others)"
    )]
    WrongKind {
        path: String,
        expected: &'static str,
    },
    #[error("names no key file")]
    NoFiles,
    #[error("{path} is listed twice")]
    Duplicate { path: String },
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot serialize the token: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the signing key failed")]
    Crypto,
}

/// A private key, parsed once. (jsonwebtoken's `EncodingKey` re-parses its PKCS#8 for
/// every signature, which tripled the cost of an Ed25519 one.)
enum Signer {
    Hmac(Box<aws_lc_rs::hmac::Key>),
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// One key: what signs with it, what checks its signatures, and its id.
#[derive(Clone)]
pub struct TokenKey {
    pub kid: String,
    signer: Arc<Signer>,
    pub decoding: DecodingKey,
    /// The public half as a JWK (with `kid`, `alg` and `use`); none for HS256.
    pub public: Option<Jwk>,
}

/// The keys tokens are signed and checked with: the first signs, all verify.
#[derive(Clone)]
pub struct KeySet {
    algorithm: JwtAlgorithm,
    keys: Vec<TokenKey>,
}

impl fmt::Debug for KeySet {
    /// Algorithm and key ids only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("algorithm", &self.algorithm)
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The HS256 key's id.
const HS256_KID: &str = "hs256";

impl KeySet {
    /// The HS256 secret as the only key, under a fixed id: any id made from the secret
    /// (its RFC 7638 thumbprint was) would let whoever reads a token test guesses of
    /// the secret offline.
    pub fn hs256(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        Self {
            algorithm: JwtAlgorithm::Hs256,
            keys: vec![TokenKey {
                kid: HS256_KID.to_owned(),
                signer: Arc::new(Signer::Hmac(Box::new(aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    bytes,
                )))),
                decoding: DecodingKey::from_secret(bytes),
                public: None,
            }],
        }
    }

    /// Private keys from comma-separated PEM files, all of `algorithm` (EdDSA or
    /// ES256); the first signs.
    pub fn from_pem_files(algorithm: JwtAlgorithm, files: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<TokenKey> = Vec::new();
        let mut seen = Vec::new();
        for path in files.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if seen.contains(&path) {
                return Err(KeyError::Duplicate { path: path.into() });
            }
            seen.push(path);
            let pem =
                std::fs::read_to_string(Path::new(path)).map_err(|cause| KeyError::Unreadable {
                    path: path.into(),
                    cause,
                })?;
            keys.push(TokenKey::from_pem(algorithm, path, &pem)?);
        }
        if keys.is_empty() {
            return Err(KeyError::NoFiles);
        }
        Ok(Self { algorithm, keys })
    }

    /// Private keys given as PEM text, for tests and tools: the first signs.
    pub fn from_pems(algorithm: JwtAlgorithm, pems: &[&str]) -> Result<Self, KeyError> {
        let keys = pems
            .iter()
            .enumerate()
            .map(|(i, pem)| TokenKey::from_pem(algorithm, &format!("key {}", i + 1), pem))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::NoFiles);
        }
        Ok(Self { algorithm, keys })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm.jsonwebtoken()
    }

    /// The key that signs new tokens.
    pub fn signing(&self) -> &TokenKey {
        // `from_*` refuse an empty set, so there is always a first key.
        &self.keys[0]
    }

    /// The key with this id, if it is still in the set.
    pub fn by_kid(&self, kid: &str) -> Option<&TokenKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public keys, for `/.well-known/jwks.json`: empty for HS256, whose key is
    /// secret.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().filter_map(|k| k.public.clone()).collect(),
        }
    }
}

impl TokenKey {
    /// A compact JWS (`header.claims.signature`) of `header` and `claims` signed with
    /// this key; `header.alg` must be the key's algorithm.
    pub fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, SignError> {
        let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut jws);
        let signature = match self.signer.as_ref() {
            Signer::Hmac(key) => aws_lc_rs::hmac::sign(key, jws.as_bytes()).as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.sign(jws.as_bytes()).as_ref().to_vec(),
            Signer::P256(pair) => pair
                .sign(&aws_lc_rs::rand::SystemRandom::new(), jws.as_bytes())
                .map_err(|_| SignError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
    }

    fn from_pem(algorithm: JwtAlgorithm, path: &str, pem: &str) -> Result<Self, KeyError> {
        let (expected, openssl) = match algorithm {
            JwtAlgorithm::EdDsa => ("Ed25519", "ed25519"),
            JwtAlgorithm::Es256 => ("P-256", "EC -pkeyopt ec_paramgen_curve:P-256"),
            // HS256 has no key files; the caller never asks.
            JwtAlgorithm::Hs256 => ("HS256", "none"),
        };
        let der = pkcs8_der(pem).ok_or(KeyError::NotPem {
            path: path.into(),
            openssl,
        })?;
        let wrong_kind = || KeyError::WrongKind {
            path: path.into(),
            expected,
        };
        let (kid, params, signer, alg) = match algorithm {
            JwtAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| wrong_kind())?;
                let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
                let kid = thumbprint(serde_json::json!({"crv": "Ed25519", "kty": "OKP", "x": x}));
                let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x,
                });
                (kid, params, Signer::Ed25519(pair), KeyAlgorithm::EdDSA)
            }
            JwtAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|_| wrong_kind())?;
                // Uncompressed point: 0x04, then x and y, 32 bytes each.
                let (x, y) = match pair.public_key().as_ref() {
                    [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
                    _ => return Err(wrong_kind()),
                };
                let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
                let kid =
                    thumbprint(serde_json::json!({"crv": "P-256", "kty": "EC", "x": x, "y": y}));
                let params = AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x,
                    y,
                });
                (kid, params, Signer::P256(pair), KeyAlgorithm::ES256)
            }
            JwtAlgorithm::Hs256 => return Err(wrong_kind()),
        };
        let public = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(alg),
                key_id: Some(kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: params,
        };
        let decoding = DecodingKey::from_jwk(&public).map_err(|_| wrong_kind())?;
        Ok(Self {
            kid,
            signer: Arc::new(signer),
            decoding,
            public: Some(public),
        })
    }
}

/// A new private key of `algorithm` (EdDSA or ES256) as PKCS#8 PEM, for tests and
/// tools; operators make theirs with `openssl genpkey`.
pub fn generate_pem(algorithm: JwtAlgorithm) -> Option<String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = match algorithm {
        JwtAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng).ok()?.as_ref().to_vec(),
        JwtAlgorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .ok()?
            .as_ref()
            .to_vec(),
        JwtAlgorithm::Hs256 => return None,
    };
    let base64 = STANDARD.encode(der);
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect();
    Some(format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    ))
}

/// The DER inside a `-----BEGIN PRIVATE KEY-----` block; `None` for anything else
/// (encrypted or SEC1 keys included).
fn pkcs8_der(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)?
        .split("-----END PRIVATE KEY-----")
        .next()?;
    let base64: String = body.split_whitespace().collect();
    STANDARD.decode(base64).ok()
}

/// An RFC 7638 thumbprint: SHA-256 of the key's required members, base64url. Stable,
/// and derived from the public half alone (for HS256, a hash of the secret).
fn thumbprint(required_members: serde_json::Value) -> String {
    // serde_json's maps keep keys sorted, which is the order RFC 7638 asks for.
    let json = required_members.to_string();
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        json.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::ThumbprintHash;

    fn pem(algorithm: JwtAlgorithm) -> String {
        generate_pem(algorithm).expect("a key")
    }

    #[test]
    fn key_ids_are_rfc_7638_thumbprints_of_the_published_keys() {
        for algorithm in [JwtAlgorithm::EdDsa, JwtAlgorithm::Es256] {
            let set = KeySet::from_pems(algorithm, &[&pem(algorithm)]).expect("a key set");
            let jwks = set.jwks();
            let [jwk] = jwks.keys.as_slice() else {
                panic!("one key published, got {jwks:?}")
            };
            let by_the_library = jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint");
            assert_eq!(set.signing().kid, by_the_library, "{algorithm:?}");
            assert_eq!(jwk.common.key_id.as_deref(), Some(by_the_library.as_str()));
        }
    }

    #[test]
    fn the_hs256_key_id_says_nothing_of_the_secret() {
        let one = KeySet::hs256(&SecretString::from("0123456789abcdef0123456789abcdef"));
        let other = KeySet::hs256(&SecretString::from("fedcba9876543210fedcba9876543210"));
        assert_eq!(one.signing().kid, "hs256");
        assert_eq!(one.signing().kid, other.signing().kid);
    }

    #[test]
    fn the_jwks_holds_public_halves_only_and_nothing_for_hs256() {
        let set = KeySet::from_pems(
            JwtAlgorithm::Es256,
            &[&pem(JwtAlgorithm::Es256), &pem(JwtAlgorithm::Es256)],
        )
        .expect("a key set");
        let json = serde_json::to_value(set.jwks()).expect("json");
        let keys = json["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 2);
        for key in keys {
            assert!(
                key.get("d").is_none(),
                "a private member was published: {key}"
            );
            assert_eq!(key["kty"], "EC");
            assert_eq!(key["crv"], "P-256");
            assert_eq!(key["alg"], "ES256");
            assert_eq!(key["use"], "sig");
        }
        let hs = KeySet::hs256(&SecretString::from("0123456789abcdef0123456789abcdef"));
        assert!(hs.jwks().keys.is_empty());
        assert!(!hs.signing().kid.is_empty());
    }

    #[test]
    fn keys_made_by_openssl_genpkey_as_the_readme_says_are_read() {
        // Test keys only, made by the README's commands; they sign nothing real.
        for (algorithm, pem) in [
            (
                JwtAlgorithm::EdDsa,
                include_str!("testdata/ed25519-openssl.pem"),
            ),
            (
                JwtAlgorithm::Es256,
                include_str!("testdata/p256-openssl.pem"),
            ),
        ] {
            let set = KeySet::from_pems(algorithm, &[pem]).expect("an openssl key reads");
            assert_eq!(set.jwks().keys.len(), 1, "{algorithm:?}");
        }
    }

    #[test]
    fn a_key_of_another_kind_or_not_pkcs8_is_refused_with_the_reason() {
        let ed = pem(JwtAlgorithm::EdDsa);
        assert!(matches!(
            KeySet::from_pems(JwtAlgorithm::Es256, &[&ed]),
            Err(KeyError::WrongKind {
                expected: "P-256",
                ..
            })
        ));
        assert!(matches!(
            KeySet::from_pems(JwtAlgorithm::EdDsa, &[&pem(JwtAlgorithm::Es256)]),
            Err(KeyError::WrongKind {
                expected: "Ed25519",
                ..
            })
        ));
        let sec1 = ed.replace("BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY");
        assert!(matches!(
            KeySet::from_pems(JwtAlgorithm::EdDsa, &[&sec1]),
            Err(KeyError::NotPem { .. })
        ));
        assert!(matches!(
            KeySet::from_pems(JwtAlgorithm::EdDsa, &[]),
            Err(KeyError::NoFiles)
        ));
    }

    #[test]
    fn key_files_are_read_in_order_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("otp-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (a, b) = (dir.join("a.pem"), dir.join("b.pem"));
        std::fs::write(&a, pem(JwtAlgorithm::EdDsa)).expect("write");
        std::fs::write(&b, pem(JwtAlgorithm::EdDsa)).expect("write");
        let files = format!("{}, {}", a.display(), b.display());
        let set = KeySet::from_pem_files(JwtAlgorithm::EdDsa, &files).expect("a key set");
        let first = KeySet::from_pem_files(JwtAlgorithm::EdDsa, &a.display().to_string())
            .expect("a key set");
        assert_eq!(
            set.signing().kid,
            first.signing().kid,
            "the first file signs"
        );
        assert_eq!(set.jwks().keys.len(), 2);
        let missing = dir.join("missing.pem").display().to_string();
        let error = KeySet::from_pem_files(JwtAlgorithm::EdDsa, &missing).expect_err("missing");
        assert!(error.to_string().starts_with(&missing), "{error}");
        let twice = format!("{},{}", a.display(), a.display());
        assert!(matches!(
            KeySet::from_pem_files(JwtAlgorithm::EdDsa, &twice),
            Err(KeyError::Duplicate { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
