//! The official SDK clients see exactly the same thing with and without Envoy + mcp-warden in
//! between (the clients print deterministic, port- and session-independent output).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_warden_integration_tests::{run_client, Client, Envoy, EnvoyConfig, McpServer, TestCtx};

fn first_difference(a: &str, b: &str) -> String {
    let (al, bl): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..al.len().max(bl.len()) {
        let (x, y) = (al.get(i), bl.get(i));
        if x != y {
            return format!(
                "first difference at line {}:\n  direct:  {x:?}\n  through: {y:?}",
                i + 1
            );
        }
    }
    "no line differs (line endings?)".into()
}

fn same_output_through_the_filter(test: &str, client: Client) {
    let ctx = TestCtx::new(test);
    let server = McpServer::start(&ctx, "demo");
    let envoy = Envoy::start(&ctx, "envoy", &EnvoyConfig::demo(server.port));
    let direct = run_client(&ctx, client, "direct", &server.url());
    assert!(
        !direct.trim().is_empty(),
        "{} printed nothing talking to the server directly",
        client.label()
    );
    let through = run_client(&ctx, client, "envoy", &envoy.mcp_url());
    assert!(
        direct == through,
        "{} output differs through Envoy+mcp-warden; {}\n--- direct ---\n{direct}\n--- through envoy ---\n{through}",
        client.label(),
        first_difference(&direct, &through)
    );
}

#[test]
fn ts_client_same_through_filter() {
    same_output_through_the_filter("sdk_ts_client", Client::Ts);
}

#[test]
fn py_client_same_through_filter() {
    same_output_through_the_filter("sdk_py_client", Client::Py);
}
