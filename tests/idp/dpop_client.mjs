// Both legs of the ID-JAG flow with DPoP, driven by the npm package `openid-client` (a certified
// OpenID relying party library) as an independent client: it discovers each frontdesk through
// its RFC 8414 metadata, makes its own DPoP key pair and proofs, exchanges an ID token for an
// ID-JAG at A, and redeems that at B with the jwt-bearer grant.
//
// Usage: node dpop_client.mjs < request.json
//   request.json: {"a": {"issuer", "client_id", "client_secret"},
//                  "b": {"issuer", "client_id", "client_secret"},
//                  "id_token", "resource", "scope"}
//
// Prints one JSON object on stdout: the key's RFC 7638 thumbprint as `jose` computes it, the
// token types of both responses, the ID-JAG and the access token; exits 1 with the error on
// stderr when a step fails.

import * as client from 'openid-client';
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import { readStdin } from './script_io.mjs';

// Plain http on loopback: the test servers have no TLS.
const insecure = { execute: [client.allowInsecureRequests], algorithm: 'oauth2' };

async function discover({ issuer, client_id, client_secret }) {
  return client.discovery(
    new URL(issuer),
    client_id,
    undefined,
    client.ClientSecretBasic(client_secret),
    insecure,
  );
}

async function main() {
  const request = JSON.parse(await readStdin());
  const a = await discover(request.a);
  const b = await discover(request.b);
  const keyPair = await client.randomDPoPKeyPair('ES256');
  const thumbprint = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey));

  // Leg 1: RFC 8693 token exchange at A, with a DPoP proof.
  const exchanged = await client.genericGrantRequest(
    a,
    'urn:ietf:params:oauth:grant-type:token-exchange',
    {
      requested_token_type: 'urn:ietf:params:oauth:token-type:id-jag',
      audience: request.b.issuer,
      resource: request.resource,
      scope: request.scope,
      subject_token: request.id_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    },
    { DPoP: client.getDPoPHandle(a, keyPair) },
  );
  const idJag = exchanged.access_token;

  // Leg 2: RFC 7523 jwt-bearer at B, with a proof of the same key.
  const redeemed = await client.genericGrantRequest(
    b,
    'urn:ietf:params:oauth:grant-type:jwt-bearer',
    { assertion: idJag },
    { DPoP: client.getDPoPHandle(b, keyPair) },
  );

  process.stdout.write(`${JSON.stringify({
    thumbprint,
    exchange_token_type: exchanged.token_type,
    id_jag: idJag,
    id_jag_cnf: decodeJwt(idJag).cnf ?? null,
    access_token: redeemed.access_token,
    access_token_type: redeemed.token_type,
  })}\n`);
}

main().catch((err) => {
  const code = err?.code ? `${err.code}: ` : '';
  const cause = err?.cause?.body ? ` ${JSON.stringify(err.cause.body)}` : '';
  process.stderr.write(`${code}${err?.message ?? String(err)}${cause}\n`);
  process.exit(1);
});
