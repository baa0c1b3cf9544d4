//! The audit record: one structured line per decision — who, which agent, which server and
//! tool, what was asked, the outcome and the rule that decided it. Never a token.

use crate::pipeline::{Outcome, RequestFlow};
use serde_json::{json, Map, Value};

/// Builds the record for a request whose fate is known (forwarded or refused).
pub fn record(flow: &RequestFlow) -> Value {
    let mut r = Map::new();
    if let Some(id) = flow.identity() {
        r.insert("user".into(), json!(id.user.token.sub));
        if !id.user.groups.is_empty() {
            r.insert("groups".into(), json!(id.user.groups));
        }
        if let Some(a) = &id.agent {
            r.insert("agent".into(), json!(a.token.sub));
            if let Some(t) = &a.agent_type {
                r.insert("agent_type".into(), json!(t));
            }
            if let Some(m) = &a.agent_model {
                r.insert("agent_model".into(), json!(m));
            }
            if let Some(i) = &a.agent_instance_id {
                r.insert("agent_instance".into(), json!(i));
            }
        }
        r.insert("delegation".into(), json!(id.delegation_summary()));
    }
    if !flow.server().is_empty() {
        r.insert("server".into(), json!(flow.server()));
    }
    match flow.outcome() {
        Outcome::Pending => {
            r.insert("outcome".into(), json!("pending"));
        }
        Outcome::Forwarded(payload) => {
            r.insert("outcome".into(), json!("allowed"));
            if let Some(p) = payload {
                let msgs: Vec<Value> = p
                    .messages()
                    .iter()
                    .map(|m| {
                        let mut o = Map::new();
                        if let Some(method) = m.method() {
                            o.insert("method".into(), json!(method));
                        } else {
                            o.insert("response".into(), json!(true));
                        }
                        if let Some(name) = m.target().name() {
                            o.insert("target".into(), json!(name));
                        }
                        if let Some(id) = m.id() {
                            o.insert("id".into(), id.to_value());
                        }
                        Value::Object(o)
                    })
                    .collect();
                r.insert("messages".into(), Value::Array(msgs));
            }
        }
        Outcome::Rejected(rej) => {
            let (status, code) = rej.reason.status_and_code();
            r.insert("outcome".into(), json!("refused"));
            r.insert("status".into(), json!(status));
            r.insert("code".into(), json!(code));
            r.insert("reason".into(), json!(rej.reason.as_str()));
            r.insert("detail".into(), json!(rej.detail));
            if let Some(rule) = &rej.rule {
                r.insert("rule".into(), json!(rule));
            }
            if let Some(id) = &rej.id {
                r.insert("id".into(), id.to_value());
            }
        }
    }
    let decisions: Vec<Value> = flow
        .decisions()
        .iter()
        .map(|d| json!({"effect": if d.allowed() { "allow" } else { "deny" }, "rule": d.rule}))
        .collect();
    if !decisions.is_empty() {
        r.insert("decisions".into(), Value::Array(decisions));
    }
    Value::Object(r)
}
