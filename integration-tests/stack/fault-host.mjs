// Host-call fault injection for the built filter: a proxy-wasm host (ABI 0.2.1) in node that
// drives mcp_warden.wasm through a few requests the way Envoy does, first without faults (the
// reference), then once for every host call the filter made and every failing status: that one
// call returns the status instead of Ok, everything else behaves.
//
//   node integration-tests/stack/fault-host.mjs target/wasm32-wasip1/release/mcp_warden.wasm
//
// What must hold under any single fault (the filter fails closed and never traps):
//   - no trap (a wasm panic aborts the VM: every later request of that Envoy worker would fail);
//   - each request ends as in the reference, or refused: a local reply >= 400, or its request
//     or response stream closed, or never resumed (Envoy's timeout answers it). A request that
//     reaches the upstream carries exactly the reference's headers and body (spoofed identity
//     headers removed, the exchanged token, the routing headers); a response that reaches the
//     client has exactly the reference's headers and body (filtered list, redacted text, sealed
//     session id).
// Exempt: faults in host calls the SDK's dispatcher makes itself before handing the callout
// answer to the filter (`proxy_set_effective_context`, which Envoy cannot refuse for a live
// callout), and statuses other than BadArgument and InternalFailure for `proxy_http_call` (made
// through the SDK, which panics on others; Envoy returns only these two).
//
// stdout: one JSON summary; exit 0 when everything held, 1 with the violations, 2 usage.
import { readFileSync } from 'node:fs';

const wasmPath = process.argv[2];
if (!wasmPath) {
  process.stderr.write('usage: node fault-host.mjs path/to/mcp_warden.wasm\n');
  process.exit(2);
}
const enc = new TextEncoder();
const dec = new TextDecoder();
const NOW = 1_800_000_000; // seconds; tokens below expire an hour later

const pluginConfig = JSON.stringify({
  identity: {
    protected_resource: { resource: 'https://gw.test/mcp', authorization_servers: ['https://idp.test'] },
    user: { issuers: ['https://idp.test'], required_scopes: ['mcp:tools'] },
  },
  policy: {
    servers: [{
      name: 'corp',
      path: '/mcp',
      tools: [
        { name: 'echo', status: 'approved', approved_for: ['*'] },
        { name: 'admin', status: 'approved', approved_for: ['it'] },
        { name: 'pinned', status: 'approved', approved_for: ['*'], hash: `sha256:${'0'.repeat(64)}` },
      ],
    }],
    rules: [
      { id: 'discovery', effect: 'allow', methods: ['initialize', 'tools/list', 'notifications/*'] },
      { id: 'tools', effect: 'allow', tools: ['*'] },
    ],
  },
  token_exchange: {
    cluster: 'sts',
    authority: 'sts.test',
    path: '/token',
    timeout_ms: 2000,
    client_auth: { method: 'client_secret_basic', client_id: 'warden', client_secret: 'secret' },
    servers: { corp: { audience: 'https://corp.test/mcp', scopes: ['mcp:tools'], lifetime_seconds: 60 } },
  },
  routing: { session_keys: [{ id: 'k1', secret: Buffer.alloc(32, 7).toString('base64') }] },
  response_filters: { redact: [{ id: 'key', pattern: 'sk-[a-z0-9]{8,}' }] },
});

const claims = {
  iss: 'https://idp.test', sub: 'alice', aud: 'https://gw.test/mcp', exp: NOW + 3600, iat: NOW - 10,
  scope: 'mcp:tools', groups: ['staff'],
};

// Envoy's property encoding of a claim: string raw, number f64 LE, list as pairs.
function pairs(items) {
  const kv = items.map(([k, v]) => [typeof k === 'string' ? enc.encode(k) : k, typeof v === 'string' ? enc.encode(v) : v]);
  let n = 4 + kv.length * 8;
  for (const [k, v] of kv) n += k.length + v.length + 2;
  const out = new Uint8Array(n);
  const d = new DataView(out.buffer);
  d.setUint32(0, kv.length, true);
  let o = 4;
  for (const [k, v] of kv) { d.setUint32(o, k.length, true); d.setUint32(o + 4, v.length, true); o += 8; }
  for (const [k, v] of kv) { out.set(k, o); o += k.length + 1; out.set(v, o); o += v.length + 1; }
  return out;
}
function encodeClaim(v) {
  if (typeof v === 'number') { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, true); return b; }
  if (Array.isArray(v)) return pairs(v.map((x) => [String(x), '']));
  return enc.encode(String(v));
}
function readPairs(bytes) {
  const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = d.getUint32(0, true);
  let o = 4 + n * 8;
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const kl = d.getUint32(4 + i * 8, true); const vl = d.getUint32(8 + i * 8, true);
    const k = dec.decode(bytes.subarray(o, o + kl)); o += kl + 1;
    const v = dec.decode(bytes.subarray(o, o + vl)); o += vl + 1;
    out.push([k, v]);
  }
  return out;
}

const TOOLS = JSON.stringify({ jsonrpc: '2.0', id: 2, result: { tools: [
  { name: 'echo', description: 'Echo', inputSchema: { type: 'object' } },
  { name: 'admin', description: 'Admin', inputSchema: { type: 'object' } },
  { name: 'pinned', description: 'changed since approval', inputSchema: { type: 'object' } },
] } });
const baseHeaders = (body, extra = []) => [[':authority', 'gw.test'], [':path', '/mcp'], [':method', 'POST'],
  [':scheme', 'https'], ['content-type', 'application/json'], ['accept', 'application/json, text/event-stream'],
  ['content-length', String(body.length)], ['authorization', 'Bearer user-token'],
  // jwt_authn's forward_payload_header: the verified payload, base64url JSON.
  ['x-warden-user-payload', Buffer.from(JSON.stringify(claims)).toString('base64url')], ...extra];

// The requests, in order, on one VM (caches carry over as in Envoy).
const scenarios = [
  {
    name: 'initialize (session sealed)',
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'c', version: '1' } } }),
    headers: (b) => baseHeaders(b, [['x-mcp-user', 'mallory']]),
    response: { headers: [[':status', '200'], ['content-type', 'application/json'], ['mcp-session-id', 'real-session-1']],
      chunks: [JSON.stringify({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-06-18', capabilities: {}, serverInfo: { name: 's', version: '1' } } })] },
  },
  {
    name: 'tools/list (filtered)',
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    headers: (b) => baseHeaders(b),
    response: { headers: [[':status', '200'], ['content-type', 'application/json']], chunks: [TOOLS.slice(0, 40), TOOLS.slice(40)] },
  },
  {
    name: 'tools/call (cached token, redacted SSE answer)',
    body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } }),
    headers: (b) => baseHeaders(b, [['x-mcp-agent', 'forged'], ['x-mcp-upstream-host', '10.0.0.1:1']]),
    response: { headers: [[':status', '200'], ['content-type', 'text/event-stream']],
      chunks: ['event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1,"message":"sk-abcdefgh99"}}\n\nevent: mess',
        'age\ndata: {"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"key sk-abcdefgh12"}]}}\n\n'] },
  },
];

// The token service's answer (the first request exchanges; later ones use the worker's cache).
const STS_BODY = JSON.stringify({ access_token: 'exchanged-token', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 60 });
const OK = 0; const NOT_FOUND = 1;

/** One VM with an optional fault: `fault` = {call, index, status} (index counts that call). */
function runAll(module, fault) {
  let x;
  const calls = [];
  const counts = {};
  let exempt = false; // inside the SDK dispatcher's own prologue of a callout answer
  const view = () => new DataView(x.memory.buffer);
  const bytes = (p, n) => new Uint8Array(x.memory.buffer, p, n).slice();
  const text = (p, n) => dec.decode(bytes(p, n));
  const give = (data, pp, sp) => {
    const p = x.proxy_on_memory_allocate(data.length);
    new Uint8Array(x.memory.buffer).set(data, p);
    view().setUint32(pp, p, true);
    view().setUint32(sp, data.length, true);
    return OK;
  };
  // A host call: recorded, then failed if it is the chosen one.
  const hc = (name, f) => (...args) => {
    counts[name] = (counts[name] || 0) + 1;
    const index = counts[name] - 1;
    calls.push(exempt && name === 'proxy_set_effective_context' ? `${name} (sdk)` : name);
    if (fault && !(exempt && name === 'proxy_set_effective_context') && fault.call === name && fault.index === index) {
      return fault.status;
    }
    return f(...args);
  };
  let req; // the request in flight
  const maps = () => ({ 0: req.reqHeaders, 2: req.respHeaders, 6: req.stsHeaders });
  const env = {
    proxy_log: hc('proxy_log', (level, p, n) => { req?.log.push(text(p, n)); return OK; }),
    proxy_get_log_level: hc('proxy_get_log_level', (p) => { view().setUint32(p, 2, true); return OK; }),
    proxy_set_tick_period_milliseconds: hc('proxy_set_tick_period_milliseconds', () => OK),
    proxy_get_current_time_nanoseconds: hc('proxy_get_current_time_nanoseconds', (p) => {
      view().setBigUint64(p, BigInt(NOW) * 1000000000n, true); return OK;
    }),
    proxy_set_effective_context: hc('proxy_set_effective_context', () => OK),
    proxy_continue_stream: hc('proxy_continue_stream', (t) => { if (t === 0) req.resumed = true; return OK; }),
    proxy_close_stream: hc('proxy_close_stream', (t) => { req.closed.push(t === 0 ? 'request' : 'response'); return OK; }),
    proxy_get_buffer_bytes: hc('proxy_get_buffer_bytes', (t, start, max, pp, sp) => {
      const b = t === 7 ? enc.encode(pluginConfig) : t === 0 ? req.reqBody : t === 1 ? req.respChunk : t === 4 ? req.stsBody : null;
      if (!b) return NOT_FOUND;
      return give(b.subarray(start, start + (max >>> 0)), pp, sp);
    }),
    proxy_set_buffer_bytes: hc('proxy_set_buffer_bytes', (t, start, size, p, n) => {
      const data = bytes(p, n);
      const cur = t === 0 ? req.reqBody : req.respChunk;
      const next = new Uint8Array(cur.length - Math.min(size, cur.length - start) + data.length);
      next.set(cur.subarray(0, start), 0);
      next.set(data, start);
      next.set(cur.subarray(start + size), start + data.length);
      if (t === 0) req.reqBody = next; else req.respChunk = next;
      return OK;
    }),
    proxy_get_header_map_pairs: hc('proxy_get_header_map_pairs', (t, pp, sp) => give(pairs(maps()[t] || []), pp, sp)),
    proxy_get_header_map_value: hc('proxy_get_header_map_value', (t, kp, kn, pp, sp) => {
      const key = text(kp, kn).toLowerCase();
      const hit = (maps()[t] || []).find(([k]) => k === key);
      return hit ? give(enc.encode(hit[1]), pp, sp) : NOT_FOUND;
    }),
    proxy_replace_header_map_value: hc('proxy_replace_header_map_value', (t, kp, kn, vp, vn) => {
      const key = text(kp, kn).toLowerCase(); const m = maps()[t];
      const rest = m.filter(([k]) => k !== key);
      m.length = 0; m.push(...rest, [key, text(vp, vn)]);
      return OK;
    }),
    proxy_remove_header_map_value: hc('proxy_remove_header_map_value', (t, kp, kn) => {
      const key = text(kp, kn).toLowerCase(); const m = maps()[t];
      const rest = m.filter(([k]) => k !== key);
      m.length = 0; m.push(...rest);
      return OK;
    }),
    proxy_get_property: hc('proxy_get_property', (p, n, pp, sp) => {
      const path = text(p, n).split('\0');
      if (path.join('.') === 'upstream.address') return give(enc.encode('10.1.2.3:8080'), pp, sp);
      if (path.join('.') === 'response.code_details') return give(enc.encode('via_upstream'), pp, sp);
      if (path[0] === 'metadata' && path[2] === 'envoy.filters.http.jwt_authn' && path[3] === 'user' && path.length === 5) {
        const v = claims[path[4]];
        return v === undefined ? NOT_FOUND : give(encodeClaim(v), pp, sp);
      }
      return NOT_FOUND;
    }),
    proxy_get_shared_data: hc('proxy_get_shared_data', (kp, kn, pp, sp, casp) => {
      const v = shared.get(text(kp, kn));
      if (v === undefined) return NOT_FOUND;
      view().setUint32(casp, 1, true);
      return give(v, pp, sp);
    }),
    proxy_set_shared_data: hc('proxy_set_shared_data', (kp, kn, vp, vn) => { shared.set(text(kp, kn), bytes(vp, vn)); return OK; }),
    proxy_send_local_response: hc('proxy_send_local_response', (status, dp, dn, bp, bn) => {
      req.localReply = { status, body: text(bp, bn) };
      return OK;
    }),
    proxy_http_call: hc('proxy_http_call', (up, un, hp, hn, bp, bn, tp, tn, timeout, tokenp) => {
      req.callout = { cluster: text(up, un), headers: readPairs(bytes(hp, hn)), body: text(bp, bn) };
      view().setUint32(tokenp, 77, true);
      return OK;
    }),
  };
  const shared = new Map();
  const wasi = {
    random_get: (p, n) => { new Uint8Array(x.memory.buffer).set(new Uint8Array(n).fill(9), p); return 0; },
    environ_sizes_get: (a, b) => { view().setUint32(a, 0, true); view().setUint32(b, 0, true); return 0; },
    environ_get: () => 0,
    clock_time_get: (id, precision, p) => { view().setBigUint64(p, BigInt(NOW) * 1000000000n, true); return 0; },
    fd_write: () => 0,
    proc_exit: () => 0,
  };
  const envProxy = new Proxy(env, { get: (t, k) => t[k] || (() => { calls.push(`unmodelled ${String(k)}`); return 12; }) });
  x = new WebAssembly.Instance(module, { env: envProxy, wasi_snapshot_preview1: wasi }).exports;

  const outcomes = [];
  let trapped = null;
  const guard = (f) => { try { return f(); } catch (e) { trapped = trapped || String(e); throw e; } };
  try {
    req = { log: [], closed: [] };
    guard(() => { x._initialize(); x.proxy_on_context_create(1, 0); x.proxy_on_vm_start(1, 0); });
    const configured = guard(() => x.proxy_on_configure(1, enc.encode(pluginConfig).length));
    if (!configured) return { calls, trapped, configured: false, outcomes };
    let id = 1;
    for (const sc of scenarios) {
      id += 1;
      const body = enc.encode(sc.body);
      req = { log: [], closed: [], reqHeaders: sc.headers(body).map(([k, v]) => [k, v]), reqBody: body,
        respHeaders: sc.response.headers.map(([k, v]) => [k, v]), stsHeaders: [[':status', '200']],
        stsBody: enc.encode(STS_BODY), respChunk: new Uint8Array(0), resumed: false };
      const out = { name: sc.name };
      guard(() => x.proxy_on_context_create(id, 1));
      const h = guard(() => x.proxy_on_request_headers(id, req.reqHeaders.length, 0));
      let forwarded = false;
      if (!req.localReply && !req.closed.length) {
        const b = h === 0 && !req.reqBody.length ? 0 : guard(() => x.proxy_on_request_body(id, req.reqBody.length, 1));
        if (req.callout && !req.localReply) {
          out.callout = { cluster: req.callout.cluster, body: req.callout.body };
          exempt = true;
          guard(() => x.proxy_on_http_call_response(1, 77, 1, req.stsBody.length, 0));
          exempt = false;
        }
        forwarded = !req.localReply && !req.closed.length && (b === 0 || req.resumed);
      }
      if (req.localReply) out.localReply = req.localReply;
      if (forwarded) {
        out.upstream = { headers: [...req.reqHeaders].sort(), body: dec.decode(req.reqBody) };
        const rh = guard(() => x.proxy_on_response_headers(id, req.respHeaders.length, 0));
        if (!req.closed.includes('response')) {
          out.downstreamHeaders = rh === 0 ? [...req.respHeaders].sort() : 'held';
          let sent = '';
          const chunks = [...sc.response.chunks];
          for (let i = 0; i < chunks.length && !req.closed.includes('response'); i += 1) {
            req.respChunk = enc.encode(chunks[i]);
            const a = guard(() => x.proxy_on_response_body(id, req.respChunk.length, i + 1 === chunks.length ? 1 : 0));
            // Paused data stays buffered and is handed over again with the next chunk.
            if (a === 0) sent += dec.decode(req.respChunk);
            else if (i + 1 < chunks.length) chunks[i + 1] = dec.decode(req.respChunk) + chunks[i + 1];
            else sent += '<held>';
          }
          out.downstreamBody = req.closed.includes('response') ? 'closed' : sent;
        } else {
          out.downstreamHeaders = 'closed';
        }
      }
      out.closed = req.closed;
      guard(() => { x.proxy_on_log(id); x.proxy_on_done(id); x.proxy_on_delete(id); });
      out.log = req.log;
      outcomes.push(out);
    }
  } catch (e) {
    trapped = trapped || String(e);
  }
  return { calls, trapped, configured: true, outcomes };
}

const module = new WebAssembly.Module(readFileSync(wasmPath));
const reference = runAll(module, null);
const problems = [];
// The reference itself must show every behaviour the faults are checked against.
const [init, list, call] = reference.outcomes;
const header = (o, k) => (o?.upstream?.headers ?? []).find(([n]) => n === k)?.[1];
const need = (ok, what) => { if (!ok) problems.push(`reference: ${what}`); };
need(!reference.trapped, `trapped: ${reference.trapped}`);
need(reference.outcomes.length === 3, `only ${reference.outcomes.length} requests ran`);
need(init?.upstream && header(init, 'x-mcp-user') === 'alice', `initialize not forwarded as alice: ${JSON.stringify(init)}`);
need(/mw1\.k1\./.test(JSON.stringify(init?.downstreamHeaders ?? '')), `session id not sealed: ${JSON.stringify(init?.downstreamHeaders)}`);
need(list?.downstreamBody?.includes('"echo"') && !list.downstreamBody.includes('"admin"') && !list.downstreamBody.includes('"pinned"'),
  `tools/list not filtered: ${list?.downstreamBody}`);
need(header(call, 'authorization') === 'Bearer exchanged-token' && header(call, 'x-mcp-agent') === undefined,
  `tools/call upstream headers: ${JSON.stringify(call?.upstream)}`);
need(init?.callout?.cluster === 'sts', `no token exchange: ${JSON.stringify(init)}`);
need(header(init, 'authorization') === 'Bearer exchanged-token', `initialize upstream headers: ${JSON.stringify(init?.upstream)}`);
need(call?.downstreamBody?.includes('[redacted:key]') && !call.downstreamBody.includes('sk-abcdefgh'),
  `answer not redacted: ${call?.downstreamBody}`);
const unmodelled = reference.calls.filter((c) => c.startsWith('unmodelled'));
need(unmodelled.length === 0, `host calls this host does not model: ${unmodelled}`);

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
let runs = 0;
if (problems.length === 0) {
  const seen = {};
  const plan = [];
  for (const c of reference.calls) {
    if (c.endsWith('(sdk)')) continue;
    seen[c] = (seen[c] ?? -1) + 1;
    // proxy_http_call goes through the SDK, whose wrapper panics on statuses other than the
    // two Envoy returns for it (BadArgument, InternalFailure).
    const statuses = c === 'proxy_http_call' ? [2, 10] : [NOT_FOUND, 2, 10];
    for (const status of statuses) plan.push({ call: c, index: seen[c], status });
  }
  for (const fault of plan) {
    runs += 1;
    const r = runAll(module, fault);
    const what = `${fault.call} #${fault.index} -> status ${fault.status}`;
    if (r.trapped) { problems.push(`${what}: trapped: ${r.trapped}`); continue; }
    if (!r.configured) continue; // Envoy refuses the plugin: nothing runs with it
    reference.outcomes.forEach((ref, i) => {
      const o = r.outcomes[i];
      if (!o) { problems.push(`${what}: request ${i} did not run`); return; }
      if (o.localReply && o.localReply.status < 400) problems.push(`${what}: ${ref.name}: local reply ${o.localReply.status}`);
      if (o.upstream && !same(o.upstream, ref.upstream)) {
        problems.push(`${what}: ${ref.name}: forwarded ${JSON.stringify(o.upstream)} instead of ${JSON.stringify(ref.upstream)}`);
      }
      if (o.upstream && o.downstreamHeaders !== 'closed' && o.downstreamHeaders !== 'held' && !same(o.downstreamHeaders, ref.downstreamHeaders)) {
        problems.push(`${what}: ${ref.name}: client got headers ${JSON.stringify(o.downstreamHeaders)}`);
      }
      if (o.upstream && typeof o.downstreamBody === 'string' && o.downstreamBody !== 'closed' && o.downstreamBody !== ref.downstreamBody) {
        problems.push(`${what}: ${ref.name}: client got ${JSON.stringify(o.downstreamBody)} instead of ${JSON.stringify(ref.downstreamBody)}`);
      }
    });
  }
}
const summary = { wasm: wasmPath, reference_host_calls: reference.calls.length, fault_runs: runs, problems: problems.slice(0, 40), problem_count: problems.length };
process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
process.exit(problems.length ? 1 : 0);
