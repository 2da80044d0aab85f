// Browser benchmark of the reading view (not part of the test run): opens the
// four-view mammography study and reads the Performance API marks the view
// sets — navigation → `aina:first-image` (first image painted, from the
// progressive preview) and → `aina:all-full` (all four at full 16-bit
// resolution) — then drags window/level on one 4096×3328 image and counts
// the redraws per second.
//
//   AINA_URL=http://127.0.0.1:8091 NODE_PATH=$HOME/.cache/aina-e2e/node_modules \
//     node tests/e2e/bench.mjs
//
// Env: AINA_URL (server root, default http://127.0.0.1:8091), AINA_TEST_CHROMIUM,
// RUNS (default 5), STUDY (a Study Instance UID; default: the newest MG
// study of patient AINA-0005, Садықова, from the generated demo set).
// Each run is a fresh browser context (empty HTTP cache); the server's own
// caches stay warm after the first run, which is reported separately.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const BASE = process.env.AINA_URL ?? 'http://127.0.0.1:8091';
const RUNS = Number(process.env.RUNS ?? 5);

async function study() {
  if (process.env.STUDY) return process.env.STUDY;
  const res = await fetch(`${BASE}/dicomweb/studies?PatientID=AINA-0005&ModalitiesInStudy=MG`, { headers: { Accept: 'application/dicom+json' } });
  const studies = await res.json();
  studies.sort((a, b) => b['00080020'].Value[0].localeCompare(a['00080020'].Value[0]));
  return studies[0]['0020000D'].Value[0];
}

const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const uid = await study();
const browser = await chromium.launch({
  executablePath: process.env.AINA_TEST_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const first = [];
const full = [];
let wl;
let gpu;
for (let run = 1; run <= RUNS; run++) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: 'en-US' });
  const page = await context.newPage();
  await page.goto(`${BASE}/viewer?studyUID=${encodeURIComponent(uid)}`);
  await page.waitForFunction(() => performance.getEntriesByName('aina:all-full').length > 0, null, { timeout: 60_000 });
  const marks = await page.evaluate(() => ({
    first: performance.getEntriesByName('aina:first-image')[0].startTime,
    full: performance.getEntriesByName('aina:all-full')[0].startTime,
  }));
  first.push(marks.first);
  full.push(marks.full);
  console.log(`run ${run}: first image ${marks.first.toFixed(0)} ms, all four full resolution ${marks.full.toFixed(0)} ms`);
  if (run === RUNS) {
    wl = await windowLevelRate(page);
    gpu = await page.evaluate(() => {
      const gl = document.createElement('canvas').getContext('webgl2');
      const info = gl?.getExtension('WEBGL_debug_renderer_info');
      return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : 'no WebGL2';
    });
  }
  await context.close();
}
const version = browser.version();
await browser.close();

console.log(`\nstudy ${uid}, ${RUNS} runs, Chromium ${version} (headless), WebGL: ${gpu}`);
console.log(`first image      p50 ${p50(first).toFixed(0)} ms  (cold first run ${first[0].toFixed(0)} ms)  target ≤ 300 ms`);
console.log(`all four full    p50 ${p50(full).toFixed(0)} ms  (cold first run ${full[0].toFixed(0)} ms)  target ≤ 2000 ms`);
console.log(`W/L drag on one full-resolution view: ${wl.updates.toFixed(0)} redraws/s, median frame interval ${wl.interval.toFixed(1)} ms`);

/**
 * Drags window/level for two seconds on the top-left mammogram and counts the
 * animation frames in which the window shown in its corner changed (each such
 * frame redrew the image). The button goes down through the browser's input
 * pipeline; the moves are dispatched in the page, one per animation frame, so
 * that the rate measured is the viewer's, not that of the automation protocol.
 */
async function windowLevelRate(page) {
  const b = await page.locator('.rv-vp[data-position="top-left"]').boundingBox();
  const [x, y] = [b.x + b.width / 2, b.y + b.height / 2];
  await page.mouse.move(x, y);
  await page.mouse.down();
  const frames = await page.evaluate(([x0, y0]) => new Promise((resolve) => {
    const vp = document.querySelector('.rv-vp[data-position="top-left"]');
    const corner = vp.querySelector('.rv-br');
    const frames = [];
    const tick = (now) => {
      frames.push([now, corner.textContent]);
      if (now - frames[0][0] > 2000) return resolve(frames);
      const i = frames.length;
      vp.dispatchEvent(new PointerEvent('pointermove', { bubbles: true, pointerId: 1, clientX: x0 + 150 * Math.sin(i / 15), clientY: y0 + 100 * Math.cos(i / 15) }));
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }), [x, y]);
  await page.mouse.up();
  let updates = 0;
  for (let i = 1; i < frames.length; i++) if (frames[i][1] !== frames[i - 1][1]) updates++;
  const seconds = (frames.at(-1)[0] - frames[0][0]) / 1000;
  const intervals = frames.slice(1).map((f, i) => f[0] - frames[i][0]);
  return { updates: updates / seconds, interval: p50(intervals) };
}
