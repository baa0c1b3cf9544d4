#!/usr/bin/env node
// Usage: node idp/gen-sts-client-key.mjs <out-dir>
// Writes the key pair with which the `mcp-warden-pkjwt` client authenticates (private_key_jwt, ES256):
//   <out-dir>/sts-client-key.pem     PKCS#8 private key (the client signs its client_assertion with it)
//   <out-dir>/sts-client-jwks.json   public JWKS        (pass to idp.mjs --sts-client-jwks)
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { exportJWK, calculateJwkThumbprint } from 'jose';

const outDir = process.argv[2];
if (!outDir) {
  process.stderr.write('usage: node idp/gen-sts-client-key.mjs <out-dir>\n');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = await exportJWK(publicKey);
jwk.kid = await calculateJwkThumbprint(jwk);
jwk.alg = 'ES256';
jwk.use = 'sig';
fs.writeFileSync(path.join(outDir, 'sts-client-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
fs.writeFileSync(path.join(outDir, 'sts-client-jwks.json'), `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
process.stdout.write(`${JSON.stringify({ dir: path.resolve(outDir), kid: jwk.kid })}\n`);
