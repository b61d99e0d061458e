//! A sandbox served over HTTP on a free port, shared by the sandbox's test files.

use wati_sandbox::{Sandbox, SandboxConfig};

pub const KEY: &str = "test-key";

pub struct Served {
    pub sandbox: Sandbox,
    pub root: String,
    pub http: reqwest::Client,
}

/// A sandbox with key [`KEY`] and otherwise the binary's defaults (no webhook), and
/// `http` to call it with.
pub async fn serve_with(http: reqwest::Client) -> Served {
    serve_config(
        SandboxConfig {
            api_key: KEY.into(),
            ..SandboxConfig::default()
        },
        http,
    )
    .await
}

/// A sandbox with `config`, and `http` to call it with.
pub async fn serve_config(config: SandboxConfig, http: reqwest::Client) -> Served {
    let sandbox = Sandbox::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let root = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(wati_sandbox::serve(
        sandbox.clone(),
        listener,
        std::future::pending(),
    ));
    Served {
        sandbox,
        root,
        http,
    }
}

/// A form body (`application/x-www-form-urlencoded`) of `params`, in order.
#[allow(dead_code, reason = "only the tests of form-encoded APIs use it")]
pub fn form(params: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://form.invalid/", params)
        .expect("a form")
        .query()
        .unwrap_or_default()
        .to_owned()
}

impl Served {
    /// GETs `path` of the sandbox (a control route), expects 200, and reads its JSON.
    #[allow(dead_code, reason = "only the tests that read a control route use it")]
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}{path}", self.root))
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
        response.json().await.expect("a JSON body")
    }
}
