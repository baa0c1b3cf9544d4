#!/usr/bin/env node
// A scripted malicious MCP server for mcp-warden's adversarial tests. It speaks just enough
// Streamable HTTP to be reached through Envoy, and answers every request with whatever the test
// scripted for it: decoy events, lists on the wrong stream, unsolicited answers, content-type
// and status tricks, secrets split across flushes, Unicode-hidden instructions.
//
// Usage: node servers/evil-server.mjs --port N --script FILE
//
// FILE (re-read at every request) is a JSON object whose keys name what a request asks:
//   "initialize", "tools/list", "tools/call:<tool name>", "<any method>", "GET", "DELETE",
//   and "*" as the fallback. Each value is an answer:
//   { "status": 200, "headers": {"content-type": "text/event-stream", ...},
//     "chunks": ["text", ...], "delay_ms": 30 }
//   Every chunk is written as it is, `delay_ms` apart (default 20), after replacing `{{id}}` by
//   the JSON id of the request (the first request's of a batch) and `{{session}}` by the session
//   id. Without a script entry: a JSON answer with an empty result.
//
// stdout: exactly one line "READY <port>" once listening.
// stderr: one JSON line per request: {"ev":"req","method","path","headers":{...},"body":"..."
//   (its first 4 KiB),"bytes":N}
//   (header values of `authorization` and `x-agent-token` are replaced by "<present>").
import http from 'node:http';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: { port: { type: 'string' }, script: { type: 'string' } },
  strict: true,
});
if (!opts.port || !opts.script) {
  process.stderr.write('usage: evil-server.mjs --port N --script FILE\n');
  process.exit(2);
}

const SESSION = 'evil-session-1';

function readScript() {
  try {
    return JSON.parse(fs.readFileSync(opts.script, 'utf8'));
  } catch {
    return {};
  }
}

function keysOf(method, body) {
  if (method !== 'POST') return [method];
  let msg = body;
  if (Array.isArray(body)) msg = body[0];
  if (!msg || typeof msg !== 'object') return [];
  const keys = [];
  if (msg.method === 'tools/call' && msg.params && typeof msg.params.name === 'string') {
    keys.push(`tools/call:${msg.params.name}`);
  }
  if (typeof msg.method === 'string') keys.push(msg.method);
  return keys;
}

const server = http.createServer((req, res) => {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(parts).toString('utf8');
    const headers = { ...req.headers };
    for (const h of ['authorization', 'x-agent-token']) {
      if (headers[h] !== undefined) headers[h] = '<present>';
    }
    process.stderr.write(`${JSON.stringify({ ev: 'req', method: req.method, path: req.url, headers, body: raw.slice(0, 4096), bytes: raw.length })}\n`);
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = null; }
    const first = Array.isArray(body) ? body[0] : body;
    const id = first && first.id !== undefined ? JSON.stringify(first.id) : 'null';
    const script = readScript();
    const key = keysOf(req.method, body).find((k) => script[k] !== undefined) ?? '*';
    const answer = script[key];
    if (!answer) {
      if (first && first.id === undefined) {
        res.writeHead(202);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': SESSION });
      res.end(`{"jsonrpc":"2.0","id":${id},"result":{}}`);
      return;
    }
    const fill = (s) => s.replaceAll('{{id}}', id).replaceAll('{{session}}', SESSION);
    res.writeHead(answer.status ?? 200, { 'mcp-session-id': SESSION, ...(answer.headers ?? {}) });
    const chunks = (answer.chunks ?? []).map(fill);
    const delay = answer.delay_ms ?? 20;
    let i = 0;
    const next = () => {
      if (i >= chunks.length) {
        res.end();
        return;
      }
      res.write(chunks[i]);
      i += 1;
      setTimeout(next, delay);
    };
    next();
  });
});
server.keepAliveTimeout = 5000;
server.listen(Number(opts.port), '127.0.0.1', () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
