//! Object keys are server text too: a server can put a secret or an instruction in a key
//! (`{"structuredContent": {"AKIA…": 1}}`) as easily as in a value.
//!
//! Every key of an answer is filtered like a string value, except the names the MCP and
//! JSON-RPC schemas define ([`is_protocol_key`]): they are fixed words that carry nothing from
//! the server, and renaming one (an operator's pattern broad enough to match `content`) would
//! break the message for the client. A key whose text changed (a redaction, a marker, hidden
//! characters removed) is renamed to the filtered text ([`rename`]).
//!
//! **Collisions**: when a new name is already taken (two keys with the same secret are both
//! renamed `[redacted:api-key]`, or the server sent that literal key as well), the entry keeps
//! its value under the name followed by `#2` (`#3`, … the first free one). Keys that were not
//! renamed keep their names; renamed keys are inserted in the order the message had them.
//! Nothing is dropped, so a client that counts entries or reads the values sees every value,
//! each filtered, and the result depends only on the message.

use serde_json::{Map, Value};

/// Property names of the MCP schema (2024-11-05 to 2025-11-25) and of JSON-RPC, by length:
/// a length switch, then constant comparisons (every key of every message is looked up).
pub fn is_protocol_key(key: &str) -> bool {
    match key.len() {
        2 => matches!(key, "id"),
        3 => matches!(key, "ref" | "src" | "uri"),
        4 => matches!(
            key,
            "blob" | "code" | "data" | "enum" | "name" | "role" | "size" | "text" | "type"
        ),
        5 => matches!(
            key,
            "_meta"
                | "error"
                | "hints"
                | "icons"
                | "items"
                | "level"
                | "model"
                | "roots"
                | "sizes"
                | "theme"
                | "title"
                | "tools"
                | "total"
                | "value"
        ),
        6 => matches!(
            key,
            "action"
                | "cursor"
                | "format"
                | "logger"
                | "method"
                | "params"
                | "reason"
                | "result"
                | "values"
        ),
        7 => matches!(
            key,
            "$schema"
                | "content"
                | "default"
                | "hasMore"
                | "isError"
                | "jsonrpc"
                | "maximum"
                | "message"
                | "minimum"
                | "prompts"
                | "version"
        ),
        8 => matches!(
            key,
            "audience"
                | "contents"
                | "messages"
                | "metadata"
                | "mimeType"
                | "priority"
                | "progress"
                | "required"
                | "resource"
                | "sampling"
        ),
        9 => matches!(
            key,
            "arguments"
                | "enumNames"
                | "maxLength"
                | "maxTokens"
                | "minLength"
                | "requestId"
                | "resources"
                | "subscribe"
        ),
        10 => matches!(
            key,
            "completion" | "nextCursor" | "properties" | "serverInfo" | "stopReason" | "websiteUrl"
        ),
        11 => matches!(
            key,
            "annotations"
                | "completions"
                | "description"
                | "elicitation"
                | "inputSchema"
                | "listChanged"
                | "temperature"
                | "uriTemplate"
        ),
        12 => matches!(
            key,
            "capabilities"
                | "costPriority"
                | "experimental"
                | "instructions"
                | "lastModified"
                | "outputSchema"
                | "readOnlyHint"
                | "systemPrompt"
        ),
        13 => matches!(
            key,
            "openWorldHint" | "progressToken" | "speedPriority" | "stopSequences"
        ),
        14 => matches!(key, "idempotentHint" | "includeContext"),
        15 => matches!(
            key,
            "destructiveHint" | "protocolVersion" | "requestedSchema"
        ),
        16 => matches!(key, "modelPreferences"),
        17 => matches!(key, "resourceTemplates" | "structuredContent"),
        20 => matches!(key, "additionalProperties" | "intelligencePriority"),
        _ => false,
    }
}

/// Renames keys of `obj`: `(old, new)` pairs in the object's order. See the module's
/// documentation for collisions.
pub fn rename(obj: &mut Map<String, Value>, renames: Vec<(String, String)>) {
    let mut moved = Vec::with_capacity(renames.len());
    for (old, new) in renames {
        if let Some(v) = obj.remove(&old) {
            moved.push((new, v));
        }
    }
    for (new, v) in moved {
        let mut name = new.clone();
        let mut n = 2u64;
        while obj.contains_key(&name) {
            name = format!("{new}#{n}");
            n += 1;
        }
        obj.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn protocol_keys_are_known_and_others_are_not() {
        for k in [
            "id",
            "structuredContent",
            "content",
            "type",
            "jsonrpc",
            "_meta",
            "$schema",
            "websiteUrl",
        ] {
            assert!(is_protocol_key(k), "{k}");
        }
        for k in ["Content", "sk-live", "AKIA", ""] {
            assert!(!is_protocol_key(k), "{k}");
        }
    }
}
