//! The tool registry: which tools each MCP server may offer, to whom, and in which exact
//! definition (pinned hash).
//!
//! A tool is usable only when it is listed for its server, `approved`, approved for one of the
//! caller's groups (or `*`), and — when a hash is pinned — its live definition still has that
//! hash. Everything else is invisible in `tools/list` and refused in `tools/call`.

use std::collections::HashMap;

/// Lifecycle of a registered tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    /// Known but not yet approved.
    Registered,
    /// Usable by the groups it is approved for.
    Approved,
    /// No longer usable.
    Retired,
}

/// One registered tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTool {
    /// Name as published by the server.
    pub name: String,
    /// Lifecycle status.
    pub status: ToolStatus,
    /// Groups it is approved for (`*`: everyone authenticated).
    pub approved_for: Vec<String>,
    /// Version label.
    pub version: Option<String>,
    /// Pinned definition hash (`sha256:…`).
    pub hash: Option<String>,
}

/// One server and its tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    /// Server name.
    pub name: String,
    /// Its MCP endpoint: the exact request path (see [`Registry::server_for_path`]).
    pub path: String,
    /// Tools by name.
    pub tools: HashMap<String, RegistryTool>,
}

/// Why a tool is not usable, with a stable rule id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// Rule id, e.g. `registry.unknown_tool`.
    pub rule: &'static str,
    /// Detail.
    pub detail: String,
}

/// Live tool definition hashes as last seen in a server's `tools/list` answers, shared by all
/// workers (the adapter stores them in Envoy's shared data). A tool whose live hash differs
/// from its pinned hash is refused until the definition is approved again.
pub trait LiveDefinitions {
    /// The last seen hash of `tool` on `server`.
    fn get(&self, server: &str, tool: &str) -> Option<String>;
    /// Records the hash seen now.
    fn put(&self, server: &str, tool: &str, hash: &str);
}

/// An in-memory [`LiveDefinitions`] (tests, and hosts without shared data).
#[derive(Debug, Default)]
pub struct MemoryDefinitions(pub std::cell::RefCell<HashMap<(String, String), String>>);

impl LiveDefinitions for MemoryDefinitions {
    fn get(&self, server: &str, tool: &str) -> Option<String> {
        self.0
            .borrow()
            .get(&(server.to_string(), tool.to_string()))
            .cloned()
    }
    fn put(&self, server: &str, tool: &str, hash: &str) {
        self.0
            .borrow_mut()
            .insert((server.to_string(), tool.to_string()), hash.to_string());
    }
}

/// All servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    servers: Vec<ServerEntry>,
}

impl Registry {
    /// A registry over these servers.
    pub fn new(servers: Vec<ServerEntry>) -> Registry {
        Registry { servers }
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// All servers.
    pub fn servers(&self) -> &[ServerEntry] {
        &self.servers
    }

    /// The server by name.
    pub fn server(&self, name: &str) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The server whose endpoint is exactly this request path (`:path` with its query string
    /// removed). Nothing else is MCP: not a path below the endpoint (`/mcp/sse`, `/mcp/extra`),
    /// not `/mcp/` nor `/MCP` nor `/mcp;x`, nor an encoded or dot-segment variant; Envoy
    /// normalises paths before the filter sees them (`normalize_path`, `merge_slashes`).
    pub fn server_for_path(&self, path: &str) -> Option<&ServerEntry> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.servers.iter().find(|s| s.path == path)
    }

    /// The other servers that also register a tool of this name (shadowing candidates).
    pub fn other_owners<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.servers
            .iter()
            .filter(move |s| {
                s.name != server
                    && s.tools
                        .get(tool)
                        .is_some_and(|t| t.status == ToolStatus::Approved)
            })
            .map(|s| s.name.as_str())
    }

    /// The pinned definition hash of `tool` on `server`, if any: only then does a live hash matter.
    pub fn pinned_hash(&self, server: &str, tool: &str) -> Option<&str> {
        self.server(server)
            .and_then(|s| s.tools.get(tool))
            .and_then(|t| t.hash.as_deref())
    }

    /// Whether `server` may offer `tool` to a caller in `groups`, given the live definition hash
    /// when known.
    pub fn check(
        &self,
        server: &str,
        tool: &str,
        groups: &[String],
        live_hash: Option<&str>,
    ) -> Result<&RegistryTool, Unusable> {
        self.verdict(server, tool, groups, live_hash)
            .map_err(|r| r.unusable(server, tool))
    }

    /// [`Registry::check`] without writing the detail of a refusal (list filtering only needs
    /// to know whether a tool is usable).
    pub fn verdict<'s: 'r, 'r>(
        &'s self,
        server: &str,
        tool: &str,
        groups: &[String],
        live_hash: Option<&'r str>,
    ) -> Result<&'s RegistryTool, Refusal<'r>> {
        let Some(entry) = self.server(server) else {
            return Err(Refusal::UnknownServer);
        };
        let Some(t) = entry.tools.get(tool) else {
            return Err(if self.other_owners(server, tool).next().is_some() {
                Refusal::ShadowedTool
            } else {
                Refusal::UnknownTool
            });
        };
        match t.status {
            ToolStatus::Approved => {}
            ToolStatus::Registered => return Err(Refusal::NotApproved),
            ToolStatus::Retired => return Err(Refusal::Retired),
        }
        if !t
            .approved_for
            .iter()
            .any(|g| g == "*" || groups.contains(g))
        {
            return Err(Refusal::NotApprovedForGroup);
        }
        if let (Some(pinned), Some(live)) = (&t.hash, live_hash) {
            if pinned != live {
                return Err(Refusal::DefinitionChanged { pinned, live });
            }
        }
        Ok(t)
    }
}

/// Checks a configured endpoint path: absolute and already in the form Envoy's path
/// normalisation produces, so that exact comparison is the only comparison.
pub fn check_endpoint_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with `/`");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("must not end with `/` (the endpoint is an exact path)");
    }
    if !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("must be visible ASCII");
    }
    if path.contains(['?', '#', ';', '%', '\\']) {
        return Err("must not contain `?`, `#`, `;`, `%` or `\\`");
    }
    if path.len() > 1
        && path[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must not contain empty, `.` or `..` segments");
    }
    Ok(())
}

/// Why a tool is not usable, before any text is written for it (see [`Unusable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'r> {
    /// The server is not registered.
    UnknownServer,
    /// The tool is not registered here but approved on another server.
    ShadowedTool,
    /// The tool is not registered for the server.
    UnknownTool,
    /// Registered, not approved.
    NotApproved,
    /// Retired.
    Retired,
    /// Approved, but for none of the caller's groups.
    NotApprovedForGroup,
    /// The live definition differs from the pinned one.
    DefinitionChanged {
        /// The pinned hash.
        pinned: &'r str,
        /// The live hash.
        live: &'r str,
    },
}

impl Refusal<'_> {
    /// The stable rule id.
    pub fn rule(self) -> &'static str {
        match self {
            Refusal::UnknownServer => "registry.unknown_server",
            Refusal::ShadowedTool => "registry.shadowed_tool",
            Refusal::UnknownTool => "registry.unknown_tool",
            Refusal::NotApproved => "registry.not_approved",
            Refusal::Retired => "registry.retired",
            Refusal::NotApprovedForGroup => "registry.not_approved_for_group",
            Refusal::DefinitionChanged { .. } => "registry.definition_changed",
        }
    }

    /// The rule and the detail, for `tool` on `server`.
    pub fn unusable(self, server: &str, tool: &str) -> Unusable {
        let detail = match self {
            Refusal::UnknownServer => format!("server `{server}` is not registered"),
            Refusal::ShadowedTool => {
                format!("tool `{tool}` on `{server}` shadows a tool approved on another server")
            }
            Refusal::UnknownTool => {
                format!("tool `{tool}` is not registered for server `{server}`")
            }
            Refusal::NotApproved => format!("tool `{tool}` is registered but not approved"),
            Refusal::Retired => format!("tool `{tool}` is retired"),
            Refusal::NotApprovedForGroup => {
                format!("tool `{tool}` is not approved for the caller's groups")
            }
            Refusal::DefinitionChanged { pinned, live } => {
                format!("tool `{tool}` changed since approval (pinned {pinned}, live {live})")
            }
        };
        Unusable {
            rule: self.rule(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn tool(
        name: &str,
        status: ToolStatus,
        groups: &[&str],
        hash: Option<&str>,
    ) -> (String, RegistryTool) {
        (
            name.to_string(),
            RegistryTool {
                name: name.into(),
                status,
                approved_for: groups.iter().map(|g| g.to_string()).collect(),
                version: None,
                hash: hash.map(str::to_string),
            },
        )
    }

    fn registry() -> Registry {
        Registry::new(vec![
            ServerEntry {
                name: "files".into(),
                path: "/mcp".into(),
                tools: [
                    tool(
                        "delete_file",
                        ToolStatus::Approved,
                        &["it-admins"],
                        Some("sha256:aa"),
                    ),
                    tool("read_file", ToolStatus::Approved, &["*"], None),
                    tool("new_tool", ToolStatus::Registered, &[], None),
                    tool("old_tool", ToolStatus::Retired, &["*"], None),
                ]
                .into_iter()
                .collect(),
            },
            ServerEntry {
                name: "other".into(),
                path: "/mcp/other".into(),
                tools: HashMap::new(),
            },
        ])
    }

    #[test]
    fn usable_only_when_approved_for_the_group_and_unchanged() {
        let r = registry();
        let it = vec!["it-admins".to_string()];
        let rule = |s: &str, t: &str, g: &[String], h: Option<&str>| {
            r.check(s, t, g, h).map(|_| ()).map_err(|e| e.rule)
        };
        assert_eq!(rule("files", "delete_file", &it, Some("sha256:aa")), Ok(()));
        assert_eq!(rule("files", "delete_file", &it, None), Ok(()));
        assert_eq!(rule("files", "read_file", &[], None), Ok(()));
        assert_eq!(
            rule("files", "delete_file", &[], None),
            Err("registry.not_approved_for_group")
        );
        assert_eq!(
            rule("files", "delete_file", &it, Some("sha256:bb")),
            Err("registry.definition_changed")
        );
        assert_eq!(
            rule("files", "new_tool", &it, None),
            Err("registry.not_approved")
        );
        assert_eq!(
            rule("files", "old_tool", &it, None),
            Err("registry.retired")
        );
        assert_eq!(
            rule("files", "nope", &it, None),
            Err("registry.unknown_tool")
        );
        assert_eq!(
            rule("other", "read_file", &it, None),
            Err("registry.shadowed_tool")
        );
        assert_eq!(
            rule("ghost", "read_file", &it, None),
            Err("registry.unknown_server")
        );
    }

    #[test]
    fn refusals_say_why_in_words_and_verdicts_agree_with_checks() {
        let r = registry();
        let it = vec!["it-admins".to_string()];
        let none: &[String] = &[];
        let cases = [
            (
                "files",
                "delete_file",
                none,
                None,
                "tool `delete_file` is not approved for the caller's groups",
            ),
            (
                "files",
                "delete_file",
                it.as_slice(),
                Some("sha256:bb"),
                "tool `delete_file` changed since approval (pinned sha256:aa, live sha256:bb)",
            ),
            (
                "files",
                "new_tool",
                it.as_slice(),
                None,
                "tool `new_tool` is registered but not approved",
            ),
            (
                "files",
                "old_tool",
                it.as_slice(),
                None,
                "tool `old_tool` is retired",
            ),
            (
                "files",
                "nope",
                it.as_slice(),
                None,
                "tool `nope` is not registered for server `files`",
            ),
            (
                "other",
                "read_file",
                it.as_slice(),
                None,
                "tool `read_file` on `other` shadows a tool approved on another server",
            ),
            (
                "ghost",
                "read_file",
                it.as_slice(),
                None,
                "server `ghost` is not registered",
            ),
        ];
        for (server, tool, groups, live, detail) in cases {
            let u = r.check(server, tool, groups, live).unwrap_err();
            assert_eq!(u.detail, detail);
            let v = r.verdict(server, tool, groups, live).unwrap_err();
            assert_eq!(v.rule(), u.rule);
        }
        assert!(r.verdict("files", "read_file", &[], None).is_ok());
        assert_eq!(r.pinned_hash("files", "delete_file"), Some("sha256:aa"));
        assert_eq!(r.pinned_hash("files", "read_file"), None);
        assert_eq!(r.pinned_hash("ghost", "delete_file"), None);
    }

    #[test]
    fn only_the_exact_endpoint_picks_a_server() {
        let r = registry();
        let name = |p: &str| r.server_for_path(p).map(|s| s.name.as_str());
        assert_eq!(name("/mcp"), Some("files"));
        assert_eq!(name("/mcp?x=1"), Some("files"));
        assert_eq!(name("/mcp?"), Some("files"));
        assert_eq!(name("/mcp/other"), Some("other"));
        assert_eq!(name("/mcp/other?x"), Some("other"));
        for p in [
            "",
            "/",
            "/mcp/",
            "/MCP",
            "/Mcp",
            "/mcpx",
            "/mcp/sse",
            "/mcp/messages",
            "/mcp/extra",
            "/mcp/otherwise",
            "/mcp/other/",
            "/mcp;x",
            "/mcp%2F",
            "/m%63p",
            "//mcp",
            "/mcp/.",
            "/mcp/..",
            "/mcp/../mcp",
            "/./mcp",
            "/mcp#x",
            "mcp",
            "/mcp ",
        ] {
            assert_eq!(name(p), None, "{p:?}");
        }
    }

    #[test]
    fn endpoint_paths_must_be_normalised() {
        for ok in ["/", "/mcp", "/mcp/hr", "/a-b_c.d~e/f"] {
            assert_eq!(check_endpoint_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "mcp",
            "/mcp/",
            "//mcp",
            "/mcp//hr",
            "/mcp/./hr",
            "/mcp/..",
            "/m%63p",
            "/mcp;x",
            "/mcp?x",
            "/mcp#x",
            "/mc p",
            "/m\\cp",
            "/m\u{e9}",
        ] {
            assert!(check_endpoint_path(bad).is_err(), "{bad:?}");
        }
    }
}
