// The shell and the study list in headless Chromium against a server loaded
// with the generated demo set (aina_sample::demo_set): search, filters,
// paging, sorting, keyboard, thumbnails, IHE IID launch, languages and
// errors in words.

import { BASE, dicomweb, expect, first, screenshot, test, until } from './lib.mjs';

const STUDY_UID = '0020000D';
const STUDY_DATE = '00080020';

/** The rows the list shows, as text. */
function rows(page) {
  return page.$$eval('#list tbody tr[data-study]', (trs) =>
    trs.map((tr) => {
      const cell = (key) => tr.querySelector(`td.col-${key}`).textContent.trim();
      return { uid: tr.dataset.study, name: cell('name'), id: cell('id'), date: cell('date'), modality: cell('modality') };
    }),
  );
}

/** Waits until the list shows the answer to the latest search. */
function settled(page) {
  return until(page, () => {
    const state = document.querySelector('#list')?.dataset.state;
    return state && state !== 'loading' && state;
  });
}

/**
 * Runs `action`, waits for the QIDO search it causes (the first whose URL
 * satisfies `want`) and for the list to show it; returns the search's URL.
 */
async function searched(page, action, want = () => true) {
  const response = page.waitForResponse((r) => r.url().startsWith(`${BASE}/dicomweb/studies?`) && want(new URL(r.url())));
  await action();
  const url = new URL((await response).url());
  await settled(page);
  return url;
}

async function openList(page, query = '') {
  await searched(page, () => page.goto(`${BASE}/${query}`));
}

/** The demo set's studies of one patient, newest first. */
async function studiesOf(patientID) {
  const studies = await dicomweb(`/studies?PatientID=${patientID}`);
  return studies.sort((a, b) => first(b, STUDY_DATE).localeCompare(first(a, STUDY_DATE)));
}

async function readingOf(page, studyUID) {
  await until(page, (uid) => document.body.dataset.view === 'reading' && document.body.dataset.study === uid, studyUID);
  expect(await page.locator('#reading .failure').count()).toBe(0, 'the reading view opened without an error');
}

test('a Cyrillic name typed in lower case finds Иванов', async ({ page }) => {
  await openList(page);
  expect((await rows(page)).length).toBe(10);
  await page.fill('#q-name', 'иванов');
  const url = await searched(page, () => page.press('#q-name', 'Enter'));
  expect(url.searchParams.get('PatientName')).toBe('иванов*');
  const found = await rows(page);
  expect(found.map((r) => r.name)).toEqual(['Иванов Сергей Петрович']);
  expect(found[0].id).toBe('AINA-0002');
  // The search is in the URL, so a reload shows the same list.
  expect(new URL(page.url()).searchParams.get('PatientName')).toBe('иванов');
  await searched(page, () => page.reload());
  expect(await page.inputValue('#q-name')).toBe('иванов');
  expect((await rows(page)).length).toBe(1);
});

test('Kazakh names: lower case with Kazakh letters, and fuzzy matching', async ({ page }) => {
  await openList(page);
  await page.fill('#q-name', 'әбілқ');
  await searched(page, () => page.press('#q-name', 'Enter'));
  let found = await rows(page);
  expect(found.length).toBe(2);
  for (const r of found) expect(r.name).toBe('Әбілқасымова Гүлнұр');
  // Fuzzy: a word beginning the given name finds her too.
  await page.fill('#q-name', 'гүлн');
  await page.check('input[name=fuzzy]');
  const url = await searched(page, () => page.press('#q-name', 'Enter'));
  expect(url.searchParams.get('fuzzymatching')).toBe('true');
  expect(url.searchParams.get('PatientName')).toBe('гүлн');
  found = await rows(page);
  expect(found.map((r) => r.name)).toEqual(['Әбілқасымова Гүлнұр', 'Әбілқасымова Гүлнұр']);
  // ISO_IR 144 source data (ISO 8859-5 bytes) reads as the same letters.
  await page.uncheck('input[name=fuzzy]');
  await page.fill('#q-name', 'петрова');
  await searched(page, () => page.press('#q-name', 'Enter'));
  expect((await rows(page)).map((r) => r.name)).toEqual(['Петрова Анна Викторовна']);
});

test('patient ID and accession number', async ({ page }) => {
  await openList(page);
  await page.fill('#q-id', 'AINA-0003');
  await searched(page, () => page.press('#q-id', 'Enter'));
  const found = await rows(page);
  expect(found.length).toBe(2);
  for (const r of found) expect(r.name).toBe('Нұрланұлы Ерлан');

  const [study] = await dicomweb('/studies?PatientID=AINA-0002');
  await page.fill('#q-id', '');
  await page.fill('#q-accession', first(study, '00080050'));
  await searched(page, () => page.press('#q-accession', 'Enter'));
  expect((await rows(page)).map((r) => r.uid)).toEqual([first(study, STUDY_UID)]);
});

test('modality filter MG shows the mammography studies only', async ({ page }) => {
  await openList(page);
  const url = await searched(page, () => page.selectOption('#q-modality', 'MG'));
  expect(url.searchParams.get('ModalitiesInStudy')).toBe('MG');
  const found = await rows(page);
  expect(found.length).toBe(3);
  for (const r of found) expect(r.modality).toBe('MG');
});

test('study date presets: today, last 7 days, a custom range', async ({ page }) => {
  const pad = (n) => String(n).padStart(2, '0');
  const da = (d) => `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
  const today = new Date();
  const weekAgo = new Date(today);
  weekAgo.setDate(today.getDate() - 6);

  await openList(page);
  let url = await searched(page, () => page.check('input[name=dates][value=today]'));
  expect(url.searchParams.get('StudyDate')).toBe(da(today));
  // The demo studies are from 2024–2025: nothing today, said in words.
  expect(await settled(page)).toBe('empty');
  expect(await page.textContent('#list td.message')).toContain('No studies match this search.');

  url = await searched(page, () => page.check('input[name=dates][value="7d"]'));
  expect(url.searchParams.get('StudyDate')).toBe(`${da(weekAgo)}-${da(today)}`);

  await page.check('input[name=dates][value=custom]');
  await page.fill('input[name=from]', '2025-03-01');
  url = await searched(
    page,
    () => page.fill('input[name=to]', '2025-03-31'),
    (u) => u.searchParams.get('StudyDate') === '20250301-20250331',
  );
  const found = await rows(page);
  expect(found.map((r) => r.name).sort()).toEqual(['Smith John', 'Садықова Жанар Серікқызы', 'Сейітқалиева Әйгерім'].sort());
  for (const r of found) expect(r.date).toMatch(/^\d\d\.03\.2025/);

  // An inverted range is refused in words, without asking the archive.
  await page.fill('input[name=from]', '2025-04-01');
  expect(await until(page, () => document.querySelector('#list').dataset.state === 'error' && document.querySelector('#list td.message').textContent)).toContain(
    'The first date of the range is after the last one.',
  );
});

test('paging with QIDO limit and offset', async ({ page }) => {
  await openList(page, '?limit=4');
  const seen = [];
  const next = page.locator('.pager button[name=next]');
  const prev = page.locator('.pager button[name=prev]');
  expect(await prev.isDisabled()).toBe(true);
  for (const [offset, count] of [
    [0, 4],
    [4, 4],
    [8, 2],
  ]) {
    if (offset) {
      const url = await searched(page, () => next.click());
      expect(url.searchParams.get('offset')).toBe(String(offset));
      // One more than a page tells whether a next page exists.
      expect(url.searchParams.get('limit')).toBe('5');
    }
    const page_ = await rows(page);
    expect(page_.length).toBe(count);
    seen.push(...page_.map((r) => r.uid));
    expect(await page.textContent('.page-range')).toBe(`${offset + 1}–${offset + count}`);
  }
  expect(await next.isDisabled()).toBe(true);
  expect(new Set(seen).size).toBe(10);
  const url = await searched(page, () => prev.click());
  expect(url.searchParams.get('offset')).toBe('4');
  expect((await rows(page)).map((r) => r.uid)).toEqual(seen.slice(4, 8));
});

test('sorting by a column reorders the page, both ways', async ({ page }) => {
  await openList(page);
  const collated = (names) =>
    page.evaluate((list) => {
      const c = new Intl.Collator(document.documentElement.lang, { numeric: true, sensitivity: 'base' });
      return [...list].sort(c.compare);
    }, names);
  // Newest first by default.
  const dates = (await rows(page)).map((r) => r.date.replace(/^(\d\d)\.(\d\d)\.(\d{4}).*/, '$3$2$1'));
  expect(dates).toEqual([...dates].sort().reverse());

  await page.click('th.col-name button');
  let names = (await rows(page)).map((r) => r.name);
  expect(names).toEqual(await collated(names));
  expect(await page.getAttribute('th.col-name', 'aria-sort')).toBe('ascending');
  expect(new URL(page.url()).searchParams.get('sort')).toBe('name');

  await page.click('th.col-name button');
  names = (await rows(page)).map((r) => r.name);
  expect(names).toEqual((await collated(names)).reverse());
  expect(await page.getAttribute('th.col-name', 'aria-sort')).toBe('descending');

  await page.click('th.col-id button');
  const ids = (await rows(page)).map((r) => r.id);
  expect(ids).toEqual([...ids].sort());
});

test('keyboard: / to search, arrows to choose, Enter to open, back to the same list', async ({ page }) => {
  await openList(page);
  // The first study is chosen from the start; arrows move on from it,
  // Enter opens the chosen one.
  expect(await page.getAttribute('#list tbody tr:first-child', 'aria-selected')).toBe('true');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  const third = (await rows(page))[2].uid;
  expect(await page.getAttribute('#list tbody tr:nth-child(3)', 'aria-selected')).toBe('true');
  await page.keyboard.press('Enter');
  await readingOf(page, third);
  await page.goBack();
  await settled(page);

  await page.keyboard.press('/');
  expect(await page.evaluate(() => document.activeElement.id)).toBe('q-name');
  await page.keyboard.type('иванов');
  await searched(page, () => page.keyboard.press('Enter'));
  const [ivanov] = await studiesOf('AINA-0002');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await readingOf(page, first(ivanov, STUDY_UID));
  expect(new URL(page.url()).pathname).toBe('/viewer');

  // Back: the list with its search kept.
  await page.goBack();
  await settled(page);
  expect(await page.evaluate(() => document.body.dataset.view)).toBe('list');
  expect(await page.inputValue('#q-name')).toBe('иванов');
  expect((await rows(page)).map((r) => r.uid)).toEqual([first(ivanov, STUDY_UID)]);
});

test('thumbnails load for every study (screenshot: study-list.png)', async ({ page }) => {
  await openList(page);
  const count = await until(page, () => {
    const imgs = [...document.querySelectorAll('#list tbody img')];
    return imgs.length && imgs.every((i) => i.complete && i.naturalWidth > 0) && imgs.length;
  });
  expect(count).toBe(10);
  await page.click('#list tbody tr:nth-child(2) td.col-id');
  await screenshot(page, 'study-list');
});

test('each row links to its study and copies that link', { permissions: ['clipboard-read', 'clipboard-write'] }, async ({ page }) => {
  await openList(page);
  const [row] = await rows(page);
  const href = await page.getAttribute('#list tbody tr:first-child td.col-name a', 'href');
  expect(href).toBe(`/viewer?studyUID=${row.uid}`);
  await page.click('#list tbody tr:first-child button.copy');
  await until(page, () => document.querySelector('#notices .notice'));
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`${BASE}/viewer?studyUID=${row.uid}`);
});

test('without the Clipboard API (plain http on a LAN) the link is shown to copy by hand', async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(navigator, 'clipboard', { value: undefined });
    document.execCommand = () => false;
  });
  await openList(page);
  const [row] = await rows(page);
  await page.click('#list tbody tr:first-child button.copy');
  expect(await page.inputValue('dialog.copy-dialog input')).toBe(`${BASE}/viewer?studyUID=${row.uid}`);
  await page.click('dialog.copy-dialog button');
  // The dialog's close event, which removes it, comes a task later.
  await page.locator('dialog.copy-dialog').waitFor({ state: 'detached', timeout: 5000 });
});

test('IID: /viewer?studyUID= opens that study; the link is copyable', { permissions: ['clipboard-read', 'clipboard-write'] }, async ({ page }) => {
  const [ivanov] = await studiesOf('AINA-0002');
  const uid = first(ivanov, STUDY_UID);
  await page.goto(`${BASE}/viewer?studyUID=${uid}`);
  await readingOf(page, uid);
  expect(await page.evaluate(() => document.body.dataset.patient)).toBe('AINA-0002');
  expect(await page.textContent('#crumbs')).toContain('Иванов Сергей Петрович');
  await page.click('#copy-link');
  await until(page, () => document.querySelector('#notices .notice'));
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`${BASE}/viewer?studyUID=${uid}`);
});

test("IID: /viewer?patientID= opens the patient's most recent study, and lists the others; by accession too", async ({ page }) => {
  const [latest, prior] = await studiesOf('AINA-0005');
  expect(first(latest, STUDY_DATE) > first(prior, STUDY_DATE)).toBe(true);
  await page.goto(`${BASE}/viewer?patientID=AINA-0005`);
  await readingOf(page, first(latest, STUDY_UID));
  // The HL7 CX form charts send (ID^^^&issuer&ISO) names the same patient.
  await page.goto(`${BASE}/viewer?patientID=${encodeURIComponent('AINA-0005^^^&2.16.398.1&ISO')}`);
  await readingOf(page, first(latest, STUDY_UID));
  // By accession number, as IID also allows.
  await page.goto(`${BASE}/viewer?accessionNumber=${first(prior, '00080050')}`);
  await readingOf(page, first(prior, STUDY_UID));

  await searched(page, () => page.click('#crumbs a[href^="/?PatientID="]'));
  expect(new URL(page.url()).searchParams.get('PatientID')).toBe('AINA-0005');
  expect((await rows(page)).map((r) => r.uid)).toEqual([first(latest, STUDY_UID), first(prior, STUDY_UID)]);
});

test('IID: an unknown study or patient is said in words', async ({ page }) => {
  await page.goto(`${BASE}/viewer?studyUID=1.2.3.999`);
  expect(await page.textContent('#reading .failure')).toContain('The study 1.2.3.999 is not in the archive.');
  await page.goto(`${BASE}/viewer?patientID=NO-SUCH-ID`);
  expect(await page.textContent('#reading .failure')).toContain('The archive has no studies of patient NO-SUCH-ID.');
  // The way out: back to the list.
  await searched(page, () => page.click('#reading .failure a[href="/"]'));
  expect(await page.evaluate(() => document.body.dataset.view)).toBe('list');
});

test('language switch: kk → ru → en, remembered after reload', async ({ page }) => {
  await openList(page);
  const visible = () =>
    page.evaluate(() => ({
      lang: document.documentElement.lang,
      search: document.querySelector('#list button[type=submit]').textContent,
      patient: document.querySelector('th.col-name').textContent,
      crumbs: document.querySelector('#crumbs').textContent,
    }));
  expect(await visible()).toEqual({ lang: 'en', search: 'Search', patient: 'Patient', crumbs: 'Studies' });
  await page.selectOption('#lang', 'kk');
  expect(await visible()).toEqual({ lang: 'kk', search: 'Іздеу', patient: 'Пациент', crumbs: 'Зерттеулер' });
  await page.selectOption('#lang', 'ru');
  expect(await visible()).toEqual({ lang: 'ru', search: 'Найти', patient: 'Пациент', crumbs: 'Исследования' });
  await page.selectOption('#lang', 'en');
  expect((await visible()).search).toBe('Search');
  await page.selectOption('#lang', 'kk');
  await searched(page, () => page.reload());
  expect(await visible()).toEqual({ lang: 'kk', search: 'Іздеу', patient: 'Пациент', crumbs: 'Зерттеулер' });
  expect(await page.inputValue('#lang')).toBe('kk');
});

test('the first visit follows the browser language (kk-KZ)', { locale: 'kk-KZ' }, async ({ page }) => {
  await openList(page);
  expect(await page.textContent('#list button[type=submit]')).toBe('Іздеу');
  expect(await page.evaluate(() => document.documentElement.lang)).toBe('kk');
});

test('the first visit follows the browser language (ru-RU)', { locale: 'ru-RU' }, async ({ page }) => {
  await openList(page);
  expect(await page.textContent('#list button[type=submit]')).toBe('Найти');
});

test('archive unreachable: said in words, and Retry recovers', async ({ page }) => {
  await page.route('**/dicomweb/**', (route) => route.abort('connectionrefused'));
  await page.goto(`${BASE}/`);
  expect(await settled(page)).toBe('error');
  expect(await page.textContent('#list td.message')).toContain('The archive cannot be reached.');

  await page.unroute('**/dicomweb/**');
  await searched(page, () => page.click('#list td.message button[name=retry]'));
  expect((await rows(page)).length).toBe(10);

  await page.route('**/dicomweb/**', (route) => route.abort('connectionrefused'));
  await page.goto(`${BASE}/viewer?studyUID=1.2.3`);
  expect(await page.textContent('#reading .failure')).toContain('The archive cannot be reached.');
});

test("an archive error is worded with the archive's explanation", async ({ page }) => {
  await page.route('**/dicomweb/studies?*', (route) =>
    route.fulfill({ status: 503, contentType: 'text/plain', body: 'index: the archive could not complete the request\n' }),
  );
  await page.goto(`${BASE}/`);
  expect(await settled(page)).toBe('error');
  const message = await page.textContent('#list td.message');
  expect(message).toContain('The archive could not answer because of a problem on the server.');
  expect(message).toContain('index: the archive could not complete the request');
});

test('a reading view that cannot load is said in words, not a blank page', async ({ page }) => {
  await page.route('**/ui/reading.js', (route) => route.fulfill({ status: 404, contentType: 'text/plain', body: 'no such file\n' }));
  const [ivanov] = await studiesOf('AINA-0002');
  await page.goto(`${BASE}/viewer?studyUID=${first(ivanov, STUDY_UID)}`);
  await until(page, () => document.querySelector('#reading .failure'));
  expect(await page.textContent('#reading .failure')).toContain('The reading view could not be loaded.');
});
