// Independent Token Status List check (draft-ietf-oauth-status-list) with
// @sd-jwt/jwt-status-list for the list format and `jose` for the signature.
//
// Usage: node status.mjs <jwks_url> < referenced_token
//
// Reads a token carrying a `status.status_list` claim from stdin, fetches the
// list its `uri` names (Accept: application/statuslist+jwt), verifies the list
// token's signature against the JWKS with typ statuslist+jwt, checks that its
// `sub` is the `uri`, decodes the list and prints
// {"idx", "uri", "status", "ttl", "content_type", "cache_control"}.
// Exits 1 on any failure (the reason on stderr), 2 on a usage error.

import { createRemoteJWKSet, jwtVerify } from 'jose';
import { getListFromStatusListJWT, getStatusListFromJWT } from '@sd-jwt/jwt-status-list';
import { ALGORITHMS, readStdin } from './script_io.mjs';

async function main() {
  const [jwksUrl] = process.argv.slice(2);
  if (!jwksUrl) {
    process.stderr.write('usage: node status.mjs <jwks_url> < referenced_token\n');
    process.exit(2);
  }
  const token = await readStdin();
  const { idx, uri } = getStatusListFromJWT(token);
  const response = await fetch(uri, { headers: { accept: 'application/statuslist+jwt' } });
  if (!response.ok) throw new Error(`GET ${uri}: ${response.status}`);
  const contentType = response.headers.get('content-type') ?? '';
  const listToken = (await response.text()).trim();
  const jwks = createRemoteJWKSet(new URL(jwksUrl), { timeoutDuration: 5000, cacheMaxAge: 0 });
  const { payload } = await jwtVerify(listToken, jwks, {
    typ: 'statuslist+jwt',
    algorithms: ALGORITHMS,
  });
  if (payload.sub !== uri) throw new Error(`list sub ${payload.sub} is not the uri ${uri}`);
  const status = getListFromStatusListJWT(listToken).getStatus(idx);
  process.stdout.write(`${JSON.stringify({
    idx, uri, status, ttl: payload.ttl, content_type: contentType,
    cache_control: response.headers.get('cache-control'),
  })}\n`);
}

main().catch((err) => {
  const code = err?.code ? `${err.code}: ` : '';
  process.stderr.write(`${code}${err?.message ?? String(err)}\n`);
  process.exit(1);
});
