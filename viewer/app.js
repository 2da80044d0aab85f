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
  if (!who || who.method === 'anonymous') return;
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
  drawCrumbs = () => crumbs.replaceChildren(listLink());
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
    crumbs.replaceChildren(
      listLink(),
      el('span', { className: 'sep', 'aria-hidden': 'true', textContent: '›' }),
      el('span', { className: 'patient', textContent: [name, pid && `(${pid})`].filter(Boolean).join(' ') }),
      pid ? el('a', { href: `/?PatientID=${encodeURIComponent(pid)}`, dataset: { nav: '' }, textContent: t('app.patientStudies') }) : '',
    );
  };
  drawCrumbs();
  copyButton.hidden = false;
  copyButton.onclick = () => copyText(studyLink(uid));

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
  const onBack = () => {
    if (history.state?.fromList) history.back();
    else navigate(patientID ? `/?PatientID=${encodeURIComponent(patientID)}` : '/');
  };
  try {
    const handle = await module.openStudy(readingSection, { client, studyUID: uid, patientID: pid, onBack, signal: controller.signal });
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
      el('p', {}, el('a', { href: '/', dataset: { nav: '' }, textContent: t('app.backToList') })),
      patientID && el('p', {}, el('a', { href: `/?PatientID=${encodeURIComponent(patientID)}`, dataset: { nav: '' }, textContent: t('app.patientStudies') })),
    ),
  );
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
