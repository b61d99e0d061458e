//! `GET …/api/ext/v3/messageTemplates` and `GET …/api/v1/getMessageTemplates`: the
//! tenant's templates, a page at a time, after the key check (a 401 without a body, as
//! WATI's reference allows). A test can make the list fail as a key without the
//! template-read scope (403) or an outage (5xx) would.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::send::v3_error;
use crate::{Sandbox, Template};

const V1_SUFFIX: &str = "api/v1/getMessageTemplates";
const V3_SUFFIX: &str = "api/ext/v3/messageTemplates";
/// v3's most per page.
const V3_MAX_PAGE_SIZE: usize = 100;
/// v1's page size when none is given.
const V1_DEFAULT_PAGE_SIZE: usize = 10;

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    page_number: Option<usize>,
    page_size: Option<usize>,
    /// v3: the channel's name or number; none for the default channel.
    channel: Option<String>,
    #[serde(rename = "pageNumber")]
    v1_page_number: Option<usize>,
    #[serde(rename = "pageSize")]
    v1_page_size: Option<usize>,
    #[serde(rename = "channelPhoneNumber")]
    v1_channel: Option<String>,
}

/// Page `number` (from 1) of `size` templates, each as `entry` lists it.
fn page(
    templates: &[Template],
    number: usize,
    size: usize,
    entry: fn(&Template, usize) -> Value,
) -> Vec<Value> {
    templates
        .iter()
        .enumerate()
        .skip((number - 1).saturating_mul(size))
        .take(size)
        .map(|(i, t)| entry(t, i))
        .collect()
}

pub(crate) async fn list(
    State(sandbox): State<Sandbox>,
    Path(path): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let v3 = path.ends_with(V3_SUFFIX);
    if !v3 && !path.ends_with(V1_SUFFIX) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"result": false, "info": "Not found"})),
        )
            .into_response();
    }
    let expected = format!("Bearer {}", sandbox.config.api_key);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(status) = sandbox.list_request() {
        let message = if status == StatusCode::FORBIDDEN {
            "The API key doesn't have permissions to perform the request."
        } else {
            "Unexpected error"
        };
        return v3_error(status, message);
    }
    let channel = query
        .channel
        .as_deref()
        .or(query.v1_channel.as_deref())
        .filter(|c| !c.is_empty());
    let templates = sandbox.templates_of(channel);
    if v3 {
        let (Some(number), Some(size)) = (query.page_number, query.page_size) else {
            return v3_error(
                StatusCode::BAD_REQUEST,
                "page_number and page_size are required",
            );
        };
        if number == 0 || !(1..=V3_MAX_PAGE_SIZE).contains(&size) {
            return v3_error(
                StatusCode::BAD_REQUEST,
                "page_number starts at 1 and page_size is 1 to 100",
            );
        }
        let page = page(&templates, number, size, Template::v3_entry);
        Json(json!({
            "templates": page,
            "page_number": number,
            "page_size": size,
            "total": templates.len(),
        }))
        .into_response()
    } else {
        let number = query.v1_page_number.unwrap_or(1).max(1);
        let size = query.v1_page_size.unwrap_or(V1_DEFAULT_PAGE_SIZE).max(1);
        let page = page(&templates, number, size, Template::v1_entry);
        let pages = templates.len().div_ceil(size);
        Json(json!({
            "result": "success",
            "messageTemplates": page,
            "link": {
                "prevPage": (number > 1).then(|| number - 1),
                "nextPage": (number < pages).then(|| number + 1),
                "pageNumber": number,
                "pageSize": size,
                "total": templates.len(),
            },
        }))
        .into_response()
    }
}
