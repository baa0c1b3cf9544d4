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
order rotated each round) and the medians over rounds are reported. Then the same for larger
request bodies, and the resident memory of every Envoy before and after a long run.

Configuration (environment): BENCH_QUICK=1 (a ~1 minute smoke run), BENCH_ROUNDS,
BENCH_DURATION, BENCH_SIZE_ROUNDS, BENCH_SIZE_DURATION, BENCH_WARMUP, BENCH_SOAK (seconds),
BENCH_CONNECTIONS, BENCH_SIZES (bytes, comma separated, empty = none),
BENCH_MODES (comma separated mode names, the baseline is always included), BENCH_PIN=1,
ENVOY_BIN, WASM, FLOOR_WASM, WRK.

To add a row, append a Mode to MODES (its http filters; the router is added) and, if the
filter needs it, a check that proves the filter is really in the path.
"""

from __future__ import annotations

import datetime as _dt
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
from dataclasses import dataclass, field
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
WARMUP = _env_int("BENCH_WARMUP", 1, 1)
SOAK = _env_int("BENCH_SOAK", 20, 3)
CONNECTIONS = _env_int("BENCH_CONNECTIONS", 8, 8)
# Pinning (BENCH_PIN=1, needs 2+ CPUs): the Envoys under test on the last CPU, the upstream Envoy
# and wrk on the others, so the measured process never shares its core with the bench's own load.
PIN = os.environ.get("BENCH_PIN", "0") not in ("", "0") and (os.cpu_count() or 1) >= 2
_sizes = os.environ.get("BENCH_SIZES")
SIZES = [int(s) for s in (_sizes if _sizes is not None else f"{KIB},{64 * KIB},{MIB}").split(",") if s.strip()]

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
        provider.update({"forward": True, "failed_status_in_metadata": "user_failure"})
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


# mcp-warden with identity (the user token's claims from jwt_authn) and one policy rule: the
# equivalent of row 4's rbac allow-list.
WARDEN_POLICY_CONFIG = {
    **WARDEN_CONFIG,
    "identity": {
        "protected_resource": {"resource": "http://127.0.0.1/mcp", "authorization_servers": [ISSUER]},
        "user": {"issuers": [ISSUER], "audiences": [AUDIENCE], "required_scopes": ["mcp:tools"]},
    },
    "policy": {"rules": [{"id": "allow.bench-tools", "effect": "allow", "tools": ALLOWED_TOOLS,
                          "users": [SUBJECT]}]},
}


# The same, plus the tool registry and RFC 8693 token exchange for every call. The STS is the
# upstream Envoy (route /token answers a canned token), so after the first request this row
# measures the cached exchange: hash the inputs, find the token, swap the Authorization header.
WARDEN_EXCHANGE_CONFIG = {
    **WARDEN_POLICY_CONFIG,
    "policy": {"servers": [{"name": "bench", "path": "/mcp",
                            "tools": [{"name": t, "status": "approved", "approved_for": ["*"]} for t in ALLOWED_TOOLS]}],
               "rules": [{"id": "allow.bench-tools", "effect": "allow", "tools": ALLOWED_TOOLS, "users": [SUBJECT]}]},
    "token_exchange": {"cluster": "sts", "authority": "sts.bench.invalid", "path": "/token",
                       "client_auth": {"method": "client_secret_basic", "client_id": "mcp-warden", "client_secret": "s"},
                       "servers": {"bench": {"audience": "http://upstream.bench.invalid/mcp", "scopes": ["mcp:tools"],
                                             "lifetime_seconds": 3600}}},
}
STS_BODY = '{"access_token":"exchanged.bench.token","token_type":"Bearer","expires_in":3600}'

# tools/list workload: the upstream answers a canned list of LIST_TOOLS tools; mcp-warden (with a
# registry of all of them and a rule allowing every other one) shows the caller half of them.
LIST_TOOLS = 500
LIST_PATH = "/mcp/list"
LIST_BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
LIST_ANSWER = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
    {"name": f"tool_{i:03d}", "description": f"Bench tool number {i}: does thing {i}.",
     "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                     "required": ["q"]}} for i in range(LIST_TOOLS)]}}, separators=(",", ":"))
WARDEN_LIST_CONFIG = {
    **WARDEN_POLICY_CONFIG,
    "policy": {"servers": [{"name": "bench", "path": "/mcp",
                            "tools": [{"name": f"tool_{i:03d}", "status": "approved", "approved_for": ["*"]}
                                      for i in range(LIST_TOOLS)]}],
               "rules": [{"id": "discovery", "effect": "allow", "methods": ["tools/list"]},
                         {"id": "half", "effect": "allow", "tools": [f"tool_{i:03d}" for i in range(0, LIST_TOOLS, 2)],
                          "users": [SUBJECT]}]},
}


def f_floor(ctx: "Ctx", what: str) -> dict:
    """bench/floor-filter: `noop` or `read` (headers + buffered body read, no logic)."""
    return f_wasm("bench_floor", ctx.floor_wasm, what)


def f_native_mcp() -> dict:
    """Envoy's own MCP filter: parses JSON-RPC, refuses non-MCP, puts method/params in metadata."""
    return {"name": "envoy.filters.http.mcp",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
                             "traffic_mode": "REJECT_NO_MCP",
                             "max_request_body_size": FILTER_BODY_LIMIT}}


def _md(filter_name: str, path: list[str], exact: str) -> dict:
    return {"sourced_metadata": {"metadata_matcher": {
        "filter": filter_name, "path": [{"key": k} for k in path],
        "value": {"string_match": {"exact": exact}}}}}


def f_rbac_tool_allow_list() -> dict:
    """RBAC over the mcp filter's metadata: the JWT subject may call the allow-listed tools
    (any other MCP method passes); the equivalent of one mcp-warden policy rule."""
    is_call = _md("envoy.filters.http.mcp", ["method"], "tools/call")
    tool_allowed = {"or_rules": {"rules": [_md("envoy.filters.http.mcp", ["params", "name"], t)
                                           for t in ALLOWED_TOOLS]}}
    return {"name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {"action": "ALLOW", "policies": {"tool-allow-list": {
                    "permissions": [{"not_rule": is_call},
                                    {"and_rules": {"rules": [is_call, tool_allowed]}}],
                    "principals": [_md("envoy.filters.http.jwt_authn", ["user", "sub"], SUBJECT)],
                }}}}}


def tested_config(upstream_port: int, filters: list[dict]) -> dict:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench", "codec_type": "AUTO",
        "request_timeout": "0s", "stream_idle_timeout": "3600s",
        "route_config": {"name": "bench", "virtual_hosts": [{
            "name": "mcp", "domains": ["*"],
            "routes": [{"match": {"prefix": "/mcp"},
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


def upstream_config() -> dict:
    """A fast MCP 'server': reads the whole request (buffer filter, so a large body never gets
    an early reply that would close the connection) and answers a canned tools/call result."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream", "codec_type": "AUTO",
        "route_config": {"name": "upstream", "max_direct_response_body_size_bytes": 1024 * 1024, "virtual_hosts": [{
            "name": "mcp", "domains": ["*"],
            "routes": [{"match": {"prefix": LIST_PATH},
                        "direct_response": {"status": 200, "body": {"inline_string": LIST_ANSWER}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
                       {"match": {"prefix": "/token"},
                        "direct_response": {"status": 200, "body": {"inline_string": STS_BODY}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
                       {"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}},
                        "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}]},
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
FORBIDDEN_TOOL = Check("a tool outside the allow-list is refused", status=403,
                       body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}')
NOT_MCP = Check("a body that is not JSON is refused", body="not json", status=400)
WARDEN_INVALID = Check("tools/call without a name is refused by mcp-warden", body=BAD_BODY, status=400)


@dataclass
class Mode:
    name: str
    label: str
    filters: Callable[["Ctx"], list[dict]]
    checks: list[Check] = field(default_factory=list)
    sizes: bool = False  # also measured with the larger bodies (the filter buffers the body)
    list_tools: int | None = None  # tools/list workload: how many tools the answer must show


MODES: list[Mode] = [
    Mode("plain", "Envoy, no filter (baseline)", lambda c: [], sizes=True),
    Mode("jwt", "Envoy + jwt_authn (ES256, no JWT cache)", lambda c: [f_jwt_authn(c, cache=False)],
         [NO_TOKEN]),
    Mode("jwt_cache", "Envoy + jwt_authn (ES256, jwt_cache_config)", lambda c: [f_jwt_authn(c, cache=True)],
         [NO_TOKEN]),
    Mode("jwt_amf", "Envoy + jwt_authn (ES256, jwt_cache_config) with a bare allow_missing_or_failed",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True, requires=REQUIRES_BARE_AMF)]),
    Mode("native_mcp", "Envoy + jwt_authn (cache) + native mcp filter + rbac tool allow-list",
         lambda c: [f_jwt_authn(c, cache=True), f_native_mcp(), f_rbac_tool_allow_list()],
         [NO_TOKEN, FORBIDDEN_TOOL, NOT_MCP], sizes=True),
    Mode("warden_policy", "Envoy + jwt_authn (cache) + mcp-warden identity + policy tool allow-list",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_warden(c, WARDEN_POLICY_CONFIG)],
         [NO_TOKEN, FORBIDDEN_TOOL, WARDEN_INVALID, NOT_MCP], sizes=True),
    Mode("warden_policy_quiet", "… the same, audit_log off (Envoy's access log only)",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_warden(c, {**WARDEN_POLICY_CONFIG, "audit_log": False})],
         [NO_TOKEN, FORBIDDEN_TOOL, WARDEN_INVALID, NOT_MCP]),
    Mode("warden_exchange", "… + tool registry + cached RFC 8693 token exchange",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_warden(c, WARDEN_EXCHANGE_CONFIG)],
         [NO_TOKEN, FORBIDDEN_TOOL, WARDEN_INVALID, NOT_MCP]),
    Mode("plain_list", f"tools/list of {LIST_TOOLS} tools: Envoy, no filter (baseline of the list rows)",
         lambda c: [], list_tools=LIST_TOOLS),
    Mode("warden_list", f"tools/list of {LIST_TOOLS} tools: jwt_authn (cache) + mcp-warden registry + policy filtering to half",
         lambda c: [f_jwt_authn(c, cache=True, for_warden=True), f_warden(c, WARDEN_LIST_CONFIG)],
         list_tools=LIST_TOOLS // 2),
    Mode("warden_jwt", "Envoy + jwt_authn (cache) + mcp-warden (validation only)",
         lambda c: [f_jwt_authn(c, cache=True), f_warden(c)], [NO_TOKEN, WARDEN_INVALID, NOT_MCP]),
    Mode("warden", "Envoy + mcp-warden alone (validation only, no jwt_authn)", lambda c: [f_warden(c)],
         [WARDEN_INVALID, NOT_MCP]),
    # Reference rows: what any Rust proxy-wasm filter costs in Envoy's V8 before its own logic.
    Mode("wasm_noop", "reference: no-op proxy-wasm filter (bench/floor-filter)", lambda c: [f_floor(c, "noop")]),
    Mode("wasm_read", "reference: proxy-wasm filter that reads headers + buffered body, no logic",
         lambda c: [f_floor(c, "read")], sizes=True),
]
SOAK_MODE = "warden_policy"  # the configuration that gets the long run for the memory check


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


def start_envoy(run: Path, envoy_bin: Path, name: str, config: dict) -> Envoy:
    d = run / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "envoy.json").write_text(json.dumps(config, indent=2) + "\n")
    (d / "admin.txt").unlink(missing_ok=True)
    p = PROCS.start(pinned([envoy_bin, "-c", d / "envoy.json", "--concurrency", "1", "--disable-hot-restart",
                            "--log-level", "warn", "--admin-address-path", d / "admin.txt"],
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


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # everything but idle and iowait


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


def make_identity(run: Path) -> tuple[str, str]:
    """An ES256 key pair, its JWKS (for local_jwks) and a signed access token."""
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
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now, "nbf": now - 60,
              "exp": now + 24 * 3600, "scope": "mcp:tools", "client_id": "bench-agent",
              "jti": hashlib.sha256(os.urandom(16)).hexdigest()[:16]}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench-es256"})
    (run / "jwks.json").write_text(jwks + "\n")
    (run / "token.jwt").write_text(token + "\n")
    return jwks, token


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


def write_lua(ctx: Ctx) -> Path:
    """wrk script: POST the body named by $BENCH_BODY_FILE; print one JSON result line."""
    lines = ["-- generated by bench/bench.py",
             'local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))',
             'wrk.method = "POST"', "wrk.body = f:read(\"*a\")", "f:close()"]
    for k, v in ctx.headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    lines += [
        "function done(summary, latency, requests)",
        "  local e = summary.errors",
        "  io.write(string.format('BENCH_RESULT {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%.1f,"
        "\"p99_us\":%.1f,\"max_us\":%.1f,\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\\n',",
        "    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,",
        "    e.connect, e.read, e.write, e.status, e.timeout))",
        "end", ""]
    p = ctx.run / "mcp.lua"
    p.write_text("\n".join(lines))
    return p


def request(e: Envoy, body: bytes, headers: dict, path: str = "/mcp") -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def run_checks(ctx: Ctx, mode: Mode, e: Envoy, bodies: dict) -> None:
    """The workload gets the upstream's answer (every body size), and each check of the mode
    gets its status: the filters are in the path and do their work."""
    if mode.list_tools is not None:
        status, body = request(e, LIST_BODY, ctx.headers, LIST_PATH)
        shown = len(json.loads(body)["result"]["tools"]) if status == 200 else -1
        if shown != mode.list_tools:
            raise RuntimeError(f"{mode.name}: tools/list got {status}, {shown} tools (expected {mode.list_tools})")
        return
    for size, path in bodies.items():
        status, body = request(e, path.read_bytes(), ctx.headers)
        if status != 200 or body.decode(errors="replace") != UPSTREAM_BODY:
            raise RuntimeError(f"{mode.name}: workload ({size}) got {status} {body[:300]!r}\n{e.log_tail()}")
    for ch in mode.checks:
        h = dict(ctx.headers)
        for k, v in ch.headers.items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        body = ch.body.encode() if ch.body is not None else bodies[None].read_bytes()
        status, resp = request(e, body, h)
        if status != ch.status:
            raise RuntimeError(f"{mode.name}: check '{ch.what}' expected {ch.status}, got {status} {resp[:300]!r}")


def measure(ctx: Ctx, e: Envoy, upstream: Envoy, body_file: Path, seconds: int, path: str = "/mcp") -> dict:
    """One wrk run against `e`; CPU of the Envoy under test over exactly that window."""
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file))
    argv = pinned([ctx.wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(ctx.lua),
                   f"http://127.0.0.1:{e.port}{path}"], tested=False)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, u0, m0, t0 = cpu_ticks(e.pid), cpu_ticks(upstream.pid), machine_busy_ticks(), time.monotonic()
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
    c1, u1, m1, t1 = cpu_ticks(e.pid), cpu_ticks(upstream.pid), machine_busy_ticks(), time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}):\n{text}")
    r = json.loads(line.split(" ", 1)[1])
    n = r["requests"]
    if n == 0:
        raise RuntimeError(f"wrk completed no request against {e.name}:\n{text}\n{e.log_tail()}")
    wall = t1 - t0
    wrk_ticks = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) * CLK_TCK
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "requests": n, "errors": errors,
        "rps": n / (r["duration_us"] / 1e6),
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "max_us": r["max_us"],
        "cpu_us": (c1 - c0) / CLK_TCK * 1e6 / n,
        "cpu_cores": (c1 - c0) / CLK_TCK / wall,
        "upstream_cores": (u1 - u0) / CLK_TCK / wall,
        "wrk_cores": wrk_ticks / CLK_TCK / wall,
        "other_cores": max(0.0, ((m1 - m0) - (c1 - c0) - (u1 - u0) - wrk_ticks) / CLK_TCK / wall),
    }


# ---------------------------------------------------------------------------------------------
# Report

def _human_size(n: int | None) -> str:
    if n is None:
        return "small"
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(rows: dict, key: tuple, base: tuple) -> dict:
    """Medians over rounds; ratios per round against the baseline of the same round."""
    runs, bruns = rows[key], rows[base]
    s = {k: _med([r[k] for r in runs]) for k in ("rps", "p50_us", "p99_us", "cpu_us", "other_cores")}
    s["errors"] = sum(r["errors"] for r in runs)
    s["requests"] = sum(r["requests"] for r in runs)
    pairs = list(zip(runs, bruns))
    s["rps_ratio"] = _med([r["rps"] / b["rps"] for r, b in pairs])
    s["cpu_ratio"] = _med([r["cpu_us"] / b["cpu_us"] for r, b in pairs])
    s["cpu_added"] = _med([r["cpu_us"] - b["cpu_us"] for r, b in pairs])
    return s


def _fmt_row(num: int, label: str, size: int | None, s: dict, base_num: int) -> str:
    err = f" ⚠ {s['errors']} errors" if s["errors"] else ""
    if num == base_num:
        ratios = "1.00 | 1.00 | —"
    else:
        ratios = f"{s['rps_ratio']:.2f} | {s['cpu_ratio']:.2f} | {s['cpu_added']:+.1f}"
    return (f"| {num} | {label}{err} | {_human_size(size)} | {s['rps']:,.0f} | {s['p50_us']:,.0f} | "
            f"{s['p99_us']:,.0f} | {s['cpu_us']:.1f} | {ratios} | {s['other_cores']:.2f} |")


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

def main() -> int:
    # Explicit handlers (a background job may have inherited SIGINT as ignored): every process
    # started here is stopped on Ctrl-C, SIGTERM or SIGHUP too.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    started = time.monotonic()
    stamp = _dt.datetime.now(_dt.timezone.utc)
    run = ROOT / "target" / "bench" / stamp.strftime("%Y%m%dT%H%M%SZ")
    run.mkdir(parents=True, exist_ok=True)
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
    modes = [m for i, m in enumerate(MODES) if i == 0 or not wanted or m.name in wanted]
    size_modes = [m for m in modes if m.sizes] if SIZES else []

    jwks, token = make_identity(run)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18", "Authorization": f"Bearer {token}"}
    ctx = Ctx(run, wasm.resolve(), floor_wasm.resolve(), jwks, token, headers, wrk)
    ctx.lua = write_lua(ctx)
    bodies: dict[int | None, Path] = {}
    for size in [None] + SIZES:
        p = run / f"body-{size or 'small'}.json"
        p.write_bytes(mcp_body(size))
        bodies[size] = p
    small_len = bodies[None].stat().st_size
    list_body = run / "body-tools-list.json"
    list_body.write_bytes(LIST_BODY)

    facts = machine_facts()
    load_start = loadavg()
    ev = tool_version([str(envoy_bin), "--version"]).split("version:")[-1].strip().split("/")
    versions = {"envoy": f"{ev[1]} ({ev[0][:12]}, {', '.join(ev[3:])})" if len(ev) >= 4 else "/".join(ev),
                "wrk": tool_version([wrk, "-v"]).split("[")[0].strip().removeprefix("wrk ").strip(),
                "wasm_bytes": wasm.stat().st_size,
                "wasm_sha256": hashlib.sha256(wasm.read_bytes()).hexdigest()[:16]}
    plan = (f"{len(modes)} configurations × {ROUNDS} rounds × {DURATION} s"
            + (f", {len(size_modes)} × {len(SIZES)} sizes × {SIZE_ROUNDS} rounds × {SIZE_DURATION} s"
               if size_modes else "")
            + f", soak {SOAK} s")
    print(f"bench: {plan}; {CONNECTIONS} connections; logs and configs in {run.relative_to(ROOT)}", flush=True)

    try:
        upstream = start_envoy(run, envoy_bin, "upstream", upstream_config())
        wait_ready(upstream)
        envoys = {m.name: start_envoy(run, envoy_bin, m.name, tested_config(upstream.port, m.filters(ctx)))
                  for m in modes}
        for e in envoys.values():
            wait_ready(e)
        check_bodies = {None: bodies[None], **{s: bodies[s] for s in SIZES}}
        for m in modes:
            run_checks(ctx, m, envoys[m.name], check_bodies if m in size_modes else {None: bodies[None]})
        print(f"bench: {len(modes)} Envoys up and checked (upstream :{upstream.port}); warming up", flush=True)

        rss: dict[str, dict[str, dict]] = {m.name: {"idle": memory(envoys[m.name].pid)} for m in modes}
        def workload(m: Mode) -> tuple[Path, str]:
            return (list_body, LIST_PATH) if m.list_tools is not None else (bodies[None], "/mcp")

        for m in modes:
            measure(ctx, envoys[m.name], upstream, workload(m)[0], WARMUP, workload(m)[1])
        for m in modes:
            rss[m.name]["warm"] = memory(envoys[m.name].pid)

        rows: dict[tuple, list] = {}
        for rnd in range(ROUNDS):
            order = modes[rnd % len(modes):] + modes[:rnd % len(modes)]
            for m in order:
                r = measure(ctx, envoys[m.name], upstream, workload(m)[0], DURATION, workload(m)[1])
                rows.setdefault((m.name, None), []).append(r)
                print(f"  round {rnd + 1}/{ROUNDS} {m.name:<11} {r['rps']:>8,.0f} req/s  p50 {r['p50_us']:>6,.0f} µs"
                      f"  p99 {r['p99_us']:>7,.0f} µs  {r['cpu_us']:6.1f} CPU µs/req"
                      f"  (other load {r['other_cores']:.2f} cores)", flush=True)
        for m in modes:
            rss[m.name]["main"] = memory(envoys[m.name].pid)

        soak = None
        if SOAK > 0 and SOAK_MODE in envoys:
            soak = measure(ctx, envoys[SOAK_MODE], upstream, bodies[None], SOAK)
            print(f"  soak {SOAK_MODE}: {soak['requests']:,} requests in {SOAK} s", flush=True)
            for m in modes:
                rss[m.name]["soak"] = memory(envoys[m.name].pid)

        for rnd in range(SIZE_ROUNDS if size_modes else 0):
            for size in SIZES:
                order = size_modes[rnd % len(size_modes):] + size_modes[:rnd % len(size_modes)]
                for m in order:
                    r = measure(ctx, envoys[m.name], upstream, bodies[size], SIZE_DURATION)
                    rows.setdefault((m.name, size), []).append(r)
                    print(f"  round {rnd + 1}/{SIZE_ROUNDS} {m.name:<11} {_human_size(size):>7} {r['rps']:>8,.0f} req/s"
                          f"  p99 {r['p99_us']:>8,.0f} µs  {r['cpu_us']:7.1f} CPU µs/req", flush=True)
        if size_modes:
            for m in modes:
                rss[m.name]["sizes"] = memory(envoys[m.name].pid)
        for m in modes:
            if envoys[m.name].proc.poll() is not None:
                raise RuntimeError(f"Envoy {m.name} died during the run:\n{envoys[m.name].log_tail()}")
    finally:
        PROCS.stop_all()

    # ---- report
    elapsed = time.monotonic() - started
    label = {m.name: m.label for m in modes}
    out = []
    out.append(f"### Results {stamp.strftime('%Y-%m-%d %H:%M UTC')}{' (BENCH_QUICK=1 smoke run)' if QUICK else ''}")
    out.append("")
    out.append(f"- machine: {facts['nproc']} × {facts['cpu']}, {facts['mem_gib']} GiB, Linux {facts['kernel']}; "
               f"load average (1/5/15 min) at start {load_start}, at end {loadavg()}")
    out.append(f"- Envoy {versions['envoy']}; wrk {versions['wrk']}; mcp_warden.wasm {versions['wasm_bytes']:,} bytes "
               f"(sha256 {versions['wasm_sha256']}…)")
    out.append(f"- load: wrk, 1 thread, {CONNECTIONS} connections (HTTP/1.1 keep-alive), POST /mcp tools/call; "
               f"{ROUNDS} rounds × {DURATION} s per row ({SIZE_ROUNDS} × {SIZE_DURATION} s for the body-size rows), rows "
               f"interleaved, medians over rounds; ratios are per-round ratios to the group's first row; "
               + (f"Envoys under test pinned to CPU {(os.cpu_count() or 1) - 1}, upstream and wrk to the others; "
                  if PIN else "no CPU pinning; ")
               + f"run took {elapsed:.0f} s")
    other = [r["other_cores"] for rs in rows.values() for r in rs]
    busy = _med(other)
    out.append(f"- other processes on the machine used a median of {busy:.2f} cores "
               f"(max {max(other):.2f}) during the measured windows"
               + (" ⚠ the machine was not quiet: absolute figures are noisy, compare within a round"
                  if busy > 0.25 else ""))
    out.append("")
    out.append("| # | configuration | body | req/s | p50 µs | p99 µs | CPU µs/req | req/s ÷ base | CPU ÷ base "
               "| CPU Δ µs | other load |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    num = 0
    groups = [(None, modes)] + [(s, size_modes) for s in SIZES if size_modes]
    results = []
    for size, gmodes in groups:
        if size is not None:
            out.append(f"| | **request body {_human_size(size)}** | | | | | | | | | |")
        base_num = num + 1
        for m in gmodes:
            num += 1
            s = summarize(rows, (m.name, size), (gmodes[0].name, size))
            out.append(_fmt_row(num, label[m.name], size if size else small_len, s, base_num))
            results.append({"row": num, "mode": m.name, "label": m.label, "body_bytes": size or small_len,
                            "summary": s, "rounds": rows[(m.name, size)]})
    out.append("")
    cols = [("idle", "idle"), ("warm", "after warm-up"), ("main", "after the main rows"),
            ("soak", f"after +{SOAK} s soak"), ("sizes", "after the large bodies")]
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
                     "size_duration": SIZE_DURATION, "warmup": WARMUP, "pinned": PIN,
                     "soak": SOAK, "connections": CONNECTIONS, "sizes": SIZES},
        "rows": results, "rss": rss, "soak": soak}, indent=2) + "\n")
    print(f"bench: report in {(run / 'report.md').relative_to(ROOT)}, raw figures in "
          f"{(run / 'results.json').relative_to(ROOT)}")
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
