//! The audit record: one structured line per decision — who (user and agent, each with the
//! issuer of its token: a subject names someone only at its issuer), which server and tool,
//! what was asked, the outcome and the rule that decided it. Never a token.
//!
//! The record is serialised straight from borrowed fields of the flow (no intermediate JSON
//! value); its keys come out in alphabetical order, absent ones omitted.
//!
//! [`Once`] holds the rule "one record per decided request", for every request: also those
//! resumed by another request's token exchange. Every line the filter writes is safe
//! ([`escape`]): client-, server- or token-service-controlled text cannot forge a line.

pub mod escape;

use crate::error::{Rejection, RpcId};
use crate::identity::Delegation;
use crate::jsonrpc::Message;
use crate::pipeline::{Outcome, RequestFlow};
use crate::policy::Decision;
use serde::ser::{Serialize, Serializer};

/// Builds the record (a JSON object, one line, no raw control or invisible characters) for a
/// request whose fate is known.
pub fn record(flow: &RequestFlow) -> String {
    let r = Record::of(flow);
    escape::to_log_json(&r).unwrap_or_else(|e| {
        serde_json::json!({"outcome": r.outcome, "audit_error": escape::escape_text(&e.to_string())})
            .to_string()
    })
}

/// The rule "one audit record per decided request": a request's record is handed out once,
/// as soon as its fate is known (refused, or forwarded with its token), never while it waits
/// for a token exchange — its own or one another request makes for it.
#[derive(Debug, Default)]
pub struct Once {
    written: bool,
}

impl Once {
    /// The record of `flow`, the first time it is asked for once the request is decided.
    pub fn take(&mut self, flow: &RequestFlow) -> Option<String> {
        if self.written || !flow.decided() {
            return None;
        }
        self.written = true;
        Some(record(flow))
    }

    /// Whether the record was handed out.
    pub fn written(&self) -> bool {
        self.written
    }
}

/// The log line of a refusal (`mcp-warden: request N refused: status=… reason=… detail=…`),
/// the detail escaped.
pub fn refusal_line(context_id: u32, status: u32, r: &Rejection) -> String {
    format!(
        "mcp-warden: request {context_id} refused: status={status} reason={} detail={}",
        r.reason.as_str(),
        escape::escape_text(&r.detail)
    )
}

/// The log line of a notice about a request (`mcp-warden: request N: …`), escaped.
pub fn notice_line(context_id: u32, notice: &str) -> String {
    format!(
        "mcp-warden: request {context_id}: {}",
        escape::escape_text(notice)
    )
}

/// The record's fields, in the order they are written (alphabetical).
#[derive(serde::Serialize)]
struct Record<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    #[serde(skip_serializing_if = "Decisions::is_empty")]
    decisions: Decisions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegation: Option<Delegation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RpcId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Messages<'a>>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_iss: Option<&'a str>,
}

impl<'a> Record<'a> {
    fn of(flow: &'a RequestFlow) -> Record<'a> {
        let id = flow.identity();
        let agent = id.and_then(|i| i.agent.as_ref());
        let mut r = Record {
            agent: agent.map(|a| a.token.sub.as_str()),
            agent_instance: agent.and_then(|a| a.agent_instance_id.as_deref()),
            agent_iss: agent.map(|a| a.token.iss.as_str()),
            agent_model: agent.and_then(|a| a.agent_model.as_deref()),
            agent_type: agent.and_then(|a| a.agent_type.as_deref()),
            code: None,
            decisions: Decisions(flow.decisions()),
            delegation: id.map(|i| i.delegation()),
            detail: None,
            groups: id.map(|i| i.user.groups.as_slice()).unwrap_or_default(),
            id: None,
            messages: None,
            outcome: "pending",
            reason: None,
            rule: None,
            server: flow.server(),
            status: None,
            user: id.map(|i| i.user.token.sub.as_str()),
            user_iss: id.map(|i| i.user.token.iss.as_str()),
        };
        match flow.outcome() {
            Outcome::Pending => {}
            Outcome::Forwarded(payload) => {
                r.outcome = "allowed";
                r.messages = payload.as_ref().map(|p| Messages(p.messages()));
            }
            Outcome::Rejected(rej) => {
                let (status, code) = rej.reason.status_and_code();
                r.outcome = "refused";
                r.status = Some(status);
                r.code = Some(code);
                r.reason = Some(rej.reason.as_str());
                r.detail = Some(&rej.detail);
                r.rule = rej.rule.as_deref();
                r.id = rej.id.as_ref();
            }
        }
        r
    }
}

/// The messages of a forwarded request: method (or `response`), target, id.
struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| MessageRecord {
            id: m.id(),
            method: m.method(),
            response: m.method().is_none().then_some(true),
            target: m.target().name(),
        }))
    }
}

#[derive(serde::Serialize)]
struct MessageRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RpcId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
}

/// The policy decisions: effect and rule of each.
struct Decisions<'a>(&'a [Decision]);

impl Decisions<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Decisions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|d| DecisionRecord {
            effect: if d.allowed() { "allow" } else { "deny" },
            rule: &d.rule,
        }))
    }
}

#[derive(serde::Serialize)]
struct DecisionRecord<'a> {
    effect: &'static str,
    rule: &'a str,
}

#[cfg(test)]
mod tests;
