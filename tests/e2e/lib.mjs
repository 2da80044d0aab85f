// The end-to-end harness: headless Chromium driven by playwright-core, a tiny
// sequential test runner, and expect-like assertions on node:assert. Run by
// tests/it/viewer.rs as `node FILE` with
//   AINA_URL            the server's root, loaded with the generated studies
//   AINA_TEST_CHROMIUM  the chromium binary
//   NODE_PATH           a node_modules holding playwright-core
//   AINA_SCREENSHOTS    where screenshots go (optional)
// Each test gets a fresh browser context (its own localStorage) and page;
// an uncaught exception in the page fails the test.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

// ES module imports ignore NODE_PATH; require() honours it.
const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

export const BASE = process.env.AINA_URL ?? 'http://127.0.0.1:8080';
const TEST_TIMEOUT_MS = 90_000;

export function launch() {
  return chromium.launch({
    executablePath: process.env.AINA_TEST_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}

const tests = [];

/**
 * Registers a test; they run in order once the file has registered them all.
 * `options`: `locale` (the browser's language, default en-US), `viewport`,
 * `permissions` (e.g. clipboard).
 * `fn({page, context, browser})`.
 */
export function test(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  tests.push({ name, options, fn });
  if (tests.length === 1) setTimeout(run, 0);
}

async function run() {
  const browser = await launch();
  let passed = 0;
  let failed = 0;
  for (const { name, options, fn } of tests) {
    const started = Date.now();
    const context = await browser.newContext({
      locale: options.locale ?? 'en-US',
      viewport: options.viewport ?? { width: 1440, height: 900 },
      permissions: options.permissions ?? [],
    });
    const page = await context.newPage();
    const pageErrors = [];
    const consoleLines = [];
    page.on('pageerror', (e) => pageErrors.push(e.stack ?? String(e)));
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    let timer;
    try {
      await Promise.race([
        fn({ page, context, browser }),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS / 1000} s`)), TEST_TIMEOUT_MS);
        }),
      ]);
      assert.deepEqual(pageErrors, [], 'uncaught exceptions in the page');
      passed++;
      process.stdout.write(`PASS  ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    } catch (e) {
      failed++;
      process.stdout.write(`FAIL  ${name}\n      ${String(e.stack ?? e).replaceAll('\n', '\n      ')}\n`);
      if (consoleLines.length) process.stdout.write(`      page console:\n        ${consoleLines.join('\n        ')}\n`);
      await screenshot(page, `FAILED-${name.replace(/[^\w-]+/g, '_')}`).catch(() => {});
    } finally {
      clearTimeout(timer);
      await context.close();
    }
  }
  await browser.close();
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exitCode = failed ? 1 : 0;
}

/** Saves `page` as `NAME.png` in AINA_SCREENSHOTS, when that is set. */
export async function screenshot(page, name, options = {}) {
  const dir = process.env.AINA_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), ...options });
}

/** A QIDO-RS or other DICOMweb GET from the test itself (to know the UIDs to expect). */
export async function dicomweb(path) {
  const res = await fetch(`${BASE}/dicomweb${path}`, { headers: { Accept: 'application/dicom+json' } });
  const body = await res.text();
  assert.equal(res.status, 200, `${path}: ${body}`);
  return JSON.parse(body);
}

/** The first value of a DICOM JSON attribute. */
export const first = (json, tag) => json[tag]?.Value?.[0];

/** Waits until `fn(arg)` is truthy in the page; returns its value. */
export async function until(page, fn, arg, timeout = 20_000) {
  return (await page.waitForFunction(fn, arg, { timeout })).jsonValue();
}

/**
 * Waits until the page's committed URL satisfies `pred`, by polling
 * page.url(): unlike page.waitForURL it does not fail when a navigation on
 * the way is aborted by the next one (a page that leaves by itself).
 */
export async function untilURL(page, pred, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  while (!pred(new URL(page.url()))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for the URL; at ${page.url()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** expect(actual).toBe(…) and friends, failing with node:assert's messages. */
export function expect(actual) {
  return {
    toBe: (expected, message) => assert.equal(actual, expected, message),
    toEqual: (expected, message) => assert.deepEqual(actual, expected, message),
    toContain: (item, message) =>
      assert.ok(actual?.includes(item), message ?? `expected ${JSON.stringify(actual)} to contain ${JSON.stringify(item)}`),
    toMatch: (re, message) => assert.match(actual, re, message),
    toBeTruthy: (message) => assert.ok(actual, message ?? `expected ${JSON.stringify(actual)} to be truthy`),
    toBeGreaterThan: (n, message) => assert.ok(actual > n, message ?? `expected ${actual} > ${n}`),
    not: {
      toBe: (expected, message) => assert.notEqual(actual, expected, message),
      toEqual: (expected, message) => assert.notDeepEqual(actual, expected, message),
      toContain: (item, message) =>
        assert.ok(!actual?.includes(item), message ?? `expected ${JSON.stringify(actual)} not to contain ${JSON.stringify(item)}`),
    },
  };
}
