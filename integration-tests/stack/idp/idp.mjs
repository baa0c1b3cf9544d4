#!/usr/bin/env node
// mcp-warden demo identity provider + RFC 8693 security token service, built on `oidc-provider`.
//
//   node idp/idp.mjs --port 4000 [--host 127.0.0.1] [--issuer http://127.0.0.1:4000]
//        [--attestation-key <pkcs8 pem>] [--sts-client-jwks <jwks.json>] [--test-mode]
//        [--default-resource http://127.0.0.1:10000/mcp] [--signing-key <pkcs8 pem>]
//
// Prints `READY <port>` on stdout once listening; everything else goes to stderr as JSON lines.
// See idp/README.md for endpoints, users, clients and token layouts.
//
// oidc-provider serves discovery, the JWKS, the token endpoint, client authentication
// (client_secret_basic / private_key_jwt / none), parameter allow-listing and RFC 6749 §5.2
// error bodies. The three grants are registered with provider.registerGrantType(); their
// access tokens are JWTs that this file signs itself with the same ES256 key the provider
// publishes in its JWKS (see README "Why the grants sign their own JWTs").
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as util from 'node:util';
import { jwtVerify, createLocalJWKSet } from 'jose';
import {
  GRANT_DEMO_PASSWORD, GRANT_AGENT_DELEGATION, GRANT_TOKEN_EXCHANGE,
  TT_ACCESS_TOKEN, TT_JWT, TT_EAT, ATTESTER_ISS, DEFAULT_RESOURCE,
  parseArgs, randomId,
} from './lib.mjs';

// ---------------------------------------------------------------------------------------------
// logging: JSON lines on stderr; stdout carries only the READY line.
function log(level, msg, fields = {}) {
  process.stderr.write(`${JSON.stringify({
    ts: new Date().toISOString(), level, component: 'idp', msg, ...fields,
  })}\n`);
}
// oidc-provider prints notices with console.info (stdout) — route every console method to the
// JSON log so stdout stays clean.
for (const [m, level] of [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']]) {
  console[m] = (...a) => log(level, util.format(...a));
}

const { Provider, errors: oidcErrors } = await import('oidc-provider');

// ---------------------------------------------------------------------------------------------
// CLI
let args;
try {
  args = parseArgs(process.argv.slice(2), { booleans: ['test-mode', 'help'] });
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
if (args.help || args.port === undefined) {
  process.stderr.write('usage: node idp/idp.mjs --port <port> [--host 127.0.0.1] [--issuer <url>] '
    + '[--attestation-key <pem>] [--sts-client-jwks <file>] [--default-resource <url>] [--signing-key <pem>] [--test-mode]\n');
  process.exit(args.help ? 0 : 2);
}
const PORT = Number(args.port);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) {
  process.stderr.write(`invalid --port ${args.port}\n`);
  process.exit(2);
}
const HOST = args.host ?? '127.0.0.1';
const TEST_MODE = Boolean(args['test-mode']);
const DEF_RESOURCE = args['default-resource'] ?? DEFAULT_RESOURCE;
const USER_TTL = 600;
const AGENT_TTL = 600;
const EXCHANGE_TTL = 60;
const EXCHANGE_MAX_TTL = 300;
const ATTESTATION_TTL = 300;
const MAX_PUBLISHED_KEYS = 3; // current + 2 previous after rotations
const CLOCK_TOLERANCE = 5;
let ISSUER = args.issuer; // defaulted after listen() when --port 0 is used

// ---------------------------------------------------------------------------------------------
// demo directory
const USERS = {
  alice: {
    groups: ['it-admins', 'engineering'],
    roles: ['admin'],
    scopes: 'mcp:tools mcp:resources mcp:prompts files:delete sql:read email:draft HR_read',
  },
  bob: { groups: ['finance'], roles: ['analyst'], scopes: 'mcp:tools mcp:resources sql:read' },
  carol: { groups: ['hr'], roles: ['hr-partner'], scopes: 'mcp:tools HR_read' },
  dave: { groups: [], roles: [], scopes: 'mcp:tools' },
};
for (const [name, u] of Object.entries(USERS)) {
  u.password = `${name}-pw`;
  u.email = `${name}@example.com`;
  u.scopes = u.scopes.split(' ');
}
const ALL_SCOPES = [...new Set(Object.values(USERS).flatMap((u) => u.scopes))];

const AGENTS = {
  'agent-claude': {
    secret: 'agent-claude-secret',
    agent_type: 'assistant',
    agent_model: 'claude-sonnet-4',
    agent_version: '2026-05',
    agent_provider: 'anthropic',
    agent_capabilities: ['tools:call', 'email:draft', 'files:read'],
    agent_trust_level: 'high',
  },
  'agent-scraper': {
    secret: 'agent-scraper-secret',
    agent_type: 'autonomous',
    agent_model: 'scraper-1',
    agent_provider: 'acme',
    agent_capabilities: ['tools:call'],
    agent_trust_level: 'low',
  },
};

// ---------------------------------------------------------------------------------------------
// keys
const now = () => Math.floor(Date.now() / 1000);

function thumbprint(jwk) {
  // RFC 7638 for EC keys
  const canon = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return crypto.createHash('sha256').update(canon).digest('base64url');
}

function keyFromPair(privateKey, prefix) {
  const publicKey = crypto.createPublicKey(privateKey);
  const pub = publicKey.export({ format: 'jwk' });
  // the attester's kid is the full RFC 7638 thumbprint (what gen-attestation-key.mjs publishes)
  const kid = prefix === 'attester' ? thumbprint(pub) : `${prefix}-${thumbprint(pub).slice(0, 16)}`;
  const meta = { kid, alg: 'ES256', use: 'sig' };
  return {
    kid,
    privateKey,
    publicKey,
    privJwk: { ...privateKey.export({ format: 'jwk' }), ...meta },
    pubJwk: { ...pub, ...meta },
    pubPem: publicKey.export({ type: 'spki', format: 'pem' }),
  };
}

function newEcKey(prefix) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return keyFromPair(privateKey, prefix);
}

/**
 * The first signing key: ephemeral, or with --signing-key FILE the P-256 PKCS#8 key in FILE
 * (created there, mode 0600, when FILE does not exist yet), so a restarted IdP keeps its key and
 * the tokens it issued before stay valid.
 */
function initialSigningKey() {
  const file = args['signing-key'];
  if (!file) return newEcKey('idp');
  try {
    if (!fs.existsSync(file)) {
      const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
      log('info', 'created signing key', { file });
    }
    const pk = crypto.createPrivateKey(fs.readFileSync(file));
    if (pk.asymmetricKeyType !== 'ec' || pk.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error('signing key must be an EC P-256 private key');
    }
    return keyFromPair(pk, 'idp');
  } catch (e) {
    log('error', 'cannot load --signing-key', { file, error: e.message });
    process.exit(2);
  }
}

let signingKeys = [initialSigningKey()]; // [0] signs; all are published and accepted
let verifierJwks = createLocalJWKSet({ keys: signingKeys.map((k) => k.pubJwk) });
const rogueKey = newEcKey('rogue'); // never published

let attestationKey;
let attestationKeyEphemeral = false;
if (args['attestation-key']) {
  try {
    const pk = crypto.createPrivateKey(fs.readFileSync(args['attestation-key']));
    if (pk.asymmetricKeyType !== 'ec' || pk.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error('attestation key must be an EC P-256 private key');
    }
    attestationKey = keyFromPair(pk, 'attester');
  } catch (e) {
    log('error', 'cannot load --attestation-key', { file: args['attestation-key'], error: e.message });
    process.exit(2);
  }
} else {
  attestationKey = newEcKey('attester');
  attestationKeyEphemeral = true;
}

let stsClientJwks;
if (args['sts-client-jwks']) {
  try {
    stsClientJwks = JSON.parse(fs.readFileSync(args['sts-client-jwks'], 'utf8'));
    if (!Array.isArray(stsClientJwks.keys) || stsClientJwks.keys.length === 0) throw new Error('no "keys" array');
    if (stsClientJwks.keys.some((k) => k.d)) throw new Error('JWKS must contain public keys only');
  } catch (e) {
    log('error', 'cannot load --sts-client-jwks', { file: args['sts-client-jwks'], error: e.message });
    process.exit(2);
  }
}

// ---------------------------------------------------------------------------------------------
// JWS signing (done by hand so test mode can produce malformed / confused tokens as well)
const b64json = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

function signJwt(payload, {
  sign = 'idp', key, rogueKid, header = {}, typ = 'at+jwt', hs256Secret = 'pem',
} = {}) {
  const cur = key ?? signingKeys[0];
  let h;
  let signer;
  switch (sign) {
    case 'idp':
    case 'attester':
      h = { alg: 'ES256', typ, kid: cur.kid };
      signer = (data) => crypto.sign('sha256', data, { key: cur.privateKey, dsaEncoding: 'ieee-p1363' });
      break;
    case 'rogue':
      h = { alg: 'ES256', typ, kid: rogueKid ?? cur.kid };
      signer = (data) => crypto.sign('sha256', data, { key: rogueKey.privateKey, dsaEncoding: 'ieee-p1363' });
      break;
    case 'none':
      h = { alg: 'none', typ, kid: cur.kid };
      signer = () => Buffer.alloc(0);
      break;
    case 'hs256': {
      // RS/ES → HS confusion: HMAC keyed with the verifier's *public* key bytes.
      let secret;
      if (hs256Secret === 'pem') secret = Buffer.from(cur.pubPem);
      else if (hs256Secret === 'der') secret = cur.publicKey.export({ type: 'spki', format: 'der' });
      else if (hs256Secret === 'jwk') secret = Buffer.from(JSON.stringify(cur.pubJwk));
      else throw new TypeError(`hs256_secret must be pem, der or jwk, got ${hs256Secret}`);
      h = { alg: 'HS256', typ, kid: cur.kid };
      signer = (data) => crypto.createHmac('sha256', secret).update(data).digest();
      break;
    }
    default:
      throw new TypeError(`unknown sign mode ${sign}`);
  }
  Object.assign(h, header);
  const input = `${b64json(h)}.${b64json(payload)}`;
  return `${input}.${signer(Buffer.from(input)).toString('base64url')}`;
}

// ---------------------------------------------------------------------------------------------
// claims builders (shared by the grants and by /test/mint)
const splitScope = (s) => [...new Set(String(s ?? '').split(' ').filter(Boolean))];

function buildUserClaims({ username, scopes, resource, clientId, ttl = USER_TTL }) {
  const u = USERS[username] ?? { groups: [], roles: [], email: `${username}@example.com` };
  const t = now();
  return {
    iss: ISSUER,
    sub: username,
    aud: resource,
    iat: t,
    nbf: t,
    exp: t + ttl,
    jti: randomId(),
    client_id: clientId,
    scope: scopes.join(' '),
    groups: u.groups,
    roles: u.roles,
    email: u.email,
  };
}

function buildAttestation({ agentId, agent, instanceId, opts = {} }) {
  const t = now();
  const iat = t + (opts.iat_in ?? 0);
  const eat = {
    iss: ATTESTER_ISS,
    sub: `agent:${agentId}`,
    iat,
    exp: t + (opts.exp_in ?? ATTESTATION_TTL),
    jti: randomId(),
    eat_nonce: randomId(12),
    agent_instance_id: instanceId,
    agent_model: agent.agent_model,
    ...(agent.agent_version !== undefined ? { agent_version: agent.agent_version } : {}),
    agent_provider: agent.agent_provider,
    swname: agent.agent_model,
    ...(agent.agent_version !== undefined ? { swversion: agent.agent_version } : {}),
    dbgstat: 'disabled-since-boot',
    measurement: `sha-256:${crypto.createHash('sha256')
      .update(`${agent.agent_provider}/${agent.agent_model}@${agent.agent_version ?? ''}`).digest('hex')}`,
  };
  Object.assign(eat, opts.set ?? {});
  for (const k of opts.unset ?? []) delete eat[k];
  const sign = opts.sign ?? 'attester';
  const token = signJwt(eat, {
    sign,
    key: sign === 'idp' ? signingKeys[0] : attestationKey,
    rogueKid: opts.rogue_kid,
    header: opts.header,
    typ: 'eat+jwt',
    hs256Secret: opts.hs256_secret,
  });
  return {
    format: opts.format ?? TT_EAT,
    token,
    timestamp: iat + (opts.timestamp_offset ?? 0),
  };
}

function buildAgentClaims({
  user, agentId, scopes, resource, purpose, instanceId, ttl = AGENT_TTL, attestation,
}) {
  const agent = AGENTS[agentId] ?? {
    agent_type: 'assistant', agent_model: 'unknown', agent_provider: 'unknown', agent_capabilities: [], agent_trust_level: 'low',
  };
  const t = now();
  const sub = `agent:${agentId}`;
  const scope = scopes.join(' ');
  const claims = {
    iss: ISSUER,
    sub,
    aud: resource,
    iat: t,
    nbf: t,
    exp: t + ttl,
    jti: randomId(),
    client_id: agentId,
    scope,
    agent_type: agent.agent_type,
    agent_model: agent.agent_model,
    ...(agent.agent_version !== undefined ? { agent_version: agent.agent_version } : {}),
    agent_provider: agent.agent_provider,
    agent_instance_id: instanceId,
    delegator_sub: user.sub,
    delegation_purpose: purpose,
    delegation_chain: [{
      iss: ISSUER,
      sub: user.sub,
      aud: sub,
      delegated_at: t,
      scope,
      purpose,
      constraints: { max_duration: 3600, allowed_resources: [resource] },
      jti: randomId(),
    }],
    agent_capabilities: agent.agent_capabilities,
    agent_trust_level: agent.agent_trust_level,
  };
  if (!attestation?.omit) {
    claims.agent_attestation = buildAttestation({
      agentId, agent, instanceId, opts: attestation ?? {},
    });
  }
  return claims;
}

// ---------------------------------------------------------------------------------------------
// errors (RFC 6749 §5.2 bodies are rendered by oidc-provider)
const oauthError = (code, description) => new oidcErrors.CustomOIDCProviderError(code, description);
const invalidRequest = (d) => oauthError('invalid_request', d);
const invalidGrant = (d) => oauthError('invalid_grant', d);
const invalidScope = (d) => oauthError('invalid_scope', d);
const invalidTarget = (d) => oauthError('invalid_target', d);

function safeEqual(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

function checkResource(value, param = 'resource') {
  let u;
  try {
    u = new URL(value);
  } catch {
    throw invalidTarget(`${param} must be an absolute URI`);
  }
  if (u.hash) throw invalidTarget(`${param} must not contain a fragment`);
  return value;
}

const asList = (v) => (v === undefined ? [] : (Array.isArray(v) ? v : [v]));

// user: a person's token; agent: an OIDC-A token (may carry a nested `act` when the agent itself
// acts for another actor); exchanged: an STS output (user sub + act) — never accepted as input.
function tokenKind(c) {
  if (typeof c.sub === 'string' && c.sub.startsWith('agent:')) return 'agent';
  if (c.agent_type !== undefined || c.delegator_sub !== undefined || c.delegation_chain !== undefined) return 'agent';
  if (c.act !== undefined) return 'exchanged';
  return 'user';
}

async function verifyIdpToken(token, param) {
  if (typeof token !== 'string' || token.length === 0) throw invalidRequest(`missing required parameter '${param}'`);
  let payload;
  try {
    ({ payload } = await jwtVerify(token, verifierJwks, {
      issuer: ISSUER,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      clockTolerance: CLOCK_TOLERANCE,
      requiredClaims: ['sub', 'exp', 'iat', 'jti'],
    }));
  } catch (e) {
    throw invalidGrant(`${param} is invalid (${e.code ?? 'ERR'}: ${e.message})`);
  }
  if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw invalidGrant(`${param} has no subject`);
  return payload;
}

function checkTokenType(value, param) {
  if (value !== undefined && value !== TT_ACCESS_TOKEN && value !== TT_JWT) {
    throw invalidRequest(`unsupported ${param} ${value}`);
  }
}

// ---------------------------------------------------------------------------------------------
// stats
const stats = {
  token_exchange: 0, // successful RFC 8693 exchanges (tokens issued)
  token_exchange_requests: 0, // exchange requests that passed client authentication
  token_exchange_refused: 0,
  user_tokens: 0,
  agent_tokens: 0,
  grant_errors: 0, // any token endpoint error (incl. client auth failures)
  jwks_requests: 0,
  discovery_requests: 0,
  test_mints: 0,
  rotations: 0,
};

// ---------------------------------------------------------------------------------------------
// grants
async function demoPasswordGrant(ctx) {
  const { params, client } = ctx.oidc;
  const { username, password } = params;
  if (!username || !password) throw invalidRequest('username and password are required');
  const user = Object.hasOwn(USERS, username) ? USERS[username] : undefined;
  if (!user || !safeEqual(password, user.password)) throw invalidGrant('invalid username or password');
  const resource = checkResource(params.resource ?? DEF_RESOURCE);
  const requested = params.scope !== undefined ? splitScope(params.scope) : user.scopes;
  const granted = requested.filter((s) => user.scopes.includes(s));
  if (granted.length === 0) throw invalidScope(`none of the requested scopes is allowed for ${username}`);
  const claims = buildUserClaims({
    username, scopes: granted, resource, clientId: client.clientId,
  });
  const accessToken = signJwt(claims);
  stats.user_tokens += 1;
  log('info', 'issued token', {
    kind: 'user', jti: claims.jti, sub: claims.sub, client_id: claims.client_id, aud: claims.aud, scope: claims.scope, kid: signingKeys[0].kid,
  });
  ctx.body = {
    access_token: accessToken,
    issued_token_type: TT_ACCESS_TOKEN,
    token_type: 'Bearer',
    expires_in: USER_TTL,
    scope: claims.scope,
  };
}

async function agentDelegationGrant(ctx) {
  const { params, client } = ctx.oidc;
  const agentId = client.clientId;
  if (!Object.hasOwn(AGENTS, agentId)) throw oauthError('unauthorized_client', 'client is not a registered agent');
  checkTokenType(params.subject_token_type, 'subject_token_type');
  const user = await verifyIdpToken(params.subject_token, 'subject_token');
  if (tokenKind(user) !== 'user') throw invalidGrant('subject_token must be a user access token');
  const resource = checkResource(params.resource ?? DEF_RESOURCE);
  const userScopes = splitScope(user.scope);
  const requested = params.scope !== undefined ? splitScope(params.scope) : userScopes;
  const granted = requested.filter((s) => userScopes.includes(s));
  if (granted.length === 0) throw invalidScope('none of the requested scopes was granted to the user');
  const instanceId = params.agent_instance_id ?? `${agentId}-${crypto.randomBytes(6).toString('hex')}`;
  if (instanceId.length > 200) throw invalidRequest('agent_instance_id too long');
  const purpose = params.purpose ?? 'delegated MCP tool access';
  if (purpose.length > 500) throw invalidRequest('purpose too long');
  const claims = buildAgentClaims({
    user, agentId, scopes: granted, resource, purpose, instanceId,
  });
  const accessToken = signJwt(claims);
  stats.agent_tokens += 1;
  log('info', 'issued token', {
    kind: 'agent',
    jti: claims.jti,
    sub: claims.sub,
    delegator_sub: claims.delegator_sub,
    subject_jti: user.jti,
    aud: claims.aud,
    scope: claims.scope,
    agent_instance_id: instanceId,
    kid: signingKeys[0].kid,
  });
  ctx.body = {
    access_token: accessToken,
    issued_token_type: TT_ACCESS_TOKEN,
    token_type: 'Bearer',
    expires_in: AGENT_TTL,
    scope: claims.scope,
  };
}

async function tokenExchangeGrantInner(ctx) {
  const { params, client } = ctx.oidc;
  checkTokenType(params.subject_token_type, 'subject_token_type');
  checkTokenType(params.actor_token_type, 'actor_token_type');
  const requestedType = params.requested_token_type ?? TT_ACCESS_TOKEN;
  checkTokenType(requestedType, 'requested_token_type');
  if (params.actor_token_type !== undefined && params.actor_token === undefined) {
    throw invalidRequest('actor_token_type given without actor_token');
  }

  const subject = await verifyIdpToken(params.subject_token, 'subject_token');
  if (tokenKind(subject) !== 'user') throw invalidGrant('subject_token must be a user access token');

  let actor;
  if (params.actor_token !== undefined) {
    actor = await verifyIdpToken(params.actor_token, 'actor_token');
    if (tokenKind(actor) !== 'agent') throw invalidGrant('actor_token must be an agent access token');
    if (actor.delegator_sub !== subject.sub) throw invalidGrant('actor_token was not delegated by the subject_token subject');
    if (Array.isArray(actor.delegation_chain) && actor.delegation_chain.length > 0
      && actor.delegation_chain[0]?.sub !== subject.sub) {
      throw invalidGrant('actor_token delegation_chain does not start at the subject');
    }
  }

  const audiences = [...new Set([
    ...asList(params.audience),
    ...asList(params.resource).map((r) => checkResource(r)),
  ])];
  if (audiences.length === 0 || audiences.some((a) => !a)) throw invalidTarget('audience or resource is required');

  const subjectScopes = splitScope(subject.scope);
  const actorScopes = actor ? splitScope(actor.scope) : undefined;
  const ceiling = actorScopes ? subjectScopes.filter((s) => actorScopes.includes(s)) : subjectScopes;
  const requested = params.scope !== undefined ? splitScope(params.scope) : ceiling;
  const overSubject = requested.filter((s) => !subjectScopes.includes(s));
  if (overSubject.length) throw invalidScope(`requested scope exceeds the subject_token scope: ${overSubject.join(' ')}`);
  const overActor = actorScopes ? requested.filter((s) => !actorScopes.includes(s)) : [];
  if (overActor.length) throw invalidScope(`requested scope exceeds the actor_token scope: ${overActor.join(' ')}`);
  if (requested.length === 0) throw invalidScope('no scope to grant');

  let ttl = EXCHANGE_TTL;
  if (params.requested_lifetime !== undefined) {
    if (!/^\d{1,9}$/.test(params.requested_lifetime) || Number(params.requested_lifetime) < 1) {
      throw invalidRequest('requested_lifetime must be a positive integer (seconds)');
    }
    ttl = Math.min(Number(params.requested_lifetime), EXCHANGE_MAX_TTL);
  }
  const t = now();
  // never outlive the tokens it was derived from
  ttl = Math.max(1, Math.min(ttl, subject.exp - t, actor ? actor.exp - t : Infinity));

  const claims = {
    iss: ISSUER,
    sub: subject.sub,
    aud: audiences.length === 1 ? audiences[0] : audiences,
    iat: t,
    nbf: t,
    exp: t + ttl,
    jti: randomId(),
    client_id: client.clientId,
    scope: requested.join(' '),
  };
  if (actor) claims.act = { sub: actor.sub, ...(actor.act !== undefined ? { act: actor.act } : {}) };
  const accessToken = signJwt(claims);
  stats.token_exchange += 1;
  log('info', 'issued token', {
    kind: 'exchange',
    jti: claims.jti,
    sub: claims.sub,
    act_sub: claims.act?.sub,
    subject_jti: subject.jti,
    actor_jti: actor?.jti,
    client_id: claims.client_id,
    aud: claims.aud,
    scope: claims.scope,
    expires_in: ttl,
  });
  ctx.body = {
    access_token: accessToken,
    issued_token_type: requestedType,
    token_type: 'Bearer',
    expires_in: ttl,
    scope: claims.scope,
  };
}

async function tokenExchangeGrant(ctx) {
  stats.token_exchange_requests += 1;
  try {
    await tokenExchangeGrantInner(ctx);
  } catch (e) {
    stats.token_exchange_refused += 1;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// provider
const cookieKeys = [randomId(32)];

function clientsConfig() {
  const base = { redirect_uris: [], response_types: [] };
  const clients = [
    {
      ...base, client_id: 'demo-cli', token_endpoint_auth_method: 'none', grant_types: [GRANT_DEMO_PASSWORD],
    },
    ...Object.entries(AGENTS).map(([id, a]) => ({
      ...base,
      client_id: id,
      client_secret: a.secret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [GRANT_AGENT_DELEGATION],
    })),
    {
      ...base,
      client_id: 'mcp-warden',
      client_secret: 'mcp-warden-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [GRANT_TOKEN_EXCHANGE],
    },
  ];
  if (stsClientJwks) {
    clients.push({
      ...base,
      client_id: 'mcp-warden-pkjwt',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: stsClientJwks,
      grant_types: [GRANT_TOKEN_EXCHANGE],
    });
  }
  return clients;
}

function buildProvider() {
  const provider = new Provider(ISSUER, {
    clients: clientsConfig(),
    jwks: { keys: signingKeys.map((k) => k.privJwk) },
    cookies: { keys: cookieKeys },
    scopes: ['openid', ...ALL_SCOPES],
    clientDefaults: {
      grant_types: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
      clientAuthSigningAlgValues: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    },
    features: {
      devInteractions: { enabled: false },
    },
    discovery: {
      agent_attestation_issuer: ATTESTER_ISS,
      agent_attestation_jwks_uri: `${ISSUER}/attestation/jwks.json`,
      token_exchange_requested_token_types_supported: [TT_ACCESS_TOKEN, TT_JWT],
    },
  });
  provider.registerGrantType(GRANT_DEMO_PASSWORD, demoPasswordGrant, ['username', 'password', 'scope', 'resource']);
  provider.registerGrantType(GRANT_AGENT_DELEGATION, agentDelegationGrant,
    ['subject_token', 'subject_token_type', 'scope', 'resource', 'purpose', 'agent_instance_id']);
  provider.registerGrantType(GRANT_TOKEN_EXCHANGE, tokenExchangeGrant,
    ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type',
      'audience', 'resource', 'scope', 'requested_lifetime'],
    ['audience', 'resource']);
  provider.on('grant.error', (ctx, err) => {
    stats.grant_errors += 1;
    log('warn', 'token request refused', {
      grant_type: ctx.oidc?.params?.grant_type,
      client_id: ctx.oidc?.client?.clientId,
      error: err.error,
      error_description: err.error_description,
      error_detail: err.error_detail,
    });
  });
  provider.on('server_error', (ctx, err) => log('error', 'server error', { path: ctx.path, error: err.stack }));
  return provider;
}

// ---------------------------------------------------------------------------------------------
// test mode
function testMint(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new TypeError('body must be a JSON object');
  const kind = body.kind ?? 'user';
  const base = body.base ?? {};
  const resource = base.resource ?? DEF_RESOURCE;
  const username = base.username ?? base.user ?? base.sub ?? 'alice';
  const known = Object.hasOwn(USERS, username) ? USERS[username] : undefined;
  const userScopesFor = () => {
    if (base.user_scope !== undefined) return splitScope(base.user_scope);
    if (known) return known.scopes;
    return splitScope(base.scope ?? 'mcp:tools');
  };
  const narrow = (ceiling) => (base.scope !== undefined
    ? splitScope(base.scope).filter((s) => ceiling.includes(s)) : ceiling);
  let claims;
  if (kind === 'user') {
    claims = buildUserClaims({
      username, scopes: narrow(userScopesFor()), resource, clientId: base.client_id ?? 'demo-cli',
    });
  } else if (kind === 'agent') {
    const agentId = base.agent ?? base.client_id ?? 'agent-claude';
    const user = buildUserClaims({
      username, scopes: userScopesFor(), resource, clientId: 'demo-cli',
    });
    claims = buildAgentClaims({
      user,
      agentId,
      scopes: narrow(userScopesFor()),
      resource,
      purpose: base.purpose ?? 'delegated MCP tool access',
      instanceId: base.agent_instance_id ?? `${agentId}-${crypto.randomBytes(6).toString('hex')}`,
      attestation: body.attestation,
    });
  } else if (kind === 'exchange') {
    const agentId = base.agent ?? 'agent-claude';
    const t = now();
    const aud = base.audience ?? resource;
    claims = {
      iss: ISSUER,
      sub: username,
      aud,
      iat: t,
      nbf: t,
      exp: t + EXCHANGE_TTL,
      jti: randomId(),
      client_id: base.client_id ?? 'mcp-warden',
      scope: narrow(userScopesFor()).join(' '),
      ...(base.agent === null ? {} : { act: { sub: `agent:${agentId}` } }),
    };
  } else if (kind === 'raw') {
    claims = {};
  } else {
    throw new TypeError('kind must be user, agent, exchange or raw');
  }
  const t = now();
  if (body.iat_in !== undefined) claims.iat = t + body.iat_in;
  if (body.exp_in !== undefined) claims.exp = t + body.exp_in;
  if (body.nbf_in !== undefined) claims.nbf = t + body.nbf_in;
  if (body.iss !== undefined) claims.iss = body.iss;
  if (body.set !== undefined) {
    if (body.set === null || typeof body.set !== 'object') throw new TypeError('set must be an object');
    Object.assign(claims, body.set);
  }
  for (const k of body.unset ?? []) delete claims[k];
  const token = signJwt(claims, {
    sign: body.sign ?? 'idp',
    rogueKid: body.rogue_kid,
    header: body.header,
    typ: body.typ ?? 'at+jwt',
    hs256Secret: body.hs256_secret,
  });
  stats.test_mints += 1;
  log('info', 'test mint', {
    kind, jti: claims.jti, sub: claims.sub, sign: body.sign ?? 'idp',
  });
  const [h] = token.split('.');
  return { token, header: JSON.parse(Buffer.from(h, 'base64url')), claims };
}

function rotate() {
  const k = newEcKey('idp');
  signingKeys = [k, ...signingKeys].slice(0, MAX_PUBLISHED_KEYS);
  verifierJwks = createLocalJWKSet({ keys: signingKeys.map((x) => x.pubJwk) });
  current = buildProvider();
  handler = current.callback();
  stats.rotations += 1;
  log('info', 'rotated signing key', { kid: k.kid, published: signingKeys.map((x) => x.kid) });
  return { kid: k.kid, kids: signingKeys.map((x) => x.kid) };
}

// ---------------------------------------------------------------------------------------------
// HTTP
let current;
let handler = (req, res) => {
  res.writeHead(503, { 'content-type': 'application/json' });
  res.end('{"error":"temporarily_unavailable"}');
};

function sendJson(res, status, obj, extra = {}) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body), ...extra,
  });
  res.end(body);
}

function readJson(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new RangeError('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text.trim() === '' ? {} : JSON.parse(text));
      } catch (e) {
        reject(new SyntaxError(`invalid JSON: ${e.message}`));
      }
    });
    req.on('error', reject);
  });
}

async function handleTest(req, res, path) {
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'POST' });
  let body;
  try {
    body = await readJson(req);
  } catch (e) {
    return sendJson(res, 400, { error: 'invalid_request', error_description: e.message });
  }
  try {
    if (path === '/test/mint') return sendJson(res, 200, testMint(body));
    if (path === '/test/rotate') return sendJson(res, 200, rotate());
    if (path === '/test/reset-stats') {
      for (const k of Object.keys(stats)) stats[k] = 0;
      return sendJson(res, 200, stats);
    }
  } catch (e) {
    return sendJson(res, 400, { error: 'invalid_request', error_description: e.message });
  }
  return sendJson(res, 404, { error: 'not_found' });
}

const server = http.createServer((req, res) => {
  let path;
  try {
    path = new URL(req.url, 'http://localhost').pathname;
  } catch {
    return sendJson(res, 400, { error: 'invalid_request' });
  }
  const isRead = req.method === 'GET' || req.method === 'HEAD';
  if (path === '/healthz' && isRead) return sendJson(res, 200, { status: 'ok' });
  if (path === '/stats' && isRead) {
    return sendJson(res, 200, { ...stats, kids: signingKeys.map((k) => k.kid), test_mode: TEST_MODE });
  }
  if (path === '/attestation/jwks.json' && isRead) return sendJson(res, 200, { keys: [attestationKey.pubJwk] });
  if (path === '/attestation/pub.pem' && isRead) {
    res.writeHead(200, { 'content-type': 'application/x-pem-file' });
    return res.end(attestationKey.pubPem);
  }
  if (path === '/test' || path.startsWith('/test/')) {
    if (!TEST_MODE) return sendJson(res, 404, { error: 'not_found' });
    return handleTest(req, res, path).catch((e) => {
      log('error', 'test route failed', { path, error: e.stack });
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    });
  }
  if (path === '/jwks') stats.jwks_requests += 1;
  if (path === '/.well-known/openid-configuration' || path === '/.well-known/oauth-authorization-server') {
    stats.discovery_requests += 1;
  }
  return handler(req, res);
});
server.headersTimeout = 10_000;
server.requestTimeout = 30_000;
server.keepAliveTimeout = 5_000;

server.on('error', (e) => {
  log('error', 'listen failed', { error: e.message, host: HOST, port: PORT });
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  ISSUER ??= `http://${HOST.includes(':') ? `[${HOST}]` : HOST}:${port}`;
  current = buildProvider();
  handler = current.callback();
  log('info', 'listening', {
    issuer: ISSUER,
    host: HOST,
    port,
    test_mode: TEST_MODE,
    kid: signingKeys[0].kid,
    signing_key: args['signing-key'] ?? 'ephemeral',
    attestation_kid: attestationKey.kid,
    attestation_key: attestationKeyEphemeral ? 'ephemeral' : args['attestation-key'],
    sts_pkjwt_client: Boolean(stsClientJwks),
  });
  if (attestationKeyEphemeral) {
    log('warn', 'no --attestation-key given: using an ephemeral attestation key; its public key is at /attestation/pub.pem and /attestation/jwks.json');
  }
  process.stdout.write(`READY ${port}\n`);
});

function shutdown(sig) {
  log('info', 'shutting down', { signal: sig });
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
