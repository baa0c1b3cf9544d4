#!/usr/bin/env node
// A malicious (or broken) RFC 8693 token service for the mcp-warden tests: it answers each token
// request with the scenario currently selected from a script (default: sts/attacks.json next to
// this file), usually by forwarding the request to a real token service (`--upstream`) and then
// tampering with its answer — so the token in it is real and would be accepted upstream.
//
// Usage: node sts/evil-sts.mjs --port N [--upstream http://127.0.0.1:4000/token]
//                              [--script sts/attacks.json] [--scenario honest]
//
// A scenario (one object of the script's array):
//   name           unique name (select it with POST /evil/scenario {"name": …})
//   about          what it is (documentation)
//   from_upstream  true: start from the upstream's answer to the same request (default false: {})
//   set            members to set; string values may use the placeholders below
//   remove         member names to remove
//   raw            the exact body (placeholders substituted), instead of JSON built from the above
//   pad_bytes      adds a member "pad" of that many "x" (an oversized answer)
//   mint           a /test/mint spec for the upstream IdP (placeholders filled): its token is
//                  {{minted_token}} — a real, signed token with whatever claims the spec says
//   status         HTTP status (default 200); content_type (default application/json)
//   delay_ms       wait this long before answering (default 0)
// Placeholders: {{subject_token}}, {{actor_token}}, {{scope}}, {{requested_token_type}} (from the
// request), {{subject_token_padded}} ("==" appended), {{subject_token_std_b64}} ("-_" written
// "+/": the same bytes to a lenient base64 decoder) and {{access_token}} (the upstream's answer).
//
// stdout: exactly one line "READY <port>" once listening (port 0 = pick a free one).
// stderr: one JSON line per token request ({"ev":"token-request","scenario",…}): never a token.
// Control: POST /evil/scenario {"name": …} selects a scenario; GET /evil/stats gives
// {"requests": n, "by_scenario": {…}}; GET /healthz -> 200 ok.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    upstream: { type: 'string' },
    script: { type: 'string', default: path.join(here, 'attacks.json') },
    scenario: { type: 'string', default: 'honest' },
  },
  strict: true,
});
if (opts.port === undefined || !/^\d+$/.test(opts.port)) {
  process.stderr.write('usage: evil-sts.mjs --port N [--upstream URL] [--script FILE] [--scenario NAME]\n');
  process.exit(2);
}

const scenarios = new Map();
for (const s of JSON.parse(fs.readFileSync(opts.script, 'utf8'))) {
  if (typeof s.name !== 'string' || scenarios.has(s.name)) {
    process.stderr.write(`bad or duplicate scenario name in ${opts.script}: ${JSON.stringify(s.name)}\n`);
    process.exit(2);
  }
  scenarios.set(s.name, s);
}
if (!scenarios.has(opts.scenario)) {
  process.stderr.write(`no scenario ${opts.scenario} in ${opts.script}\n`);
  process.exit(2);
}
let current = opts.scenario;
const stats = { requests: 0, by_scenario: {} };

const log = (event) => process.stderr.write(JSON.stringify({ t: new Date().toISOString(), ...event }) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const readBody = (req) => new Promise((resolve, reject) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => resolve(Buffer.concat(chunks)));
  req.on('error', reject);
});

/** The same token request, sent to the real token service; its JSON answer or {}. */
async function upstreamAnswer(req, body) {
  if (!opts.upstream) return { status: 502, json: { error: 'no --upstream' } };
  const headers = { 'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded' };
  if (req.headers.authorization) headers.authorization = req.headers.authorization;
  const r = await fetch(opts.upstream, { method: 'POST', headers, body });
  const text = await r.text();
  try {
    return { status: r.status, json: JSON.parse(text) };
  } catch {
    return { status: r.status, json: {} };
  }
}

/** A token minted by the upstream IdP's test endpoint (`--test-mode`). */
async function mint(spec) {
  const r = await fetch(new URL('/test/mint', opts.upstream), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec),
  });
  const v = await r.json();
  return typeof v.token === 'string' ? v.token : '';
}

function fill(text, vars) {
  return text.replace(/\{\{(\w+)\}\}/g, (_, k) => vars[k] ?? '');
}

function fillDeep(v, vars) {
  if (typeof v === 'string') return fill(v, vars);
  if (Array.isArray(v)) return v.map((x) => fillDeep(x, vars));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fillDeep(x, vars)]));
  return v;
}

async function tokenRequest(req, res) {
  const body = await readBody(req);
  const form = new URLSearchParams(body.toString('utf8'));
  const s = scenarios.get(current);
  stats.requests += 1;
  stats.by_scenario[s.name] = (stats.by_scenario[s.name] ?? 0) + 1;
  log({
    ev: 'token-request', scenario: s.name, grant_type: form.get('grant_type'), audience: form.get('audience'),
    scope: form.get('scope'), requested_token_type: form.get('requested_token_type'),
    has_subject: form.has('subject_token'), has_actor: form.has('actor_token'),
  });
  const subject = form.get('subject_token') ?? '';
  const vars = {
    subject_token: subject,
    subject_token_padded: `${subject}==`,
    subject_token_std_b64: subject.replaceAll('-', '+').replaceAll('_', '/'),
    actor_token: form.get('actor_token') ?? '',
    scope: form.get('scope') ?? '',
    requested_token_type: form.get('requested_token_type') ?? '',
  };
  let answer = {};
  let status = s.status ?? 200;
  if (s.from_upstream) {
    const up = await upstreamAnswer(req, body);
    answer = up.json;
    if (s.status === undefined) status = up.status;
  }
  vars.access_token = typeof answer.access_token === 'string' ? answer.access_token : '';
  if (s.mint) vars.minted_token = await mint(fillDeep(s.mint, vars));
  for (const k of s.remove ?? []) delete answer[k];
  Object.assign(answer, fillDeep(s.set ?? {}, vars));
  if (s.pad_bytes) answer.pad = 'x'.repeat(s.pad_bytes);
  const text = s.raw !== undefined ? fill(s.raw, vars) : JSON.stringify(answer);
  if (s.delay_ms) await sleep(s.delay_ms);
  res.writeHead(status, { 'content-type': s.content_type ?? 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://x');
    if (req.method === 'GET' && url.pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok');
    }
    if (req.method === 'GET' && url.pathname === '/evil/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ ...stats, scenario: current }));
    }
    if (req.method === 'POST' && url.pathname === '/evil/scenario') {
      const { name } = JSON.parse((await readBody(req)).toString('utf8'));
      if (!scenarios.has(name)) {
        res.writeHead(404, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: `no scenario ${name}` }));
      }
      current = name;
      log({ ev: 'scenario', scenario: name });
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ scenario: name }));
    }
    if (req.method === 'POST') return await tokenRequest(req, res);
    res.writeHead(404);
    res.end();
  } catch (e) {
    log({ ev: 'error', error: String(e) });
    if (!res.headersSent) res.writeHead(500);
    res.end();
  }
});
server.listen(Number(opts.port), opts.host, () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
