// What every browser script of tests/browser shares: Debian's Chromium, headless, in a
// throw-away profile, with the launch flags the project's test machines need.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** Throws `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/**
 * A headless Chromium with a fresh profile (and the given viewport, for screenshots, and extra
 * command-line `args`);
 * `close()` closes it and deletes the profile.
 * Returns `{ context, page, close }`; the page's default timeout is 15 s.
 */
export async function launchBrowser({ viewport = { width: 1280, height: 800 }, args = [] } = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'frontdesk-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', ...args],
    viewport,
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15000);
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close };
}

/** On failure: the reason, where the page was, its text, and a screenshot named `name`. */
export async function reportFailure(script, error, page, shots, name) {
  console.error(`${script}: ${error.stack ?? error}`);
  if (page) {
    console.error(`at ${page.url()}:\n${(await page.textContent('main').catch(() => '')) ?? ''}`);
    await page.screenshot({ path: join(shots, name), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
}
