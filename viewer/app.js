// The shell: routes between the study list (`/?…`) and the reading view
// (`/viewer?studyUID=…`, and IHE IID "Invoke Image Display" launches from a
// chart: `/viewer?patientID=…` opens the patient's most recent study), and
// owns the top bar (language, copy link, where you are) and the error banner.
// Everything it knows about studies comes from DICOMweb.

import { DicomWeb, personName, signIn, value } from './dicomweb.js';
import { register, t, lang, setLang, translate } from './i18n.js';
import { clearErrors, copyText, describeError, el, showError, studyLink } from './ui.js';
import { StudyList } from './studylist.js';

export { showError };

register({
  en: {
    'app.language': 'Language',
    'app.signOut': 'Sign out',
    'app.copyLink': 'Copy link',
    'app.share': 'Share…',
    'app.sharedUntil': 'Shared study · read only · until {date}',
    'share.title': 'Share this study',
    'share.explain': 'Anyone with the link can view this one study, read only, until it expires. Every use is recorded. You can revoke it from this dialog.',
    'share.lifetime': 'Link valid for',
    'share.day': '1 day',
    'share.week': '7 days',
    'share.month': '30 days',
    'share.note': 'For (optional, not in the link)',
    'share.create': 'Create link',
    'share.copy': 'Copy',
    'share.revoke': 'Revoke',
    'share.revoked': 'Link revoked',
    'share.expires': 'Expires {date}',
    'share.failed': 'The link could not be made: {reason}',
    'app.studies': 'Studies',
    'app.patientStudies': 'All studies of this patient',
    'app.opening': 'Opening the study…',
    'app.backToList': 'Back to the study list',
    'app.studyNotFound': 'The study {uid} is not in the archive.',
    'app.patientNotFound': 'The archive has no studies of patient {id}.',
    'app.accessionNotFound': 'The archive has no study with accession number {accession}.',
    'app.readingMissing': 'The reading view could not be loaded. Reload the page; if this persists, tell the administrator.',
  },
  ru: {
    'app.language': 'Язык',
    'app.signOut': 'Выйти',
    'app.copyLink': 'Копировать ссылку',
    'app.share': 'Поделиться…',
    'app.sharedUntil': 'Исследование по ссылке · только просмотр · до {date}',
    'share.title': 'Поделиться исследованием',
    'share.explain': 'Любой, у кого есть ссылка, сможет просмотреть только это исследование, без изменений, пока ссылка действует. Каждое открытие записывается. Ссылку можно отозвать в этом окне.',
    'share.lifetime': 'Ссылка действует',
    'share.day': '1 день',
    'share.week': '7 дней',
    'share.month': '30 дней',
    'share.note': 'Для кого (необязательно, в ссылку не входит)',
    'share.create': 'Создать ссылку',
    'share.copy': 'Копировать',
    'share.revoke': 'Отозвать',
    'share.revoked': 'Ссылка отозвана',
    'share.expires': 'Действует до {date}',
    'share.failed': 'Не удалось создать ссылку: {reason}',
    'app.studies': 'Исследования',
    'app.patientStudies': 'Все исследования пациента',
    'app.opening': 'Открытие исследования…',
    'app.backToList': 'Вернуться к списку исследований',
    'app.studyNotFound': 'Исследования {uid} нет в архиве.',
    'app.patientNotFound': 'В архиве нет исследований пациента {id}.',
    'app.accessionNotFound': 'В архиве нет исследования с номером заявки {accession}.',
    'app.readingMissing': 'Не удалось загрузить окно просмотра. Обновите страницу; если ошибка повторится, сообщите администратору.',
  },
  kk: {
    'app.language': 'Тіл',
    'app.signOut': 'Шығу',
    'app.copyLink': 'Сілтемені көшіру',
    'app.share': 'Бөлісу…',
    'app.sharedUntil': 'Сілтеме арқылы ашылған зерттеу · тек қарау · {date} дейін',
    'share.title': 'Зерттеумен бөлісу',
    'share.explain': 'Сілтемесі бар кез келген адам сілтеме жарамды болғанша тек осы зерттеуді өзгертусіз көре алады. Әр ашылуы жазылады. Сілтемені осы терезеде қайтарып алуға болады.',
    'share.lifetime': 'Сілтеменің жарамдылық мерзімі',
    'share.day': '1 күн',
    'share.week': '7 күн',
    'share.month': '30 күн',
    'share.note': 'Кімге (міндетті емес, сілтемеге кірмейді)',
    'share.create': 'Сілтеме жасау',
    'share.copy': 'Көшіру',
    'share.revoke': 'Қайтарып алу',
    'share.revoked': 'Сілтеме қайтарып алынды',
    'share.expires': '{date} дейін жарамды',
    'share.failed': 'Сілтеме жасау мүмкін болмады: {reason}',
    'app.studies': 'Зерттеулер',
    'app.patientStudies': 'Пациенттің барлық зерттеулері',
    'app.opening': 'Зерттеу ашылуда…',
    'app.backToList': 'Зерттеулер тізіміне оралу',
    'app.studyNotFound': '{uid} зерттеуі архивте жоқ.',
    'app.patientNotFound': 'Архивте {id} пациентінің зерттеулері жоқ.',
    'app.accessionNotFound': 'Архивте {accession} өтінім нөмірі бар зерттеу жоқ.',
    'app.readingMissing': 'Қарау терезесін жүктеу мүмкін болмады. Бетті жаңартыңыз; қате қайталанса, әкімшіге хабарлаңыз.',
  },
});

const client = new DicomWeb(document.querySelector('meta[name="aina-dicomweb-root"]')?.content || '/dicomweb');
const listSection = document.getElementById('list');
const readingSection = document.getElementById('reading');
const crumbs = document.getElementById('crumbs');
const copyButton = document.getElementById('copy-link');
const shareButton = document.getElementById('share');
const langSelect = document.getElementById('lang');

/** A valid UID (PS3.5 §9.1): digits and dots, at most 64 characters. */
const UID = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
/** Studies of one patient looked at to find the most recent. */
const PATIENT_STUDIES = 200;

const list = new StudyList(listSection, {
  client,
  onOpen: (studyUID) => navigate(`/viewer?studyUID=${encodeURIComponent(studyUID)}`, { fromList: true }),
  // Searches replace the list's history entry rather than add one: back
  // leaves the list instead of stepping through every keystroke.
  onChange: (query) => history.replaceState(history.state, '', query ? `/?${query}` : '/'),
});

// Who is signed in. With authentication on, a visitor without a session is
// sent to the sign-in page before anything asks for patient data; with it
// off (`method` "anonymous") there is nobody to sign out.
const userLabel = document.getElementById('user');
const signOutButton = document.getElementById('sign-out');
const me = fetch('/auth/me', { credentials: 'same-origin' })
  .then(async (res) => {
    if (res.status === 401) {
      signIn();
      return null;
    }
    return res.ok ? res.json() : null;
  })
  .catch(() => null);
me.then((who) => {
  if (who?.method === 'share') {
    enterShared(who.share);
    return;
  }
  if (!who || who.method === 'anonymous') return;
  canShare = who.role !== 'ingest';
  csrf = who.csrf ?? '';
  if (canShare && document.body.dataset.study) shareButton.hidden = false;
  userLabel.textContent = who.name;
  userLabel.hidden = false;
  signOutButton.hidden = false;
  signOutButton.addEventListener('click', async () => {
    await fetch('/auth/logout', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'X-CSRF-Token': who.csrf ?? '' },
    }).catch(() => {});
    location.assign('/login');
  });
});

// A share link (`/s/…` lands on `/viewer?studyUID=…&shared=1`) opens one
// study, read only: no list, no other study, no patient's other studies.
// The archive enforces that; the page only stops offering what would be
// refused. The URL says so at once (no wait for /auth/me before the first
// image); /auth/me then gives the link's study and end.
let shared = null; // {study, expires_at_ms}
{
  const params = new URLSearchParams(location.search);
  if (location.pathname === '/viewer' && params.get('shared') === '1') enterShared({ study: params.get('studyUID') });
}
let canShare = false;
let csrf = '';

function enterShared(share) {
  if (!share?.study) return;
  shared = { ...shared, ...share };
  document.body.dataset.shared = '';
  copyButton.hidden = true;
  shareButton.hidden = true;
  if (shared.expires_at_ms) {
    const date = new Date(shared.expires_at_ms).toLocaleString(lang());
    userLabel.textContent = t('app.sharedUntil', { date });
    userLabel.hidden = false;
  }
  const url = new URL(location.href);
  if (url.pathname !== '/viewer' || url.searchParams.get('studyUID') !== shared.study) route();
}

let reading = null; // {controller, handle} of the open reading view
let generation = 0; // a route superseded while loading must not draw
let drawCrumbs = () => {}; // redrawn when the language changes

function navigate(url, state = {}) {
  history.pushState(state, '', url);
  route();
}

function route() {
  const current = ++generation;
  closeReading();
  clearErrors();
  const url = new URL(location.href);
  if (shared && (url.pathname !== '/viewer' || url.searchParams.get('studyUID') !== shared.study)) {
    history.replaceState(null, '', `/viewer?studyUID=${encodeURIComponent(shared.study)}&shared=1`);
    route();
    return;
  }
  if (url.pathname === '/viewer') openViewer(url.searchParams, current);
  else showList(url.search);
}

function setView(view) {
  document.body.dataset.view = view;
  listSection.hidden = view !== 'list';
  readingSection.hidden = view !== 'reading';
  delete document.body.dataset.study;
  delete document.body.dataset.patient;
  copyButton.hidden = true;
  shareButton.hidden = true;
}

function showList(search) {
  setView('list');
  drawCrumbs = () => {
    crumbs.replaceChildren(el('span', { textContent: t('app.studies') }));
    document.title = `${t('app.studies')} — Aina`;
  };
  drawCrumbs();
  list.show(search);
}

/**
 * The study an IID launch names: by Study Instance UID (the first, if the
 * chart sent a list), else the most recent study of the patient or of the
 * accession number. `null` when the archive has none.
 */
async function findStudy({ studyUID, patientID, accession }) {
  if (studyUID) {
    if (studyUID.length > 64 || !UID.test(studyUID)) return null;
    const [study] = await client.searchStudies({ StudyInstanceUID: studyUID }, { limit: 1 });
    return study ?? null;
  }
  const query = patientID ? { PatientID: patientID } : { AccessionNumber: accession };
  const studies = await client.searchStudies(query, { limit: PATIENT_STUDIES });
  const when = (s) => `${value(s, '00080020') ?? ''}${value(s, '00080030') ?? ''}`;
  // The archive's order is not to be relied upon (PS3.18 leaves it open).
  return studies.reduce((best, s) => (!best || when(s) > when(best) ? s : best), null);
}

async function openViewer(params, current) {
  const studyUID = params.get('studyUID')?.split(',')[0].trim();
  // IID sends the patient as an HL7 CX value, `ID^^^&issuer&ISO`: the ID is
  // the first component (one archive, one issuer).
  const patientID = params.get('patientID')?.split('^')[0].trim();
  const accession = params.get('accessionNumber')?.trim();
  if (!studyUID && !patientID && !accession) {
    history.replaceState(null, '', '/');
    showList('');
    return;
  }
  setView('reading');
  drawCrumbs = () => crumbs.replaceChildren(shared ? '' : listLink());
  drawCrumbs();
  document.title = 'Aina';
  readingSection.replaceChildren(el('p', { className: 'placeholder', textContent: t('app.opening') }));

  // Start loading the reading view's modules while the study is looked up:
  // on a first visit that is a third of the time to the first image. A failed
  // load is reported below, where it is awaited.
  const readingModule = import('./reading.js');
  readingModule.catch(() => {});
  let study;
  try {
    study = await findStudy({ studyUID, patientID, accession });
  } catch (e) {
    if (current === generation) fail(describeError(e), patientID);
    return;
  }
  if (current !== generation) return;
  if (!study) {
    const key = studyUID ? 'app.studyNotFound' : patientID ? 'app.patientNotFound' : 'app.accessionNotFound';
    fail(t(key, { uid: studyUID, id: patientID, accession }), patientID);
    return;
  }

  const uid = value(study, '0020000D');
  const pid = value(study, '00100020') ?? patientID;
  document.body.dataset.study = uid;
  if (pid) document.body.dataset.patient = pid;
  drawCrumbs = () => {
    const name = personName(study, '00100010');
    const patient = el('span', { className: 'patient', textContent: [name, pid && `(${pid})`].filter(Boolean).join(' ') });
    if (shared) {
      crumbs.replaceChildren(patient);
      return;
    }
    crumbs.replaceChildren(
      listLink(),
      el('span', { className: 'sep', 'aria-hidden': 'true', textContent: '›' }),
      patient,
      pid ? el('a', { href: `/?PatientID=${encodeURIComponent(pid)}`, dataset: { nav: '' }, textContent: t('app.patientStudies') }) : '',
    );
  };
  drawCrumbs();
  if (!shared) {
    copyButton.hidden = false;
    copyButton.onclick = () => copyText(studyLink(uid));
    shareButton.hidden = !canShare;
    shareButton.onclick = () => shareDialog(uid);
  }

  const controller = new AbortController();
  reading = { controller, handle: null };
  let module;
  try {
    module = await readingModule;
  } catch (e) {
    if (current === generation) fail(`${t('app.readingMissing')} (${e.message})`, pid);
    return;
  }
  if (current !== generation) return;
  readingSection.replaceChildren();
  const onBack = shared
    ? null
    : () => {
        if (history.state?.fromList) history.back();
        else navigate(patientID ? `/?PatientID=${encodeURIComponent(patientID)}` : '/');
      };
  try {
    const handle = await module.openStudy(readingSection, {
      client,
      studyUID: uid,
      patientID: shared ? undefined : pid,
      onBack,
      signal: controller.signal,
    });
    if (current === generation) reading.handle = handle;
    else handle?.close?.();
  } catch (e) {
    if (current === generation && e?.name !== 'AbortError') fail(describeError(e), pid);
  }
}

/** Leaves the reading view: stops its requests and lets it release what it holds. */
function closeReading() {
  if (!reading) return;
  reading.controller.abort();
  reading.handle?.close?.();
  reading = null;
  readingSection.replaceChildren();
}

function listLink() {
  return el('a', { href: '/', dataset: { nav: '' }, textContent: t('app.studies') });
}

/** A failure to open a study, said in words where the images would be. */
function fail(message, patientID) {
  readingSection.replaceChildren(
    el(
      'div',
      { className: 'failure', role: 'alert' },
      el('p', { textContent: message }),
      !shared && el('p', {}, el('a', { href: '/', dataset: { nav: '' }, textContent: t('app.backToList') })),
      !shared && patientID && el('p', {}, el('a', { href: `/?PatientID=${encodeURIComponent(patientID)}`, dataset: { nav: '' }, textContent: t('app.patientStudies') })),
    ),
  );
}

/**
 * Makes a share link for the open study (POST /shares) and shows it with a
 * copy button and a revoke button. The link is shown here once: the archive
 * keeps only its digest.
 */
function shareDialog(studyUID) {
  const lifetime = el(
    'select',
    { id: 'share-lifetime' },
    el('option', { value: 24 * 60, textContent: t('share.day') }),
    el('option', { value: 7 * 24 * 60, textContent: t('share.week'), selected: true }),
    el('option', { value: 30 * 24 * 60, textContent: t('share.month') }),
  );
  const note = el('input', { id: 'share-note', maxLength: 200, autocomplete: 'off' });
  const create = el('button', { type: 'button', className: 'primary', textContent: t('share.create') });
  const close = el('button', { type: 'button', textContent: t('ui.close') });
  const result = el('div', { className: 'share-result', hidden: true });
  const message = el('p', { className: 'share-error', role: 'alert' });
  const dialog = el(
    'dialog',
    { className: 'copy-dialog share-dialog', 'aria-labelledby': 'share-title' },
    el('h2', { id: 'share-title', textContent: t('share.title') }),
    el('p', { className: 'muted', textContent: t('share.explain') }),
    el('label', {}, el('span', { textContent: t('share.lifetime') }), lifetime),
    el('label', {}, el('span', { textContent: t('share.note') }), note),
    message,
    result,
    el('div', { className: 'share-actions' }, create, close),
  );
  create.addEventListener('click', async () => {
    create.disabled = true;
    message.textContent = '';
    try {
      const res = await fetch('/shares', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify({
          study: studyUID,
          expires_in_minutes: Number(lifetime.value),
          ...(note.value.trim() ? { note: note.value.trim() } : {}),
        }),
      });
      if (!res.ok) throw new Error((await res.text()).trim().slice(0, 300) || res.statusText);
      const share = await res.json();
      const field = el('input', { readOnly: true, value: share.url, className: 'share-url' });
      const copy = el('button', { type: 'button', textContent: t('share.copy'), onclick: () => copyText(share.url) });
      const revoke = el('button', { type: 'button', textContent: t('share.revoke') });
      const expires = el('p', { className: 'muted', textContent: t('share.expires', { date: new Date(share.expires_at_ms).toLocaleString(lang()) }) });
      revoke.addEventListener('click', async () => {
        revoke.disabled = true;
        const gone = await fetch(`/shares/${encodeURIComponent(share.id)}`, {
          method: 'DELETE',
          credentials: 'same-origin',
          headers: { 'X-CSRF-Token': csrf },
        }).catch(() => null);
        if (gone?.ok) {
          field.value = '';
          copy.disabled = true;
          expires.textContent = t('share.revoked');
        } else {
          revoke.disabled = false;
        }
      });
      result.replaceChildren(el('div', { className: 'share-link' }, field, copy, revoke), expires);
      result.hidden = false;
      field.select();
    } catch (e) {
      message.textContent = t('share.failed', { reason: e.message });
      create.disabled = false;
    }
  });
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// Links marked data-nav stay in the page; with a modifier key (new tab,
// new window) the browser handles them.
document.addEventListener('click', (e) => {
  const link = e.target.closest('a[data-nav]');
  if (!link || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(link.getAttribute('href'));
});

window.addEventListener('popstate', route);

langSelect.value = lang();
langSelect.addEventListener('change', () => setLang(langSelect.value));
window.addEventListener('aina:lang', () => {
  langSelect.value = lang();
  translate();
  drawCrumbs();
});

// Whatever fails without being caught is still said in words, not left as a
// blank screen.
window.addEventListener('unhandledrejection', (e) => {
  if (e.reason?.name !== 'AbortError') showError(describeError(e.reason));
});
window.addEventListener('error', (e) => showError(describeError(e.error ?? e.message)));

translate();
route();
