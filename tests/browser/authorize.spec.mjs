// Walks the authorization code flow in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium), for tests/authorize_browser.rs. Usage:
//
//   node tests/browser/authorize.spec.mjs <authorize-url> <frontdesk-url> <redirect-uri> \
//        <approve|deny|forged-then-approve> <expect-json> <screenshot-dir>
//
// <expect-json> is {"login": ..., "user": ..., "client_id": ..., "resource": ..., "scopes": [...]}.
// Opens frontdesk's /authorize, signs in at the interactive IdP (tests/oidc-idp: its login form,
// then its own consent page), checks frontdesk's consent page (client, resource, scopes, user,
// the admin page's stylesheet applied, no console errors), saves consent.png, clicks Approve or
// Deny (checking that the post carries frontdesk's real Origin, not `null`), and prints
// `LANDED <url>` once the browser is at the client's redirect URI. It prints
// `IDP_LOGIN` and `IDP_CONSENT` when it fills in the IdP's login form and confirms the IdP's
// consent page. With `forged-then-approve`, before approving, a second tab on the client's
// origin (another port of the same host: same site, so the SameSite=Lax binding cookie goes
// along) submits a copy of the consent form with the page's request id and CSRF token, as a
// page that had learnt them would; the script prints `FORGED_REFUSED` once frontdesk has
// answered it with its "from another site" page, then approves in the first tab. Any failure
// exits non-zero with the reason on stderr.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launchBrowser, reportFailure } from './lib.mjs';

const [authorizeUrl, frontdesk, redirectUri, decision, expectJson, shots] = process.argv.slice(2);
if (!shots || !['approve', 'deny', 'forged-then-approve'].includes(decision)) {
  console.error('usage: authorize.spec.mjs <authorize-url> <frontdesk-url> <redirect-uri> <approve|deny|forged-then-approve> <expect-json> <screenshot-dir>');
  process.exit(2);
}
const expect = JSON.parse(expectJson);
mkdirSync(shots, { recursive: true });

let browser;
let page;
try {
  browser = await launchBrowser({ viewport: { width: 960, height: 520 } });
  ({ page } = browser);
  const errors = [];
  page.on('console', (msg) => {
    if (process.env.FRONTDESK_TEST_BROWSER_LOG) console.error(`console ${msg.type()} at ${page.url()}: ${msg.text()}`);
    // Only frontdesk's pages are held to "no console errors"; the IdP's pages are not ours.
    if (msg.type() === 'error' && page.url().startsWith(frontdesk)) errors.push(msg.text());
  });

  // 1. The client sends the browser to frontdesk, which sends it on to the IdP.
  await page.goto(authorizeUrl);
  const callback = `${frontdesk}/authorize/callback`;

  // 2. At the IdP: its login form, then (first time) its consent page, in whatever order it
  //    asks; each step is a form post followed by redirects. Bounded: at most four pages.
  for (let step = 0; step < 4 && !page.url().startsWith(callback); step += 1) {
    if (await page.locator('input[name=login]').count()) {
      console.log('IDP_LOGIN');
      await page.fill('input[name=login]', expect.login);
      await page.fill('input[name=password]', 'any password works at the test IdP');
    } else {
      check(await page.locator('button[type=submit]').count(),
        `unexpected page at the IdP: ${page.url()}\n${await page.content()}`);
      console.log('IDP_CONSENT');
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  check(page.url().startsWith(callback), `not back at frontdesk: ${page.url()}\n${await page.content()}`);

  // 3. frontdesk's consent page.
  check((await page.textContent('h1')) === 'Authorize access', `no consent page: ${await page.content()}`);
  check((await page.title()) === 'Authorize access · frontdesk', `title: ${await page.title()}`);
  const text = async (selector) => (await page.textContent(selector)).trim();
  check((await text('#consent-client')).includes(expect.client_id), `client: ${await text('#consent-client')}`);
  check((await text('#consent-resource')) === expect.resource, `resource: ${await text('#consent-resource')}`);
  const scopes = await page.locator('#consent-scopes code.scope').allTextContents();
  check(JSON.stringify(scopes) === JSON.stringify(expect.scopes), `scopes: ${scopes}`);
  check((await text('#consent-user')) === expect.user, `user: ${await text('#consent-user')}`);
  check((await text('#consent-redirect')) === redirectUri, `redirect: ${await text('#consent-redirect')}`);
  check(await page.locator('header.top nav').count() === 0, 'the admin navigation is shown to an end user');
  // The admin stylesheet is loaded despite the CSP (its header colour is applied).
  const header = await page.evaluate(() => getComputedStyle(document.querySelector('header.top')).backgroundColor);
  check(header === 'rgb(20, 32, 51)', `the admin stylesheet is not applied (header ${header})`);
  await page.screenshot({ path: join(shots, 'consent.png') });
  check(errors.length === 0, `console errors on frontdesk's pages: ${errors.join('; ')}`);

  // 3b. A forged approval from another origin of the same site, with the page's own fields.
  if (decision === 'forged-then-approve') {
    const field = async (name) => page.locator(`input[name=${name}]`).first().getAttribute('value');
    const fields = { request_id: await field('request_id'), csrf_token: await field('csrf_token'), decision: 'approve' };
    const action = new URL(await page.locator('form').first().getAttribute('action'), page.url()).href;
    const attacker = await browser.context.newPage();
    // A page of the client's origin that is not its redirect URI (the test's listener reports
    // only /callback).
    await attacker.goto(new URL('/elsewhere', redirectUri).href);
    await attacker.evaluate(({ action, fields }) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = action;
      for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement('input');
        input.type = 'hidden';
        input.name = name;
        input.value = value;
        form.append(input);
      }
      document.body.append(form);
    }, { action, fields });
    await Promise.all([
      attacker.waitForURL(action),
      attacker.evaluate(() => document.forms[0].submit()),
    ]);
    const refused = (await attacker.textContent('#error-message')) ?? '';
    check(refused.includes('it came from another site'), `the forged post was not refused as cross-site: ${await attacker.content()}`);
    await attacker.close();
    console.log('FORGED_REFUSED');
  }

  // 4. The decision; the browser lands at the client's redirect URI. The consent form's post
  //    carries the page's real Origin, not `null` (the page's Referrer-Policy is same-origin),
  //    so frontdesk can refuse a bare `Origin: null` without locking out a browser that sends
  //    no Sec-Fetch-Site.
  const consentUrl = `${frontdesk}/authorize/consent`;
  const [post] = await Promise.all([
    page.waitForRequest((request) => request.method() === 'POST' && request.url() === consentUrl),
    page.waitForURL((url) => url.href.startsWith(redirectUri)),
    page.click(decision === 'deny' ? '#deny' : '#approve'),
  ]);
  const sent = await post.allHeaders();
  check(sent.origin === new URL(frontdesk).origin, `the consent form was posted with Origin: ${sent.origin}`);
  console.log(`LANDED ${page.url()}`);
} catch (error) {
  await reportFailure('authorize.spec.mjs', error, page, shots, 'failure.png');
} finally {
  await browser?.close();
}
