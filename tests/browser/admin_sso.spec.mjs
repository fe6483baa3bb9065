// Single sign-on into the admin page in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium), for tests/admin_browser.rs. Usage:
//
//   node tests/browser/admin_sso.spec.mjs <frontdesk-url> <screenshot-dir> [<local-user> <password>]
//
// Opens the sign-in page, clicks the single sign-on button, goes through the test IdP (which
// signs in without a form) and back to frontdesk's callback, whose page moves on to the
// dashboard by itself; checks that the session works (dashboard, role badge "admin") and signs
// out. Prints `SSO_OK`; any failure exits non-zero with the reason on stderr.
//
// With a local user, the browser first signs in as that user and then, from the sign-in page,
// through single sign-on, with the IdP's redirect back treated as cross-site: the Rust test
// checks that the local session ended.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { check, launchBrowser, reportFailure } from './lib.mjs';

const [url, shots, localUser, localPassword] = process.argv.slice(2);
if (!shots) {
  console.error('usage: admin_sso.spec.mjs <url> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

let browser;
let page;
try {
  // A real IdP's own page (its sign-in form) starts the way back to the callback: a cross-site
  // navigation, on which the SameSite=Strict session cookie stays behind. The test IdP redirects
  // at once, so the way back would still be the navigation frontdesk's page started, and
  // Chromium would send the cookie; with this feature it judges SameSite by the whole redirect
  // chain, which passes through the IdP, as the browser of a real sign-in does.
  browser = await launchBrowser({
    args: localUser ? ['--enable-features=CookieSameSiteConsidersRedirectChain'] : [],
  });
  ({ page } = browser);
  const { context } = browser;
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });

  if (localUser) {
    await page.goto(`${url}/admin/sign-in`);
    await page.fill('#username', localUser);
    await page.fill('#password', localPassword);
    await Promise.all([page.waitForURL(`${url}/admin`), page.click('button[type=submit]')]);
    check((await page.textContent('header')).includes(localUser), 'not signed in locally');
    await page.goto(`${url}/admin/sign-in`);
  } else {
    await page.goto(`${url}/admin`);
  }
  check(page.url().endsWith('/admin/sign-in'), `expected the sign-in page, got ${page.url()}`);
  const button = page.locator('#sso-sign-in');
  check((await button.textContent())?.includes('Sign in with Corp'), 'no single sign-on button');
  await page.screenshot({ path: join(shots, 'admin-sign-in-sso.png'), fullPage: true });
  await Promise.all([page.waitForURL(`${url}/admin`), button.click()]);
  check((await page.textContent('h1')) === 'Dashboard', `no dashboard after SSO: ${await page.content()}`);
  const badge = (await page.textContent('header .badge'))?.trim();
  check(badge === 'admin', `role badge is ${badge}`);
  check(!localUser || !(await page.textContent('header')).includes(localUser),
    'still the local user after single sign-on');
  // The session survives a reload (the cookie was stored and is sent on same-site navigation).
  await page.reload();
  check((await page.textContent('h1')) === 'Dashboard', 'the session did not survive a reload');
  // The browser-binding cookie is gone once the sign-in finished.
  const cookies = await context.cookies(url);
  check(!cookies.some((c) => c.name === 'frontdesk_admin_sso' && c.value !== ''),
    `binding cookie left behind: ${JSON.stringify(cookies.map((c) => c.name))}`);
  await Promise.all([page.waitForURL(`${url}/admin/sign-in`), page.click('header form.who button')]);
  check(errors.length === 0, `console errors: ${errors.join('; ')}`);
  console.log('SSO_OK');
} catch (error) {
  await reportFailure('admin_sso.spec.mjs', error, page, shots, 'failure-sso.png');
} finally {
  await browser?.close();
}
