//! The login page at `/` (`LOGIN_PAGE=true`): the seed's app screen, plain HTML with a
//! little JavaScript that uses only this API. Rendered once at start; its script and
//! style are inline and allowed by hash, so the page loads nothing from anywhere else.

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::human_check::HumanCheckSettings;

const TEMPLATE: &str = include_str!("login_page/index.html");
const SCRIPT: &str = include_str!("login_page/page.js");
const STYLE: &str = include_str!("login_page/page.css");

/// The page and the Content-Security-Policy that goes with it.
#[derive(Clone, Debug)]
pub struct LoginPage {
    html: Bytes,
    csp: String,
}

impl LoginPage {
    /// The page, with a link to the sandbox's inbox when `inbox_url` is given, and the
    /// human check's widget allowed in when there is one.
    pub fn render(inbox_url: Option<&str>, check: Option<&HumanCheckSettings>) -> Self {
        let inbox_link = inbox_url
            .map(|url| {
                format!(
                    r#"<p class="dev">Development: <a id="inbox-link" href="{}" target="_blank" rel="noopener">read your code in the WATI sandbox's inbox</a></p>"#,
                    escape_html(url)
                )
            })
            .unwrap_or_default();
        let captcha_attributes = check
            .map(|check| {
                format!(
                    r#" data-captcha-script="{}""#,
                    escape_html(&check.script_url)
                )
            })
            .unwrap_or_default();
        let html = TEMPLATE
            .replace("{{style}}", STYLE)
            .replace("{{script}}", SCRIPT)
            .replace("{{inbox_link}}", &inbox_link)
            .replace("{{captcha_attributes}}", &captcha_attributes);
        // The widget's script, its frame, its calls (and hCaptcha's styles) come from the
        // provider: only its sources are let in, and only when the check is on.
        let widget = check
            .map(|check| format!(" {}", check.page_sources().join(" ")))
            .unwrap_or_default();
        let frames = if widget.is_empty() {
            String::new()
        } else {
            format!(" frame-src{widget};")
        };
        let csp = format!(
            "default-src 'none'; script-src '{}'{widget}; style-src '{}'{widget}; \
             connect-src 'self'{widget};{frames} base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            sha256_source(SCRIPT),
            sha256_source(STYLE)
        );
        Self {
            html: Bytes::from(html),
            csp,
        }
    }
}

impl LoginPage {
    /// The page with its policy, as `GET /` answers it.
    pub fn response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, self.csp.as_str()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            self.html.clone(),
        )
            .into_response()
    }
}

/// A CSP source that allows exactly this inline text.
fn sha256_source(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    format!("sha256-{}", STANDARD.encode(digest.as_ref()))
}

fn escape_html(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_allows_exactly_the_inline_script_and_style() {
        let page = LoginPage::render(None, None);
        let html = String::from_utf8_lossy(&page.html);
        assert!(html.contains(SCRIPT) && html.contains(STYLE));
        assert!(page.csp.contains(&sha256_source(SCRIPT)));
        assert!(page.csp.contains(&sha256_source(STYLE)));
        assert!(!page.csp.contains("unsafe-inline"));
        assert!(!html.contains("{{"), "a placeholder was left in the page");
    }

    #[test]
    fn the_inbox_link_is_escaped_and_only_there_when_asked_for() {
        assert!(
            !String::from_utf8_lossy(&LoginPage::render(None, None).html).contains("inbox-link")
        );
        let page = LoginPage::render(Some(r#"http://127.0.0.1:8090/sandbox/?a="><script>"#), None);
        let html = String::from_utf8_lossy(&page.html);
        assert!(
            html.contains(r#"href="http://127.0.0.1:8090/sandbox/?a=&quot;&gt;&lt;script&gt;""#)
        );
    }

    #[test]
    fn the_human_checks_widget_is_let_in_only_when_the_check_is_on() {
        let off = LoginPage::render(None, None);
        assert!(!off.csp.contains("frame-src") && !off.csp.contains("http"));
        assert!(!String::from_utf8_lossy(&off.html).contains("data-captcha-script"));

        let check = crate::human_check::tests::settings(&[
            "--captcha-provider",
            "turnstile",
            "--captcha-script-url",
            "http://127.0.0.1:8090/sandbox/captcha/api.js?a=\"b",
        ]);
        let on = LoginPage::render(None, Some(&check));
        for directive in ["script-src", "frame-src", "connect-src"] {
            let sources = on
                .csp
                .split(';')
                .find(|d| d.trim().starts_with(directive))
                .unwrap_or_else(|| panic!("{directive} in {}", on.csp));
            assert!(sources.contains(" http://127.0.0.1:8090"), "{}", on.csp);
        }
        assert!(String::from_utf8_lossy(&on.html).contains(
            r#"<main class="card" data-captcha-script="http://127.0.0.1:8090/sandbox/captcha/api.js?a=&quot;b">"#
        ));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [TEMPLATE, SCRIPT, STYLE] {
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn")
            );
        }
    }
}
