// A SAML 2.0 identity provider's assertion, signed by Auth0's `saml` library (the one its
// SAML IdP uses), for frontdesk's SAML subject-token tests.
//
// Usage: node saml.mjs < options.json
//
// Reads {"key","cert","issuer","audience","name_id", optional "name_id_format",
// "attributes" (name -> string or array), "lifetime_secs" (default 300),
// "authn_context", "signature_algorithm" ("rsa-sha256" default, or "rsa-sha1"),
// "digest_algorithm" ("sha256" default, or "sha1")} and prints
// {"assertion": "<saml:Assertion …>"}, the signed assertion's XML. Exits 1 on failure, 2 on a usage error.

import saml from 'saml';
import { readStdin } from './script_io.mjs';

async function main() {
  const input = await readStdin();
  if (!input) {
    process.stderr.write('usage: node saml.mjs < options.json\n');
    process.exit(2);
  }
  const options = JSON.parse(input);
  const assertion = saml.Saml20.create({
    cert: Buffer.from(options.cert),
    key: Buffer.from(options.key),
    issuer: options.issuer,
    audiences: options.audience,
    lifetimeInSeconds: options.lifetime_secs ?? 300,
    nameIdentifier: options.name_id,
    nameIdentifierFormat:
      options.name_id_format ?? 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
    attributes: options.attributes ?? {},
    authnContextClassRef:
      options.authn_context ??
      'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
    signatureAlgorithm: options.signature_algorithm ?? 'rsa-sha256',
    digestAlgorithm: options.digest_algorithm ?? 'sha256',
  });
  process.stdout.write(JSON.stringify({ assertion }));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
