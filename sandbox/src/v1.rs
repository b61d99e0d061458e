//! `POST …/api/v1/sendTemplateMessage?whatsappNumber=…`: one recipient a call, one
//! scripted reply popped a call.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::receipt::{self, ReceiptPlan};
use crate::record::{Sent, Ticket};
use crate::send::{wati_answer, with_retry_after};
use crate::{Sandbox, ScriptedReply};

#[derive(Deserialize)]
pub(crate) struct SendQuery {
    #[serde(rename = "whatsappNumber")]
    whatsapp_number: Option<String>,
}

pub(crate) async fn send(
    sandbox: &Sandbox,
    ticket: Ticket,
    query: SendQuery,
    body: &[u8],
) -> Response {
    let phone = query
        .whatsapp_number
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let broadcast_name = parsed
        .as_ref()
        .and_then(|b| b["broadcast_name"].as_str())
        .unwrap_or_default()
        .to_owned();
    let reject = |status: StatusCode, info: &str| {
        sandbox.recorded().log_call(
            ticket,
            status.as_u16(),
            broadcast_name.clone(),
            phone.iter().cloned().collect(),
        );
        wati_answer(status, false, info)
    };
    let Some(phone) = phone.clone() else {
        return reject(StatusCode::BAD_REQUEST, "whatsappNumber is required");
    };
    let Some(body) = parsed.as_ref() else {
        return reject(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    if body["template_name"].as_str() != Some(sandbox.config.template_name.as_str()) {
        return reject(StatusCode::NOT_FOUND, "Template not found");
    }
    let code = body["parameters"].as_array().and_then(|params| {
        params
            .iter()
            .find(|p| p["name"] == "otp")
            .and_then(|p| p["value"].as_str())
            .map(str::to_owned)
    });
    let Some(code) = code else {
        return reject(StatusCode::BAD_REQUEST, "Parameter otp is required");
    };

    let scripted = sandbox.recorded().pop_script(&phone);
    let receipts = ReceiptPlan::from_script(scripted.as_ref());
    let reply = scripted.unwrap_or_else(|| ScriptedReply {
        delay_ms: Some(sandbox.config.latency.as_millis() as u64),
        ..ScriptedReply::default()
    });
    if let Some(delay) = reply.delay_ms.filter(|d| *d > 0) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = reply
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let result = reply.result.unwrap_or(status.is_success());
    let accepted = sandbox.recorded().record(
        ticket,
        status.as_u16(),
        broadcast_name,
        vec![Sent {
            phone,
            code,
            local_message_id: None,
            accepted: status.is_success() && result,
            receipts,
        }],
    );
    receipt::schedule(sandbox, accepted);
    let info = reply.info.unwrap_or_else(|| {
        if result {
            "Message sent"
        } else {
            "Message not sent"
        }
        .to_owned()
    });
    let answer = (
        status,
        Json(json!({"result": result, "info": info, "validWhatsAppNumber": true})),
    )
        .into_response();
    with_retry_after(answer, reply.retry_after)
}
