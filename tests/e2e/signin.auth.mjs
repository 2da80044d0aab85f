// Signing in, in headless Chromium, against a server started with --auth and
// a user dr.aliya (password in AINA_PASSWORD) by tests/it/viewer.rs:
// the list sends a visitor without a session to the sign-in page, a wrong
// password is told in words, the right one returns to where the visitor was
// going, and signing out ends the session.

import { BASE, expect, screenshot, test, until, untilURL } from './lib.mjs';

const PASSWORD = process.env.AINA_PASSWORD;

test('a visitor signs in, reads the list, and signs out', async ({ page }) => {
  // Only until the response: the page leaves for the sign-in page on its
  // own, which may abort a wait for its load.
  await page.goto(`${BASE}/?name=ivanov`, { waitUntil: 'commit' });
  await page.waitForURL((url) => url.pathname === '/login');
  expect(new URL(page.url()).searchParams.get('next')).toBe('/?name=ivanov');
  await until(page, () => document.querySelector('h1')?.textContent === 'Sign in to Aina');

  await page.fill('#username', 'dr.aliya');
  await page.fill('#password', 'not the password');
  await page.click('button[type=submit]');
  await until(page, () => document.querySelector('#login-error')?.textContent);
  expect(await page.textContent('#login-error')).toBe('Wrong user name or password.');
  await screenshot(page, 'sign-in-failed');

  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL((url) => url.pathname === '/' && url.search === '?name=ivanov');
  await until(page, () => !document.querySelector('#user')?.hidden);
  expect(await page.textContent('#user')).toBe('dr.aliya');
  await until(page, () => document.querySelector('#list')?.dataset.state === 'ready' || document.querySelector('#list')?.dataset.state === 'empty');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'aina_session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Strict');

  await page.click('#sign-out');
  await page.waitForURL((url) => url.pathname === '/login');
  // The old session is gone: the list sends us back to sign in.
  await page.goto(`${BASE}/`, { waitUntil: 'commit' });
  await page.waitForURL((url) => url.pathname === '/login');
});

test('the sign-in page never sends anyone to another site', async ({ page }) => {
  // `//host` and `/\host` are both another site to a browser.
  // A tab or newline inside is dropped by the browser: `/\t/host` is `//host`.
  for (const next of ['//evil.example/steal', '/\\evil.example/steal', 'https://evil.example/', '/\t/evil.example/steal', '/\n/evil.example/steal']) {
    await page.goto(`${BASE}/login?next=${encodeURIComponent(next)}`);
    await page.fill('#username', 'dr.aliya');
    await page.fill('#password', PASSWORD);
    await page.click('button[type=submit]');
    await page.waitForURL((url) => url.origin === BASE && url.pathname === '/');
  }
});

test('the sign-in page speaks Russian and Kazakh', { locale: 'ru-RU' }, async ({ page }) => {
  await page.goto(`${BASE}/login`);
  await until(page, () => document.querySelector('h1')?.textContent === 'Вход в Aina');
  await page.selectOption('#lang', 'kk');
  await until(page, () => document.querySelector('h1')?.textContent === 'Aina жүйесіне кіру');
});

// A study stored by tests/it/viewer.rs (AINA_STUDY) is shared from the
// viewer; the link, opened in a browser with no account, shows that study
// read only and nothing else, and stops working once revoked.
test('a reader shares a study; the link opens it, read only, until revoked', async ({ page, browser }) => {
  const study = process.env.AINA_STUDY;
  await page.goto(`${BASE}/login?next=${encodeURIComponent(`/viewer?studyUID=${study}`)}`);
  await page.fill('#username', 'dr.aliya');
  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL((url) => url.pathname === '/viewer');
  await until(page, () => !document.querySelector('#share')?.hidden);
  await page.click('#share');
  await page.selectOption('#share-lifetime', String(24 * 60));
  await page.fill('#share-note', 'Referral: oncology centre');
  await page.click('.share-dialog .primary');
  await until(page, () => document.querySelector('.share-url')?.value);
  const link = await page.inputValue('.share-url');
  expect(link.startsWith(`${BASE}/s/ainas_`)).toBe(true);
  await screenshot(page, 'share-dialog');

  // Another browser, nobody signed in.
  const guest = await browser.newContext({ locale: 'en-US', viewport: { width: 1440, height: 900 } });
  const other = await guest.newPage();
  const errors = [];
  other.on('pageerror', (e) => errors.push(String(e)));
  await other.goto(link);
  await other.waitForURL((url) => url.pathname === '/viewer' && url.searchParams.get('studyUID') === study);
  await until(other, () => {
    const vps = [...document.querySelectorAll('.rv-vp[data-sop]')];
    return vps.length > 0 && vps.every((v) => ['preview', 'full'].includes(v.dataset.state));
  }, undefined, 60_000);
  await until(other, () => document.querySelector('#user')?.textContent.startsWith('Shared study'));
  expect(await other.evaluate(() => document.querySelectorAll('#crumbs a').length)).toBe(0);
  expect(await other.evaluate(() => document.querySelector('#share').hidden && document.querySelector('#copy-link').hidden)).toBe(true);
  expect(await other.evaluate(() => document.querySelector('.rv-back').hidden)).toBe(true);
  await screenshot(other, 'shared-study');
  // Nothing else: the list is not shown, the archive refuses other searches.
  expect(await other.evaluate(() => fetch('/dicomweb/studies').then((r) => r.status))).toBe(403);
  await other.goto(`${BASE}/`);
  await other.waitForURL((url) => url.pathname === '/viewer' && url.searchParams.get('shared') === '1');

  // Revoked from the dialog: the link's viewer is sent to a page that says so.
  await page.click('.share-link button:last-child');
  await until(page, () => document.querySelector('.share-result .muted')?.textContent === 'Link revoked');
  // Reloaded, or already on its way: the open viewer's next request to the
  // archive may have found the link revoked and be leaving by itself, and
  // then the reload meets a page in mid-navigation (which error it gets
  // depends on the moment). Either way it must end on the sign-in page.
  await other.evaluate(() => location.reload()).catch(() => {});
  await untilURL(other, (url) => url.pathname === '/login' && url.searchParams.get('shared') === '1');
  await until(other, () => document.querySelector('#login-error')?.textContent.includes('expired or was revoked'));
  expect(errors).toEqual([]);
  await guest.close();
});
