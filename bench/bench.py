#!/usr/bin/env python3
"""mcp-warden benchmark: `make bench` (through bench/run.sh).

Starts everything itself on free loopback ports and stops it again, whatever happens:

  wrk ──HTTP/1.1──► Envoy under test (--concurrency 1) ──► upstream Envoy (--concurrency 1,
                    one process per configuration           direct_response: a canned MCP
                    in MODES, all started up front)          tools/call result)

and prints one table: requests/s, p50, p99 and CPU microseconds per request of the Envoy under
test (utime+stime from /proc/<pid>/stat over the measured window, divided by the completed
requests), for the same MCP request through each configuration, with ratios to the baseline
(row 1) from the same round. Rounds are interleaved (every configuration once per round, the
order rotated each round) and the medians over rounds are reported. Then the same in groups,
each against its own plain baseline: larger request bodies, a tools/call answered as an event
stream (SSE), tools/list answers of 10 … 5,000 tools, many distinct callers (JWT subjects) and
connections; and the resident memory of every Envoy before and after a long run.

Configuration (environment): BENCH_QUICK=1 (a ~1 minute smoke run), BENCH_ROUNDS,
BENCH_DURATION, BENCH_SIZE_ROUNDS, BENCH_SIZE_DURATION, BENCH_SCALE_ROUNDS,
BENCH_SCALE_DURATION (the SSE, list-size and callers groups), BENCH_WARMUP, BENCH_SOAK
(seconds), BENCH_CONNECTIONS, BENCH_SIZES (bytes), BENCH_LIST_SIZES (tools in a tools/list
answer), BENCH_RULES (policy rules), BENCH_WILDCARD_RULES (the rules group's two rows of wildcard
rules; 0 = none), BENCH_USERS (distinct callers, at BENCH_CONNECTIONS), BENCH_CALLER_CONNECTIONS
(connection counts, with the largest BENCH_USERS) — lists are comma separated, empty = none —
BENCH_MODES (comma separated mode names; each group's baseline is always included), BENCH_PIN=1,
BENCH_PERF=1 (also sample each window with `perf` and report the CPU spent in wasm code), BENCH_OUT (the run's directory instead of target/bench/<time>; target/bench/last is then left
alone), ENVOY_BIN, WASM, FLOOR_WASM, WRK.

To add a row, append a Mode to MODES (its http filters; the router is added) and, if the
filter needs it, a check that proves the filter is really in the path.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import hashlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
KIB, MIB = 1024, 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _env_int(name: str, full: int, quick: int) -> int:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else (quick if QUICK else full)


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# Many short interleaved rounds rather than few long ones: a burst of other load on the machine
# then spoils one round of a row, and the median over rounds drops it.
ROUNDS = _env_int("BENCH_ROUNDS", 5, 1)
DURATION = _env_int("BENCH_DURATION", 3, 2)  # seconds per row and round (wrk takes whole seconds)
SIZE_ROUNDS = _env_int("BENCH_SIZE_ROUNDS", 3, 1)
SIZE_DURATION = _env_int("BENCH_SIZE_DURATION", 3, 2)
# The SSE, list-size and callers groups: fewer, shorter rounds (their differences are large).
SCALE_ROUNDS = _env_int("BENCH_SCALE_ROUNDS", 2, 1)
SCALE_DURATION = _env_int("BENCH_SCALE_DURATION", 2, 2)
WARMUP = _env_int("BENCH_WARMUP", 1, 1)
SOAK = _env_int("BENCH_SOAK", 20, 3)
CONNECTIONS = _env_int("BENCH_CONNECTIONS", 8, 8)
# Pinning (BENCH_PIN=1, needs 2+ CPUs): the Envoys under test on the last CPU, the upstream Envoy
# and wrk on the others, so the measured process never shares its core with the bench's own load.
PIN = os.environ.get("BENCH_PIN", "0") not in ("", "0") and (os.cpu_count() or 1) >= 2
# Sampling (BENCH_PERF=1): `perf record` on the Envoy under test during every measured window.
# V8 compiles a wasm module into anonymous executable memory, which perf labels `[JIT]`; the
# share of samples there, times the window's CPU µs/req, is the CPU spent in the module's own
# code per request. The rest is Envoy's (its filters, codecs, and the host-call and callback
# machinery of proxy-wasm). Sampling costs the process ~1%, so it is off by default.
PERF = os.environ.get("BENCH_PERF", "0") not in ("", "0")
PERF_HZ = 997


def _env_ints(name: str, default: str) -> list[int]:
    v = os.environ.get(name)
    return [int(s) for s in (v if v is not None else default).split(",") if s.strip()]


SIZES = _env_ints("BENCH_SIZES", f"{KIB},{64 * KIB},{MIB}")
LIST_SIZES = _env_ints("BENCH_LIST_SIZES", "10,100,1000,5000")
RULE_COUNTS = _env_ints("BENCH_RULES", "10,1000,10000")
WILDCARD_RULES = _env_int("BENCH_WILDCARD_RULES", 1000, 1000)
USERS = _env_ints("BENCH_USERS", "1,100,1000")
CALLER_CONNECTIONS = _env_ints("BENCH_CALLER_CONNECTIONS", "64,256")

# Limits raised for the 1 MiB rows, the same in every configuration (they cost nothing per
# request). Envoy's own buffer limit stays above the filters' limits (see README, Configuration).
BUFFER_LIMIT = 4 * MIB
FILTER_BODY_LIMIT = 2 * MIB
WARDEN_CONFIG = {"max_body_bytes": FILTER_BODY_LIMIT, "max_json_depth": 64}

# The workload: an authenticated MCP tools/call, the same bytes for every configuration.
ISSUER, AUDIENCE, SUBJECT = "https://idp.bench.invalid", "mcp-warden-bench", "bench-user"
TOOL = "get_weather"
ALLOWED_TOOLS = ["search_docs", "read_file", "list_dir", "get_weather", "create_issue",
                 "get_issue", "list_issues", "send_message", "get_forecast", "translate"]
UPSTREAM_BODY = ('{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text",'
                 '"text":"Paris: 18 C, light rain"}],"isError":false}}')
# The SSE group (POST /mcp/sse): the same tools/call, answered as an event stream (MCP's
# streamable HTTP): a progress notification, then the result. mcp-warden forwards tools/call
# answers untouched whatever their content type (only list answers are rewritten).
SSE_PATH = "/mcp/sse"
SSE_BODY = ('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":'
            '{"progressToken":1,"progress":1,"total":2,"message":"asking the weather service"}}\n\n'
            f'event: message\ndata: {UPSTREAM_BODY}\n\n')
# The callers groups: BENCH_USERS distinct subjects (bench-user-0000 …), all members of one group
# (`groups` claim); the rows measured there allow the group instead of one subject.
CALLER_GROUP = "bench-callers"


# ---------------------------------------------------------------------------------------------
# Envoy configuration pieces (JSON; Envoy reads a .json bootstrap as well as YAML)

def _sa(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _router() -> dict:
    return {"name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


# jwt_authn `requires` for mcp-warden: never refuse, mcp-warden decides. Measured here: with a
# bare `allow_missing_or_failed` jwt_authn ignores jwt_cache_config and verifies the signature on
# every request; `requires_any` [the provider, allow_missing_or_failed] behaves the same towards
# clients (valid token: payload in metadata; missing or bad: the failure in metadata, request goes
# on) and uses the cache.
REQUIRES_FOR_WARDEN = {"requires_any": {"requirements": [{"provider_name": "user"},
                                                         {"allow_missing_or_failed": {}}]}}
REQUIRES_BARE_AMF = {"allow_missing_or_failed": {}}


def f_jwt_authn(ctx: "Ctx", cache: bool, for_warden: bool = False, requires: dict | None = None) -> dict:
    """jwt_authn with a local JWKS (ES256); the verified payload goes to dynamic metadata
    (`user`, the key mcp-warden's identity reads). Alone it refuses a request without a valid
    token; `for_warden` configures it like envoy/demo.yaml instead: it never refuses, records the
    failure, keeps the token, and mcp-warden decides."""
    provider = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": ctx.jwks},
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "payload_in_metadata": "user",
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    if for_warden:
        provider.update({"forward": True, "failed_status_in_metadata": "user_failure",
                         "forward_payload_header": "x-warden-user-payload"})
    requires = requires or (REQUIRES_FOR_WARDEN if for_warden else {"provider_name": "user"})
    return {"name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"user": provider},
                "rules": [{"match": {"prefix": "/"}, "requires": requires}]}}


def f_wasm(name: str, wasm: Path, configuration: str) -> dict:
    """A proxy-wasm filter, configured like envoy/demo.yaml configures mcp-warden."""
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": name, "root_id": name,
                    "failure_policy": "FAIL_CLOSED",
                    "allow_on_headers_stop_iteration": True,
                    "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                  "code": {"local": {"filename": str(wasm)}}},
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": configuration}}}}


def f_warden(ctx: "Ctx", config: dict | None = None) -> dict:
    return f_wasm("mcp_warden", ctx.wasm, json.dumps(config or WARDEN_CONFIG))


def allow_bench_tools(**who: list[str]) -> dict:
    """The allow-list rule: ALLOWED_TOOLS to `who` (users=[…] or groups=[…])."""
    return {"id": "allow.bench-tools", "effect": "allow", "tools": ALLOWED_TOOLS, **who}


# mcp-warden with identity (the user token's claims from jwt_authn) and one policy rule: the
# equivalent of row 5's rbac allow-list.
WARDEN_POLICY_CONFIG = {
    **WARDEN_CONFIG,
    "identity": {
        "protected_resource": {"resource": "http://127.0.0.1/mcp", "authorization_servers": [ISSUER]},
        "user": {"issuers": [ISSUER], "audiences": [AUDIENCE], "required_scopes": ["mcp:tools"]},
    },
    "policy": {"rules": [allow_bench_tools(users=[SUBJECT])]},
}
# The same for the callers groups: the rule allows the callers' group.
WARDEN_CALLERS_CONFIG = {**WARDEN_POLICY_CONFIG, "policy": {"rules": [allow_bench_tools(groups=[CALLER_GROUP])]}}


# The same, plus the tool registry and RFC 8693 token exchange for every call. The STS is the
# upstream Envoy (route /token answers a canned token), so after the first request this row
# measures the cached exchange: hash the inputs, find the token, swap the Authorization header.
BENCH_REGISTRY_POLICY = {
    "servers": [{"name": "bench", "path": "/mcp",
                 "tools": [{"name": t, "status": "approved", "approved_for": ["*"]} for t in ALLOWED_TOOLS]}],
    "rules": [allow_bench_tools(users=[SUBJECT])],
}
WARDEN_EXCHANGE_CONFIG = {
    **WARDEN_POLICY_CONFIG,
    "policy": BENCH_REGISTRY_POLICY,
    "token_exchange": {"cluster": "sts", "authority": "sts.bench.invalid", "path": "/token",
                       "client_auth": {"method": "client_secret_basic", "client_id": "mcp-warden", "client_secret": "s"},
                       "servers": {"bench": {"audience": "http://upstream.bench.invalid/mcp", "scopes": ["mcp:tools"],
                                             "lifetime_seconds": 3600}}},
}
# The same registry with session-aware routing: on every request mcp-warden sets the server,
# affinity-key and variant headers (a 90/10 stable/canary split by a hash of the caller), and it
# reads the answer's headers (and Envoy's upstream address) to seal a session id the upstream
# hands out (the canned answers hand out none).
WARDEN_ROUTING_CONFIG = {
    **WARDEN_POLICY_CONFIG,
    "policy": BENCH_REGISTRY_POLICY,
    "routing": {"session_keys": [{"id": "bench", "secret": base64.b64encode(bytes(range(32))).decode()}],
                "servers": {"bench": {"variants": [{"name": "stable", "weight": 90},
                                                   {"name": "canary", "weight": 10}]}}},
}
STS_BODY = ('{"access_token":"exchanged-bench-token","issued_token_type":"urn:ietf:params:oauth:token-type:access_token",'
            '"token_type":"Bearer","expires_in":3600,"scope":"mcp:tools"}')

# tools/list workload: the upstream answers a canned list of n tools; mcp-warden (with a registry
# of all of them and a rule allowing every other one) shows the caller half of them. The main
# rows list LIST_TOOLS tools (POST /mcp/list), the list-size groups n (POST /mcp/list/<n>).
LIST_TOOLS = 500
LIST_PATH = "/mcp/list"
LIST_BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def rules_config(n: int, prefixed: int = 0, leading: int = 0) -> dict:
    """Row 6's configuration with n - 1 more rules about other tools and groups (a third of them
    deny rules), `prefixed` rules whose tool pattern is a wildcard after a literal prefix
    (`ns<i>_*`) and `leading` rules whose pattern starts with a wildcard (`*_<i>x`, which every
    decision must look at), before the rule that allows the workload's tool (as in the core's
    `decision` bench)."""
    who = lambda i: {"groups": [f"group-{i % 50}"]}  # noqa: E731
    rules = ([{"id": f"rule.{i}", "effect": "deny" if i % 3 == 0 else "allow", "tools": [f"other_tool_{i}"], **who(i)}
              for i in range(n - 1)]
             + [{"id": f"prefixed.{i}", "effect": "allow", "tools": [f"ns{i}_*"], **who(i)} for i in range(prefixed)]
             + [{"id": f"leading.{i}", "effect": "allow", "tools": [f"*_{i}x"], **who(i)} for i in range(leading)])
    return {**WARDEN_POLICY_CONFIG, "policy": {"rules": rules + [allow_bench_tools(users=[SUBJECT])]}}


def rules_modes() -> list[Mode]:
    """The rules group: plain Envoy, then row 6 with 10 … 10,000 rules, then with wildcards."""
    modes = [Mode("plain_rules", "Envoy, no filter (baseline)", lambda c: [], group=RULES)]
    for n in RULE_COUNTS:
        modes.append(Mode(f"warden_rules_{n}", f"jwt_authn (cache) + mcp-warden identity + policy of {n:,} rules",
                          warden_chain(rules_config(n)), WARDEN_CHECKS, group=RULES))
    w = WILDCARD_RULES
    if RULE_COUNTS and w:
        modes.append(Mode(f"warden_rules_{w}_prefixed",
                          f"… policy of {w + 1:,} rules, {w:,} with patterns `ns<i>_*` (indexed by prefix)",
                          warden_chain(rules_config(1, prefixed=w)), WARDEN_CHECKS, group=RULES))
        modes.append(Mode(f"warden_rules_{w}_leading",
                          f"… policy of {w + 1:,} rules, {w:,} with patterns `*_<i>x` (looked at by every call)",
                          warden_chain(rules_config(1, leading=w)), WARDEN_CHECKS, group=RULES))
    return modes


def list_path(n: int) -> str:
    return LIST_PATH if n == LIST_TOOLS else f"{LIST_PATH}/{n}"


def _tool(i: int) -> str:
    return f"tool_{i:03d}"


def list_answer(n: int) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": _tool(i), "description": f"Bench tool number {i}: does thing {i}.",
         "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                         "required": ["q"]}} for i in range(n)]}}, separators=(",", ":"))


def warden_list_config(n: int) -> dict:
    return {**WARDEN_POLICY_CONFIG,
            "policy": {"servers": [{"name": "bench", "path": "/mcp",
                                    "tools": [{"name": _tool(i), "status": "approved", "approved_for": ["*"]}
                                              for i in range(n)]}],
                       "rules": [{"id": "discovery", "effect": "allow", "methods": ["tools/list"]},
                                 {"id": "half", "effect": "allow", "tools": [_tool(i) for i in range(0, n, 2)],
                                  "users": [SUBJECT]}]}}


def f_floor(ctx: "Ctx", what: str) -> dict:
    """bench/floor-filter: `noop` or `read` (headers + buffered body read, no logic)."""
    return f_wasm("bench_floor", ctx.floor_wasm, what)


def f_native_mcp() -> dict:
    """Envoy's own MCP filter: parses JSON-RPC, refuses non-MCP, puts method/params in metadata."""
    return {"name": "envoy.filters.http.mcp",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
                             "traffic_mode": "REJECT_NO_MCP",
                             "max_request_body_size": FILTER_BODY_LIMIT}}


def _md(filter_name: str, path: list[str], value: str | dict) -> dict:
    """An rbac matcher on dynamic metadata: `value` is a string (exact match) or a ValueMatcher."""
    return {"sourced_metadata": {"metadata_matcher": {
        "filter": filter_name, "path": [{"key": k} for k in path],
        "value": value if isinstance(value, dict) else {"string_match": {"exact": value}}}}}


JWT_METADATA = "envoy.filters.http.jwt_authn"
SUBJECT_PRINCIPAL = _md(JWT_METADATA, ["user", "sub"], SUBJECT)
CALLER_GROUP_PRINCIPAL = _md(JWT_METADATA, ["user", "groups"],
                             {"list_match": {"one_of": {"string_match": {"exact": CALLER_GROUP}}}})


def f_rbac_tool_allow_list(principal: dict = SUBJECT_PRINCIPAL) -> dict:
    """RBAC over the mcp filter's metadata: the JWT subject (or `principal`) may call the
    allow-listed tools (any other MCP method passes); the equivalent of one mcp-warden policy rule."""
    is_call = _md("envoy.filters.http.mcp", ["method"], "tools/call")
    tool_allowed = {"or_rules": {"rules": [_md("envoy.filters.http.mcp", ["params", "name"], t)
                                           for t in ALLOWED_TOOLS]}}
    return {"name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": {"tool-allow-list": {
                    "permissions": [{"not_rule": is_call},
                                    {"and_rules": {"rules": [is_call, tool_allowed]}}],
                    "principals": [principal],
                }}}}}


def tested_config(upstream_port: int, filters: list[dict]) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench", "codec_type": "AUTO",
        "request_timeout": "0s", "stream_idle_timeout": "3600s",
        # As in every shipped config (envoy/*.yaml): normalised paths, escaped slashes refused.
        "normalize_path": True, "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "route_config": {"name": "bench", "virtual_hosts": [{
            "name": "mcp", "domains": ["*"],
            "routes": [{"match": {"path": "/mcp"},
                        "route": {"cluster": "mcp_upstream", "timeout": "0s", "idle_timeout": "3600s"}}]}]},
        "http_filters": filters + [_router()],
    }
    return {
        "admin": {"address": _sa(0)},
        "static_resources": {
            "listeners": [{"name": "mcp_ingress", "address": _sa(0),
                           "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [{"name": "mcp_upstream", "type": "STATIC", "connect_timeout": "2s",
                          "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
                          "load_assignment": {"cluster_name": "mcp_upstream", "endpoints": [
                              {"lb_endpoints": [{"endpoint": {"address": _sa(upstream_port)}}]}]}},
                         {"name": "sts", "type": "STATIC", "connect_timeout": "2s",
                          "load_assignment": {"cluster_name": "sts", "endpoints": [
                              {"lb_endpoints": [{"endpoint": {"address": _sa(upstream_port)}}]}]}}]},
    }


def upstream_answers() -> list[tuple[str, str, str]]:
    """(path, content type, body) of the upstream's canned answers; "/" is every other path."""
    return ([(SSE_PATH, "text/event-stream", SSE_BODY), ("/token", "application/json", STS_BODY)]
            + [(list_path(n), "application/json", list_answer(n)) for n in sorted({LIST_TOOLS, *LIST_SIZES})]
            + [("/", "application/json", UPSTREAM_BODY)])


def upstream_config() -> dict:
    """A fast MCP 'server': reads the whole request (buffer filter, so a large body never gets
    an early reply that would close the connection) and answers from direct_response: a canned
    tools/call result, or the answer of the path (event stream, tools/list, STS)."""
    answers = upstream_answers()
    def match(path: str) -> dict:
        if path == "/":
            return {"prefix": "/"}
        if path == "/token":
            return {"path": path}
        return {"prefix": "/", "headers": [{"name": ANSWER_HEADER, "string_match": {"exact": path}}]}
    routes = [{"match": match(path),
               "direct_response": {"status": 200, "body": {"inline_string": body}},
               "response_headers_to_add": [{"header": {"key": "content-type", "value": ctype},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}
              for path, ctype, body in answers]
    # direct_response bodies are limited to 4 KiB unless raised (the 5,000-tool list is ≈ 0.9 MB).
    limit = max(MIB, *(len(body.encode()) for _, _, body in answers))
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream", "codec_type": "AUTO",
        "route_config": {"name": "upstream", "max_direct_response_body_size_bytes": limit,
                         "virtual_hosts": [{"name": "mcp", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 2 * BUFFER_LIMIT}}, _router()],
    }
    return {"admin": {"address": _sa(0)},
            "static_resources": {"listeners": [{
                "name": "upstream", "address": _sa(0), "per_connection_buffer_limit_bytes": 2 * BUFFER_LIMIT,
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": hcm}]}]}]}}


# ---------------------------------------------------------------------------------------------
# The rows

def mcp_body(size: int | None = None) -> bytes:
    """A tools/call request; with `size`, padded to exactly `size` bytes with structured
    arguments (records, not one long string, so a parser has real work)."""
    msg = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
           "params": {"name": TOOL, "arguments": {"city": "Paris", "units": "metric"}}}
    compact = {"separators": (",", ":")}
    if size is None:
        return json.dumps(msg, **compact).encode()
    args = msg["params"]["arguments"]
    args["records"], args["note"] = [], ""
    fixed = len(json.dumps(msg, **compact))
    used, i = fixed, 0
    while True:
        rec = {"id": i, "name": f"item-{i:06d}", "tags": ["alpha", "beta"], "score": 0.5}
        n = len(json.dumps(rec, **compact)) + (1 if i else 0)
        if used + n > size - 16:
            break
        args["records"].append(rec)
        used, i = used + n, i + 1
    args["note"] = "x" * (size - used)
    out = json.dumps(msg, **compact).encode()
    assert len(out) == size, (len(out), size)
    return out


Answer = Callable[[bytes, str], bool]  # (response body, content type) -> is it the right answer


def answer_is(expected: str, content_type: str) -> Answer:
    return lambda body, ctype: body == expected.encode() and ctype.startswith(content_type)


def tools_shown(n: int) -> Answer:
    def ok(body: bytes, ctype: str) -> bool:
        try:
            return len(json.loads(body)["result"]["tools"]) == n
        except (ValueError, KeyError, TypeError):
            return False
    return ok


def jsonrpc_error(body: bytes, ctype: str) -> bool:
    """A JSON-RPC error answering request id 1 (how mcp-warden refuses)."""
    try:
        msg = json.loads(body)
        return ctype.startswith("application/json") and msg["id"] == 1 and isinstance(msg["error"]["code"], int)
    except (ValueError, KeyError, TypeError):
        return False


@dataclass(frozen=True)
class Workload:
    """What wrk sends for a row (POST `path` with `body`) and what every request must get back:
    `status` (wrk counts any other status as an error), a body `answer` accepts, and whether
    the connection stays open (wrk reconnects silently when it does not)."""
    name: str  # the body's file: body-<name>.json
    body: bytes
    answer: Answer
    path: str = "/mcp"
    status: int = 200
    keep_alive: bool = True


DENIED_CALL = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}'
CALL = Workload("small", mcp_body(), answer_is(UPSTREAM_BODY, "application/json"))
SSE_CALL = replace(CALL, path=SSE_PATH, answer=answer_is(SSE_BODY, "text/event-stream"))
WARDEN_REFUSAL = Workload("denied", DENIED_CALL.encode(), jsonrpc_error, status=403)
# Envoy (1.40) answers rbac's refusal behind the mcp filter with `connection: close` (behind the
# buffer filter the same rbac keeps the connection open: it comes from how the mcp filter holds
# the body). That row includes a reconnect per request.
RBAC_REFUSAL = replace(WARDEN_REFUSAL, answer=answer_is("RBAC: access denied", "text/plain"), keep_alive=False)


@functools.lru_cache(maxsize=None)
def sized_call(size: int) -> Workload:
    return replace(CALL, name=str(size), body=mcp_body(size))


def list_call(n: int, shown: int) -> Workload:
    """tools/list of an n-tool answer, of which `shown` must reach the caller."""
    return Workload("tools-list", LIST_BODY, tools_shown(shown), path=list_path(n))


@dataclass
class Check:
    """A request that proves a filter is really in the path: (what, body, headers to drop or
    override, expected status)."""
    what: str
    body: str | None = None  # None: the workload body
    headers: dict = field(default_factory=dict)  # value None removes the header
    status: int = 200


BAD_BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/call"}'  # tools/call without params.name
NO_TOKEN = Check("no token is refused by jwt_authn", headers={"Authorization": None}, status=401)
FORBIDDEN_TOOL = Check("a tool outside the allow-list is refused", body=DENIED_CALL, status=403)
ALLOWED_TOOL = Check("a tool on the allow-list is forwarded", body=CALL.body.decode(), status=200)
NOT_MCP = Check("a body that is not JSON is refused", body="not json", status=400)
WARDEN_INVALID = Check("tools/call without a name is refused by mcp-warden", body=BAD_BODY, status=400)
NATIVE_CHECKS = [NO_TOKEN, FORBIDDEN_TOOL, NOT_MCP]
WARDEN_CHECKS = [NO_TOKEN, FORBIDDEN_TOOL, WARDEN_INVALID, NOT_MCP]
FORGED_SESSION = Check("a session id mcp-warden did not seal is refused (routing)",
                       headers={"Mcp-Session-Id": "forged-session"}, status=404)

MAIN, CALLERS, RULES = "main", "callers", "rules"


@dataclass
class Mode:
    name: str
    label: str
    filters: Callable[["Ctx"], list[dict]]
    checks: list[Check] = field(default_factory=list)
    sizes: bool = False  # also measured with the larger bodies (the filter buffers the body)
    callers: bool = False  # also measured in the callers groups (BENCH_USERS distinct tokens)
    workload: Workload = CALL
    # The table group of the row: MAIN, "sse", "list <n>"; CALLERS: only in the callers groups.
    group: str = MAIN
    # Envoy's level for its `wasm` logger: every Envoy runs at `warn`, where mcp-warden's audit
    # lines (info) are not written, so it does not build them; `info` writes them to the log file.
    wasm_log_level: str = "warn"


def native_chain(cache: bool = True, principal: dict = SUBJECT_PRINCIPAL) -> Callable[["Ctx"], list[dict]]:
    """jwt_authn + Envoy's mcp filter + rbac: the native tool allow-list."""
    return lambda c: [f_jwt_authn(c, cache=cache), f_native_mcp(), f_rbac_tool_allow_list(principal)]


def warden_chain(config: dict, cache: bool = True) -> Callable[["Ctx"], list[dict]]:
    """jwt_authn configured for mcp-warden (requires_any, as envoy/demo.yaml) + mcp-warden."""
    return lambda c: [f_jwt_authn(c, cache=cache, for_warden=True), f_warden(c, config)]


NATIVE_LABEL = "native mcp filter + rbac tool allow-list"
WARDEN_LABEL = "mcp-warden identity + policy tool allow-list"
LIST_LABEL = "jwt_authn (cache) + mcp-warden registry + policy filtering to half"


def list_modes(n: int, name: str, group: str) -> list[Mode]:
    """A tools/list answer of n tools: plain Envoy (the group's baseline), then mcp-warden."""
    base = "" if group == MAIN else " (baseline)"
    return [Mode(f"plain_{name}", f"tools/list of {n:,} tools: Envoy, no filter{base}", lambda c: [],
                 workload=list_call(n, n), group=group),
            Mode(f"warden_{name}", f"tools/list of {n:,} tools: {LIST_LABEL}",
                 warden_chain(warden_list_config(n)), workload=list_call(n, (n + 1) // 2), group=group)]


MODES: list[Mode] = [
    Mode("plain", "Envoy, no filter (baseline)", lambda c: [], sizes=True, callers=True),
    Mode("jwt", "Envoy + jwt_authn (ES256, no JWT cache)", lambda c: [f_jwt_authn(c, cache=False)],
         [NO_TOKEN]),
    Mode("jwt_cache", "Envoy + jwt_authn (ES256, jwt_cache_config)", lambda c: [f_jwt_authn(c, cache=True)],
         [NO_TOKEN]),
    Mode("jwt_amf", "Envoy + jwt_authn (ES256, jwt_cache_config) with a bare allow_missing_or_failed",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True, requires=REQUIRES_BARE_AMF)]),
    Mode("native_mcp", f"Envoy + jwt_authn (cache) + {NATIVE_LABEL}", native_chain(), NATIVE_CHECKS, sizes=True),
    Mode("warden_policy", f"Envoy + jwt_authn (cache) + {WARDEN_LABEL}", warden_chain(WARDEN_POLICY_CONFIG),
         WARDEN_CHECKS, sizes=True),
    Mode("warden_policy_audit", "… the same, writing its audit lines (Envoy's wasm logger at info)",
         warden_chain(WARDEN_POLICY_CONFIG), WARDEN_CHECKS, wasm_log_level="info"),
    Mode("warden_exchange", "… + tool registry + cached RFC 8693 token exchange",
         warden_chain(WARDEN_EXCHANGE_CONFIG), WARDEN_CHECKS),
    Mode("warden_jwt", "Envoy + jwt_authn (cache) + mcp-warden (validation only)",
         lambda c: [f_jwt_authn(c, cache=True), f_warden(c)], [NO_TOKEN, WARDEN_INVALID, NOT_MCP]),
    Mode("warden", "Envoy + mcp-warden alone (validation only, no jwt_authn)", lambda c: [f_warden(c)],
         [WARDEN_INVALID, NOT_MCP]),
    # Reference rows: what any Rust proxy-wasm filter costs in Envoy's V8 before its own logic.
    Mode("wasm_noop", "reference: no-op proxy-wasm filter (bench/floor-filter)", lambda c: [f_floor(c, "noop")]),
    Mode("wasm_read", "reference: proxy-wasm filter that reads headers + buffered body, no logic",
         lambda c: [f_floor(c, "read")], sizes=True),
    # Row 6's host calls without mcp-warden's logic: jwt_authn as in row 6, then the floor filter
    # reading the headers, the clock, one jwt_authn claim, removing the token header, setting two
    # identity headers and reading the body. Row 6 minus this row is mcp-warden's own wasm code.
    Mode("wasm_jwt_read", "reference: jwt_authn (cache, as in row 6) + the filter that reads headers + body",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_floor(c, "read")]),
    Mode("wasm_hostcalls", "reference: … + row 6's other host calls (clock, 1 claim, 1 header removal, 2 sets)",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_floor(c, "read+time+prop+remove1+set2")]),
    # Rows 5 and 6 with jwt_authn's cache off: every request verifies the ES256 signature.
    Mode("native_mcp_nocache", f"Envoy + jwt_authn (no cache) + {NATIVE_LABEL}", native_chain(cache=False),
         NATIVE_CHECKS),
    Mode("warden_policy_nocache", f"Envoy + jwt_authn (no cache) + {WARDEN_LABEL}",
         warden_chain(WARDEN_POLICY_CONFIG, cache=False), WARDEN_CHECKS),
    # Rows 5 and 6 refusing every request: a tools/call of a tool outside the allow-list.
    Mode("native_mcp_deny", "refused tools/call: jwt_authn (cache) + native mcp filter + rbac → 403, connection closed",
         native_chain(), [NO_TOKEN, ALLOWED_TOOL], workload=RBAC_REFUSAL),
    Mode("warden_deny", "refused tools/call: jwt_authn (cache) + mcp-warden policy → 403 JSON-RPC error",
         warden_chain(WARDEN_POLICY_CONFIG), [NO_TOKEN, ALLOWED_TOOL], workload=WARDEN_REFUSAL),
    *list_modes(LIST_TOOLS, "list", MAIN),
    Mode("warden_routing", "… row 6 + tool registry + session-aware routing (server, affinity, canary-split headers)",
         warden_chain(WARDEN_ROUTING_CONFIG), WARDEN_CHECKS + [FORGED_SESSION]),
    # The SSE group: the tools/call answered as an event stream.
    Mode("plain_sse", "tools/call answered as SSE: Envoy, no filter (baseline)", lambda c: [],
         workload=SSE_CALL, group="sse"),
    Mode("warden_sse", f"tools/call answered as SSE: jwt_authn (cache) + {WARDEN_LABEL}",
         warden_chain(WARDEN_POLICY_CONFIG), WARDEN_CHECKS, workload=SSE_CALL, group="sse"),
    # The list-size groups.
    *[m for n in LIST_SIZES for m in list_modes(n, f"list_{n}", f"list {n}")],
    # The rules group: row 6 with more policy rules.
    *rules_modes(),
    # The callers groups (after plain): rows 5 and 6 allowing the callers' group instead of one
    # subject. (callers=True on another row adds it to those groups.)
    Mode("native_mcp_users", "Envoy + jwt_authn (cache) + native mcp filter + rbac allowing the callers' group",
         native_chain(principal=CALLER_GROUP_PRINCIPAL), NATIVE_CHECKS, callers=True, group=CALLERS),
    Mode("warden_policy_users", "Envoy + jwt_authn (cache) + mcp-warden identity + policy allowing the callers' group",
         warden_chain(WARDEN_CALLERS_CONFIG), WARDEN_CHECKS, callers=True, group=CALLERS),
]
SOAK_MODE = "warden_policy"  # the configuration that gets the long run for the memory check


@dataclass
class Group:
    """Rows measured together, interleaved, with ratios to the first (the group's baseline)."""
    key: str  # its rows are recorded under (mode name, key)
    title: str  # the table's heading row ("" for the main rows)
    modes: list[Mode]
    rounds: int
    duration: int
    size: int | None = None  # every row sends the tools/call padded to `size` bytes
    users: int = 0  # > 0: the requests rotate over the tokens of `users` distinct callers
    connections: int = CONNECTIONS

    def workload(self, m: Mode) -> Workload:
        return sized_call(self.size) if self.size else m.workload


def build_groups(modes: list[Mode]) -> list[Group]:
    """Every group of a run (before BENCH_MODES): the main rows first, then the body sizes, SSE,
    list sizes and callers. The main, body-size and callers groups start with `plain`."""
    def group(key: str) -> list[Mode]:
        return [m for m in modes if m.group == key]

    callers = ([(n, CONNECTIONS) for n in USERS]
               + [(max(USERS), c) for c in CALLER_CONNECTIONS if USERS and c != CONNECTIONS])
    return ([Group(MAIN, "", group(MAIN), ROUNDS, DURATION)]
            + [Group(f"body {s}", f"request body {_human_size(s)}", [m for m in modes if m.sizes],
                     SIZE_ROUNDS, SIZE_DURATION, size=s) for s in SIZES]
            + [Group("sse", "tools/call answered as an event stream (text/event-stream, 2 events)",
                     group("sse"), SCALE_ROUNDS, SCALE_DURATION)]
            + [Group(f"list {n}", f"tools/list answer of {n:,} tools", group(f"list {n}"),
                     SCALE_ROUNDS, SCALE_DURATION) for n in LIST_SIZES]
            + [Group(RULES, "policy rules (row 6's tools/call; the allowing rule comes last)", group(RULES),
                     SCALE_ROUNDS, SCALE_DURATION)]
            + [Group(f"users {n} × {c}", f"{n:,} distinct caller{'s' * (n != 1)} (JWT subjects), {c} connections",
                     [m for m in modes if m.callers], SCALE_ROUNDS, SCALE_DURATION, users=n, connections=c)
               for n, c in callers])


# ---------------------------------------------------------------------------------------------
# Processes

class Procs:
    """Every process started here, each in its own session (process group); stop_all() ends
    them (SIGTERM to the group, SIGKILL after 5 s)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: Path | None) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.PIPE
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT if log else subprocess.PIPE,
                             start_new_session=True, cwd=ROOT)
        if log:
            out.close()
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()


PROCS = Procs()


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _on_signal(signum, _frame):
    raise Interrupted(signum)


@dataclass
class Envoy:
    name: str
    proc: subprocess.Popen
    dir: Path
    admin: str = ""
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.dir / "envoy.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def pinned(argv: list, tested: bool) -> list:
    if not PIN:
        return argv
    n = os.cpu_count() or 1
    cpus = str(n - 1) if tested else f"0-{n - 2}"
    return ["taskset", "-c", cpus] + argv  # taskset execs: same pid, every thread inherits


def start_envoy(run: Path, envoy_bin: Path, name: str, config: dict, wasm_log_level: str = "warn") -> Envoy:
    d = run / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "envoy.json").write_text(json.dumps(config, indent=2) + "\n")
    (d / "admin.txt").unlink(missing_ok=True)
    p = PROCS.start(pinned([envoy_bin, "-c", d / "envoy.json", "--concurrency", "1", "--disable-hot-restart",
                            "--log-level", "warn", "--component-log-level", f"wasm:{wasm_log_level}",
                            "--admin-address-path", d / "admin.txt"],
                           tested=name != "upstream"), d / "envoy.log")
    return Envoy(name, p, d)


def wait_ready(e: Envoy, timeout: float = 60) -> None:
    """Bounded wait for the admin /ready endpoint, then read the listener's port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if e.proc.poll() is not None:
            raise RuntimeError(f"Envoy {e.name} exited with {e.proc.returncode}:\n{e.log_tail()}")
        addr = (e.dir / "admin.txt").read_text().strip() if (e.dir / "admin.txt").exists() else ""
        if addr:
            e.admin = addr
            try:
                with urllib.request.urlopen(f"http://{addr}/ready", timeout=2) as r:
                    if r.status == 200:
                        with urllib.request.urlopen(f"http://{addr}/listeners?format=json", timeout=2) as lr:
                            ls = json.load(lr)["listener_statuses"]
                        e.port = int(ls[0]["local_address"]["socket_address"]["port_value"])
                        return
            except (OSError, ValueError, KeyError, IndexError):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"Envoy {e.name} not ready within {timeout:.0f}s:\n{e.log_tail()}")


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine: busy is everything but idle, iowait and
    steal; steal is time the hypervisor gave this VM's CPUs to someone else."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    steal = v[7] if len(v) > 7 else 0
    return sum(v[:8]) - v[3] - v[4] - steal, steal


def memory(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


# ---------------------------------------------------------------------------------------------
# The workload

@dataclass
class Ctx:
    run: Path
    wasm: Path
    floor_wasm: Path
    jwks: str
    token: str
    headers: dict
    wrk: str
    lua: Path = Path()
    caller_tokens: list[str] = field(default_factory=list)  # the callers groups' distinct subjects
    token_files: dict[int, Path] = field(default_factory=dict)  # users -> the first `users` tokens

    def body_file(self, w: Workload) -> Path:
        p = self.run / f"body-{w.name}.json"
        if not p.exists():
            p.write_bytes(w.body)
        assert p.read_bytes() == w.body, f"two workloads named {w.name}"
        return p

    def headers_for(self, m: Mode, token: str | None = None) -> dict:
        """The workload's headers for a row: the main token, or a caller's for CALLERS rows."""
        if token is None and m.group == CALLERS:
            token = self.caller_tokens[0]
        return {**self.headers, "Authorization": f"Bearer {token}"} if token else self.headers


def make_identity(run: Path, callers: int) -> tuple[str, str, list[str]]:
    """An ES256 key pair, its JWKS (for local_jwks), a signed access token and `callers` more
    tokens of distinct subjects (bench-user-0000 …) in the group CALLER_GROUP."""
    import jwt  # PyJWT, from bench/requirements.txt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (run / "es256-private.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench-es256", "alg": "ES256", "use": "sig"})
    jwks = json.dumps({"keys": [jwk]})
    now = int(time.time())

    def token(**claims: object) -> str:
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "nbf": now - 60,
                  "exp": now + 24 * 3600, "scope": "mcp:tools", "client_id": "bench-agent",
                  "jti": hashlib.sha256(os.urandom(16)).hexdigest()[:16], **claims}
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench-es256"})

    main = token()
    others = [token(sub=f"{SUBJECT}-{i:04d}", groups=[CALLER_GROUP]) for i in range(callers)]
    (run / "jwks.json").write_text(jwks + "\n")
    (run / "token.jwt").write_text(main + "\n")
    return jwks, main, others


def write_lua(ctx: Ctx) -> Path:
    """wrk script: POST the body named by $BENCH_BODY_FILE; print one JSON result line.
    $BENCH_TOKENS_FILE (one token per line): request i carries token i mod N (distinct callers;
    the N requests are formatted once). $BENCH_EXPECT_STATUS: the status every answer must have
    (counted in a response() callback; otherwise wrk's own count of statuses ≥ 400)."""
    lines = ["-- generated by bench/bench.py",
             'local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))',
             'wrk.method = "POST"', "wrk.body = f:read(\"*a\")", "f:close()"]
    for k, v in ctx.headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    lines += [
        'local tokens_file = os.getenv("BENCH_TOKENS_FILE")',
        "if tokens_file then",
        "  local reqs, i = {}, 0",
        "  function init(args)",
        "    for t in io.lines(tokens_file) do",
        '      wrk.headers["Authorization"] = "Bearer " .. t',
        "      reqs[#reqs + 1] = wrk.format()",
        "    end",
        "  end",
        "  function request()",
        "    i = i % #reqs + 1",
        "    return reqs[i]",
        "  end",
        "end",
        'local expect = tonumber(os.getenv("BENCH_EXPECT_STATUS") or "")',
        "local threads = {}",
        "function setup(thread) table.insert(threads, thread) end",
        "if expect then",
        "  unexpected = 0",
        "  function response(status, headers, body)",
        "    if status ~= expect then unexpected = unexpected + 1 end",
        "  end",
        "end",
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        "  local bad = e.status",
        "  if expect then",
        "    bad = 0",
        '    for _, t in ipairs(threads) do bad = bad + t:get("unexpected") end',
        "  end",
        "  io.write(string.format('BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%.1f,"
        "\"p99_us\":%.1f,\"max_us\":%.1f,\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\\n',",
        "    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,",
        "    e.connect, e.read, e.write, bad, e.timeout))",
        "end", ""]
    p = ctx.run / "mcp.lua"
    p.write_text("\n".join(lines))
    return p


# Only the exact endpoint is MCP (the filter refuses, and the routes do not send, any other
# path): every workload POSTs /mcp, and names the canned answer it wants in this header, which
# the upstream's routes match (a workload's `path` is that answer's key).
ANSWER_HEADER = "x-bench-answer"


def answer_headers(path: str) -> dict:
    return {} if path == "/mcp" else {ANSWER_HEADER: path}


def request(e: Envoy, body: bytes, headers: dict, path: str = "/mcp") -> tuple[int, bytes, str, bool]:
    """(status, body, content type, whether the connection stays open)."""
    c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    try:
        c.request("POST", "/mcp", body=body, headers={**headers, **answer_headers(path)})
        r = c.getresponse()
        return r.status, r.read(), r.getheader("content-type", ""), not r.will_close
    finally:
        c.close()


def run_checks(ctx: Ctx, mode: Mode, e: Envoy, workloads: list[Workload]) -> None:
    """Each workload gets its answer, on a connection that stays open unless the workload says
    otherwise (wrk would reconnect silently), for a callers row with the first and the last
    caller's token too; and each check of the mode gets its status: the filters are in the path
    and do their work."""
    tries = [(w, ctx.headers_for(mode)) for w in workloads]
    if mode.callers and ctx.caller_tokens:
        tries += [(mode.workload, ctx.headers_for(mode, t)) for t in (ctx.caller_tokens[0], ctx.caller_tokens[-1])]
    for w, headers in tries:
        status, body, ctype, keep_alive = request(e, w.body, headers, w.path)
        if status != w.status or not w.answer(body, ctype) or keep_alive != w.keep_alive:
            raise RuntimeError(f"{mode.name}: workload {w.name} (POST {w.path}) got {status} {ctype!r}, "
                               f"connection {'kept' if keep_alive else 'closed'}: {body[:300]!r}\n{e.log_tail()}")
    for ch in mode.checks:
        h = dict(ctx.headers_for(mode))
        for k, v in ch.headers.items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        body = ch.body.encode() if ch.body is not None else mode.workload.body
        status, resp, _, _ = request(e, body, h, mode.workload.path)
        if status != ch.status:
            raise RuntimeError(f"{mode.name}: check '{ch.what}' expected {ch.status}, got {status} {resp[:300]!r}")
    # Audit lines are written exactly when Envoy's wasm logger is at info (mcp-warden rows).
    if any(f.get("typed_config", {}).get("config", {}).get("name") == "mcp_warden" for f in mode.filters(ctx)):
        written = _audit_lines(e) > 0
        deadline = time.monotonic() + 3
        while written != (mode.wasm_log_level == "info") and time.monotonic() < deadline:
            time.sleep(0.1)
            written = _audit_lines(e) > 0
        if written != (mode.wasm_log_level == "info"):
            raise RuntimeError(f"{mode.name}: audit lines {'' if written else 'not '}written with Envoy's "
                               f"wasm logger at {mode.wasm_log_level}\n{e.log_tail()}")


def _audit_lines(e: Envoy) -> int:
    try:
        return (e.dir / "envoy.log").read_text(errors="replace").count("mcp-warden audit {")
    except OSError:
        return 0


def measure(ctx: Ctx, e: Envoy, upstream: Envoy, w: Workload, seconds: int, tokens: Path | None = None,
            connections: int = CONNECTIONS) -> dict:
    """One wrk run of workload `w` against `e` (rotating over the tokens in `tokens`, if given);
    CPU of the Envoy under test over exactly that window."""
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_TOKENS_FILE", "BENCH_EXPECT_STATUS")}
    env["BENCH_BODY_FILE"] = str(ctx.body_file(w))
    if tokens:
        env["BENCH_TOKENS_FILE"] = str(tokens)
    if w.status != 200:
        env["BENCH_EXPECT_STATUS"] = str(w.status)
    extra = [a for k, v in answer_headers(w.path).items() for a in ("-H", f"{k}: {v}")]
    argv = pinned([ctx.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(ctx.lua),
                   *extra, f"http://127.0.0.1:{e.port}/mcp"], tested=False)
    sampler = start_sampler(e) if PERF else None
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, u0, (m0, st0), t0 = cpu_ticks(e.pid), cpu_ticks(upstream.pid), machine_ticks(), time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True, cwd=ROOT)
    PROCS.procs.append(p)
    try:
        out, _ = p.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        PROCS.stop(p)
        raise RuntimeError(f"wrk against {e.name} did not finish within {seconds + 30}s")
    finally:
        if p in PROCS.procs:
            PROCS.procs.remove(p)
    c1, u1, (m1, st1), t1 = cpu_ticks(e.pid), cpu_ticks(upstream.pid), machine_ticks(), time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples = stop_sampler(sampler) if sampler else None
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}):\n{text}")
    r = json.loads(line.split(" ", 1)[1])
    n = r["requests"]
    if n == 0:
        raise RuntimeError(f"wrk completed no request against {e.name}:\n{text}\n{e.log_tail()}")
    wall = t1 - t0
    cpu_us = (c1 - c0) / CLK_TCK * 1e6 / n
    sampled = {}
    if samples:
        jit, total = samples
        sampled = {"perf_samples": total, "wasm_us": cpu_us * jit / total if total else float("nan")}
    wrk_ticks = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * CLK_TCK
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "requests": n, "errors": errors,
        "rps": n / (r["duration_us"] / 1e6),
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "max_us": r["max_us"],
        "cpu_us": cpu_us,
        "cpu_cores": (c1 - c0) / CLK_TCK / wall,
        "upstream_cores": (u1 - u0) / CLK_TCK / wall,
        "wrk_cores": wrk_ticks / CLK_TCK / wall,
        "other_cores": max(0.0, ((m1 - m0) - (c1 - c0) - (u1 - u0) - wrk_ticks) / CLK_TCK / wall),
        "steal_cores": (st1 - st0) / CLK_TCK / wall,
        **sampled,
    }


def start_sampler(e: Envoy) -> tuple[subprocess.Popen, Path]:
    """`perf record` of every thread of `e` until stop_sampler."""
    data = e.dir / "perf.data"
    p = subprocess.Popen(["perf", "record", "-q", "-F", str(PERF_HZ), "-p", str(e.pid), "-o", str(data)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    PROCS.procs.append(p)
    return p, data


def stop_sampler(sampler: tuple[subprocess.Popen, Path]) -> tuple[int, int]:
    """(samples in wasm code, all samples) of the window; the data file is removed."""
    p, data = sampler
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        if p in PROCS.procs:
            PROCS.procs.remove(p)
    rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-q", "--sort", "dso", "-F", "sample,dso"],
                         capture_output=True, text=True)
    data.unlink(missing_ok=True)
    if rep.returncode != 0:
        raise RuntimeError(f"perf report failed: {rep.stderr.strip() or err.decode(errors='replace')}")
    jit = total = 0
    for line in rep.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            total += int(parts[0])
            jit += int(parts[0]) if parts[1].startswith("[JIT]") else 0
    return jit, total


# ---------------------------------------------------------------------------------------------
# Report

def _human_size(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def _shown(p: Path) -> Path:
    return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(rows: dict, key: tuple, base: tuple) -> dict:
    """Medians over rounds; ratios per round against the baseline of the same round."""
    runs, bruns = rows[key], rows[base]
    s = {k: _med([r[k] for r in runs]) for k in ("rps", "p50_us", "p99_us", "cpu_us", "other_cores")}
    s["wasm_us"] = _med([r["wasm_us"] for r in runs if "wasm_us" in r])
    s["errors"] = sum(r["errors"] for r in runs)
    s["requests"] = sum(r["requests"] for r in runs)
    pairs = list(zip(runs, bruns))
    s["rps_ratio"] = _med([r["rps"] / b["rps"] for r, b in pairs])
    s["cpu_ratio"] = _med([r["cpu_us"] / b["cpu_us"] for r, b in pairs])
    s["cpu_added"] = _med([r["cpu_us"] - b["cpu_us"] for r, b in pairs])
    return s


def _fmt_row(num: int, label: str, size: int, s: dict, base_num: int) -> str:
    err = f" ⚠ {s['errors']} errors" if s["errors"] else ""
    if num == base_num:
        ratios = "1.00 | 1.00 | —"
    else:
        ratios = f"{s['rps_ratio']:.2f} | {s['cpu_ratio']:.2f} | {s['cpu_added']:+.1f}"
    wasm = f" {s['wasm_us']:.1f} |" if PERF else ""
    return (f"| {num} | {label}{err} | {_human_size(size)} | {s['rps']:,.0f} | {s['p50_us']:,.0f} | "
            f"{s['p99_us']:,.0f} | {s['cpu_us']:.1f} | {ratios} | {s['other_cores']:.2f} |{wasm}")


def machine_facts() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


# ---------------------------------------------------------------------------------------------

def select_groups(wanted: set[str]) -> list[Group]:
    """The groups of this run: with BENCH_MODES, each group keeps its baseline and the wanted
    rows, and a group left with its baseline alone is dropped (the main group never is)."""
    groups = build_groups(MODES)
    if wanted:
        groups = [replace(g, modes=[m for i, m in enumerate(g.modes) if i == 0 or m.name in wanted])
                  for g in groups]
    return [g for g in groups if g.key == MAIN or len(g.modes) > 1]


def run_group(ctx: Ctx, g: Group, envoys: dict[str, Envoy], upstream: Envoy, rows: dict,
              warm_up: bool = False) -> None:
    """g.rounds rounds of every row of the group, the order rotated each round."""
    tokens = ctx.token_files.get(g.users)
    if warm_up:
        for m in g.modes:
            measure(ctx, envoys[m.name], upstream, g.workload(m), WARMUP, tokens, g.connections)
    tag = "" if g.key == MAIN else f"{g.key}: "
    for rnd in range(g.rounds):
        for m in g.modes[rnd % len(g.modes):] + g.modes[:rnd % len(g.modes)]:
            r = measure(ctx, envoys[m.name], upstream, g.workload(m), g.duration, tokens, g.connections)
            rows.setdefault((m.name, g.key), []).append(r)
            print(f"  {tag}round {rnd + 1}/{g.rounds} {m.name:<21} {r['rps']:>8,.0f} req/s  p50 {r['p50_us']:>8,.0f} µs"
                  f"  p99 {r['p99_us']:>8,.0f} µs  {r['cpu_us']:7.1f} CPU µs/req"
                  f"  (other load {r['other_cores']:.2f}, steal {r['steal_cores']:.2f} cores)", flush=True)


def main() -> int:
    # Explicit handlers (a background job may have inherited SIGINT as ignored): every process
    # started here is stopped on Ctrl-C, SIGTERM or SIGHUP too.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    if PERF and not shutil.which("perf"):
        raise RuntimeError("BENCH_PERF=1 needs `perf` on PATH (Debian: apt-get install linux-perf)")
    started = time.monotonic()
    stamp = _dt.datetime.now(_dt.timezone.utc)
    out_dir = os.environ.get("BENCH_OUT")
    run = Path(out_dir).resolve() if out_dir else ROOT / "target" / "bench" / stamp.strftime("%Y%m%dT%H%M%SZ")
    run.mkdir(parents=True, exist_ok=True)
    if not out_dir:  # BENCH_OUT: a run of its own, target/bench is left as it is
        for old in sorted(p for p in run.parent.glob("2*Z") if p.is_dir())[:-10]:
            shutil.rmtree(old, ignore_errors=True)  # keep the last 10 runs
        last = ROOT / "target" / "bench" / "last"
        if last.is_symlink() or last.exists():
            last.unlink()
        last.symlink_to(run.name)

    envoy_bin = Path(os.environ.get("ENVOY_BIN") or shutil.which("envoy", path=str(ROOT / ".venv/bin")) or "")
    wasm = Path(os.environ.get("WASM") or ROOT / "target/wasm32-wasip1/release/mcp_warden.wasm")
    floor_wasm = Path(os.environ.get("FLOOR_WASM")
                      or ROOT / "target/bench/floor-target/wasm32-wasip1/release/bench_floor_filter.wasm")
    wrk = os.environ.get("WRK") or shutil.which("wrk") or ""
    for what, p in (("Envoy (ENVOY_BIN or .venv/bin/envoy; `make setup`)", envoy_bin),
                    ("mcp_warden.wasm (WASM; `make build`)", wasm),
                    ("bench_floor_filter.wasm (FLOOR_WASM; bench/run.sh builds it)", floor_wasm),
                    ("wrk (WRK; bench/run.sh installs it)", Path(wrk))):
        if not str(p) or not Path(p).exists():
            print(f"bench: missing {what}", file=sys.stderr)
            return 2

    wanted = {m.strip() for m in os.environ.get("BENCH_MODES", "").split(",") if m.strip()}
    unknown = wanted - {m.name for m in MODES}
    if unknown:
        print(f"bench: unknown BENCH_MODES {sorted(unknown)}; known: {[m.name for m in MODES]}", file=sys.stderr)
        return 2
    groups = select_groups(wanted)
    in_groups = {m.name for g in groups for m in g.modes}
    modes = [m for m in MODES if m.name in in_groups]
    if wanted - in_groups:
        print(f"bench: BENCH_MODES {sorted(wanted - in_groups)} are measured in no group with these settings "
              f"(BENCH_LIST_SIZES / BENCH_USERS empty?)", file=sys.stderr)
        return 2
    main_group, others = groups[0], groups[1:]
    callers_groups = [g for g in others if g.users]

    jwks, token, caller_tokens = make_identity(run, max((g.users for g in callers_groups), default=0))
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18", "Authorization": f"Bearer {token}"}
    ctx = Ctx(run, wasm.resolve(), floor_wasm.resolve(), jwks, token, headers, wrk, caller_tokens=caller_tokens)
    ctx.lua = write_lua(ctx)
    for n in sorted({g.users for g in callers_groups}):
        ctx.token_files[n] = run / f"tokens-{n}.txt"
        ctx.token_files[n].write_text("\n".join(caller_tokens[:n]) + "\n")

    facts = machine_facts()
    load_start = loadavg()
    ev = tool_version([str(envoy_bin), "--version"]).split("version:")[-1].strip().split("/")
    versions = {"envoy": f"{ev[1]} ({ev[0][:12]}, {', '.join(ev[3:])})" if len(ev) >= 4 else "/".join(ev),
                "wrk": tool_version([wrk, "-v"]).split("[")[0].strip().removeprefix("wrk ").strip(),
                "wasm_bytes": wasm.stat().st_size,
                "wasm_sha256": hashlib.sha256(wasm.read_bytes()).hexdigest()[:16]}
    # Callers groups warm up (fill the JWT and identity caches) when their token set is new:
    # larger than every set before, and more than one token.
    warm_callers = [g.key for i, g in enumerate(callers_groups)
                    if g.users > max((h.users for h in callers_groups[:i]), default=1)]
    warm_modes = [m for m in modes if m.group != CALLERS]  # CALLERS rows warm up in their groups
    seconds = (sum(g.rounds * g.duration * len(g.modes) for g in groups) + SOAK * (SOAK_MODE in in_groups)
               + WARMUP * (len(warm_modes) + sum(len(g.modes) for g in callers_groups if g.key in warm_callers)))
    plan = "; ".join(f"{g.key}: {len(g.modes)} rows × {g.rounds} × {g.duration} s" for g in groups)
    print(f"bench: {len(modes)} configurations; {plan}; soak {SOAK} s; ≈ {seconds} s of load; "
          f"logs and configs in {_shown(run)}", flush=True)

    try:
        upstream = start_envoy(run, envoy_bin, "upstream", upstream_config())
        wait_ready(upstream)
        envoys = {m.name: start_envoy(run, envoy_bin, m.name, tested_config(upstream.port, m.filters(ctx)),
                                      m.wasm_log_level)
                  for m in modes}
        for e in envoys.values():
            wait_ready(e)
        for m in modes:
            sized = [g.workload(m) for g in others if g.size and m.name in {x.name for x in g.modes}]
            run_checks(ctx, m, envoys[m.name], [m.workload] + sized)
        print(f"bench: {len(modes)} Envoys up and checked (upstream :{upstream.port}); warming up", flush=True)

        rss: dict[str, dict[str, dict]] = {m.name: {"idle": memory(envoys[m.name].pid)} for m in modes}

        def snapshot(when: str) -> None:
            for m in modes:
                rss[m.name][when] = memory(envoys[m.name].pid)

        for m in warm_modes:
            measure(ctx, envoys[m.name], upstream, m.workload, WARMUP)
        snapshot("warm")
        rows: dict[tuple, list] = {}
        run_group(ctx, main_group, envoys, upstream, rows)
        snapshot("main")

        soak = None
        if SOAK > 0 and SOAK_MODE in envoys:
            soak = measure(ctx, envoys[SOAK_MODE], upstream, CALL, SOAK)
            print(f"  soak {SOAK_MODE}: {soak['requests']:,} requests in {SOAK} s", flush=True)
            snapshot("soak")
        for when, gs in (("sizes", [g for g in others if g.size]), ("end", [g for g in others if not g.size])):
            for g in gs:
                run_group(ctx, g, envoys, upstream, rows, warm_up=g.key in warm_callers)
            if gs:
                snapshot(when)
        for m in modes:
            if envoys[m.name].proc.poll() is not None:
                raise RuntimeError(f"Envoy {m.name} died during the run:\n{envoys[m.name].log_tail()}")
    finally:
        PROCS.stop_all()

    # ---- report
    elapsed = time.monotonic() - started
    out = []
    out.append(f"### Results {stamp.strftime('%Y-%m-%d %H:%M UTC')}{' (BENCH_QUICK=1 smoke run)' if QUICK else ''}")
    out.append("")
    out.append(f"- machine: {facts['nproc']} × {facts['cpu']}, {facts['mem_gib']} GiB, Linux {facts['kernel']}; "
               f"load average (1/5/15 min) at start {load_start}, at end {loadavg()}")
    out.append(f"- Envoy {versions['envoy']}; wrk {versions['wrk']}; mcp_warden.wasm {versions['wasm_bytes']:,} bytes "
               f"(sha256 {versions['wasm_sha256']}…)")
    out.append(f"- load: wrk, 1 thread, {CONNECTIONS} connections (HTTP/1.1 keep-alive; the callers groups as stated), "
               f"POST /mcp tools/call; {ROUNDS} rounds × {DURATION} s per row ({SIZE_ROUNDS} × {SIZE_DURATION} s for "
               f"the body-size rows, {SCALE_ROUNDS} × {SCALE_DURATION} s for the SSE, list-size and callers rows), rows "
               f"interleaved, medians over rounds; ratios are per-round ratios to the group's first row; "
               + (f"Envoys under test pinned to CPU {(os.cpu_count() or 1) - 1}, upstream and wrk to the others; "
                  if PIN else "no CPU pinning; ")
               + f"run took {elapsed:.0f} s")
    other = [r["other_cores"] for rs in rows.values() for r in rs]
    busy = _med(other)
    steal = [r.get("steal_cores", 0.0) for rs in rows.values() for r in rs]
    out.append(f"- other processes on the machine used a median of {busy:.2f} cores "
               f"(max {max(other):.2f}) during the measured windows; the hypervisor took (steal) a median of "
               f"{_med(steal):.2f} cores (max {max(steal):.2f})"
               + (" ⚠ the machine was not quiet: absolute figures are noisy, compare within a round"
                  if busy > 0.25 or _med(steal) > 0.1 else ""))
    if PERF:
        out.append(f"- sampled with perf at {PERF_HZ} Hz in every window: `in wasm µs/req` is the share of the "
                   "Envoy's samples in V8's wasm code (`[JIT]`) × its CPU µs/req, median over rounds; the rest of "
                   "a row's CPU is Envoy's own (filters, codecs, proxy-wasm host calls and callbacks)")
    out.append("")
    out.append("| # | configuration | body | req/s | p50 µs | p99 µs | CPU µs/req | req/s ÷ base | CPU ÷ base "
               "| CPU Δ µs | other load |" + (" in wasm µs/req |" if PERF else ""))
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if PERF else ""))
    num = 0
    results = []
    for g in groups:
        if g.title:
            out.append(f"| | **{g.title}** | | | | | | | | | |" + (" |" if PERF else ""))
        base_num = num + 1
        for m in g.modes:
            num += 1
            s = summarize(rows, (m.name, g.key), (g.modes[0].name, g.key))
            w = g.workload(m)
            out.append(_fmt_row(num, m.label, len(w.body), s, base_num))
            results.append({"row": num, "mode": m.name, "label": m.label, "group": g.key, "group_title": g.title,
                            "path": w.path, "body_bytes": len(w.body), "expected_status": w.status,
                            "users": g.users, "connections": g.connections,
                            "summary": s, "rounds": rows[(m.name, g.key)]})
    out.append("")
    cols = [("idle", "idle"), ("warm", "after warm-up"), ("main", "after the main rows"),
            ("soak", f"after +{SOAK} s soak"), ("sizes", "after the large bodies"), ("end", "at the end")]
    cols = [c for c in cols if all(c[0] in rss[m.name] for m in modes)]
    growth = ""
    if soak:
        g = (rss[SOAK_MODE]["soak"]["VmRSS"] - rss[SOAK_MODE]["main"]["VmRSS"]) / MIB
        growth = (f"; the soak ran {soak['requests']:,} more requests through `{SOAK_MODE}` only "
                  f"({soak['rps']:,.0f} req/s, {soak['cpu_us']:.1f} CPU µs/req), its RSS changed by {g:+.2f} MiB")
    out.append("Resident memory (RSS, MiB) of each Envoy under test" + growth + ":")
    out.append("")
    out.append("| configuration | " + " | ".join(c[1] for c in cols) + " | peak (VmHWM) |")
    out.append("|---|" + "---:|" * (len(cols) + 1))
    for m in modes:
        vals = [f"{rss[m.name][c]['VmRSS'] / MIB:.1f}" for c, _ in cols]
        last_col = cols[-1][0]
        out.append(f"| {m.label} | " + " | ".join(vals) + f" | {rss[m.name][last_col]['VmHWM'] / MIB:.1f} |")
    report = "\n".join(out) + "\n"
    print()
    print(report)
    (run / "report.md").write_text(report)
    (run / "results.json").write_text(json.dumps({
        "date": stamp.isoformat(), "quick": QUICK, "machine": facts, "versions": versions,
        "settings": {"rounds": ROUNDS, "duration": DURATION, "size_rounds": SIZE_ROUNDS,
                     "size_duration": SIZE_DURATION, "scale_rounds": SCALE_ROUNDS, "scale_duration": SCALE_DURATION,
                     "warmup": WARMUP, "pinned": PIN, "perf": PERF, "soak": SOAK, "connections": CONNECTIONS, "sizes": SIZES,
                     "list_sizes": LIST_SIZES, "users": USERS, "caller_connections": CALLER_CONNECTIONS},
        "rows": results, "rss": rss, "soak": soak}, indent=2) + "\n")
    print(f"bench: report in {_shown(run / 'report.md')}, raw figures in {_shown(run / 'results.json')}")
    bad = [r for r in results if r["summary"]["errors"]]
    if bad:
        print(f"bench: {len(bad)} row(s) had request errors (see ⚠ in the table)", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, Interrupted) as exc:
        PROCS.stop_all()
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"bench: interrupted by signal {signum}; every process it started is stopped", file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as exc:  # noqa: BLE001 - one clear line, processes already stopped
        PROCS.stop_all()
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
