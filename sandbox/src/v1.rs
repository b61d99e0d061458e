//! `POST …/api/v1/sendTemplateMessage?whatsappNumber=…`: one recipient a call, checked
//! against the tenant's templates (`templates`): an unknown or unapproved template, or
//! parameters WATI cannot match, get `200 {"result": false, "info": …}` (WATI's
//! reported text for a parameter: "Check your template, it cannot have typos or blank
//! text"); then one scripted reply is popped (or, without one, the number's fate in the
//! population: `population.rs`). A number scripted or fated as not on WhatsApp gets
//! `200 {"result": false, "info": "Invalid WhatsApp number", "validWhatsAppNumber": false}`
//! and nothing is sent.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::receipt::{self, ReceiptPlan};
use crate::record::{CallFacts, Sent, Ticket};
use crate::send::{wati_answer, with_retry_after};
use crate::templates::{self, ParamCheck};
use crate::{Sandbox, ScriptedReply};

/// What v1 says of a number without WhatsApp.
const NOT_ON_WHATSAPP: &str = "Invalid WhatsApp number";

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
    let text_of = |field: &str| {
        parsed
            .as_ref()
            .and_then(|b| b[field].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let broadcast_name = text_of("broadcast_name");
    let template_name = text_of("template_name");
    let channel = Some(text_of("channel_number")).filter(|c| !c.is_empty());
    let facts = |status: StatusCode| CallFacts {
        status: status.as_u16(),
        broadcast_name: broadcast_name.clone(),
        template_name: template_name.clone(),
        channel_number: channel.clone(),
    };
    // A refusal before anything is sent: logged, answered with `result: false`.
    let refuse = |status: StatusCode, info: &str| {
        sandbox
            .recorded()
            .log_call(ticket, facts(status), phone.iter().cloned().collect());
        wati_answer(status, false, info)
    };
    let Some(phone) = phone.clone() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Whatsapp number should not be null or empty",
        );
    };
    let Some(body) = parsed.as_ref() else {
        return refuse(StatusCode::BAD_REQUEST, "Invalid JSON body");
    };
    let template = match sandbox.template_for_send(&template_name, channel.as_deref()) {
        Ok(template) => template,
        Err(info) => return refuse(StatusCode::OK, &info),
    };
    let params: Vec<(String, Option<String>)> = body["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["value"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let check = template.check_params(&params);
    if check == ParamCheck::Mismatched {
        return refuse(StatusCode::OK, templates::CHECK_YOUR_TEMPLATE);
    }

    // A number's own script, else its fate in the population; either way the configured
    // latency unless the script names a delay.
    let reply = match sandbox.recorded().pop_script(&phone) {
        Some(scripted) => scripted,
        None => ScriptedReply {
            delay_ms: Some(sandbox.config.latency.as_millis() as u64),
            ..sandbox.population().script_for(&phone).unwrap_or_default()
        },
    };
    let receipts = match &check {
        // Taken, and failed by Meta: it has no parameters.
        ParamCheck::Missing => ReceiptPlan::Failed {
            code: templates::PARAM_COUNT_MISMATCH_CODE.to_owned(),
            detail: templates::PARAM_COUNT_MISMATCH_DETAIL.to_owned(),
        },
        _ => ReceiptPlan::from_script(Some(&reply)),
    };
    if let Some(delay) = reply.delay_ms.filter(|d| *d > 0) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = reply
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let on_whatsapp = reply.valid_whatsapp_number != Some(false);
    let result = reply.result.unwrap_or(status.is_success() && on_whatsapp);
    let code = match &check {
        ParamCheck::Filled { code } => code.clone(),
        _ => String::new(),
    };
    let facts = CallFacts {
        template_name: template.name.clone(),
        ..facts(status)
    };
    let accepted = sandbox.recorded().record(
        ticket,
        facts,
        vec![Sent {
            phone,
            code,
            rendered: template.render(|name| templates::value_of(&params, name)),
            local_message_id: None,
            accepted: status.is_success() && result && on_whatsapp,
            reaches_phone: check != ParamCheck::Missing,
            receipts,
        }],
    );
    receipt::schedule(sandbox, accepted);
    let info = reply.info.unwrap_or_else(|| {
        if !on_whatsapp {
            NOT_ON_WHATSAPP
        } else if result {
            "Message sent"
        } else {
            "Message not sent"
        }
        .to_owned()
    });
    let answer = (
        status,
        Json(json!({"result": result, "info": info, "validWhatsAppNumber": on_whatsapp})),
    )
        .into_response();
    with_retry_after(answer, reply.retry_after)
}
