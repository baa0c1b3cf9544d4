#!/usr/bin/env python3
"""MCP end-to-end scenario client built only with the official Python SDK (`mcp`).

Usage: python clients/py_client.py --url http://127.0.0.1:PORT/mcp [--mode auto|legacy]
                                   [--timeout 60] [--header "Name: value"]...

Every `--header` is sent on every HTTP request (it becomes a default header of the httpx
client the streamable HTTP transport uses), e.g. the caller's `Authorization: Bearer ...` and
`x-agent-token: ...` for a gateway; header values are never printed.

Uses `mcp.Client` (the SDK's high-level client, which wraps `ClientSession`) over the
SDK's `streamable_http_client` transport.  `--mode auto` (the SDK default) first probes
`server/discover` (2026-07-28 era) and falls back to the `initialize` handshake when the
server answers with an error, as the TypeScript 1.x server does; `--mode legacy` goes
straight to `initialize`.

stdout: ONE JSON document describing everything the client observed.  It holds no
session id, port, URL or timestamp, so a direct run and a run through a proxy can be
compared byte for byte.  Exit 0 on success; on failure exit 1 with details on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

REQ_TIMEOUT = 20.0


def dump(model: Any) -> Any:
    """Pydantic model -> plain JSON-able data with wire (camelCase) names."""
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return model


def describe_error(err: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"class": type(err).__name__}
    if isinstance(err, MCPError):
        out["code"] = err.error.code
        out["message"] = err.error.message
        if err.error.data is not None:
            out["data"] = err.error.data
    else:
        out["message"] = str(err)
    return out


def first_mcp_error(err: BaseException) -> MCPError | None:
    """The first MCPError in `err`, looking inside (nested) exception groups."""
    if isinstance(err, MCPError):
        return err
    if isinstance(err, BaseExceptionGroup):
        for sub in err.exceptions:
            found = first_mcp_error(sub)
            if found is not None:
                return found
    return None


class HttpRecorder:
    """httpx2 event hooks: what the SDK put on the wire and what came back.

    POST/DELETE exchanges are recorded in send order (the scenario awaits every step, so
    the order is deterministic); the standalone GET SSE stream is opened asynchronously
    and is only summarised.
    """

    def __init__(self) -> None:
        self.exchanges: list[dict[str, Any]] = []
        self.gets: list[dict[str, Any]] = []
        self.session_id: str | None = None

    async def on_request(self, request: httpx2.Request) -> None:
        rpc: Any = None
        if request.method == "POST":
            try:
                body = json.loads(request.content or b"null")
                if isinstance(body, list):
                    rpc = [m.get("method", "response") for m in body]
                elif isinstance(body, dict):
                    rpc = body.get("method", "response")
            except ValueError:
                rpc = "<unparsed>"
        entry = {
            "method": request.method,
            "rpc": rpc,
            "accept": request.headers.get("accept"),
            "sentSessionId": "mcp-session-id" in request.headers,
            "sentProtocolVersion": request.headers.get("mcp-protocol-version"),
            "sentMcpMethod": request.headers.get("mcp-method"),
        }
        request.extensions["e2e_entry"] = entry
        (self.gets if request.method == "GET" else self.exchanges).append(entry)

    async def on_response(self, response: httpx2.Response) -> None:
        entry = response.request.extensions.get("e2e_entry")
        if entry is not None:
            entry["status"] = response.status_code
            entry["contentType"] = response.headers.get("content-type")
        sid = response.headers.get("mcp-session-id")
        if sid and self.session_id is None:
            self.session_id = sid

    def http_client(self, extra_headers: list[tuple[str, str]] | None = None) -> httpx2.AsyncClient:
        client = create_mcp_http_client(headers=httpx2.Headers(extra_headers or []))  # type: ignore[arg-type]
        client.event_hooks = {"request": [self.on_request], "response": [self.on_response]}
        return client


def whoami_headers(body: dict[str, Any]) -> dict[str, Any]:
    """The identity part of a whoami answer."""
    keys = (
        "x-mcp-user",
        "x-mcp-user-issuer",
        "x-mcp-agent",
        "x-mcp-delegation",
        "saw_authorization",
        "saw_agent_token",
    )
    return {k: body.get(k) for k in keys}


async def run(url: str, mode: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"sdk": "mcp (python)", "client": "py", "mode": mode}
    rec = HttpRecorder()
    sampling_seen: list[dict[str, Any]] = []

    async def sampling_callback(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        first = params.messages[0] if params.messages else None
        first_content = getattr(first, "content", None)
        sampling_seen.append(
            {
                "maxTokens": params.max_tokens,
                "messages": len(params.messages),
                "firstText": getattr(first_content, "text", None),
            }
        )
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="42"),
            model="e2e-fake-llm",
            stop_reason="endTurn",
        )

    async with rec.http_client(headers) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=True)
        client = Client(
            transport,
            mode=mode,
            sampling_callback=sampling_callback,
            client_info=types.Implementation(name="mcp-warden-py-e2e", version="1.0.0"),
            read_timeout_seconds=REQ_TIMEOUT,
            cache=None,  # every call must reach the server
        )
        async with client:
            session = client.session
            init = session.initialize_result
            out["initialize"] = {
                "protocolVersion": client.protocol_version,
                "serverInfo": dump(client.server_info),
                "capabilities": dump(client.server_capabilities),
                "instructions": client.instructions,
                "handshake": "initialize" if init is not None else "discover",
                "hasSessionId": rec.session_id is not None,
            }

            tools = await client.list_tools()
            out["tools"] = sorted(
                ({"name": t.name, "inputSchema": dump(t.input_schema)} for t in tools.tools),
                key=lambda t: t["name"],
            )

            out["echo"] = dump(await client.call_tool("echo", {"text": "hello warden"}))
            out["add"] = dump(await client.call_tool("add", {"a": 2, "b": 40}))

            progress: list[dict[str, Any]] = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append({"progress": p, "total": total, "message": message})

            slow = await client.call_tool("slow_count", {"steps": 5, "delay_ms": 50}, progress_callback=on_progress)
            out["slow_count"] = {"progress": progress, "result": dump(slow)}

            out["ask_llm"] = dump(await client.call_tool("ask_llm", {"question": "What is the answer?"}))
            out["sampling_requests_seen"] = sampling_seen

            # What the server saw of the identity headers differs with and without a gateway in
            # between, so it is kept apart (`whoami_headers`) for the comparison to normalise.
            out["whoami"] = []
            out["whoami_headers"] = []
            for _ in range(2):
                r = await client.call_tool("whoami", {})
                body = json.loads(r.content[0].text)
                out["whoami"].append(
                    {
                        "name": body["name"],
                        "counter": body["counter"],
                        "sessionIdMatches": body["sessionId"] == rec.session_id,
                    }
                )
                out["whoami_headers"].append(whoami_headers(body))

            out["resources"] = [dump(r) for r in (await client.list_resources()).resources]
            out["resourceTemplates"] = [dump(t) for t in (await client.list_resource_templates()).resource_templates]
            out["readme"] = dump(await client.read_resource("demo://readme"))
            out["item7"] = dump(await client.read_resource("demo://items/7"))
            out["prompts"] = [dump(p) for p in (await client.list_prompts()).prompts]
            out["greet"] = dump(await client.get_prompt("greet", {"name": "Warden"}))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["ping"] = dump(await session.send_ping())

            try:
                r = await client.call_tool("nope", {})
                out["unknown_tool"] = {"outcome": "result", "result": dump(r)}
            except MCPError as err:
                out["unknown_tool"] = {"outcome": "error", "error": describe_error(err)}
        # Leaving the Client context makes the transport send HTTP DELETE (terminate_on_close).

    deletes = [e for e in rec.exchanges if e["method"] == "DELETE"]
    out["terminate"] = {"deleteSent": len(deletes) == 1, "status": deletes[0].get("status") if deletes else None}

    # Reuse the terminated session id: a fresh transport whose HTTP client carries the old
    # Mcp-Session-Id as a default header, and a bare ClientSession ping (no handshake).
    stale_sid = rec.session_id
    stale_rec = HttpRecorder()
    try:
        async with stale_rec.http_client([*headers, ("mcp-session-id", stale_sid or "")]) as http:
            async with streamable_http_client(url, http_client=http, terminate_on_close=False) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=REQ_TIMEOUT) as stale:
                    r = await stale.send_ping()
                    out["after_terminate"] = {"outcome": "unexpected-success", "result": dump(r)}
    except BaseException as err:  # noqa: BLE001 - task groups wrap the MCPError
        leaf = first_mcp_error(err)
        if leaf is None:
            raise
        out["after_terminate"] = {"outcome": "error", "error": describe_error(leaf)}
    posts = [e for e in stale_rec.exchanges if e["method"] == "POST"]
    out["after_terminate"]["httpStatus"] = posts[0].get("status") if posts else None
    out["after_terminate"]["sentSessionId"] = posts[0].get("sentSessionId") if posts else None

    out["http"] = rec.exchanges
    out["standaloneGetSse"] = {
        "opened": any(
            g.get("status") == 200 and (g.get("contentType") or "").startswith("text/event-stream") for g in rec.gets
        ),
        "accept": rec.gets[0]["accept"] if rec.gets else None,
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    ap.add_argument("--timeout", type=float, default=60.0, help="hard limit for the whole scenario (s)")
    ap.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a header sent on every request (repeatable)",
    )
    args = ap.parse_args()
    headers: list[tuple[str, str]] = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            ap.error(f"--header must look like 'Name: value', got {h!r}")
        headers.append((name.strip(), value.strip()))

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args.url, args.mode, headers)

    try:
        out = anyio.run(bounded)
    except BaseException as err:  # noqa: BLE001 - report everything, incl. exception groups
        print(f"py_client: FAILED: {err!r}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
