// End-to-end tests of the reading view (viewer/reading.js and friends) in
// headless Chromium against the generated demo studies: progressive loading
// to full resolution, window/level and invert on the GPU, a length
// measurement in millimetres, the IHE mammography hanging and prior
// comparison, the tag browser, the help panel, and a worded error for a frame
// the archive fails to send.

import assert from 'node:assert/strict';

import { hang, groupSeries } from '../../viewer/hanging.js';
import { BASE, dicomweb, expect, first, screenshot, test, until } from './lib.mjs';

const DX_CHEST = async () => first((await dicomweb('/studies?ModalitiesInStudy=DX&limit=1'))[0], '0020000D');

/** Садықова: a four-view mammography study and its prior a year earlier. */
async function mammography() {
  const studies = await dicomweb('/studies?PatientID=AINA-0005&ModalitiesInStudy=MG');
  const sorted = studies.sort((a, b) => first(b, '00080020').localeCompare(first(a, '00080020')));
  return { current: first(sorted[0], '0020000D'), prior: first(sorted[1], '0020000D') };
}

async function open(page, studyUID) {
  await page.goto(`${BASE}/viewer?studyUID=${encodeURIComponent(studyUID)}`);
}

/** Waits until every viewport showing an image has its full-resolution frame. */
function allFull(page) {
  return until(page, () => {
    const vps = [...document.querySelectorAll('.rv-vp[data-sop]')];
    return vps.length > 0 && vps.every((v) => v.dataset.state === 'full');
  });
}

/** Two animation frames: whatever was asked for has been drawn. */
const painted = (page) => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));

/**
 * Sum and mean of the red channel of a viewport's WebGL canvas (read back
 * through a 2D canvas), the mean of its left and right edges, and the gray at
 * its centre.
 */
function pixels(page, selector) {
  return page.evaluate((sel) => {
    const gl = document.querySelector(`${sel} canvas.rv-gl`);
    const c = document.createElement('canvas');
    c.width = gl.width;
    c.height = gl.height;
    const g = c.getContext('2d');
    g.drawImage(gl, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    const columns = new Float64Array(c.width);
    for (let i = 0; i < d.length; i += 4) {
      sum += d[i];
      columns[(i / 4) % c.width] += d[i];
    }
    // Mean brightness of the left and right twentieth of the canvas.
    const band = Math.max(1, Math.floor(c.width / 20));
    const edge = (from) => columns.slice(from, from + band).reduce((a, b) => a + b, 0) / (band * c.height);
    const centre = d[4 * (Math.floor(c.height / 2) * c.width + Math.floor(c.width / 2))];
    return { sum, mean: sum / (d.length / 4), left: edge(0), right: edge(c.width - band), centre };
  }, selector);
}

async function box(page, selector) {
  const b = await page.locator(selector).boundingBox();
  return { ...b, cx: b.x + b.width / 2, cy: b.y + b.height / 2 };
}

test('a chest X-ray opens: preview first, then the full 16-bit frame', async ({ page, context }) => {
  const study = await DX_CHEST();
  // Hold the full frames back until a preview is on screen (at most 70 s: a
  // debug-build server beside the rest of the suite on two cores, on S3,
  // renders a windowed preview slowly), so the order is certain, and record
  // every state each viewport goes through and how each preview request ended.
  const previews = [];
  const started = Date.now();
  page.on('response', (r) => {
    if (r.url().includes('/rendered')) previews.push(`${r.status()} at ${Date.now() - started} ms`);
  });
  page.on('requestfailed', (r) => {
    if (r.url().includes('/rendered')) previews.push(`failed: ${r.failure()?.errorText}`);
  });
  await context.route(/\/frames\/1$/, async (route) => {
    // Each viewport's own preview releases its frame: the two views' previews
    // finish at different times, and one on screen says nothing of the other.
    const sop = decodeURIComponent(route.request().url().match(/\/instances\/([^/]+)\/frames\//)[1]);
    const deadline = Date.now() + 70000;
    while (Date.now() < deadline) {
      const seen = await page.evaluate((s) => (window.__previewed || []).includes(s), sop).catch(() => false);
      if (seen) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await route.continue();
  });
  await page.addInitScript(() => {
    window.__states = [];
    window.__previewed = [];
    new MutationObserver((records) => {
      for (const r of records) {
        if (!r.target.classList?.contains('rv-vp')) continue;
        const { position, state, sop } = r.target.dataset;
        window.__states.push(`${position}:${state}`);
        if (state === 'preview') window.__previewed.push(sop);
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
  await open(page, study);
  await allFull(page);
  const states = await page.evaluate(() => window.__states.filter((s) => s.startsWith('left:')));
  expect(states.indexOf('left:preview')).toBeGreaterThan(-1, `states: ${states}; previews: ${previews}`);
  expect(states.indexOf('left:full')).toBeGreaterThan(states.indexOf('left:preview'), `states: ${states}`);
  const vps = await page.locator('.rv-vp[data-sop]').count();
  expect(vps).toBe(2); // PA and lateral, two series: 1×2
  const marks = await page.evaluate(() => performance.getEntriesByType('mark').map((m) => m.name));
  expect(marks).toContain('aina:first-image');
  expect(marks).toContain('aina:all-full');
  const { mean } = await pixels(page, '.rv-vp[data-position="left"]');
  expect(mean).toBeGreaterThan(5, 'the canvas shows an image, not black');
});

test('window/level drag and invert change the pixels on the GPU', async ({ page }) => {
  await open(page, await DX_CHEST());
  await allFull(page);
  const sel = '.rv-vp[data-position="left"]';
  const before = await pixels(page, sel);
  const b = await box(page, sel);
  await page.mouse.move(b.cx, b.cy);
  await page.mouse.down();
  await page.mouse.move(b.cx + 120, b.cy + 80, { steps: 6 });
  await page.mouse.up();
  await painted(page);
  const dragged = await pixels(page, sel);
  expect(Math.abs(dragged.sum - before.sum) / before.sum).toBeGreaterThan(0.02, 'W/L drag changed the image');

  await page.keyboard.press('KeyI');
  await painted(page);
  const inverted = await pixels(page, sel);
  // Inverting maps each gray g of the image to 255 − g.
  const centre = inverted.centre + dragged.centre;
  assert.ok(Math.abs(centre - 255) <= 2, `centre ${inverted.centre} + ${dragged.centre} should be 255`);
  expect(Math.abs(inverted.mean - dragged.mean)).toBeGreaterThan(10, 'invert changed the image');
});

test('a length measurement shows millimetres from Pixel Spacing (within 1%)', async ({ page }) => {
  const study = await DX_CHEST();
  const metadata = await dicomweb(`/studies/${study}/metadata`);
  await open(page, study);
  await allFull(page);
  const sel = '.rv-vp[data-position="left"]';
  const { sop, scale } = await page.locator(sel).evaluate((e) => ({ ...e.dataset, scale: Number(e.dataset.scale) }));
  const instance = metadata.find((m) => first(m, '00080018') === sop);
  const [rowSpacing, columnSpacing] = instance['00280030'].Value.map(Number);
  expect(rowSpacing).toBe(columnSpacing, 'the generated chest X-ray has square pixels');

  await page.keyboard.press('KeyL');
  const b = await box(page, sel);
  const [dx, dy] = [b.width * 0.3, b.height * 0.2];
  await page.mouse.move(b.cx - dx / 2, b.cy - dy / 2);
  await page.mouse.down();
  await page.mouse.move(b.cx + dx / 2, b.cy + dy / 2, { steps: 8 });
  await page.mouse.up();
  const label = await page.locator(`${sel} .rv-mark-length .rv-mark-label`).textContent();
  const shown = Number(label.replace(/[^\d.]/g, ''));
  // Screen distance → image pixels (data-scale: CSS px per image pixel) → mm.
  const expected = (Math.hypot(dx, dy) / scale) * columnSpacing;
  expect(label).toMatch(/mm$/);
  assert.ok(Math.abs(shown - expected) / expected <= 0.01, `shown ${label}, expected ${expected.toFixed(2)} mm`);

  // A rectangle ROI reports mean and SD of the modality values, and its area.
  await page.keyboard.press('KeyO');
  await page.mouse.move(b.cx - 40, b.cy - 40);
  await page.mouse.down();
  await page.mouse.move(b.cx + 40, b.cy + 40, { steps: 4 });
  await page.mouse.up();
  const roi = await page.locator(`${sel} .rv-mark-roi .rv-mark-label`).textContent();
  expect(roi).toMatch(/mean [\d.,-]+ SD [\d.,]+.*mm²/);
});

test('mammography hangs R|L, CC above MLO, chest walls facing each other', async ({ page }) => {
  const { current } = await mammography();
  await open(page, current);
  await allFull(page);
  const views = await page.$$eval('.rv-vp[data-sop]', (vps) =>
    Object.fromEntries(vps.map((v) => [v.dataset.position, `${v.dataset.laterality}${v.dataset.view}`])));
  expect(views).toEqual({ 'top-left': 'RCC', 'top-right': 'LCC', 'bottom-left': 'RMLO', 'bottom-right': 'LMLO' });
  const at = (l, v) => box(page, `.rv-vp[data-laterality="${l}"][data-view="${v}"]`);
  const [rcc, lcc, rmlo, lmlo] = await Promise.all([at('R', 'CC'), at('L', 'CC'), at('R', 'MLO'), at('L', 'MLO')]);
  expect(rcc.cx < lcc.cx && rmlo.cx < lmlo.cx).toBe(true, 'R views left of L views');
  expect(rcc.cy < rmlo.cy && lcc.cy < lmlo.cy).toBe(true, 'CC above MLO');
  // Same scale on all four.
  const scales = await page.$$eval('.rv-vp[data-sop]', (vps) => vps.map((v) => Number(v.dataset.scale).toFixed(6)));
  expect(new Set(scales).size).toBe(1, `one scale: ${scales}`);
  // Chest walls meet in the middle: R views bright at their right edge, L views at their left.
  for (const pos of ['top-left', 'bottom-left']) {
    const p = await pixels(page, `.rv-vp[data-position="${pos}"]`);
    expect(p.right).toBeGreaterThan(p.left + 20, `${pos}: tissue at the chest wall on the right`);
  }
  for (const pos of ['top-right', 'bottom-right']) {
    const p = await pixels(page, `.rv-vp[data-position="${pos}"]`);
    expect(p.left).toBeGreaterThan(p.right + 20, `${pos}: tissue at the chest wall on the left`);
  }
  await screenshot(page, 'mammography');
});

test('comparison with the prior study shows the same views of both', async ({ page }) => {
  const { current, prior } = await mammography();
  await open(page, current);
  await allFull(page);
  await page.click('[data-action="prior"]');
  await until(page, () => document.querySelectorAll('.rv-vp[data-study="prior"]').length === 2);
  await allFull(page);
  const cells = () => page.$$eval('.rv-vp[data-sop]', (vps) =>
    Object.fromEntries(vps.map((v) => [v.dataset.position, `${v.dataset.study}:${v.dataset.studyUid}:${v.dataset.laterality}${v.dataset.view}`])));
  expect(await cells()).toEqual({
    'top-left': `current:${current}:RCC`,
    'top-right': `current:${current}:LCC`,
    'bottom-left': `prior:${prior}:RCC`,
    'bottom-right': `prior:${prior}:LCC`,
  });
  await page.keyboard.press('KeyM');
  await until(page, () => document.querySelector('.rv-vp[data-position="bottom-left"]')?.dataset.view === 'MLO');
  expect((await cells())['bottom-right']).toBe(`prior:${prior}:LMLO`);
  await allFull(page);
  await screenshot(page, 'mammography-prior');
});

test('the tag browser lists PatientName and filters', async ({ page }) => {
  await open(page, await DX_CHEST());
  await allFull(page);
  await page.keyboard.press('KeyD');
  const panel = page.locator('.rv-tags');
  await panel.waitFor({ state: 'visible' });
  const row = panel.locator('.rv-tags-row[data-tag="00100010"]');
  expect(await row.locator('.rv-tags-kw').textContent()).toBe('PatientName');
  expect(await row.locator('.rv-tags-val').textContent()).toMatch(/\S/);
  await panel.locator('input').fill('ViewCode');
  await until(page, () => document.querySelectorAll('.rv-tags-list > .rv-tags-set > *').length === 1);
});

test('? opens the keyboard help', async ({ page }) => {
  await open(page, await DX_CHEST());
  await allFull(page);
  await page.keyboard.press('Shift+Slash');
  const help = page.locator('dialog.rv-help');
  await help.waitFor({ state: 'visible' });
  expect(await help.textContent()).toContain('True size');
  await page.keyboard.press('Escape');
  await help.waitFor({ state: 'hidden' });
});

test('a frame the archive fails to send is explained in words', async ({ page, context }) => {
  // Frames are fetched by a worker: route at the context, which sees its requests.
  await context.route(/\/frames\/1$/, (route) => route.fulfill({ status: 500, contentType: 'text/plain', body: 'disk on fire' }));
  await open(page, await DX_CHEST());
  await until(page, () => document.querySelector('.rv-vp[data-state="error"]'));
  const message = await page.locator('.rv-vp[data-state="error"] .rv-msg').first().textContent();
  expect(message).toContain('This image cannot be shown.');
  expect(message).toContain('problem on the server');
});

test('hanging rules read laterality and view from the data, not the order', () => {
  // A made-up MG study in scrambled order: SNOMED, legacy SRT and ViewPosition
  // spellings of the views, an RCC retaken, and an LMLO stored the wrong way round.
  const mg = (n, laterality, view, orientation) => ({
    '00080060': { vr: 'CS', Value: ['MG'] },
    '0020000E': { vr: 'UI', Value: ['2.25.1'] },
    '00200013': { vr: 'IS', Value: [n] },
    '00080018': { vr: 'UI', Value: [`2.25.1.${n}`] },
    '00200062': { vr: 'CS', Value: [laterality] },
    '00200020': { vr: 'CS', Value: orientation },
    ...(view.code
      ? { '00540220': { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: [view.code] } }] } }
      : { '00185101': { vr: 'CS', Value: [view.position] } }),
  });
  const instances = [
    mg(1, 'L', { code: 'R-10226' }, ['P', 'FR']), // LMLO, flipped horizontally
    mg(2, 'R', { code: '399162004' }, ['P', 'L']), // RCC, first take
    mg(3, 'L', { position: 'CC' }, ['A', 'R']),
    mg(4, 'R', { code: '399368009' }, ['P', 'FL']),
    mg(5, 'R', { code: 'R-10242' }, ['P', 'L']), // RCC retaken: this one
  ];
  const { layout, cells } = hang(groupSeries(instances));
  expect(layout).toBe('2x2');
  const at = Object.fromEntries(cells.map((c) => [c.position, c]));
  const n = (pos) => at[pos].stack[0].instance['00200013'].Value[0];
  expect([n('top-left'), n('top-right'), n('bottom-left'), n('bottom-right')]).toEqual([5, 3, 4, 1]);
  expect(cells.map((c) => `${c.laterality}${c.view}:${c.align}:${c.flipH}`)).toEqual([
    'RCC:right:false', 'LCC:left:false', 'RMLO:right:false', 'LMLO:left:true',
  ]);
  // Two series of another modality: side by side.
  const dx = (series) => ({ ...mg(1, '', { position: 'PA' }, []), '00080060': { vr: 'CS', Value: ['DX'] }, '0020000E': { vr: 'UI', Value: [series] } });
  expect(hang(groupSeries([dx('2.25.7'), dx('2.25.8')])).layout).toBe('1x2');
});
