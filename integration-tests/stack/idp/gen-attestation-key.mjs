#!/usr/bin/env node
// Usage: node idp/gen-attestation-key.mjs <out-dir>
// Writes a P-256 key pair for the demo agent attester (signs the EAT in agent_attestation):
//   <out-dir>/attestation-key.pem    PKCS#8 private key  (pass to idp.mjs --attestation-key)
//   <out-dir>/attestation-pub.pem    SPKI public key     (give to the verifier, e.g. mcp-warden)
//   <out-dir>/attestation-jwks.json  the public key as a JWKS (kid = RFC 7638 thumbprint)
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { exportJWK, calculateJwkThumbprint } from 'jose';

const outDir = process.argv[2];
if (!outDir) {
  process.stderr.write('usage: node idp/gen-attestation-key.mjs <out-dir>\n');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const priv = privateKey.export({ type: 'pkcs8', format: 'pem' });
const pub = publicKey.export({ type: 'spki', format: 'pem' });
const jwk = await exportJWK(publicKey);
jwk.kid = await calculateJwkThumbprint(jwk);
jwk.alg = 'ES256';
jwk.use = 'sig';
fs.writeFileSync(path.join(outDir, 'attestation-key.pem'), priv, { mode: 0o600 });
fs.writeFileSync(path.join(outDir, 'attestation-pub.pem'), pub);
fs.writeFileSync(path.join(outDir, 'attestation-jwks.json'), `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`);
process.stdout.write(`${JSON.stringify({ dir: path.resolve(outDir), kid: jwk.kid })}\n`);
