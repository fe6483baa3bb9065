// Drives the admin page in headless Chromium (playwright-core, Debian's /usr/bin/chromium), for
// tests/admin_browser.rs. Usage:
//
//   node tests/browser/admin.spec.mjs <frontdesk-url> <idp-issuer> <username> <password> <screenshot-dir>
//
// Signs in, creates an identity provider for the test IdP and sees "test connection" succeed,
// creates an audience and a client, prints `CLIENT_SECRET <secret>` and waits for a line
// `EXCHANGED` on stdin (the Rust test performs a token exchange with that client meanwhile),
// then finds the exchange in the audit log and prints `AUDIT_OK`. Any failure exits non-zero
// with the reason on stderr.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { check, launchBrowser, reportFailure } from './lib.mjs';

const [url, idpIssuer, username, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: admin.spec.mjs <url> <idp-issuer> <username> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const CLIENT_ID = 'browser-agent';
const AUDIENCE = 'https://as.saas.example';

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve, reject) => {
  lines.once('line', resolve);
  lines.once('close', () => reject(new Error('stdin closed before EXCHANGED')));
});

let browser;
let page;
try {
  browser = await launchBrowser();
  ({ page } = browser);
  // The page must work without JavaScript, and the CSP forbids scripts anyway.
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });

  // 1. Sign in.
  await page.goto(`${url}/admin`);
  check(page.url().endsWith('/admin/sign-in'), `expected the sign-in page, got ${page.url()}`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${url}/admin`), page.click('button[type=submit]')]);
  check((await page.textContent('h1')) === 'Dashboard', 'no dashboard after sign-in');

  // 2. An identity provider for the test IdP, then "test connection".
  await page.goto(`${url}/admin/identity-providers/new`);
  await page.fill('#f-id', 'corp');
  await page.fill('#f-issuer', idpIssuer);
  await page.fill('#f-algorithms', 'RS256 ES256');
  await page.fill('#f-token_types', 'id_token');
  await Promise.all([page.waitForURL(/identity-providers\/corp\?notice=created/), page.click('form.card button[type=submit]')]);
  await Promise.all([page.waitForLoadState('load'), page.click('#test-connection')]);
  const result = await page.textContent('#test-result');
  check(result.includes('succeeded'), `test connection failed: ${result}`);
  check(result.includes(`Issuer: ${idpIssuer} (matches)`), `issuer not confirmed: ${result}`);
  check(/RS256/.test(result), `no key algorithms shown: ${result}`);
  await page.screenshot({ path: join(shots, 'admin-identity-provider-test.png'), fullPage: true });

  // 3. An audience, with a CEL condition.
  await page.goto(`${url}/admin/audiences/new`);
  await page.fill('#f-id', 'saas');
  await page.fill('#f-issuer', AUDIENCE);
  await page.fill('#f-scopes', 'read write');
  await page.selectOption('#f-token_type', 'id-jag');
  await page.fill('#f-condition', 'subject.email.endsWith("@example.com")');
  await Promise.all([page.waitForURL(/audiences\/saas\?notice=created/), page.click('form.card button[type=submit]')]);

  // 4. A client; its secret is shown once.
  await page.goto(`${url}/admin/clients/new`);
  await page.fill('#f-client_id', CLIENT_ID);
  await page.selectOption('#f-auth_method', 'client_secret_basic');
  await page.fill('#f-audiences', 'saas');
  await page.fill('#f-scopes', 'read');
  await Promise.all([page.waitForLoadState('load'), page.click('form.card button[type=submit]')]);
  const secret = (await page.textContent('#client-secret'))?.trim();
  check(secret && secret.length >= 40, `no client secret shown: ${await page.content()}`);
  await page.goto(`${url}/admin/clients`);
  check((await page.textContent('#clients-table')).includes(CLIENT_ID), 'client not listed');

  // 5. The Rust side performs a token exchange with this client.
  console.log(`CLIENT_SECRET ${secret}`);
  const answer = await nextLine();
  check(answer.trim() === 'EXCHANGED', `unexpected line on stdin: ${answer}`);

  // 6. The exchange is in the audit log.
  await page.goto(`${url}/admin/audit?client_id=${CLIENT_ID}&decision=issued`);
  const audit = await page.textContent('#audit-table');
  check(audit.includes('token_exchange') && audit.includes(AUDIENCE) && audit.includes('issued'),
    `the exchange is not in the audit log: ${audit}`);
  await page.screenshot({ path: join(shots, 'admin-audit-log.png'), fullPage: true });
  await page.goto(`${url}/admin`);
  await page.screenshot({ path: join(shots, 'admin-dashboard.png'), fullPage: true });
  check(errors.length === 0, `console errors: ${errors.join('; ')}`);
  console.log('AUDIT_OK');
} catch (error) {
  await reportFailure('admin.spec.mjs', error, page, shots, 'failure.png');
} finally {
  lines.close();
  await browser?.close();
}
