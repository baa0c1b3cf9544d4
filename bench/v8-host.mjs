// A diagnostic, not a benchmark row: a minimal proxy-wasm host (ABI 0.2.1) in node that drives
// wasm filters through one request of a `make bench` run, so their own code can be timed and
// profiled in V8 (TurboFan only, as Envoy runs it) without Envoy, its host calls and the
// noise of a shared machine (±1 µs here against ±15 µs per Envoy window).
//
//   node --no-liftoff bench/v8-host.mjs 'target/wasm32-wasip1/release/mcp_warden.wasm' \
//     'target/bench/floor-target/wasm32-wasip1/release/bench_floor_filter.wasm|read+time+prop+remove1+set2'
//
// Each argument is `module.wasm` or `module.wasm|plugin configuration` (default: the plugin
// configuration of the run's `MODE` row). The modules run in turn, ROUNDS rounds of RUNS
// requests, and the median µs per request is printed with the host calls of one request.
// Environment: BENCH_DIR (default target/bench/last), MODE (default warden_policy),
// BODY (request body file, default the run's body-small.json), LIST_PATH (answer with the
// upstream's canned answer for that path, e.g. /mcp/list), RUNS, ROUNDS.
// Host calls the filter makes that are not modelled here return an error status (counted).
import { readFileSync } from 'node:fs';

const dir = process.env.BENCH_DIR || 'target/bench/last';
const mode = process.env.MODE || 'warden_policy';
const runs = Number(process.env.RUNS) || 20000;
const rounds = Number(process.env.ROUNDS) || 10;
const enc = new TextEncoder();

function find(o, pick) {
  if (!o || typeof o !== 'object') return undefined;
  const hit = pick(o);
  if (hit !== undefined) return hit;
  for (const v of Object.values(o)) {
    const r = find(v, pick);
    if (r !== undefined) return r;
  }
  return undefined;
}

const modeConfig = find(JSON.parse(readFileSync(`${dir}/${mode}/envoy.json`)),
  (o) => (o.vm_config ? o.configuration.value : undefined));
const token = readFileSync(`${dir}/token.jwt`, 'utf8').trim();
const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
const body = readFileSync(process.env.BODY || `${dir}/body-small.json`);
const answer = process.env.LIST_PATH
  ? enc.encode(find(JSON.parse(readFileSync(`${dir}/upstream/envoy.json`)),
    (o) => (o.direct_response && o.match && o.match.path === process.env.LIST_PATH
      ? o.direct_response.body.inline_string : undefined)))
  : enc.encode('{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}');

const requestHeaders = [[':authority', '127.0.0.1:10000'], [':path', '/mcp'], [':method', 'POST'],
  [':scheme', 'http'], ['content-length', String(body.length)], ['content-type', 'application/json'],
  ['accept', 'application/json, text/event-stream'], ['mcp-protocol-version', '2025-06-18'],
  ['authorization', `Bearer ${token}`], ['x-forwarded-proto', 'http'],
  // jwt_authn's forward_payload_header: the token's payload segment is already base64url JSON.
  ['x-warden-user-payload', token.split('.')[1]],
  ['x-request-id', '6f1f2b8e-0c1d-4a8e-9f55-3a9d1c0b7e21']];
const responseHeaders = [[':status', '200'], ['content-type', 'application/json'],
  ['content-length', String(answer.length)], ['server', 'envoy']];

// proxy-wasm's header map serialisation: count, (key length, value length)*, (key\0 value\0)*.
function serializePairs(headers) {
  const kv = headers.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
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
const requestPairs = serializePairs(requestHeaders);
const responsePairs = serializePairs(responseHeaders);

// jwt_authn's payload in dynamic metadata, as Envoy serialises it: strings raw, numbers f64 LE.
function property(path) {
  const [a, , filter, key, claim] = path.split('\0');
  if (a !== 'metadata' || filter !== 'envoy.filters.http.jwt_authn' || key !== 'user') return null;
  const v = claims[claim];
  if (v === undefined) return null;
  if (typeof v !== 'number') return enc.encode(String(v));
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v, true);
  return b;
}

function load(wasmPath, pluginConfig) {
  let x;
  let calls = {};
  const count = (name) => { calls[name] = (calls[name] || 0) + 1; };
  const view = () => new DataView(x.memory.buffer);
  const give = (bytes, ptrPtr, sizePtr) => {
    const p = x.proxy_on_memory_allocate(bytes.length);
    new Uint8Array(x.memory.buffer).set(bytes, p);
    view().setUint32(ptrPtr, p, true);
    view().setUint32(sizePtr, bytes.length, true);
    return 0;
  };
  const text = (p, n) => Buffer.from(x.memory.buffer, p, n).toString();
  const OK = 0; const NOT_FOUND = 1; const UNIMPLEMENTED = 12;
  const env = new Proxy({
    proxy_log: () => { count('log'); return OK; },
    proxy_get_log_level: (p) => { view().setUint32(p, 3, true); return OK; }, // warn, as the bench
    proxy_set_tick_period_milliseconds: () => OK,
    proxy_get_current_time_nanoseconds: (p) => {
      count('time');
      view().setBigUint64(p, BigInt(Date.now()) * 1000000n, true);
      return OK;
    },
    proxy_get_header_map_pairs: (t, pp, sp) => { count('get headers'); return give(t === 0 ? requestPairs : responsePairs, pp, sp); },
    proxy_get_header_map_value: () => { count('get header'); return NOT_FOUND; },
    proxy_remove_header_map_value: () => { count('remove header'); return OK; },
    proxy_replace_header_map_value: () => { count('set header'); return OK; },
    proxy_add_header_map_value: () => { count('add header'); return OK; },
    proxy_set_header_map_pairs: () => { count('set headers'); return OK; },
    proxy_get_property: (p, n, pp, sp) => {
      count('property');
      const v = property(text(p, n));
      return v ? give(v, pp, sp) : NOT_FOUND;
    },
    proxy_get_buffer_bytes: (t, start, max, pp, sp) => {
      count(`get buffer ${t}`);
      const b = t === 7 ? enc.encode(pluginConfig) : t === 0 ? body : t === 1 ? answer : new Uint8Array(0);
      return give(b.subarray(start, start + (max >>> 0)), pp, sp);
    },
    proxy_set_buffer_bytes: () => { count('set buffer'); return OK; },
    proxy_get_shared_data: () => { count('shared data'); return NOT_FOUND; },
    proxy_set_effective_context: () => OK,
    proxy_continue_stream: () => { count('continue'); return OK; },
    proxy_send_local_response: () => { count('local reply'); return OK; },
  }, { get: (t, k) => t[k] || (() => { count(`unmodelled ${String(k)}`); return UNIMPLEMENTED; }) });
  const wasi = {
    random_get: (p, n) => { new Uint8Array(x.memory.buffer).set(crypto.getRandomValues(new Uint8Array(n)), p); return 0; },
    environ_sizes_get: (a, b) => { view().setUint32(a, 0, true); view().setUint32(b, 0, true); return 0; },
    environ_get: () => 0,
    clock_time_get: (id, precision, p) => { view().setBigUint64(p, process.hrtime.bigint(), true); return 0; },
    fd_write: () => 0,
    proc_exit: () => 0,
  };
  x = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmPath)),
    { env, wasi_snapshot_preview1: wasi }).exports;
  x._initialize();
  x.proxy_on_context_create(1, 0);
  x.proxy_on_vm_start(1, 0);
  if (!x.proxy_on_configure(1, enc.encode(pluginConfig).length)) {
    throw new Error(`${wasmPath}: the plugin refused its configuration`);
  }
  let id = 1;
  // One request as Envoy drives it: headers (pause), the whole body, the answer, the end.
  const request = () => {
    id += 1;
    x.proxy_on_context_create(id, 1);
    const onHeaders = x.proxy_on_request_headers(id, requestHeaders.length, 0);
    const onBody = x.proxy_on_request_body(id, body.length, 1);
    x.proxy_on_response_headers(id, responseHeaders.length, 0);
    x.proxy_on_response_body(id, answer.length, 1);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
    return [onHeaders, onBody];
  };
  return { request, calls: () => calls, reset: () => { calls = {}; } };
}

const specs = process.argv.slice(2);
if (specs.length === 0) {
  console.error('usage: node --no-liftoff bench/v8-host.mjs module.wasm[|plugin configuration] ...');
  process.exit(2);
}
const hosts = specs.map((spec) => {
  const [path, config] = spec.split('|');
  const host = load(path, config || modeConfig);
  host.request();
  host.reset();
  const [onHeaders, onBody] = host.request();
  console.log(`${spec}: actions headers=${onHeaders} body=${onBody} (0 continue, 1 pause); `
    + `host calls per request ${JSON.stringify(host.calls())}`);
  return host;
});
const times = specs.map(() => []);
for (let r = 0; r < rounds; r += 1) {
  for (let k = 0; k < hosts.length; k += 1) {
    const i = r % 2 ? hosts.length - 1 - k : k;
    const start = process.hrtime.bigint();
    for (let n = 0; n < runs; n += 1) hosts[i].request();
    times[i].push(Number(process.hrtime.bigint() - start) / runs / 1000);
  }
}
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
specs.forEach((spec, i) => console.log(`${median(times[i]).toFixed(2)} µs/request  ${spec}  `
  + `(rounds: ${times[i].map((v) => v.toFixed(1)).join(' ')})`));
