//! Tokens other services verify: with EdDSA or ES256 a verifier that knows only the
//! api's JWKS URL accepts its tokens; a key stays valid while it is in the set, and its
//! tokens stop working everywhere once it is removed. Also the login page's route.

use std::path::PathBuf;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use otp_api::token::JwtAlgorithm;
use otp_api::token::keys::generate_pem;
use otp_e2e::TestEnv;
use serde_json::{Value, json};

const PHONE: &str = "919812345678";

/// A service elsewhere: it has the JWKS URL and the issuer, nothing else of the api's.
struct SeparateVerifier {
    http: reqwest::Client,
    jwks_url: String,
}

impl SeparateVerifier {
    fn new(api_url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            jwks_url: format!("{api_url}/.well-known/jwks.json"),
        }
    }

    async fn jwks(&self) -> JwkSet {
        let response = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .expect("JWKS reachable");
        assert_eq!(response.status(), 200);
        response.json().await.expect("a JWK set")
    }

    /// The token's claims if a key of the published set signed it.
    async fn verify(&self, token: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        let jwks = self.jwks().await;
        let jwk = jwks.find(&kid).ok_or("kid not in the JWKS")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        // The algorithm comes from the published key, never from the token's header.
        let named = jwk
            .common
            .key_algorithm
            .ok_or("the JWK names no algorithm")?;
        let algorithm: jsonwebtoken::Algorithm =
            serde_json::from_value(json!(named)).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&["otp-gateway"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

/// Key files of `algorithm` in a directory removed on drop.
struct KeyFiles {
    dir: PathBuf,
}

impl KeyFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("otp-jwt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a key directory");
        Self { dir }
    }

    fn make(&self, name: &str, algorithm: JwtAlgorithm) -> String {
        let path = self.dir.join(format!("{name}.pem"));
        std::fs::write(&path, generate_pem(algorithm).expect("a key")).expect("write a key");
        path.display().to_string()
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn token_of(body: &Value) -> &str {
    body["token"].as_str().expect("a token")
}

async fn tokens_verify_elsewhere_with_only_the_jwks(name: &str, algorithm: JwtAlgorithm) {
    let keys = KeyFiles::new();
    let key = keys.make("active", algorithm);
    let mut env = TestEnv::new().await;
    let config = env.api_config_with(&["--jwt-algorithm", name, "--jwt-private-key-file", &key]);
    let _api = env.start_api_with(config).await;
    let _worker = env.start_worker().await;
    let login = env.log_in(PHONE).await;
    let token = token_of(&login);

    let verifier = SeparateVerifier::new(&env.api_url);
    let claims = verifier
        .verify(token)
        .await
        .expect("the verifier accepts it");
    assert_eq!(claims["sub"], login["user"]["id"]);
    assert_eq!(claims["phone"], PHONE);
    let header = jsonwebtoken::decode_header(token).expect("a header");
    assert_eq!(format!("{:?}", header.alg), name);

    // A token whose payload was changed is refused, though its kid is right.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut tampered: serde_json::Map<String, Value> =
        serde_json::from_value(claims).expect("claims are an object");
    tampered.insert("phone".into(), json!("447700900123"));
    parts[1] = base64_url(&serde_json::to_vec(&tampered).expect("json"));
    let forged = parts.join(".");
    assert!(
        verifier.verify(&forged).await.is_err(),
        "a tampered token verified"
    );
    assert_eq!(env.get("/api/auth/me", Some(&forged)).await.0, 401);
    assert_eq!(env.get("/api/auth/me", Some(token)).await.0, 200);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn an_eddsa_token_verifies_in_a_service_that_knows_only_the_jwks_url() {
    tokens_verify_elsewhere_with_only_the_jwks("EdDSA", JwtAlgorithm::EdDsa).await;
}

#[tokio::test]
async fn an_es256_token_verifies_in_a_service_that_knows_only_the_jwks_url() {
    tokens_verify_elsewhere_with_only_the_jwks("ES256", JwtAlgorithm::Es256).await;
}

#[tokio::test]
async fn an_old_key_verifies_until_it_is_removed_from_the_set() {
    let keys = KeyFiles::new();
    let (old, new) = (
        keys.make("old", JwtAlgorithm::EdDsa),
        keys.make("new", JwtAlgorithm::EdDsa),
    );
    let mut env = TestEnv::new().await;
    let _worker = env.start_worker().await;
    let with_keys = |files: &str| {
        env.api_config_with(&["--jwt-algorithm", "EdDSA", "--jwt-private-key-file", files])
    };
    let (only_old, both, only_new) = (
        with_keys(&old),
        with_keys(&format!("{new},{old}")),
        with_keys(&new),
    );

    // 1. The old key alone signs.
    let api = env.start_api_with(only_old).await;
    let login = env.log_in(PHONE).await;
    let old_token = token_of(&login).to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .expect("header")
        .kid
        .expect("kid");
    api.stop().await;

    // 2. The new key signs; the old one is still published and still verifies.
    let api = env.start_api_with(both).await;
    let verifier = SeparateVerifier::new(&env.api_url);
    assert_eq!(verifier.jwks().await.keys.len(), 2);
    assert!(verifier.verify(&old_token).await.is_ok());
    assert_eq!(env.get("/api/auth/me", Some(&old_token)).await.0, 200);
    let (status, refreshed) = env
        .post(
            "/api/auth/refresh",
            json!({ "refreshToken": login["refreshToken"] }),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let new_token = token_of(&refreshed).to_owned();
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .expect("header")
        .kid
        .expect("kid");
    assert_ne!(new_kid, old_kid, "the first key in the list signs");
    api.stop().await;

    // 3. The old key is removed: its tokens fail here and at the separate verifier.
    let _api = env.start_api_with(only_new).await;
    let verifier = SeparateVerifier::new(&env.api_url);
    let published = verifier.jwks().await;
    assert!(published.find(&old_kid).is_none() && published.find(&new_kid).is_some());
    assert_eq!(
        verifier.verify(&old_token).await.err().as_deref(),
        Some("kid not in the JWKS")
    );
    assert_eq!(env.get("/api/auth/me", Some(&old_token)).await.0, 401);
    assert!(verifier.verify(&new_token).await.is_ok());
    assert_eq!(env.get("/api/auth/me", Some(&new_token)).await.0, 200);
}

#[tokio::test]
async fn with_hs256_the_jwks_is_empty_and_tokens_still_name_their_key() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let _worker = env.start_worker().await;
    let verifier = SeparateVerifier::new(&env.api_url);
    assert!(verifier.jwks().await.keys.is_empty());
    let login = env.log_in(PHONE).await;
    let header = jsonwebtoken::decode_header(token_of(&login)).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert!(header.kid.is_some());
    assert_eq!(
        verifier.verify(token_of(&login)).await.err().as_deref(),
        Some("kid not in the JWKS")
    );
}

#[tokio::test]
async fn the_login_page_is_served_only_when_turned_on() {
    let mut env = TestEnv::new().await;
    let off = env.start_api().await;
    let (status, body) = env.get("/", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "NOT_FOUND");
    off.stop().await;

    let config = env.api_config_with(&[
        "--login-page",
        "true",
        "--login-page-inbox-url",
        "http://127.0.0.1:8090/sandbox/",
    ]);
    let _on = env.start_api_with(config).await;
    let response = env
        .http
        .get(format!("{}/", env.api_url))
        .send()
        .await
        .expect("api reachable");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    assert!(csp.contains("frame-ancestors 'none'"));
    let html = response.text().await.expect("a page");
    for needle in [
        r#"autocomplete="one-time-code""#,
        r#"inputmode="numeric""#,
        r#"href="http://127.0.0.1:8090/sandbox/""#,
    ] {
        assert!(html.contains(needle), "the page lacks {needle}");
    }
}
