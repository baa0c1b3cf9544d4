#!/usr/bin/env node
// Stateful MCP demo server for the mcp-warden end-to-end tests.
//
// Built only with the official TypeScript SDK (@modelcontextprotocol/sdk):
// McpServer + StreamableHTTPServerTransport, one transport (and one McpServer)
// per session, mounted on the SDK's createMcpExpressApp() helper.
//
// Usage: node servers/demo-server.mjs --port N [--host 127.0.0.1] [--name demo-a]
//                                      [--allowed-hosts h1,h2]
//
// stdout: exactly one line "READY <port>" once listening (port 0 = pick a free one).
// stderr: one JSON line per HTTP request / response / notable event.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import * as z from 'zod/v4';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { CreateMessageResultSchema, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    name: { type: 'string', default: 'demo-a' },
    'allowed-hosts': { type: 'string' },
  },
  strict: true,
});
if (opts.port === undefined || !/^\d+$/.test(opts.port)) {
  process.stderr.write('usage: demo-server.mjs --port N [--host 127.0.0.1] [--name demo-a] [--allowed-hosts h1,h2]\n');
  process.exit(2);
}
const PORT = Number(opts.port);
const HOST = opts.host;
const NAME = opts.name;
const VERSION = '1.0.0';

function log(event) {
  process.stderr.write(JSON.stringify({ t: new Date().toISOString(), server: NAME, ...event }) + '\n');
}

function rpcMethods(body) {
  const msgs = Array.isArray(body) ? body : body && typeof body === 'object' ? [body] : [];
  return msgs.map((m) => m?.method ?? (m && 'id' in m ? `response#${m.id}` : '?'));
}

/**
 * What a gateway in front of this server told it about the caller: the identity headers
 * mcp-warden sets (null when absent) and whether the caller's own credentials arrived (they
 * must not: the gateway strips `authorization` and `x-agent-token`). `headers` is a plain
 * object with lower-case names (Node's IncomingHttpHeaders or the SDK's requestInfo.headers).
 */
function identityHeaders(headers) {
  const one = (name) => {
    const v = headers[name];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(', ') : String(v);
  };
  return {
    'x-mcp-user': one('x-mcp-user'),
    'x-mcp-agent': one('x-mcp-agent'),
    'x-mcp-delegation': one('x-mcp-delegation'),
    saw_authorization: headers.authorization !== undefined,
    saw_agent_token: headers['x-agent-token'] !== undefined,
  };
}

const README_TEXT = `# demo server ${NAME}\nThis is the mcp-warden end-to-end demo server.\n`;

/** Builds one McpServer for one session. `state` is per-session. */
function buildServer(state) {
  const server = new McpServer(
    { name: NAME, version: VERSION },
    { capabilities: { logging: {} }, instructions: 'mcp-warden e2e demo server' },
  );

  server.registerTool(
    'echo',
    {
      description: 'Echo the given text back',
      inputSchema: { text: z.string().describe('Text to echo') },
    },
    async ({ text }) => ({ content: [{ type: 'text', text: `echo: ${text}` }] }),
  );

  server.registerTool(
    'add',
    {
      description: 'Add two numbers',
      inputSchema: { a: z.number(), b: z.number() },
    },
    async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }),
  );

  server.registerTool(
    'slow_count',
    {
      description: 'Count to `steps`, waiting `delay_ms` between steps, sending progress notifications',
      inputSchema: {
        steps: z.number().int().min(1).max(20),
        delay_ms: z.number().int().min(0).max(10000),
      },
    },
    async ({ steps, delay_ms }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await new Promise((r) => setTimeout(r, delay_ms));
        if (progressToken !== undefined) {
          // sendNotification() carries relatedRequestId, so the transport writes the
          // notification onto this POST's SSE response stream.
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: steps, message: `step ${i}/${steps}` },
          });
          log({ ev: 'progress', session: extra.sessionId, progress: i, total: steps });
        }
      }
      return { content: [{ type: 'text', text: `counted ${steps}` }] };
    },
  );

  server.registerTool(
    'ask_llm',
    {
      description: 'Ask the client LLM (sampling/createMessage) and return its answer',
      inputSchema: { question: z.string() },
    },
    async ({ question }, extra) => {
      // extra.sendRequest() ties the server->client request to this tools/call, so it
      // travels on the tools/call POST's SSE stream; the client answers with a POST.
      const result = await extra.sendRequest(
        {
          method: 'sampling/createMessage',
          params: {
            messages: [{ role: 'user', content: { type: 'text', text: question } }],
            maxTokens: 64,
          },
        },
        CreateMessageResultSchema,
        { timeout: 30000 },
      );
      const content = Array.isArray(result.content) ? result.content[0] : result.content;
      const text = content?.type === 'text' ? content.text : `<non-text ${content?.type}>`;
      log({ ev: 'sampling-answer', session: extra.sessionId, text });
      return { content: [{ type: 'text', text: `llm said: ${text}` }] };
    },
  );

  server.registerTool(
    'whoami',
    {
      description:
        'Report server instance name, session id, a per-session call counter and the identity headers of the request',
      inputSchema: {},
    },
    async (_args, extra) => {
      state.counter += 1;
      const body = {
        name: NAME,
        sessionId: extra.sessionId ?? null,
        counter: state.counter,
        ...identityHeaders(extra.requestInfo?.headers ?? {}),
      };
      return { content: [{ type: 'text', text: JSON.stringify(body) }] };
    },
  );

  server.registerResource(
    'readme',
    'demo://readme',
    { title: 'README', description: 'Static readme text', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: README_TEXT }] }),
  );

  server.registerResource(
    'item',
    new ResourceTemplate('demo://items/{id}', { list: undefined }),
    { title: 'Item', description: 'A demo item by id', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [
        { uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id: String(id), name: `item ${id}` }) },
      ],
    }),
  );

  server.registerPrompt(
    'greet',
    {
      title: 'Greeting',
      description: 'Greet someone by name',
      argsSchema: { name: z.string() },
    },
    ({ name }) => ({
      messages: [{ role: 'user', content: { type: 'text', text: `Hello, ${name}!` } }],
    }),
  );

  return server;
}

/** sessionId -> { transport, server } */
const sessions = new Map();

const appOptions = { host: HOST };
if (opts['allowed-hosts']) appOptions.allowedHosts = opts['allowed-hosts'].split(',').map((s) => s.trim());
const app = createMcpExpressApp(appOptions);

// Request/response log (runs after the SDK's host check and JSON body parser).
app.use((req, res, next) => {
  const started = Date.now();
  const base = {
    method: req.method,
    path: req.path,
    session: req.headers['mcp-session-id'] ?? null,
    protocol: req.headers['mcp-protocol-version'] ?? null,
  };
  log({
    ev: 'req',
    ...base,
    accept: req.headers.accept ?? null,
    rpc: rpcMethods(req.body),
    ...identityHeaders(req.headers),
  });
  res.on('close', () => {
    log({
      ev: 'res',
      ...base,
      status: res.statusCode,
      contentType: res.getHeader('content-type') ?? null,
      ms: Date.now() - started,
    });
  });
  next();
});

app.get('/healthz', (_req, res) => {
  res.status(200).type('text/plain').send('ok');
});

function jsonRpcError(res, status, code, message) {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

app.post('/mcp', async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  try {
    if (sid) {
      const session = sessions.get(sid);
      if (!session) return jsonRpcError(res, 404, -32001, 'Session not found');
      await session.transport.handleRequest(req, res, req.body);
      return;
    }
    if (!isInitializeRequest(req.body)) {
      return jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
    }
    const state = { counter: 0 };
    const server = buildServer(state);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (newSid) => {
        sessions.set(newSid, { transport, server });
        log({ ev: 'session-open', session: newSid, sessions: sessions.size });
      },
      onsessionclosed: (closedSid) => {
        log({ ev: 'session-delete', session: closedSid });
      },
    });
    transport.onclose = () => {
      const closedSid = transport.sessionId;
      if (closedSid && sessions.delete(closedSid)) {
        log({ ev: 'session-closed', session: closedSid, sessions: sessions.size });
      }
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    log({ ev: 'error', where: 'POST /mcp', error: String(err?.stack ?? err) });
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
  }
});

// GET (standalone SSE stream) and DELETE (session termination) need a live session.
async function sessionOnly(req, res) {
  const sid = req.headers['mcp-session-id'];
  if (!sid) return jsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
  const session = sessions.get(sid);
  if (!session) return jsonRpcError(res, 404, -32001, 'Session not found');
  try {
    await session.transport.handleRequest(req, res);
  } catch (err) {
    log({ ev: 'error', where: `${req.method} /mcp`, error: String(err?.stack ?? err) });
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
  }
}
app.get('/mcp', sessionOnly);
app.delete('/mcp', sessionOnly);

const httpServer = app.listen(PORT, HOST, (err) => {
  if (err) {
    log({ ev: 'error', where: 'listen', error: String(err) });
    process.exit(1);
  }
  const port = httpServer.address().port;
  log({ ev: 'listening', host: HOST, port });
  process.stdout.write(`READY ${port}\n`);
});
httpServer.on('error', (err) => {
  log({ ev: 'error', where: 'http', error: String(err) });
  process.exit(1);
});

let shuttingDown = false;
async function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  log({ ev: 'shutdown', signal, sessions: sessions.size });
  setTimeout(() => process.exit(0), 2000).unref();
  for (const { transport } of [...sessions.values()]) {
    try {
      await transport.close();
    } catch {
      /* ignore */
    }
  }
  httpServer.close(() => process.exit(0));
  httpServer.closeAllConnections?.();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
