#!/usr/bin/env node
// Convenience CLI for the demo IdP (idp/idp.mjs). Prints one token on stdout.
//
//   node idp/get-token.mjs user alice [--scope "mcp:tools sql:read"] [--resource URL]
//   node idp/get-token.mjs agent agent-claude --user alice [--scope ...] [--user-scope ...]
//        [--purpose "..."] [--instance <agent_instance_id>] [--secret <client secret>]
//   node idp/get-token.mjs exchange --user alice [--agent agent-claude] --audience <aud>
//        [--scope ...] [--lifetime 60]          (as client mcp-warden / mcp-warden-secret)
//
// Common: --idp http://127.0.0.1:4000  --resource http://127.0.0.1:10000/mcp
//         --password <pw> (default <user>-pw)  --json (print the whole token response)
//         --decode (print the decoded header + claims instead of the token)
import {
  GRANT_DEMO_PASSWORD, GRANT_AGENT_DELEGATION, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN,
  DEFAULT_IDP, DEFAULT_RESOURCE, parseArgs, decodeJwt,
} from './lib.mjs';

const USAGE = `usage:
  node idp/get-token.mjs user <username> [--scope S] [--resource URL]
  node idp/get-token.mjs agent <agent-client-id> --user <username> [--scope S] [--user-scope S] [--purpose P] [--instance ID]
  node idp/get-token.mjs exchange --user <username> [--agent <agent-client-id>] --audience AUD [--scope S] [--lifetime N]
options: --idp URL (${DEFAULT_IDP}) --resource URL (${DEFAULT_RESOURCE}) --password PW --secret S --json --decode --timeout-ms N`;

let a;
try {
  a = parseArgs(process.argv.slice(2), { booleans: ['json', 'decode', 'help'] });
} catch (e) {
  process.stderr.write(`${e.message}\n${USAGE}\n`);
  process.exit(2);
}
const [mode, name] = a._;
if (a.help || !mode) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(a.help ? 0 : 2);
}
const idp = (a.idp ?? DEFAULT_IDP).replace(/\/$/, '');
const resource = a.resource ?? DEFAULT_RESOURCE;
const timeoutMs = Number(a['timeout-ms'] ?? 10000);

async function tokenRequest(params, basic) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (basic) {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(basic[0])}:${encodeURIComponent(basic[1])}`).toString('base64')}`;
  }
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) body.append(k, v);
  const res = await fetch(`${idp}/token`, {
    method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new Error(`token request failed (${res.status}): ${json.error ?? ''} ${json.error_description ?? ''}`.trim());
  }
  return json;
}

async function userToken(username, scope, userResource = resource) {
  return tokenRequest({
    grant_type: GRANT_DEMO_PASSWORD,
    client_id: 'demo-cli',
    username,
    password: a.password ?? `${username}-pw`,
    resource: userResource,
    scope,
  });
}

async function agentToken(agentId, username, scope) {
  const user = await userToken(username, a['user-scope']);
  return tokenRequest({
    grant_type: GRANT_AGENT_DELEGATION,
    subject_token: user.access_token,
    subject_token_type: TT_ACCESS_TOKEN,
    resource,
    scope,
    purpose: a.purpose,
    agent_instance_id: a.instance,
  }, [agentId, a.secret ?? `${agentId}-secret`]);
}

try {
  let res;
  if (mode === 'user') {
    if (!name) throw new Error('user name required');
    res = await userToken(name, a.scope);
  } else if (mode === 'agent') {
    if (!name || !a.user) throw new Error('agent client id and --user required');
    res = await agentToken(name, a.user, a.scope);
  } else if (mode === 'exchange') {
    if (!a.user || !a.audience) throw new Error('--user and --audience required');
    const user = await userToken(a.user, a['user-scope']);
    let actor;
    if (a.agent) {
      actor = await tokenRequest({
        grant_type: GRANT_AGENT_DELEGATION, subject_token: user.access_token, resource,
      }, [a.agent, `${a.agent}-secret`]);
    }
    res = await tokenRequest({
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: user.access_token,
      subject_token_type: TT_ACCESS_TOKEN,
      actor_token: actor?.access_token,
      actor_token_type: actor ? TT_ACCESS_TOKEN : undefined,
      audience: a.audience,
      scope: a.scope,
      requested_lifetime: a.lifetime,
    }, ['mcp-warden', a.secret ?? 'mcp-warden-secret']);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  if (a.json) process.stdout.write(`${JSON.stringify(res)}\n`);
  else if (a.decode) process.stdout.write(`${JSON.stringify(decodeJwt(res.access_token), null, 2)}\n`);
  else process.stdout.write(`${res.access_token}\n`);
} catch (e) {
  process.stderr.write(`get-token: ${e.message}\n`);
  process.exit(1);
}
