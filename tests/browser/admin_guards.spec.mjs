// The admin page's guards in headless Chromium (playwright-core, Debian's /usr/bin/chromium),
// for tests/admin_browser.rs. Usage:
//
//   node tests/browser/admin_guards.spec.mjs <frontdesk-url> <admin> <auditor> <password> <screenshot-dir>
//
// 0. Each sign-in form post carries the page's real Origin (not `null`).
// 1. An admin's form posted without its CSRF token (the hidden field removed from the real form
//    before clicking) is refused with 403 and changes nothing.
// 2. An auditor sees no change controls, and a change form built in their page (with their own
//    valid CSRF token) is refused with 403.
// 3. A session expires: the script prints `EXPIRE`, the Rust test moves the server's admin clock
//    past the idle timeout and answers `ADVANCED`, and the next page load lands on sign-in.
// Prints `GUARDS_OK`; any failure exits non-zero with the reason on stderr.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { check, launchBrowser, reportFailure } from './lib.mjs';

const [url, admin, auditor, password, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: admin_guards.spec.mjs <url> <admin> <auditor> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve, reject) => {
  lines.once('line', resolve);
  lines.once('close', () => reject(new Error('stdin closed before ADVANCED')));
});

// Signs in through the sign-in form and checks that Chromium's post carried the page's real
// `Origin`: under the pages' `Referrer-Policy: same-origin` a browser names their origin, not
// `null` (which `no-referrer` made it send), so the server can refuse a bare `Origin: null`
// without locking out a browser that sends no `Sec-Fetch-Site`.
async function signIn(page, username) {
  await page.goto(`${url}/admin/sign-in`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  const [post] = await Promise.all([
    page.waitForRequest((request) => request.method() === 'POST' && request.url() === `${url}/admin/sign-in`),
    page.waitForURL(`${url}/admin`),
    page.click('button[type=submit]'),
  ]);
  const sent = await post.allHeaders();
  check(sent.origin === new URL(url).origin, `the sign-in form was posted with Origin: ${sent.origin}`);
  check((await page.textContent('h1')) === 'Dashboard', `no dashboard for ${username}`);
}

const keyRows = async (page) => {
  await page.goto(`${url}/admin/keys`);
  return page.locator('#keys-table tbody tr').count();
};

const browsers = [];
let page;
try {
  // 1. CSRF.
  const adminBrowser = await launchBrowser();
  browsers.push(adminBrowser);
  ({ page } = adminBrowser);
  await signIn(page, admin);
  const before = await keyRows(page);
  await page.locator('form[action="/admin/keys/rotate"] input[name=csrf]').evaluate((el) => el.remove());
  const [refused] = await Promise.all([page.waitForNavigation(), page.click('#rotate')]);
  check(refused.status() === 403, `a form without its CSRF token got ${refused.status()}`);
  check((await page.textContent('main')).includes('security token'), 'no CSRF explanation shown');
  await page.screenshot({ path: join(shots, 'admin-csrf-refused.png'), fullPage: true });
  check((await keyRows(page)) === before, 'a key was rotated without a CSRF token');

  // 2. Auditor.
  const auditorBrowser = await launchBrowser();
  browsers.push(auditorBrowser);
  const auditorPage = auditorBrowser.page;
  await signIn(auditorPage, auditor);
  check((await auditorPage.textContent('header .badge'))?.trim() === 'auditor', 'not an auditor');
  await auditorPage.goto(`${url}/admin/keys`);
  check((await auditorPage.locator('#rotate').count()) === 0, 'an auditor sees the rotate button');
  await auditorPage.goto(`${url}/admin/identity-providers`);
  check((await auditorPage.locator('a[href="/admin/identity-providers/new"]').count()) === 0,
    'an auditor sees "New identity provider"');
  // A change form built in the auditor's own page, with the auditor's valid CSRF token.
  await auditorPage.goto(`${url}/admin/keys`);
  await auditorPage.evaluate(() => {
    const csrf = document.querySelector('header form.who input[name=csrf]').value;
    const form = document.createElement('form');
    form.method = 'post';
    form.action = '/admin/keys/rotate';
    form.id = 'forged';
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = 'csrf';
    input.value = csrf;
    form.appendChild(input);
    const button = document.createElement('button');
    button.type = 'submit';
    button.id = 'forged-submit';
    form.appendChild(button);
    document.body.appendChild(form);
  });
  const [forbidden] = await Promise.all([auditorPage.waitForNavigation(), auditorPage.click('#forged-submit')]);
  check(forbidden.status() === 403, `an auditor's change got ${forbidden.status()}`);
  check((await auditorPage.textContent('main')).includes('auditor'), 'no role explanation shown');
  check((await keyRows(page)) === before, 'an auditor rotated a key');

  // 3. Session expiry.
  console.log('EXPIRE');
  const answer = await nextLine();
  check(answer.trim() === 'ADVANCED', `unexpected line on stdin: ${answer}`);
  await page.goto(`${url}/admin/keys`);
  check(page.url().endsWith('/admin/sign-in'), `an idle session still works: ${page.url()}`);
  console.log('GUARDS_OK');
} catch (error) {
  await reportFailure('admin_guards.spec.mjs', error, page, shots, 'failure-guards.png');
} finally {
  lines.close();
  for (const browser of browsers) await browser.close();
}
