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

/// Property names of the MCP schema (2024-11-05 to 2025-11-25) and of JSON-RPC, sorted.
const PROTOCOL_KEYS: &[&str] = &[
    "$schema",
    "_meta",
    "action",
    "additionalProperties",
    "annotations",
    "arguments",
    "audience",
    "blob",
    "capabilities",
    "code",
    "completion",
    "completions",
    "content",
    "contents",
    "costPriority",
    "cursor",
    "data",
    "default",
    "description",
    "destructiveHint",
    "elicitation",
    "enum",
    "enumNames",
    "error",
    "experimental",
    "format",
    "hasMore",
    "hints",
    "icons",
    "id",
    "idempotentHint",
    "includeContext",
    "inputSchema",
    "instructions",
    "intelligencePriority",
    "isError",
    "items",
    "jsonrpc",
    "lastModified",
    "level",
    "listChanged",
    "logger",
    "maxLength",
    "maxTokens",
    "maximum",
    "message",
    "messages",
    "metadata",
    "method",
    "mimeType",
    "minLength",
    "minimum",
    "model",
    "modelPreferences",
    "name",
    "nextCursor",
    "openWorldHint",
    "outputSchema",
    "params",
    "priority",
    "progress",
    "progressToken",
    "prompts",
    "properties",
    "protocolVersion",
    "readOnlyHint",
    "reason",
    "ref",
    "requestId",
    "requestedSchema",
    "required",
    "resource",
    "resourceTemplates",
    "resources",
    "result",
    "role",
    "roots",
    "sampling",
    "serverInfo",
    "size",
    "sizes",
    "speedPriority",
    "src",
    "stopReason",
    "stopSequences",
    "structuredContent",
    "subscribe",
    "systemPrompt",
    "temperature",
    "text",
    "theme",
    "title",
    "tools",
    "total",
    "type",
    "uri",
    "uriTemplate",
    "value",
    "values",
    "version",
    "websiteUrl",
];

/// Whether `key` is a name the MCP or JSON-RPC schema defines (never renamed).
pub fn is_protocol_key(key: &str) -> bool {
    PROTOCOL_KEYS.binary_search(&key).is_ok()
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
    fn protocol_keys_are_sorted_so_the_search_finds_them() {
        assert!(PROTOCOL_KEYS.windows(2).all(|w| w[0] < w[1]));
        for k in [
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
