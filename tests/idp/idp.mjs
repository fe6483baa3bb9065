// Test-only OpenID Connect identity provider for frontdesk's integration tests.
//
// Built from oauth2-mock-server's own building blocks (OAuth2Issuer +
// OAuth2Service, the two pieces its OAuth2Server glues to an http server).
// We mount the mock's request handler behind our own node:http server so that
// we can (a) bind to 127.0.0.1 and advertise an issuer of
// http://127.0.0.1:PORT (OAuth2Server rewrites loopback hosts to "localhost",
// which may resolve to ::1 first), (b) add /__test/* control routes (the
// mock's express app ends with a catch-all 404, so routes cannot be appended
// to it), and (c) make /jwks fail on demand.
//
// Protocol: prints exactly one JSON line on stdout once listening, then runs
// until stdin reaches EOF, or SIGTERM/SIGINT. Diagnostics go to stderr.
//
// Endpoints served by the mock itself (unchanged):
//   GET  /.well-known/openid-configuration, GET /jwks, POST /token, ...
// Control endpoints (JSON in, JSON out):
//   POST /__test/mint       {"claims":{...}, "header":{...}} -> {"token","kid","alg"}
//   POST /__test/rotate     {"alg":"RS256"|"ES256"}          -> {"kid","alg"}
//   POST /__test/jwks-fail  {"fail":true|false} (no body: toggle) -> {"jwks_failing"}
//   POST /__test/id-token   {"claims":{...}} (or {"claims":null} to reset)   -> {"claims"}
//        claims merged into every ID token the mock's own /token endpoint issues
//        from then on (a claim given as null is removed), e.g. "email", or a
//        wrong "aud"/"nonce" to exercise a relying party's checks.
//   GET  /__test/stats                                        -> {"jwks_requests","discovery_requests","token_requests","jwks_failing","signing_kids"}

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const HOST = '127.0.0.1';
const SUPPORTED_ALGS = ['RS256', 'ES256'];

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);

// Current signing key per algorithm. Old keys stay in the keystore (and so in
// the published JWKS) after rotation.
// Kids are readable but random per process, so two IdPs never share a kid
// (a cache keyed by kid alone, not issuer+kid, would show up in tests).
const signingKids = {};
let keyCounter = 0;
async function generateKey(alg) {
  keyCounter += 1;
  const kid = `${alg.toLowerCase()}-${keyCounter}-${randomBytes(6).toString('hex')}`;
  const jwk = await issuer.keys.generate(alg, { kid });
  signingKids[alg] = jwk.kid;
  return jwk;
}
for (const alg of SUPPORTED_ALGS) await generateKey(alg);

// The mock picks keys round-robin when no kid is given; pin its own /token
// endpoint to the current RS256 key so its output is deterministic.
const originalBuildToken = issuer.buildToken.bind(issuer);
issuer.buildToken = (opts) =>
  originalBuildToken({ ...opts, kid: opts?.kid ?? signingKids.RS256 });

const state = {
  idTokenClaims: null,
  jwksFailing: false,
  jwksRequests: 0,
  discoveryRequests: 0,
  tokenRequests: 0,
};

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function sendJson(res, status, body, extraHeaders = {}) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(data);
}

async function readJsonBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1 << 20) throw new HttpError(413, 'body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `malformed JSON body: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new HttpError(400, 'body must be a JSON object');
  }
  return value;
}

function b64urlJson(value) {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

// Claims: defaults are iss=issuer, sub="user-1", iat=now, exp=now+300; `aud`
// is required. Any claim given as null is removed from the token (e.g.
// {"exp": null} mints a token without exp). Header: `alg` selects the signing
// key (RS256 default, ES256, or "none" for an unsecured JWT); `typ` defaults to
// "JWT" (null removes it); `kid` defaults to the key's kid (it may be
// overridden, e.g. to an unknown kid; null removes it); any other header
// parameter is added as given.
async function mint(body) {
  const claims = body.claims ?? {};
  const header = body.header ?? {};
  if (typeof claims !== 'object' || Array.isArray(claims) || claims === null) {
    throw new HttpError(400, '"claims" must be a JSON object');
  }
  if (typeof header !== 'object' || Array.isArray(header) || header === null) {
    throw new HttpError(400, '"header" must be a JSON object');
  }
  if (!('aud' in claims) || claims.aud === null) {
    throw new HttpError(400, '"claims.aud" is required');
  }
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: issuer.url, sub: 'user-1', iat: now, exp: now + 300 };
  for (const [k, v] of Object.entries(claims)) {
    if (v === null) delete payload[k];
    else payload[k] = v;
  }

  const alg = header.alg ?? 'RS256';
  const headerRest = { ...header };
  delete headerRest.alg;

  if (alg === 'none') {
    const h = { alg: 'none', typ: 'JWT', ...headerRest };
    for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
    return { token: `${b64urlJson(h)}.${b64urlJson(payload)}.`, kid: null, alg };
  }
  const kid = signingKids[alg];
  if (kid === undefined) {
    throw new HttpError(400, `unsupported alg ${JSON.stringify(alg)}; use one of ${SUPPORTED_ALGS.join(', ')} or none`);
  }
  const token = await originalBuildToken({
    kid,
    scopesOrTransform: (h, p) => {
      for (const k of Object.keys(p)) delete p[k];
      Object.assign(p, payload);
      for (const [k, v] of Object.entries(headerRest)) {
        // The mock spreads our header over {typ: "JWT"}; undefined drops a
        // member when serialised.
        h[k] = v === null ? undefined : v;
      }
    },
  });
  return { token, kid, alg };
}

// The mock signs its ID tokens (authorization_code / refresh_token grants) with
// a payload that has no `scope`, unlike its access tokens: that tells them apart.
service.on('beforeTokenSigning', (token) => {
  if (state.idTokenClaims === null || 'scope' in token.payload) return;
  for (const [k, v] of Object.entries(state.idTokenClaims)) {
    if (v === null) delete token.payload[k];
    else token.payload[k] = v;
  }
});

async function rotate(body) {
  const alg = body.alg ?? 'RS256';
  if (!SUPPORTED_ALGS.includes(alg)) {
    throw new HttpError(400, `unsupported alg ${JSON.stringify(alg)}; use one of ${SUPPORTED_ALGS.join(', ')}`);
  }
  const jwk = await generateKey(alg);
  return { kid: jwk.kid, alg };
}

async function control(req, res, path) {
  if (req.method === 'GET' && path === '/__test/stats') {
    return sendJson(res, 200, {
      jwks_requests: state.jwksRequests,
      discovery_requests: state.discoveryRequests,
      token_requests: state.tokenRequests,
      jwks_failing: state.jwksFailing,
      signing_kids: signingKids,
    });
  }
  if (req.method !== 'POST') throw new HttpError(405, 'control routes take POST (except GET /__test/stats)');
  const body = await readJsonBody(req);
  switch (path) {
    case '/__test/mint':
      return sendJson(res, 200, await mint(body));
    case '/__test/id-token':
      if (body.claims !== null && (typeof body.claims !== 'object' || Array.isArray(body.claims))) {
        throw new HttpError(400, '"claims" must be a JSON object or null');
      }
      state.idTokenClaims = body.claims ?? null;
      return sendJson(res, 200, { claims: state.idTokenClaims });
    case '/__test/rotate':
      return sendJson(res, 200, await rotate(body));
    case '/__test/jwks-fail':
      if (body.fail !== undefined && typeof body.fail !== 'boolean') {
        throw new HttpError(400, '"fail" must be a boolean');
      }
      state.jwksFailing = body.fail ?? !state.jwksFailing;
      return sendJson(res, 200, { jwks_failing: state.jwksFailing });
    default:
      throw new HttpError(404, `no control route ${path}`);
  }
}

const mockHandler = service.requestHandler;

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path.startsWith('/__test/')) {
    control(req, res, path).catch((err) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) console.error('idp: control route error:', err);
      if (!res.headersSent) sendJson(res, status, { error: err.message });
      else res.destroy();
    });
    return;
  }
  if (path === '/jwks') {
    state.jwksRequests += 1;
    if (state.jwksFailing) {
      return sendJson(res, 503, { error: 'temporarily_unavailable' }, { 'retry-after': '1' });
    }
  } else if (path === '/.well-known/openid-configuration') {
    state.discoveryRequests += 1;
  } else if (path === '/token') {
    state.tokenRequests += 1;
  }
  mockHandler(req, res);
});
server.keepAliveTimeout = 1000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, HOST, resolve);
});
const { port } = server.address();
const base = `http://${HOST}:${port}`;
issuer.url = base;

function shutdown(code) {
  server.closeAllConnections?.();
  server.close();
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.on('error', () => shutdown(0));
process.stdin.resume();

process.stdout.write(
  `${JSON.stringify({
    issuer: base,
    control: base,
    jwks_uri: `${base}/jwks`,
    discovery: `${base}/.well-known/openid-configuration`,
    token_endpoint: `${base}/token`,
    signing_kids: signingKids,
  })}\n`,
);
