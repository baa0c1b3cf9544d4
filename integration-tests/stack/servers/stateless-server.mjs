#!/usr/bin/env node
// Stateless MCP server (protocol 2026-07-28) for the mcp-warden routing tests.
//
// The official TypeScript SDK (1.32) does not speak 2026-07-28 yet (its transport answers 400 to
// an unknown MCP-Protocol-Version), so this is a plain node:http JSON-RPC responder: no
// sessions, every request stands alone, no GET stream. It also answers `initialize` (without
// an Mcp-Session-Id) for clients of older revisions.
//
// Usage: node servers/stateless-server.mjs --port N [--host 127.0.0.1] [--name hr-1]
//
// stdout: exactly one line "READY <port>" once listening (port 0 = pick a free one).
// stderr: one JSON line per HTTP request ({"ev":"req","method","path","session","protocol",
//         "rpc","x-mcp-server","x-mcp-variant","x-mcp-upstream-host","x-mcp-affinity-key",...}).
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    name: { type: 'string', default: 'stateless-a' },
  },
  strict: true,
});
if (opts.port === undefined || !/^\d+$/.test(opts.port)) {
  process.stderr.write('usage: stateless-server.mjs --port N [--host 127.0.0.1] [--name hr-1]\n');
  process.exit(2);
}
const NAME = opts.name;
const PROTOCOL = '2026-07-28';
const ROUTING_HEADERS = ['x-mcp-server', 'x-mcp-variant', 'x-mcp-upstream-host', 'x-mcp-affinity-key', 'x-mcp-user'];
let calls = 0;

const log = (event) =>
  process.stderr.write(JSON.stringify({ t: new Date().toISOString(), server: NAME, ...event }) + '\n');

const send = (res, status, body) => {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
  res.end(text);
};
const error = (id, code, message) => ({ jsonrpc: '2.0', id: id ?? null, error: { code, message } });

function answer(msg, headers) {
  const { id, method, params } = msg;
  switch (method) {
    case 'initialize':
      return {
        jsonrpc: '2.0',
        id,
        result: {
          protocolVersion: params?.protocolVersion ?? PROTOCOL,
          capabilities: { tools: {} },
          serverInfo: { name: NAME, version: '1.0.0' },
        },
      };
    case 'ping':
      return { jsonrpc: '2.0', id, result: {} };
    case 'tools/list':
      return {
        jsonrpc: '2.0',
        id,
        result: { tools: [{ name: 'whoami', description: 'Report the instance name and the routing headers', inputSchema: { type: 'object' } }] },
      };
    case 'tools/call': {
      if (params?.name !== 'whoami') return error(id, -32602, `unknown tool ${params?.name}`);
      calls += 1;
      const seen = Object.fromEntries(ROUTING_HEADERS.map((h) => [h, headers[h] ?? null]));
      const text = JSON.stringify({ name: NAME, sessionId: null, counter: calls, ...seen });
      return { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } };
    }
    default:
      return error(id, -32601, `method not found: ${method}`);
  }
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body = null;
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : null;
    } catch {
      /* answered below */
    }
    const routing = Object.fromEntries(ROUTING_HEADERS.map((h) => [h, req.headers[h] ?? null]));
    log({
      ev: 'req',
      method: req.method,
      path,
      session: req.headers['mcp-session-id'] ?? null,
      protocol: req.headers['mcp-protocol-version'] ?? null,
      mcp_method: req.headers['mcp-method'] ?? null,
      rpc: body && typeof body === 'object' && !Array.isArray(body) ? [body.method ?? '?'] : [],
      ...routing,
    });
    if (path === '/healthz' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok');
    }
    if (path !== '/mcp') return send(res, 404, error(null, -32601, 'not found'));
    if (req.method !== 'POST') return send(res, 405, error(null, -32000, 'stateless server: POST only'));
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return send(res, 400, error(null, -32700, 'Parse error'));
    }
    if (body.id === undefined) return send(res, 202); // notification or response
    return send(res, 200, answer(body, req.headers));
  });
});
server.on('error', (err) => {
  log({ ev: 'error', where: 'http', error: String(err) });
  process.exit(1);
});
server.listen(Number(opts.port), opts.host, () => {
  const { port } = server.address();
  log({ ev: 'listening', host: opts.host, port });
  process.stdout.write(`READY ${port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
