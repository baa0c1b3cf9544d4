// Shared constants and helpers for the mcp-warden demo IdP / STS and its CLIs.
import * as crypto from 'node:crypto';

export const GRANT_DEMO_PASSWORD = 'urn:mcp-warden:grant-type:demo-password';
export const GRANT_AGENT_DELEGATION = 'urn:mcp-warden:grant-type:agent-delegation';
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

export const TT_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TT_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TT_EAT = 'urn:ietf:params:oauth:token-type:eat';

export const ATTESTER_ISS = 'urn:mcp-warden:demo-attester';

export const DEFAULT_IDP = 'http://127.0.0.1:4000';
export const DEFAULT_RESOURCE = 'http://127.0.0.1:10000/mcp';

/** Parse `--flag value` / `--flag=value` / `--switch` arguments. */
export function parseArgs(argv, { booleans = [] } = {}) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = (eq === -1 ? a.slice(2) : a.slice(2, eq));
      if (eq !== -1) out[name] = a.slice(eq + 1);
      else if (booleans.includes(name)) out[name] = true;
      else if (i + 1 < argv.length) { out[name] = argv[i + 1]; i += 1; } else throw new Error(`missing value for --${name}`);
    } else {
      out._.push(a);
    }
  }
  return out;
}

export function randomId(bytes = 16) {
  return crypto.randomBytes(bytes).toString('base64url');
}

/** Decode a compact JWS without verifying it (for logs / tests). */
export function decodeJwt(token) {
  const [h, p] = String(token).split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
  };
}
