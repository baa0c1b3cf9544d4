#!/usr/bin/env node
// Self-test for the demo IdP/STS: spawns idp.mjs on free ports (test mode and normal mode),
// exercises every grant, refusal, test route and key rotation, verifies signatures with jose
// against the published JWKS, and exits 0 only if every check passed.
//   node idp/selftest.mjs            (from integration-tests/stack; ~5 s)
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  jwtVerify, createLocalJWKSet, importSPKI, SignJWT, importPKCS8,
} from 'jose';
import {
  GRANT_DEMO_PASSWORD, GRANT_AGENT_DELEGATION, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_EAT,
  ATTESTER_ISS, DEFAULT_RESOURCE, decodeJwt,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'idp-selftest-'));
const children = [];
let failures = 0;
let passes = 0;

function check(name, cond, detail) {
  if (cond) {
    passes += 1;
    process.stdout.write(`ok   ${name}\n`);
  } else {
    failures += 1;
    process.stdout.write(`FAIL ${name}${detail !== undefined ? ` -- ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}\n`);
  }
}

function run(script, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    const t = setTimeout(() => { p.kill(); reject(new Error(`${script} timed out`)); }, 15000);
    p.on('exit', (code) => { clearTimeout(t); if (code === 0) resolve(out); else reject(new Error(`${script} exited ${code}`)); });
  });
}

function spawnIdp(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [path.join(here, 'idp.mjs'), '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`idp did not become ready: ${err}`)), 15000);
    p.stderr.on('data', (d) => { err += d; });
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^READY (\d+)$/m);
      if (m) { clearTimeout(t); resolve({ proc: p, base: `http://127.0.0.1:${m[1]}`, stderr: () => err }); }
    });
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`idp exited ${code}: ${err}`)); });
  });
}

async function http(method, url, { form, json, basic } = {}) {
  const headers = {};
  let body;
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) {
      for (const x of (Array.isArray(v) ? v : [v])) if (x !== undefined) body.append(k, x);
    }
  }
  if (json) { headers['content-type'] = 'application/json'; body = JSON.stringify(json); }
  if (basic) headers.authorization = `Basic ${Buffer.from(`${basic[0]}:${basic[1]}`).toString('base64')}`;
  const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  let data;
  try { data = JSON.parse(text); } catch { data = text; }
  return { status: res.status, data, headers: res.headers };
}

try {
  await run('gen-attestation-key.mjs', [tmp]);
  await run('gen-sts-client-key.mjs', [tmp]);
  const idp = await spawnIdp(['--test-mode', '--attestation-key', path.join(tmp, 'attestation-key.pem'),
    '--sts-client-jwks', path.join(tmp, 'sts-client-jwks.json')]);
  const B = idp.base;
  const token = (form, basic) => http('POST', `${B}/token`, { form, basic });
  const jwks = async () => createLocalJWKSet((await http('GET', `${B}/jwks`)).data);
  const verify = async (t, opts = {}) => jwtVerify(t, await jwks(), { issuer: B, algorithms: ['ES256'], ...opts });
  const rejects = async (t) => { try { await verify(t); return false; } catch { return true; } };
  const attPub = await importSPKI(fs.readFileSync(path.join(tmp, 'attestation-pub.pem'), 'utf8'), 'ES256');
  const attKid = JSON.parse(fs.readFileSync(path.join(tmp, 'attestation-jwks.json'), 'utf8')).keys[0].kid;

  // --- basics
  check('healthz 200', (await http('GET', `${B}/healthz`)).status === 200);
  const disc = (await http('GET', `${B}/.well-known/openid-configuration`)).data;
  check('discovery issuer', disc.issuer === B, disc.issuer);
  check('discovery endpoints', disc.jwks_uri === `${B}/jwks` && disc.token_endpoint === `${B}/token`);
  check('discovery grant types', [GRANT_DEMO_PASSWORD, GRANT_AGENT_DELEGATION, GRANT_TOKEN_EXCHANGE]
    .every((g) => disc.grant_types_supported.includes(g)));
  const jw = (await http('GET', `${B}/jwks`)).data;
  check('jwks: one ES256 key with kid, no private part', jw.keys.length === 1 && jw.keys[0].kid && jw.keys[0].alg === 'ES256' && !jw.keys[0].d);
  const attJwks = (await http('GET', `${B}/attestation/jwks.json`)).data;
  check('attestation jwks served with the generated kid', attJwks.keys[0].kid === attKid && !attJwks.keys[0].d);

  // --- user tokens
  const userTok = async (username, scope, extra = {}) => token({
    grant_type: GRANT_DEMO_PASSWORD, client_id: 'demo-cli', username, password: `${username}-pw`, resource: DEFAULT_RESOURCE, scope, ...extra,
  });
  const ua = await userTok('alice');
  check('alice token 200', ua.status === 200, ua.data);
  const { payload: pa, protectedHeader: ha } = await verify(ua.data.access_token, { audience: DEFAULT_RESOURCE, typ: 'at+jwt' });
  check('user token verifies against JWKS (ES256, kid, typ at+jwt)', ha.alg === 'ES256' && ha.kid === jw.keys[0].kid);
  check('user claims layout', JSON.stringify(Object.keys(pa)) === JSON.stringify(
    ['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'client_id', 'scope', 'groups', 'roles', 'email'],
  ), Object.keys(pa));
  check('alice claims', pa.sub === 'alice' && pa.exp - pa.iat === 600 && pa.client_id === 'demo-cli'
    && pa.scope === 'mcp:tools mcp:resources mcp:prompts files:delete sql:read email:draft HR_read'
    && JSON.stringify(pa.groups) === '["it-admins","engineering"]' && JSON.stringify(pa.roles) === '["admin"]');
  check('response fields', ua.data.token_type === 'Bearer' && ua.data.expires_in === 600 && ua.data.scope === pa.scope);
  const ub = await userTok('bob', 'mcp:tools sql:read files:delete');
  check('bob: requested ∩ allowed', decodeJwt(ub.data.access_token).payload.scope === 'mcp:tools sql:read', ub.data);
  const uc = await userTok('carol', undefined, { resource: 'https://hr.example/mcp' });
  check('carol: resource → aud', decodeJwt(uc.data.access_token).payload.aud === 'https://hr.example/mcp');
  const wrongPw = await token({ grant_type: GRANT_DEMO_PASSWORD, client_id: 'demo-cli', username: 'alice', password: 'nope' });
  check('wrong password → 400 invalid_grant', wrongPw.status === 400 && wrongPw.data.error === 'invalid_grant', wrongPw.data);
  const unknown = await token({ grant_type: GRANT_DEMO_PASSWORD, client_id: 'demo-cli', username: 'mallory', password: 'mallory-pw' });
  check('unknown user → invalid_grant', unknown.data.error === 'invalid_grant');
  const daveWide = await userTok('dave', 'files:delete');
  check('dave asks only for files:delete → invalid_scope', daveWide.data.error === 'invalid_scope', daveWide.data);
  const badRes = await userTok('dave', undefined, { resource: 'not a uri' });
  check('relative resource → invalid_target', badRes.data.error === 'invalid_target', badRes.data);
  const dupRes = await userTok('dave', undefined, { resource: ['http://a/', 'http://b/'] });
  check('duplicate resource → invalid_request', dupRes.data.error === 'invalid_request', dupRes.data);
  const noGrant = await token({ grant_type: GRANT_TOKEN_EXCHANGE, client_id: 'demo-cli', subject_token: ua.data.access_token, audience: 'x' });
  check('demo-cli may not token-exchange', noGrant.status === 400 && noGrant.data.error === 'invalid_request', noGrant.data);

  // --- agent tokens
  const agentTok = (subject, client = 'agent-claude', extra = {}, secret = `${client}-secret`) => token({
    grant_type: GRANT_AGENT_DELEGATION, subject_token: subject, subject_token_type: TT_ACCESS_TOKEN, resource: DEFAULT_RESOURCE, ...extra,
  }, [client, secret]);
  const aa = await agentTok(ua.data.access_token, 'agent-claude', { scope: 'mcp:tools email:draft sql:read bogus', purpose: 'triage inbox', agent_instance_id: 'inst-42' });
  check('agent token 200', aa.status === 200, aa.data);
  const { payload: pg } = await verify(aa.data.access_token, { audience: DEFAULT_RESOURCE, typ: 'at+jwt' });
  check('agent claims layout', JSON.stringify(Object.keys(pg)) === JSON.stringify([
    'iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', 'client_id', 'scope', 'agent_type', 'agent_model', 'agent_version',
    'agent_provider', 'agent_instance_id', 'delegator_sub', 'delegation_purpose', 'delegation_chain', 'agent_capabilities',
    'agent_trust_level', 'agent_attestation']), Object.keys(pg));
  check('agent identity', pg.sub === 'agent:agent-claude' && pg.agent_model === 'claude-sonnet-4' && pg.agent_trust_level === 'high'
    && pg.agent_instance_id === 'inst-42' && pg.delegator_sub === 'alice' && pg.delegation_purpose === 'triage inbox');
  check('agent scope = requested ∩ user', pg.scope === 'mcp:tools email:draft sql:read', pg.scope);
  const dc = pg.delegation_chain;
  check('delegation_chain[0]', dc.length === 1 && dc[0].iss === B && dc[0].sub === 'alice' && dc[0].aud === 'agent:agent-claude'
    && dc[0].scope === pg.scope && dc[0].constraints.max_duration === 3600 && dc[0].constraints.allowed_resources[0] === DEFAULT_RESOURCE
    && typeof dc[0].jti === 'string' && typeof dc[0].delegated_at === 'number', dc);
  const att = pg.agent_attestation;
  check('attestation envelope', att.format === TT_EAT && typeof att.timestamp === 'number');
  const { payload: eat, protectedHeader: eh } = await jwtVerify(att.token, attPub, { issuer: ATTESTER_ISS, subject: 'agent:agent-claude' });
  check('EAT verifies with attestation-pub.pem', eh.kid === attKid && eh.typ === 'eat+jwt' && eat.exp - eat.iat === 300
    && eat.agent_instance_id === 'inst-42' && eat.agent_model === 'claude-sonnet-4', { eh, eat });
  const sa = await agentTok(ub.data.access_token, 'agent-scraper');
  const ps = decodeJwt(sa.data.access_token).payload;
  check('scraper token', sa.status === 200 && ps.agent_trust_level === 'low' && ps.agent_version === undefined
    && ps.delegator_sub === 'bob' && /^agent-scraper-[0-9a-f]{12}$/.test(ps.agent_instance_id), ps);
  const badSecret = await agentTok(ua.data.access_token, 'agent-claude', {}, 'wrong');
  check('agent wrong secret → 401 invalid_client', badSecret.status === 401 && badSecret.data.error === 'invalid_client', badSecret.data);
  const agentAsSubject = await agentTok(aa.data.access_token);
  check('agent token as subject_token → invalid_grant', agentAsSubject.data.error === 'invalid_grant', agentAsSubject.data);
  const garbage = await agentTok('abc.def.ghi');
  check('garbage subject_token → invalid_grant', garbage.data.error === 'invalid_grant');

  // --- token exchange
  const exchange = (extra, basic = ['mcp-warden', 'mcp-warden-secret']) => token({
    grant_type: GRANT_TOKEN_EXCHANGE, subject_token: ua.data.access_token, subject_token_type: TT_ACCESS_TOKEN,
    actor_token: aa.data.access_token, actor_token_type: TT_ACCESS_TOKEN, audience: 'http://127.0.0.1:8101/mcp', ...extra,
  }, basic);
  const stats0 = (await http('GET', `${B}/stats`)).data;
  const ex = await exchange({ scope: 'mcp:tools email:draft' });
  check('exchange 200', ex.status === 200, ex.data);
  check('exchange response (RFC 8693)', ex.data.issued_token_type === TT_ACCESS_TOKEN && ex.data.token_type === 'Bearer'
    && ex.data.expires_in === 60 && ex.data.scope === 'mcp:tools email:draft', ex.data);
  const { payload: pe } = await verify(ex.data.access_token, { audience: 'http://127.0.0.1:8101/mcp' });
  check('exchanged claims', pe.sub === 'alice' && pe.act?.sub === 'agent:agent-claude' && pe.client_id === 'mcp-warden'
    && pe.exp - pe.iat === 60 && pe.scope === 'mcp:tools email:draft', pe);
  const widen = await exchange({ scope: 'mcp:tools files:delete' });
  check('exchange: scope outside actor scope → invalid_scope', widen.data.error === 'invalid_scope', widen.data);
  const widenUser = await exchange({ scope: 'mcp:tools', subject_token: ub.data.access_token, actor_token: sa.data.access_token });
  check('exchange: bob+scraper narrow ok', widenUser.status === 200, widenUser.data);
  const widenBob = await exchange({ scope: 'HR_read', subject_token: ub.data.access_token, actor_token: sa.data.access_token });
  check('exchange: scope outside subject scope → invalid_scope', widenBob.data.error === 'invalid_scope', widenBob.data);
  const notDelegated = await exchange({ subject_token: ub.data.access_token });
  check('exchange: actor not delegated by subject → invalid_grant', notDelegated.data.error === 'invalid_grant'
    && /not delegated/.test(notDelegated.data.error_description), notDelegated.data);
  const noActor = await exchange({ actor_token: undefined, actor_token_type: undefined, scope: 'sql:read' });
  check('exchange without actor: no act', noActor.status === 200 && decodeJwt(noActor.data.access_token).payload.act === undefined, noActor.data);
  const long = await exchange({ requested_lifetime: '1000' });
  check('requested_lifetime capped at 300', long.data.expires_in === 300, long.data);
  const short = await exchange({ requested_lifetime: '5' });
  check('requested_lifetime honoured', short.data.expires_in === 5, short.data);
  const multi = await exchange({ audience: ['a-server', 'b-server'], resource: 'http://127.0.0.1:8102/mcp' });
  check('multiple audience/resource → aud array', JSON.stringify(decodeJwt(multi.data.access_token).payload.aud)
    === '["a-server","b-server","http://127.0.0.1:8102/mcp"]', multi.data);
  const noAud = await exchange({ audience: undefined });
  check('exchange without audience → invalid_target', noAud.data.error === 'invalid_target', noAud.data);
  const badType = await exchange({ requested_token_type: 'urn:ietf:params:oauth:token-type:saml2' });
  check('unsupported requested_token_type → invalid_request', badType.data.error === 'invalid_request', badType.data);
  const wrongSecret = await exchange({}, ['mcp-warden', 'x']);
  check('exchange wrong client secret → 401 invalid_client', wrongSecret.status === 401 && wrongSecret.data.error === 'invalid_client');
  const agentExch = await exchange({}, ['agent-claude', 'agent-claude-secret']);
  check('agent client may not exchange', agentExch.data.error === 'invalid_request', agentExch.data);

  // private_key_jwt client
  const stsKey = await importPKCS8(fs.readFileSync(path.join(tmp, 'sts-client-key.pem'), 'utf8'), 'ES256');
  const stsKid = JSON.parse(fs.readFileSync(path.join(tmp, 'sts-client-jwks.json'), 'utf8')).keys[0].kid;
  const assertion = (key = stsKey, aud = B) => new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: stsKid })
    .setIssuer('mcp-warden-pkjwt').setSubject('mcp-warden-pkjwt').setAudience(aud).setJti(crypto.randomUUID())
    .setIssuedAt().setExpirationTime('60s').sign(key);
  const pk = await exchange({
    client_id: 'mcp-warden-pkjwt',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await assertion(),
    scope: 'mcp:tools',
  }, null);
  check('private_key_jwt exchange 200', pk.status === 200 && decodeJwt(pk.data.access_token).payload.client_id === 'mcp-warden-pkjwt', pk.data);
  const pkTokenEp = await exchange({
    client_id: 'mcp-warden-pkjwt',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await assertion(stsKey, `${B}/token`),
  }, null);
  check('private_key_jwt with aud=token endpoint 200', pkTokenEp.status === 200, pkTokenEp.data);
  const otherKey = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign'])).privateKey;
  const pkBad = await exchange({
    client_id: 'mcp-warden-pkjwt',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await assertion(otherKey),
  }, null);
  check('private_key_jwt with a foreign key → 401 invalid_client', pkBad.status === 401 && pkBad.data.error === 'invalid_client', pkBad.data);

  const fixed = await assertion();
  const pkOnce = await exchange({ client_id: 'mcp-warden-pkjwt', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: fixed }, null);
  const pkReplay = await exchange({ client_id: 'mcp-warden-pkjwt', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: fixed }, null);
  check('private_key_jwt assertion replay (same jti) → invalid_client', pkOnce.status === 200 && pkReplay.status === 401, pkReplay.data);
  const post = await exchange({ client_id: 'mcp-warden', client_secret: 'mcp-warden-secret' }, null);
  // oidc-provider 9 treats client_secret_basic and client_secret_post as equivalent
  check('mcp-warden with client_secret_post also accepted (oidc-provider quirk)', post.status === 200, post.data);

  const stats1 = (await http('GET', `${B}/stats`)).data;
  check('stats: token_exchange counts issued exchanges', stats1.token_exchange - stats0.token_exchange === 10, stats1);
  check('stats: refused exchanges counted', stats1.token_exchange_refused - stats0.token_exchange_refused === 5, stats1);

  // --- test mint
  const mint = async (body) => (await http('POST', `${B}/test/mint`, { json: body })).data;
  const m1 = await mint({ kind: 'user', base: { username: 'bob' } });
  check('mint user (idp) verifies', !(await rejects(m1.token)) && m1.claims.sub === 'bob' && m1.claims.scope === 'mcp:tools mcp:resources sql:read');
  const mExp = await mint({ kind: 'user', base: { username: 'alice' }, exp_in: -60 });
  check('mint expired rejected by jose', await rejects(mExp.token));
  const mNbf = await mint({ kind: 'user', base: { username: 'alice' }, nbf_in: 3600 });
  check('mint not-yet-valid rejected', await rejects(mNbf.token));
  const mIss = await mint({ kind: 'user', iss: 'https://evil.example' });
  check('mint wrong issuer rejected', await rejects(mIss.token));
  const mRogue = await mint({ kind: 'user', sign: 'rogue' });
  check('mint rogue (same kid) rejected', mRogue.header.kid === jw.keys[0].kid && await rejects(mRogue.token));
  const mRogue2 = await mint({ kind: 'user', sign: 'rogue', rogue_kid: 'evil-kid' });
  check('mint rogue (other kid) rejected', mRogue2.header.kid === 'evil-kid' && await rejects(mRogue2.token));
  const mNone = await mint({ kind: 'user', sign: 'none' });
  check('mint alg none: empty signature, rejected', mNone.token.endsWith('.') && mNone.header.alg === 'none' && await rejects(mNone.token));
  const mHs = await mint({ kind: 'user', sign: 'hs256' });
  const pemSecret = Buffer.from(crypto.createPublicKey({ key: jw.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' }));
  const [hh, hp, hsig] = mHs.token.split('.');
  check('mint hs256 = HMAC(public PEM)', crypto.createHmac('sha256', pemSecret).update(`${hh}.${hp}`).digest('base64url') === hsig);
  check('mint hs256 rejected by ES256-only verifier', await rejects(mHs.token));
  const mSet = await mint({ kind: 'user', base: { username: 'dave' }, set: { scope: 'files:delete', aud: 'other' }, unset: ['email'] });
  check('mint set/unset', mSet.claims.scope === 'files:delete' && mSet.claims.aud === 'other' && !('email' in mSet.claims));
  const mAgent = await mint({
    kind: 'agent',
    base: { username: 'alice', agent: 'agent-scraper', scope: 'mcp:tools files:delete' },
    attestation: { sign: 'rogue', exp_in: -10, timestamp_offset: -100000, set: { dbgstat: 'enabled' } },
  });
  const ma = mAgent.claims;
  check('mint agent', ma.sub === 'agent:agent-scraper' && ma.scope === 'mcp:tools files:delete' && ma.delegator_sub === 'alice'
    && ma.agent_attestation.timestamp < Math.floor(Date.now() / 1000) - 99000, ma);
  let eatRejected = false;
  try { await jwtVerify(ma.agent_attestation.token, attPub); } catch { eatRejected = true; }
  check('mint agent: rogue/expired EAT rejected by attester key', eatRejected
    && decodeJwt(ma.agent_attestation.token).payload.dbgstat === 'enabled');
  const mChain = await mint({
    kind: 'agent', base: { username: 'alice' },
    set: { delegation_chain: [{ sub: 'alice', aud: 'agent:x' }, { sub: 'agent:x', aud: 'agent:agent-claude' }] },
  });
  check('mint agent with custom chain verifies', !(await rejects(mChain.token)) && mChain.claims.delegation_chain.length === 2);
  const mNoAtt = await mint({ kind: 'agent', attestation: { omit: true } });
  check('mint agent attestation omit', !('agent_attestation' in mNoAtt.claims));
  const mNested = await mint({ kind: 'agent', base: { username: 'alice' }, set: { act: { sub: 'agent:orchestrator' } } });
  const exNested = await exchange({ actor_token: mNested.token, scope: 'mcp:tools' });
  check('exchange nests the actor token act', exNested.status === 200
    && JSON.stringify(decodeJwt(exNested.data.access_token).payload.act) === '{"sub":"agent:agent-claude","act":{"sub":"agent:orchestrator"}}', exNested.data);
  const exOfEx = await exchange({ subject_token: ex.data.access_token });
  check('exchanged token as subject_token → invalid_grant', exOfEx.data.error === 'invalid_grant', exOfEx.data);
  const exRogue = await exchange({ subject_token: mRogue.token });
  check('exchange refuses rogue subject', exRogue.data.error === 'invalid_grant', exRogue.data);
  const exHs = await exchange({ subject_token: mHs.token });
  check('exchange refuses hs256 subject', exHs.data.error === 'invalid_grant', exHs.data);
  const exNone = await exchange({ subject_token: mNone.token });
  check('exchange refuses alg none subject', exNone.data.error === 'invalid_grant', exNone.data);
  const exExp = await exchange({ subject_token: mExp.token });
  check('exchange refuses expired subject', exExp.data.error === 'invalid_grant', exExp.data);
  const mEx = await mint({ kind: 'exchange', base: { username: 'bob', audience: 'srv' } });
  check('mint exchange kind', mEx.claims.act.sub === 'agent:agent-claude' && mEx.claims.aud === 'srv');
  const badMint = await http('POST', `${B}/test/mint`, { json: { kind: 'nope' } });
  check('mint bad kind → 400', badMint.status === 400);

  // --- rotation
  const oldKid = jw.keys[0].kid;
  const rot = (await http('POST', `${B}/test/rotate`, { json: {} })).data;
  check('rotate returns new kid', rot.kid && rot.kid !== oldKid && rot.kids.length === 2 && rot.kids[1] === oldKid, rot);
  const jw2 = (await http('GET', `${B}/jwks`)).data;
  check('jwks publishes new + old', jw2.keys.map((k) => k.kid).join(',') === `${rot.kid},${oldKid}`, jw2);
  const disc2 = (await http('GET', `${B}/.well-known/openid-configuration`)).data;
  check('discovery still served after rotate', disc2.issuer === B);
  const ua2 = await userTok('alice');
  check('new tokens use new kid', decodeJwt(ua2.data.access_token).header.kid === rot.kid);
  check('old and new tokens verify against JWKS', !(await rejects(ua.data.access_token)) && !(await rejects(ua2.data.access_token)));
  const exOld = await exchange({ scope: 'mcp:tools' });
  check('exchange accepts tokens signed with the previous key', exOld.status === 200, exOld.data);
  const pkAfter = await exchange({
    client_id: 'mcp-warden-pkjwt',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await assertion(),
  }, null);
  check('clients survive rotation (private_key_jwt)', pkAfter.status === 200, pkAfter.data);
  await http('POST', `${B}/test/rotate`, { json: {} });
  await http('POST', `${B}/test/rotate`, { json: {} });
  const jw3 = (await http('GET', `${B}/jwks`)).data;
  check('jwks keeps at most 3 keys', jw3.keys.length === 3 && !jw3.keys.some((k) => k.kid === oldKid));
  check('token of a retired key is refused', (await exchange({ scope: 'mcp:tools' })).data.error === 'invalid_grant');

  // --- logs never contain tokens
  const logs = idp.stderr();
  check('stderr is JSON lines', logs.trim().split('\n').every((l) => { try { JSON.parse(l); return true; } catch { return false; } }));
  check('no token in logs', ![ua.data.access_token, aa.data.access_token, ex.data.access_token]
    .some((t) => logs.includes(t.split('.')[2])));

  // --- without --test-mode the test routes do not exist
  const prod = await spawnIdp([]);
  const pm = await http('POST', `${prod.base}/test/mint`, { json: { kind: 'user' } });
  const pr = await http('POST', `${prod.base}/test/rotate`, { json: {} });
  check('test routes 404 without --test-mode', pm.status === 404 && pr.status === 404);
  check('ephemeral attestation key served', (await http('GET', `${prod.base}/attestation/pub.pem`)).data.includes('BEGIN PUBLIC KEY'));
  check('stats always on', (await http('GET', `${prod.base}/stats`)).data.token_exchange === 0);
} catch (e) {
  failures += 1;
  process.stdout.write(`FAIL exception: ${e.stack}\n`);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(`\n${passes} passed, ${failures} failed\n`);
process.exit(failures ? 1 : 0);
