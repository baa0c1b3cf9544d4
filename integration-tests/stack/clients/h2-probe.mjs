// An HTTP/2 (h2c, prior knowledge) client for what curl and the SDKs do not send: request
// trailers. Prints one JSON line: the server's SETTINGS and the answer.
//
//   node clients/h2-probe.mjs --port 10000 [--path /mcp] [--body '{...}']
//        [--header 'name: value']... [--trailer 'name: value']...
//
// With --trailer the body ends with a trailers frame carrying those fields.
import http2 from 'node:http2';

const args = process.argv.slice(2);
const opt = { port: 0, path: '/mcp', body: null, headers: [], trailers: [] };
for (let i = 0; i < args.length; i += 2) {
  const [k, v] = [args[i], args[i + 1]];
  if (k === '--port') opt.port = Number(v);
  else if (k === '--path') opt.path = v;
  else if (k === '--body') opt.body = v;
  else if (k === '--header') opt.headers.push(v);
  else if (k === '--trailer') opt.trailers.push(v);
  else { console.error(`unknown argument ${k}`); process.exit(2); }
}
const fields = (list) => Object.fromEntries(list.map((h) => {
  const at = h.indexOf(':', 1);
  return [h.slice(0, at).trim().toLowerCase(), h.slice(at + 1).trim()];
}));

const session = http2.connect(`http://127.0.0.1:${opt.port}`);
const out = { settings: null, status: null, headers: null, body: '', error: null };
const done = () => { session.close(); console.log(JSON.stringify(out)); };
session.on('error', (e) => { out.error = String(e); done(); });
session.on('remoteSettings', (s) => { out.settings = s; });
const timer = setTimeout(() => { out.error = 'timeout'; done(); process.exit(0); }, 10000);

const hasBody = opt.body !== null;
const req = session.request(
  { ':method': hasBody ? 'POST' : 'GET', ':path': opt.path, ...fields(opt.headers) },
  { endStream: !hasBody, waitForTrailers: opt.trailers.length > 0 },
);
req.on('wantTrailers', () => req.sendTrailers(fields(opt.trailers)));
req.on('response', (h) => { out.status = h[':status']; out.headers = h; });
req.setEncoding('utf8');
req.on('data', (d) => { out.body += d; });
req.on('end', () => { clearTimeout(timer); done(); });
req.on('error', (e) => { clearTimeout(timer); out.error = String(e); done(); });
if (hasBody) req.end(opt.body);
