#!/usr/bin/env node
// MCP end-to-end scenario client built only with the official TypeScript SDK
// (Client + StreamableHTTPClientTransport).
//
// Usage: node clients/ts-client.mjs --url http://127.0.0.1:PORT/mcp [--timeout-ms 60000]
//                                   [--header "Name: value"]... [--scenario full|lists|calls]
//                                   [--call 'tool {"arg": ...}']...
//
// --scenario lists: only initialize, list tools / prompts / resources (names), terminate; for
// checking what a caller is shown (e.g. policy-filtered lists).
// --scenario calls: initialize (instructions), tools/list (names and descriptions), then each
// --call in order (result or error as the SDK parsed it), the sampling requests the server
// sent, terminate; for checking what a client receives (e.g. filtered answers).
//
// Every --header is sent on every HTTP request (POST, GET and DELETE), e.g. the caller's
// `Authorization: Bearer …` and `x-agent-token: …` for a gateway; header values are never
// printed.
//
// stdout: ONE JSON document describing everything the client observed. It holds no
// session id, port, URL or timestamp, so a direct run and a run through a proxy can be
// compared byte for byte. Exit 0 on success; on failure exit 1 with details on stderr.
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
    header: { type: 'string', multiple: true, default: [] },
    scenario: { type: 'string', default: 'full' },
    call: { type: 'string', multiple: true, default: [] },
  },
  strict: true,
});
if (!opts.url || !['full', 'lists', 'calls'].includes(opts.scenario)) {
  process.stderr.write('usage: ts-client.mjs --url http://127.0.0.1:PORT/mcp [--timeout-ms N] [--header "Name: value"]... [--scenario full|lists|calls] [--call \'tool {json}\']...\n');
  process.exit(2);
}
/** The --header options as [name, value] pairs (a repeated name is sent repeatedly). */
const EXTRA_HEADERS = opts.header.map((h) => {
  const i = h.indexOf(':');
  if (i <= 0) {
    process.stderr.write(`ts-client: --header must look like "Name: value", got ${JSON.stringify(h)}\n`);
    process.exit(2);
  }
  return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
});
/** Transport options that put the extra headers on every request. */
function transportOptions(more = {}) {
  const headers = new Headers();
  for (const [k, v] of EXTRA_HEADERS) headers.append(k, v);
  return { fetch: recordingFetch, requestInit: { headers }, ...more };
}
const URL_ = new URL(opts.url);
const TIMEOUT_MS = Number(opts['timeout-ms']);
const REQ = { timeout: 20000 };

// Hard upper bound for the whole scenario.
const watchdog = setTimeout(() => {
  process.stderr.write(`ts-client: scenario timed out after ${TIMEOUT_MS} ms\n`);
  process.exit(3);
}, TIMEOUT_MS);
watchdog.unref();

/** Recursively sort object keys so the output does not depend on wire key order. */
function canon(v) {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .filter((k) => v[k] !== undefined)
        .map((k) => [k, canon(v[k])]),
    );
  }
  return v;
}

function describeError(err) {
  const out = { class: err?.constructor?.name ?? typeof err };
  if (err instanceof McpError || err instanceof StreamableHTTPError || typeof err?.code === 'number') out.code = err.code;
  if (err instanceof StreamableHTTPError) out.httpStatus = err.code;
  out.message = String(err?.message ?? err);
  if (err?.data !== undefined) out.data = err.data;
  return out;
}

const sampling = [];

/** The identity part of a whoami answer. */
function whoamiHeaders(body) {
  const pick = (k) => (body[k] === undefined ? null : body[k]);
  return {
    'x-mcp-user': pick('x-mcp-user'),
    'x-mcp-user-issuer': pick('x-mcp-user-issuer'),
    'x-mcp-agent': pick('x-mcp-agent'),
    'x-mcp-delegation': pick('x-mcp-delegation'),
    saw_authorization: pick('saw_authorization'),
    saw_agent_token: pick('saw_agent_token'),
  };
}

// HTTP exchanges as the client saw them (recorded through the transport's `fetch` option).
// POST/DELETE are recorded in call order (the scenario awaits each step, so the order is
// deterministic); the standalone GET SSE stream is opened asynchronously, so it is only
// summarised.
const http = [];
const getStreams = [];
function recordingFetch(input, init = {}) {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = new Headers(init.headers);
  let rpc = null;
  if (typeof init.body === 'string') {
    try {
      const b = JSON.parse(init.body);
      rpc = Array.isArray(b) ? b.map((m) => m.method ?? 'response') : b.method ?? 'response';
    } catch {
      rpc = '<unparsed>';
    }
  }
  const entry = {
    method,
    rpc,
    accept: headers.get('accept'),
    sentSessionId: headers.has('mcp-session-id'),
    sentProtocolVersion: headers.get('mcp-protocol-version'),
  };
  (method === 'GET' ? getStreams : http).push(entry);
  return fetch(input, init).then((res) => {
    entry.status = res.status;
    entry.contentType = res.headers.get('content-type');
    return res;
  });
}

function newClient() {
  const client = new Client({ name: 'mcp-warden-ts-e2e', version: '1.0.0' }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const first = request.params.messages[0];
    sampling.push({
      maxTokens: request.params.maxTokens,
      messages: request.params.messages.length,
      firstText: first?.content?.type === 'text' ? first.content.text : null,
    });
    return { role: 'assistant', model: 'e2e-fake-llm', stopReason: 'endTurn', content: { type: 'text', text: '42' } };
  });
  return client;
}

/** --scenario lists: the names a caller is shown. */
async function lists() {
  const client = newClient();
  const transport = new StreamableHTTPClientTransport(URL_, transportOptions());
  await client.connect(transport, REQ);
  const names = (items, key = 'name') => items.map((i) => i[key]).sort();
  const out = {
    tools: names((await client.listTools({}, REQ)).tools),
    prompts: names((await client.listPrompts({}, REQ)).prompts),
    resources: names((await client.listResources({}, REQ)).resources, 'uri'),
  };
  await transport.terminateSession();
  await client.close();
  return out;
}

/** --scenario calls: what a client receives for each --call. */
async function calls() {
  const client = newClient();
  const transport = new StreamableHTTPClientTransport(URL_, transportOptions());
  await client.connect(transport, REQ);
  const out = { instructions: client.getInstructions() ?? null };
  out.tools = (await client.listTools({}, REQ)).tools
    .map((t) => ({ name: t.name, description: t.description ?? null }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  out.calls = [];
  for (const spec of opts.call) {
    const i = spec.indexOf(' ');
    const name = i < 0 ? spec : spec.slice(0, i);
    const args = i < 0 ? {} : JSON.parse(spec.slice(i + 1));
    try {
      out.calls.push({ name, result: await client.callTool({ name, arguments: args }, undefined, REQ) });
    } catch (err) {
      out.calls.push({ name, error: describeError(err) });
    }
  }
  out.sampling_requests_seen = sampling;
  await transport.terminateSession();
  await client.close();
  return out;
}

async function main() {
  if (opts.scenario === 'lists') return lists();
  if (opts.scenario === 'calls') return calls();
  const out = { sdk: '@modelcontextprotocol/sdk', client: 'ts' };
  const client = newClient();
  client.onerror = (e) => process.stderr.write(`ts-client: client error: ${e?.stack ?? e}\n`);
  const transport = new StreamableHTTPClientTransport(URL_, transportOptions());

  await client.connect(transport, REQ);
  out.initialize = {
    protocolVersion: transport.protocolVersion ?? null,
    serverInfo: client.getServerVersion() ?? null,
    capabilities: client.getServerCapabilities() ?? null,
    instructions: client.getInstructions() ?? null,
    hasSessionId: typeof transport.sessionId === 'string' && transport.sessionId.length > 0,
  };
  const sessionId = transport.sessionId;

  const tools = await client.listTools({}, REQ);
  out.tools = tools.tools
    .map((t) => ({ name: t.name, inputSchema: t.inputSchema }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  out.echo = await client.callTool({ name: 'echo', arguments: { text: 'hello warden' } }, undefined, REQ);
  out.add = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } }, undefined, REQ);

  const progress = [];
  const slow = await client.callTool({ name: 'slow_count', arguments: { steps: 5, delay_ms: 50 } }, undefined, {
    ...REQ,
    onprogress: (p) => progress.push({ progress: p.progress, total: p.total, message: p.message }),
  });
  out.slow_count = { progress, result: slow };

  out.ask_llm = await client.callTool({ name: 'ask_llm', arguments: { question: 'What is the answer?' } }, undefined, REQ);
  out.sampling_requests_seen = sampling;

  // Per-session state: two calls on the same session must count 1, 2. What the server saw of
  // the caller's identity headers differs with and without a gateway in between, so it is kept
  // apart (`whoami_headers`) for the comparison to normalise.
  out.whoami = [];
  out.whoami_headers = [];
  for (let i = 0; i < 2; i++) {
    const r = await client.callTool({ name: 'whoami', arguments: {} }, undefined, REQ);
    const body = JSON.parse(r.content[0].text);
    out.whoami.push({ name: body.name, counter: body.counter, sessionIdMatches: body.sessionId === sessionId });
    out.whoami_headers.push(whoamiHeaders(body));
  }

  out.resources = (await client.listResources({}, REQ)).resources;
  out.resourceTemplates = (await client.listResourceTemplates({}, REQ)).resourceTemplates;
  out.readme = await client.readResource({ uri: 'demo://readme' }, REQ);
  out.item7 = await client.readResource({ uri: 'demo://items/7' }, REQ);
  out.prompts = (await client.listPrompts({}, REQ)).prompts;
  out.greet = await client.getPrompt({ name: 'greet', arguments: { name: 'Warden' } }, REQ);
  out.ping = await client.ping(REQ);

  try {
    const r = await client.callTool({ name: 'nope', arguments: {} }, undefined, REQ);
    out.unknown_tool = { outcome: 'result', result: r };
  } catch (err) {
    out.unknown_tool = { outcome: 'error', error: describeError(err) };
  }

  // Terminate the session (HTTP DELETE).
  await transport.terminateSession();
  out.terminate = { ok: true, sessionIdCleared: transport.sessionId === undefined };
  await client.close();

  // Reuse the terminated session id with a fresh transport: Client.connect() skips the
  // initialize handshake when the transport already has a session id.
  const stale = newClient();
  const staleTransport = new StreamableHTTPClientTransport(URL_, transportOptions({ sessionId }));
  try {
    await stale.connect(staleTransport, REQ);
    const r = await stale.ping(REQ);
    out.after_terminate = { outcome: 'unexpected-success', result: r };
  } catch (err) {
    out.after_terminate = { outcome: 'error', error: describeError(err) };
  } finally {
    await stale.close().catch(() => {});
  }

  out.http = http;
  out.standaloneGetSse = {
    opened: getStreams.some((g) => g.status === 200 && /^text\/event-stream/.test(g.contentType ?? '')),
    accept: getStreams[0]?.accept ?? null,
  };
  return out;
}

main().then(
  (out) => {
    process.stdout.write(JSON.stringify(canon(out), null, 2) + '\n');
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`ts-client: FAILED: ${err?.stack ?? err}\n`);
    if (err?.code !== undefined) process.stderr.write(`ts-client: code=${err.code}\n`);
    process.exit(1);
  },
);
