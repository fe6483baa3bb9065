// Independent verification of a JWT with the `jose` library.
//
// Usage: node verify.mjs <jwks_url> <expected_issuer> <expected_audience> <expected_typ> < token
//
// Reads the compact JWT from stdin, fetches the JWKS over HTTP, and verifies
// signature, iss, aud, typ, exp/nbf (jose defaults, no clock tolerance) with
// the asymmetric algorithms frontdesk may use. On success prints
// {"header":...,"payload":...} on stdout and exits 0; on failure prints the
// error on stderr and exits 1 (2 for usage errors).

import { createRemoteJWKSet, jwtVerify } from 'jose';
import { ALGORITHMS, readStdin } from './script_io.mjs';

async function main() {
  const [jwksUrl, issuer, audience, typ] = process.argv.slice(2);
  if (!jwksUrl || !issuer || !audience || !typ) {
    process.stderr.write('usage: node verify.mjs <jwks_url> <expected_issuer> <expected_audience> <expected_typ> < token\n');
    process.exit(2);
  }
  const token = await readStdin();
  if (token === '') throw new Error('no token on stdin');
  const jwks = createRemoteJWKSet(new URL(jwksUrl), { timeoutDuration: 5000, cacheMaxAge: 0 });
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ,
    algorithms: ALGORITHMS,
  });
  process.stdout.write(`${JSON.stringify({ header: protectedHeader, payload })}\n`);
}

main().catch((err) => {
  const code = err?.code ? `${err.code}: ` : '';
  process.stderr.write(`${code}${err?.message ?? String(err)}\n`);
  process.exit(1);
});
