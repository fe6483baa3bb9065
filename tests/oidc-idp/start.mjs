// A real, interactive OpenID Connect provider for frontdesk's browser test of the authorization
// code flow (tests/authorize_browser.rs), built on the npm package oidc-provider with its
// development interactions: a sign-in form that accepts any login and password (the login
// becomes `sub`, the email `<login>@example.com`), then its own consent page.
//
// Protocol on stdio, so the test can register frontdesk once it knows frontdesk's address:
//
//   1. The server listens on a random loopback port and prints one JSON line:
//        {"issuer":"http://127.0.0.1:PORT","port":PORT}
//   2. It reads one JSON line from stdin with the client to register:
//        {"client_id":"...","client_secret":"...","redirect_uris":["..."]}
//      (until then every request is answered 503).
//   3. It prints {"ready":true} and serves OpenID Connect until stdin closes, then exits.
//
// Logs go to stderr. Nothing here is fit for production: keys and cookie secrets are generated
// at start and the accounts are invented.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import Provider from 'oidc-provider';

const server = createServer((req, res) => {
  res.writeHead(503, { 'content-type': 'text/plain' });
  res.end('the test IdP has no client registered yet\n');
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);

const lines = createInterface({ input: process.stdin });
const registration = await new Promise((resolve, reject) => {
  lines.once('line', (line) => {
    try {
      resolve(JSON.parse(line));
    } catch (error) {
      reject(new Error(`the client line is not JSON: ${error.message}`));
    }
  });
  lines.once('close', () => reject(new Error('stdin closed before a client was registered')));
}).catch((error) => {
  console.error(`oidc-idp: ${error.message}`);
  process.exit(2);
});
const { client_id: clientId, client_secret: clientSecret, redirect_uris: redirectUris } = registration;
if (!clientId || !clientSecret || !Array.isArray(redirectUris) || redirectUris.length === 0) {
  console.error('oidc-idp: the client line needs client_id, client_secret and redirect_uris');
  process.exit(2);
}

const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // frontdesk reads the user's email from the ID token, not from userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: `${sub}@example.com`, email_verified: true };
      },
    };
  },
});
provider.on('server_error', (_ctx, error) => console.error(`oidc-idp: server error: ${error.stack ?? error}`));
provider.on('authorization.error', (_ctx, error) => console.error(`oidc-idp: authorization error: ${error.message} ${error.error_description ?? ''}`));
provider.on('grant.error', (_ctx, error) => console.error(`oidc-idp: token error: ${error.message} ${error.error_description ?? ''}`));

server.removeAllListeners('request');
server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);

// The test closes stdin (or dies) when it is done: exit then, so no IdP outlives its test.
lines.once('close', () => {
  server.close();
  process.exit(0);
});
