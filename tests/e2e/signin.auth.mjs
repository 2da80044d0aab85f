// Signing in, in headless Chromium, against a server started with --auth and
// a user dr.aliya (password in AINA_PASSWORD) by tests/it/viewer.rs:
// the list sends a visitor without a session to the sign-in page, a wrong
// password is told in words, the right one returns to where the visitor was
// going, and signing out ends the session.

import { BASE, expect, screenshot, test, until } from './lib.mjs';

const PASSWORD = process.env.AINA_PASSWORD;

test('a visitor signs in, reads the list, and signs out', async ({ page }) => {
  await page.goto(`${BASE}/?name=ivanov`);
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
  await page.goto(`${BASE}/`);
  await page.waitForURL((url) => url.pathname === '/login');
});

test('the sign-in page never sends anyone to another site', async ({ page }) => {
  // `//host` and `/\host` are both another site to a browser.
  for (const next of ['//evil.example/steal', '/\\evil.example/steal', 'https://evil.example/']) {
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
