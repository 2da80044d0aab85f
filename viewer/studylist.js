// The study list: a QIDO-RS study search (PS3.18 §10.6) by patient name,
// patient ID, accession number, study date and modality, shown a page at a
// time with thumbnails. The whole search lives in the URL query (`/?…`), so
// reload, the back button and a shared link all show the same list.
//
// Sorting reorders the current page only: QIDO-RS has no sort parameter, and
// this archive (like most) pages newest first. Paging asks for one study more
// than a page holds, which tells whether a next page exists without a count.

import { register, t, lang } from './i18n.js';
import { value, values, personName, formatDate, formatTime } from './dicomweb.js';
import { copyText, describeError, el, linkIcon, studyLink } from './ui.js';

register({
  en: {
    'list.title': 'Studies',
    'list.name': 'Patient name',
    'list.namePlaceholder': 'Family name, first letters',
    'list.fuzzy': 'Fuzzy',
    'list.fuzzyHint': 'Each word may begin any part of the name, in any order',
    'list.id': 'Patient ID',
    'list.accession': 'Accession',
    'list.studyDate': 'Study date',
    'list.dates.any': 'Any',
    'list.dates.today': 'Today',
    'list.dates.7d': '7 days',
    'list.dates.custom': 'Range',
    'list.from': 'From',
    'list.to': 'To',
    'list.modality': 'Modality',
    'list.allModalities': 'All',
    'list.search': 'Search',
    'list.clear': 'Clear',
    'list.col.thumb': 'Image',
    'list.col.name': 'Patient',
    'list.col.id': 'ID',
    'list.col.birth': 'Born',
    'list.col.date': 'Study date',
    'list.col.modality': 'Mod.',
    'list.col.description': 'Description',
    'list.col.accession': 'Accession',
    'list.col.images': 'Series / images',
    'list.col.actions': 'Link',
    'list.copyLink': 'Copy the link to this study',
    'list.loading': 'Searching…',
    'list.showing': 'Studies {from}–{to}',
    'list.more': '(more on the next page)',
    'list.empty': 'No studies match this search.',
    'list.emptyHint': 'Try fewer letters of the name, fuzzy matching, or another date.',
    'list.emptyPage': 'No more studies: this page is past the end of the results.',
    'list.badRange': 'The first date of the range is after the last one.',
    'list.retry': 'Try again',
    'list.prev': '← Previous',
    'list.next': 'Next →',
    'list.perPage': 'Per page',
    'list.keys': '↑ ↓ choose a study · Enter opens it · / goes to the search · Page Up/Down turn pages',
    'sex.M': 'M',
    'sex.F': 'F',
    'sex.O': 'O',
    'modality.CR': 'Computed radiography',
    'modality.DX': 'Digital radiography',
    'modality.MG': 'Mammography',
    'modality.CT': 'Computed tomography',
    'modality.MR': 'Magnetic resonance',
    'modality.US': 'Ultrasound',
    'modality.XA': 'Angiography',
    'modality.RF': 'Fluoroscopy',
    'modality.NM': 'Nuclear medicine',
    'modality.PT': 'PET',
    'modality.IO': 'Intra-oral radiography',
    'modality.PX': 'Panoramic radiography',
    'modality.SR': 'Structured report',
    'modality.OT': 'Other',
  },
  ru: {
    'list.title': 'Исследования',
    'list.name': 'ФИО пациента',
    'list.namePlaceholder': 'Фамилия, первые буквы',
    'list.fuzzy': 'Нечёткий',
    'list.fuzzyHint': 'Каждое слово может начинать любую часть имени, в любом порядке',
    'list.id': 'ID пациента',
    'list.accession': 'Номер заявки',
    'list.studyDate': 'Дата исследования',
    'list.dates.any': 'Любая',
    'list.dates.today': 'Сегодня',
    'list.dates.7d': '7 дней',
    'list.dates.custom': 'Период',
    'list.from': 'С',
    'list.to': 'По',
    'list.modality': 'Модальность',
    'list.allModalities': 'Все',
    'list.search': 'Найти',
    'list.clear': 'Сбросить',
    'list.col.thumb': 'Снимок',
    'list.col.name': 'Пациент',
    'list.col.id': 'ID',
    'list.col.birth': 'Дата рожд.',
    'list.col.date': 'Дата исследования',
    'list.col.modality': 'Мод.',
    'list.col.description': 'Описание',
    'list.col.accession': 'Номер заявки',
    'list.col.images': 'Серии / снимки',
    'list.col.actions': 'Ссылка',
    'list.copyLink': 'Скопировать ссылку на исследование',
    'list.loading': 'Поиск…',
    'list.showing': 'Исследования {from}–{to}',
    'list.more': '(есть ещё на следующей странице)',
    'list.empty': 'Исследований по этому запросу нет.',
    'list.emptyHint': 'Введите меньше букв фамилии, включите нечёткий поиск или выберите другую дату.',
    'list.emptyPage': 'Больше исследований нет: страница за концом результатов.',
    'list.badRange': 'Начальная дата периода позже конечной.',
    'list.retry': 'Повторить',
    'list.prev': '← Назад',
    'list.next': 'Вперёд →',
    'list.perPage': 'На странице',
    'list.keys': '↑ ↓ выбор исследования · Enter открывает · / переход к поиску · Page Up/Down листают страницы',
    'sex.M': 'М',
    'sex.F': 'Ж',
    'sex.O': 'Др.',
    'modality.CR': 'Компьютерная рентгенография',
    'modality.DX': 'Цифровая рентгенография',
    'modality.MG': 'Маммография',
    'modality.CT': 'Компьютерная томография',
    'modality.MR': 'Магнитно-резонансная томография',
    'modality.US': 'Ультразвук',
    'modality.XA': 'Ангиография',
    'modality.RF': 'Рентгеноскопия',
    'modality.NM': 'Ядерная медицина',
    'modality.PT': 'ПЭТ',
    'modality.IO': 'Внутриротовая рентгенография',
    'modality.PX': 'Панорамная рентгенография',
    'modality.SR': 'Структурированный отчёт',
    'modality.OT': 'Другое',
  },
  kk: {
    'list.title': 'Зерттеулер',
    'list.name': 'Пациенттің аты-жөні',
    'list.namePlaceholder': 'Тегі, алғашқы әріптері',
    'list.fuzzy': 'Ұқсас',
    'list.fuzzyHint': 'Әр сөз атаудың кез келген бөлігінің басы бола алады, ретсіз',
    'list.id': 'Пациент ID',
    'list.accession': 'Өтінім нөмірі',
    'list.studyDate': 'Зерттеу күні',
    'list.dates.any': 'Кез келген',
    'list.dates.today': 'Бүгін',
    'list.dates.7d': '7 күн',
    'list.dates.custom': 'Аралық',
    'list.from': 'Басы',
    'list.to': 'Соңы',
    'list.modality': 'Модальділік',
    'list.allModalities': 'Барлығы',
    'list.search': 'Іздеу',
    'list.clear': 'Тазалау',
    'list.col.thumb': 'Сурет',
    'list.col.name': 'Пациент',
    'list.col.id': 'ID',
    'list.col.birth': 'Туған күні',
    'list.col.date': 'Зерттеу күні',
    'list.col.modality': 'Мод.',
    'list.col.description': 'Сипаттама',
    'list.col.accession': 'Өтінім нөмірі',
    'list.col.images': 'Сериялар / суреттер',
    'list.col.actions': 'Сілтеме',
    'list.copyLink': 'Зерттеуге сілтемені көшіру',
    'list.loading': 'Іздеу…',
    'list.showing': 'Зерттеулер {from}–{to}',
    'list.more': '(келесі бетте тағы бар)',
    'list.empty': 'Бұл сұранысқа сәйкес зерттеу жоқ.',
    'list.emptyHint': 'Тегінің азырақ әрпін енгізіңіз, ұқсас іздеуді қосыңыз немесе басқа күнді таңдаңыз.',
    'list.emptyPage': 'Басқа зерттеу жоқ: бұл бет нәтижелердің соңынан кейін.',
    'list.badRange': 'Аралықтың бастапқы күні соңғы күнінен кейін тұр.',
    'list.retry': 'Қайталау',
    'list.prev': '← Алдыңғы',
    'list.next': 'Келесі →',
    'list.perPage': 'Беттегі саны',
    'list.keys': '↑ ↓ зерттеуді таңдау · Enter ашады · / іздеуге өту · Page Up/Down беттерді ауыстырады',
    'sex.M': 'Е',
    'sex.F': 'Ә',
    'sex.O': 'Басқа',
    'modality.CR': 'Компьютерлік рентгенография',
    'modality.DX': 'Цифрлық рентгенография',
    'modality.MG': 'Маммография',
    'modality.CT': 'Компьютерлік томография',
    'modality.MR': 'Магниттік-резонанстық томография',
    'modality.US': 'Ультрадыбыс',
    'modality.XA': 'Ангиография',
    'modality.RF': 'Рентгеноскопия',
    'modality.NM': 'Ядролық медицина',
    'modality.PT': 'ПЭТ',
    'modality.IO': 'Ауызішілік рентгенография',
    'modality.PX': 'Панорамалық рентгенография',
    'modality.SR': 'Құрылымдық есеп',
    'modality.OT': 'Басқа',
  },
});

const DEFAULT_LIMIT = 25;
const PAGE_SIZES = [10, 25, 50, 100];
const MAX_LIMIT = 200;
const DATE_PRESETS = ['any', 'today', '7d', 'custom'];
const MODALITIES = ['CR', 'DX', 'MG', 'CT', 'MR', 'US', 'XA', 'RF', 'NM', 'PT', 'IO', 'PX', 'SR', 'OT'];
const TEXT_FIELDS = ['PatientName', 'PatientID', 'AccessionNumber'];
/** Typing searches after this pause; Enter searches at once. */
const TYPING_PAUSE_MS = 350;

const tag = {
  studyDate: '00080020',
  studyTime: '00080030',
  accession: '00080050',
  modalities: '00080061',
  description: '00081030',
  name: '00100010',
  id: '00100020',
  birth: '00100030',
  sex: '00100040',
  study: '0020000D',
  series: '00201206',
  instances: '00201208',
};

const text = (study, key) => String(value(study, tag[key]) ?? '');

/**
 * The columns: how each sorts (a string or number from a study) and whether
 * it is shown on narrow screens (`narrow: false` hides it there).
 */
const COLUMNS = [
  { key: 'thumb' },
  { key: 'name', sort: (s) => personName(s, tag.name) },
  { key: 'id', sort: (s) => text(s, 'id') },
  { key: 'birth', sort: (s) => text(s, 'birth'), narrow: false },
  { key: 'date', sort: (s) => `${text(s, 'studyDate')} ${text(s, 'studyTime')}` },
  { key: 'modality', sort: (s) => values(s, tag.modalities).join(',') },
  { key: 'description', sort: (s) => text(s, 'description'), narrow: false },
  { key: 'accession', sort: (s) => text(s, 'accession'), narrow: false },
  { key: 'images', sort: (s) => Number(value(s, tag.instances) ?? 0) },
  { key: 'actions' },
];
const SORTABLE = Object.fromEntries(COLUMNS.filter((c) => c.sort).map((c) => [c.key, c.sort]));

/** The list's state from a URL query; anything malformed falls back to the default. */
function parseSearch(search) {
  const p = new URLSearchParams(search);
  const int = (key, fallback, min, max) => {
    const n = Number.parseInt(p.get(key) ?? '', 10);
    return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
  };
  const isoDate = (key) => (/^\d{4}-\d{2}-\d{2}$/.test(p.get(key) ?? '') ? p.get(key) : '');
  const sort = p.get('sort') ?? '';
  return {
    PatientName: p.get('PatientName') ?? '',
    fuzzy: p.get('fuzzy') === '1',
    PatientID: p.get('PatientID') ?? '',
    AccessionNumber: p.get('AccessionNumber') ?? '',
    dates: DATE_PRESETS.includes(p.get('dates')) ? p.get('dates') : 'any',
    from: isoDate('from'),
    to: isoDate('to'),
    ModalitiesInStudy: p.get('ModalitiesInStudy') ?? '',
    sort: SORTABLE[sort.replace(/^-/, '')] ? sort : '-date',
    offset: int('offset', 0, 0, 1e6),
    limit: int('limit', DEFAULT_LIMIT, 1, MAX_LIMIT),
  };
}

/** The URL query of a state, defaults left out (so `/` is the plain list). */
function formatSearch(s) {
  const p = new URLSearchParams();
  for (const key of TEXT_FIELDS) if (s[key].trim()) p.set(key, s[key].trim());
  if (s.fuzzy) p.set('fuzzy', '1');
  if (s.dates !== 'any') p.set('dates', s.dates);
  if (s.dates === 'custom' && s.from) p.set('from', s.from);
  if (s.dates === 'custom' && s.to) p.set('to', s.to);
  if (s.ModalitiesInStudy) p.set('ModalitiesInStudy', s.ModalitiesInStudy);
  if (s.sort !== '-date') p.set('sort', s.sort);
  if (s.offset) p.set('offset', s.offset);
  if (s.limit !== DEFAULT_LIMIT) p.set('limit', s.limit);
  return p.toString();
}

/** YYYYMMDD of a local date. */
function da(d) {
  return `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}`;
}

/** The QIDO StudyDate value of a state's date choice (PS3.4 C.2.2.2.5 range matching). */
function studyDate(s) {
  const today = new Date();
  switch (s.dates) {
    case 'today':
      return da(today);
    case '7d': {
      const start = new Date(today);
      start.setDate(start.getDate() - 6);
      return `${da(start)}-${da(today)}`;
    }
    case 'custom': {
      const [from, to] = [s.from, s.to].map((d) => d.replaceAll('-', ''));
      if (!from && !to) return '';
      return from === to ? from : `${from}-${to}`;
    }
    default:
      return '';
  }
}

/**
 * QIDO matching keys of a state. A name gets a trailing `*` (the archive
 * matches names case-insensitively, Cyrillic and Kazakh letters included)
 * unless the user wrote wildcards or asked for fuzzy matching, which
 * matches word beginnings itself. IDs and accession numbers match exactly
 * unless they contain wildcards.
 */
function qidoQuery(s) {
  const name = s.PatientName.trim();
  return {
    PatientName: name && (s.fuzzy || /[*?]/.test(name) ? name : `${name}*`),
    PatientID: s.PatientID.trim(),
    AccessionNumber: s.AccessionNumber.trim(),
    StudyDate: studyDate(s),
    ModalitiesInStudy: s.ModalitiesInStudy,
  };
}

function isEditable(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
}

const SKELETON = `
<h1 class="visually-hidden" data-i18n="list.title"></h1>
<form class="search" role="search" autocomplete="off">
  <div class="field grow">
    <label for="q-name" data-i18n="list.name"></label>
    <input id="q-name" name="PatientName" type="search" spellcheck="false" data-i18n-placeholder="list.namePlaceholder">
  </div>
  <label class="check" data-i18n-title="list.fuzzyHint"><input type="checkbox" name="fuzzy"> <span data-i18n="list.fuzzy"></span></label>
  <div class="field">
    <label for="q-id" data-i18n="list.id"></label>
    <input id="q-id" name="PatientID" type="search" spellcheck="false">
  </div>
  <div class="field">
    <label for="q-accession" data-i18n="list.accession"></label>
    <input id="q-accession" name="AccessionNumber" type="search" spellcheck="false">
  </div>
  <fieldset class="field dates">
    <legend data-i18n="list.studyDate"></legend>
    <div class="segmented">
      ${DATE_PRESETS.map((p) => `<label><input type="radio" name="dates" value="${p}"><span data-i18n="list.dates.${p}"></span></label>`).join('')}
    </div>
    <div class="range">
      <label><span data-i18n="list.from"></span> <input type="date" name="from"></label>
      <label><span data-i18n="list.to"></span> <input type="date" name="to"></label>
    </div>
  </fieldset>
  <div class="field">
    <label for="q-modality" data-i18n="list.modality"></label>
    <select id="q-modality" name="ModalitiesInStudy"></select>
  </div>
  <div class="buttons">
    <button type="submit" class="primary" data-i18n="list.search"></button>
    <button type="reset" data-i18n="list.clear"></button>
  </div>
</form>
<p class="status" role="status"></p>
<div class="table-wrap">
  <table class="studies">
    <thead><tr></tr></thead>
    <tbody></tbody>
  </table>
</div>
<nav class="pager">
  <button type="button" name="prev" data-i18n="list.prev"></button>
  <span class="page-range"></span>
  <button type="button" name="next" data-i18n="list.next"></button>
  <label><span data-i18n="list.perPage"></span> <select name="limit"></select></label>
</nav>
<p class="hint" data-i18n="list.keys"></p>`;

/**
 * The study list view. `onOpen(studyUID)` opens a study; `onChange(query)`
 * is told the URL query of every new state (the shell keeps it in the URL).
 */
export class StudyList {
  constructor(container, { client, onOpen, onChange }) {
    Object.assign(this, { container, client, onOpen, onChange });
    this.state = parseSearch('');
    this.studies = []; // the current page, in the archive's order
    this.more = false;
    this.error = null;
    this.loading = false;
    this.selected = null; // Study Instance UID
    this.generation = 0; // answers to superseded searches are dropped
    this.thumbnails = new Map(); // UID → <img>, so re-rendering never refetches
    container.classList.add('studylist');
    container.innerHTML = SKELETON;
    this.form = container.querySelector('form');
    this.status = container.querySelector('.status');
    this.head = container.querySelector('thead tr');
    this.body = container.querySelector('tbody');
    this.pager = container.querySelector('.pager');
    this.wire();
    window.addEventListener('aina:lang', () => this.render());
  }

  /**
   * Shows the list for a URL query. Coming back to the same query searches
   * again (new studies may have arrived) but keeps the old rows on screen
   * meanwhile, and the selection if the study is still there.
   */
  show(search) {
    this.state = parseSearch(search);
    this.fillForm();
    this.load();
  }

  focusSearch() {
    const input = this.form.elements.PatientName;
    input.focus();
    input.select();
  }

  wire() {
    const f = this.form;
    f.addEventListener('submit', (e) => {
      e.preventDefault();
      clearTimeout(this.typing);
      this.apply(this.readForm());
    });
    f.addEventListener('reset', (e) => {
      e.preventDefault();
      this.apply({ ...parseSearch(''), limit: this.state.limit });
      this.fillForm();
    });
    f.addEventListener('input', (e) => {
      if (!TEXT_FIELDS.includes(e.target.name)) return;
      clearTimeout(this.typing);
      // The user may have opened a study meanwhile: a hidden list leaves the URL alone.
      this.typing = setTimeout(() => this.container.hidden || this.apply(this.readForm()), TYPING_PAUSE_MS);
    });
    f.addEventListener('change', (e) => {
      if (TEXT_FIELDS.includes(e.target.name)) return;
      if (e.target.name === 'dates') this.form.classList.toggle('custom', e.target.value === 'custom');
      // A custom range waits for its dates; choosing "Range" alone changes nothing yet.
      if (e.target.value === 'custom') return;
      this.apply(this.readForm());
    });
    f.elements.PatientName.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown' && this.selected) {
        e.preventDefault();
        this.select(this.selected, true);
      }
    });

    this.head.addEventListener('click', (e) => {
      const key = e.target.closest('button[data-sort]')?.dataset.sort;
      if (!key) return;
      const current = this.state.sort.replace(/^-/, '');
      const descending = this.state.sort.startsWith('-');
      // A new column sorts ascending, except dates and counts: newest and largest first.
      const sort = key === current ? (descending ? key : `-${key}`) : key === 'date' || key === 'images' ? `-${key}` : key;
      this.apply({ ...this.state, sort }, { reload: false });
    });

    this.pager.addEventListener('click', (e) => {
      const name = e.target.closest('button')?.name;
      if (name === 'prev') this.turn(-1);
      if (name === 'next') this.turn(1);
    });
    this.pager.querySelector('select').addEventListener('change', (e) => {
      this.apply({ ...this.state, limit: Number(e.target.value), offset: 0 });
    });

    this.body.addEventListener('click', (e) => {
      const row = e.target.closest('tr[data-study]');
      if (e.target.closest('button[name=retry]')) this.load();
      if (!row) return;
      const uid = row.dataset.study;
      if (e.target.closest('button.copy')) {
        copyText(studyLink(uid));
        return;
      }
      const link = e.target.closest('a');
      // A plain click on the name opens here; with a modifier the browser
      // opens the link in a new tab or window as usual.
      if (link && !(e.ctrlKey || e.metaKey || e.shiftKey || e.altKey || e.button !== 0)) {
        e.preventDefault();
        this.onOpen(uid);
        return;
      }
      this.select(uid, false);
    });
    this.body.addEventListener('dblclick', (e) => {
      const row = e.target.closest('tr[data-study]');
      if (row && !e.target.closest('button, a')) this.onOpen(row.dataset.study);
    });
    this.body.addEventListener('keydown', (e) => this.onKey(e));

    // The list's keys work wherever the focus is, except in a field (where
    // `/` and the arrows are typing) and in the rows (handled above).
    document.addEventListener('keydown', (e) => {
      if (this.container.hidden || isEditable(e.target) || this.body.contains(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === '/') {
        e.preventDefault();
        this.focusSearch();
      } else {
        this.onKey(e);
      }
    });
  }

  onKey(e) {
    if (e.target instanceof Element && e.target.closest('button, a') && e.key === 'Enter') return;
    const rows = this.sorted();
    const at = rows.findIndex((s) => text(s, 'study') === this.selected);
    const move = {
      ArrowDown: Math.min(rows.length - 1, at + 1),
      ArrowUp: Math.max(0, at - 1),
      Home: 0,
      End: rows.length - 1,
    }[e.key];
    if (move !== undefined && rows.length) {
      e.preventDefault();
      this.select(text(rows[move], 'study'), true);
    } else if (e.key === 'Enter' && this.selected) {
      e.preventDefault();
      this.onOpen(this.selected);
    } else if (e.key === 'PageDown' || e.key === 'PageUp') {
      e.preventDefault();
      this.turn(e.key === 'PageDown' ? 1 : -1);
    } else if (e.key === 'Escape') {
      this.focusSearch();
    }
  }

  turn(direction) {
    const { offset, limit } = this.state;
    if (direction < 0 && offset === 0) return;
    if (direction > 0 && !this.more) return;
    this.apply({ ...this.state, offset: Math.max(0, offset + direction * limit) });
  }

  readForm() {
    const f = this.form.elements;
    return {
      ...this.state,
      PatientName: f.PatientName.value,
      fuzzy: f.fuzzy.checked,
      PatientID: f.PatientID.value,
      AccessionNumber: f.AccessionNumber.value,
      dates: f.dates.value || 'any',
      from: f.from.value,
      to: f.to.value,
      ModalitiesInStudy: f.ModalitiesInStudy.value,
      offset: 0,
    };
  }

  fillForm() {
    const f = this.form.elements;
    const s = this.state;
    for (const key of TEXT_FIELDS) f[key].value = s[key];
    f.fuzzy.checked = s.fuzzy;
    f.dates.value = s.dates;
    f.from.value = s.from;
    f.to.value = s.to;
    this.form.classList.toggle('custom', s.dates === 'custom');
    this.renderOptions();
    f.ModalitiesInStudy.value = s.ModalitiesInStudy;
  }

  /** Makes `next` the state: tells the shell, then searches again or only re-renders (sorting). */
  apply(next, { reload = true } = {}) {
    this.state = next;
    this.onChange(formatSearch(next));
    if (reload) this.load();
    else this.render();
  }

  async load() {
    const generation = ++this.generation;
    const s = this.state;
    this.error = null;
    if (s.dates === 'custom' && s.from && s.to && s.from > s.to) {
      this.studies = [];
      this.error = t('list.badRange');
      this.render();
      return;
    }
    this.loading = true;
    this.render();
    let studies;
    let error = null;
    try {
      studies = await this.client.searchStudies(qidoQuery(s), { limit: s.limit + 1, offset: s.offset, fuzzy: s.fuzzy });
    } catch (e) {
      error = e;
    }
    if (generation !== this.generation) return;
    this.loading = false;
    this.error = error && describeError(error);
    this.studies = error ? [] : studies.slice(0, s.limit);
    this.more = !error && studies.length > s.limit;
    const uids = new Set(this.studies.map((st) => text(st, 'study')));
    for (const uid of this.thumbnails.keys()) if (!uids.has(uid)) this.thumbnails.delete(uid);
    if (!uids.has(this.selected)) this.selected = null;
    this.render();
  }

  /** The current page in the chosen order (stable: ties keep the archive's order). */
  sorted() {
    const key = this.state.sort.replace(/^-/, '');
    const sign = this.state.sort.startsWith('-') ? -1 : 1;
    const by = SORTABLE[key];
    const collator = new Intl.Collator(lang(), { numeric: true, sensitivity: 'base' });
    return [...this.studies].sort((a, b) => {
      const [x, y] = [by(a), by(b)];
      return sign * (typeof x === 'number' ? x - y : collator.compare(x, y));
    });
  }

  select(uid, focus) {
    this.selected = uid;
    for (const row of this.body.rows) {
      const on = row.dataset.study === uid;
      row.setAttribute('aria-selected', String(on));
      row.tabIndex = on ? 0 : -1;
      if (on && focus) {
        row.focus();
        row.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  render() {
    const { state: s, studies, error, loading } = this;
    this.container.dataset.state = loading ? 'loading' : error ? 'error' : studies.length ? 'ready' : 'empty';
    this.renderOptions();
    this.renderHead();

    if (loading) this.status.textContent = t('list.loading');
    else if (studies.length) {
      this.status.textContent = `${t('list.showing', { from: s.offset + 1, to: s.offset + studies.length })} ${this.more ? t('list.more') : ''}`.trim();
    } else this.status.textContent = '';

    if (error || (!loading && !studies.length)) {
      this.body.replaceChildren(this.messageRow(error));
    } else if (!loading) {
      const rows = this.sorted().map((study) => this.row(study));
      this.body.replaceChildren(...rows);
      // The first study is selected until the user picks another, so Enter opens something.
      this.select(this.selected ?? rows[0].dataset.study, false);
    }
    this.pager.querySelector('[name=prev]').disabled = s.offset === 0 || loading;
    this.pager.querySelector('[name=next]').disabled = !this.more || loading;
    this.pager.querySelector('.page-range').textContent = studies.length ? `${s.offset + 1}–${s.offset + studies.length}` : '';
  }

  messageRow(error) {
    const cell = el('td', { colSpan: COLUMNS.length, className: 'message' });
    if (error) {
      cell.classList.add('error');
      cell.append(el('p', { textContent: error }), el('button', { type: 'button', name: 'retry', textContent: t('list.retry') }));
    } else if (this.state.offset > 0) {
      cell.append(el('p', { textContent: t('list.emptyPage') }));
    } else {
      cell.append(el('p', { textContent: t('list.empty') }), el('p', { className: 'muted', textContent: t('list.emptyHint') }));
    }
    return el('tr', {}, cell);
  }

  renderHead() {
    const key = this.state.sort.replace(/^-/, '');
    const order = this.state.sort.startsWith('-') ? 'descending' : 'ascending';
    this.head.replaceChildren(
      ...COLUMNS.map((c) => {
        const label = t(`list.col.${c.key}`);
        const th = el('th', { scope: 'col', className: `col-${c.key}${c.narrow === false ? ' wide-only' : ''}` });
        if (!c.sort) {
          th.append(el('span', { className: c.key === 'thumb' || c.key === 'actions' ? 'visually-hidden' : '', textContent: label }));
          return th;
        }
        if (c.key === key) th.setAttribute('aria-sort', order);
        th.append(el('button', { type: 'button', dataset: { sort: c.key } }, label, el('span', { className: 'arrow', 'aria-hidden': 'true', textContent: c.key === key ? (order === 'ascending' ? '▲' : '▼') : '' })));
        return th;
      }),
    );
  }

  renderOptions() {
    const select = this.form.elements.ModalitiesInStudy;
    select.replaceChildren(
      el('option', { value: '', textContent: t('list.allModalities') }),
      ...MODALITIES.map((m) => el('option', { value: m, textContent: `${m} — ${t(`modality.${m}`)}` })),
    );
    select.value = this.state.ModalitiesInStudy;
    const limit = this.pager.querySelector('select');
    const sizes = [...new Set([...PAGE_SIZES, this.state.limit])].sort((a, b) => a - b);
    limit.replaceChildren(...sizes.map((n) => el('option', { value: n, textContent: n })));
    limit.value = this.state.limit;
  }

  row(study) {
    const uid = text(study, 'study');
    const cells = {
      thumb: this.thumbnail(study),
      name: el('a', { href: `/viewer?studyUID=${encodeURIComponent(uid)}`, className: 'open', textContent: personName(study, tag.name) || '—' }),
      id: text(study, 'id'),
      birth: [formatDate(text(study, 'birth')), sex(study)].filter(Boolean).join(' · '),
      date: [formatDate(text(study, 'studyDate')), ' ', el('span', { className: 'muted', textContent: formatTime(text(study, 'studyTime')) })],
      modality: values(study, tag.modalities).join(', '),
      description: text(study, 'description'),
      accession: text(study, 'accession'),
      images: `${value(study, tag.series) ?? '?'} / ${value(study, tag.instances) ?? '?'}`,
      actions: el('button', { type: 'button', className: 'icon copy', title: t('list.copyLink'), 'aria-label': t('list.copyLink') }, linkIcon()),
    };
    return el(
      'tr',
      { dataset: { study: uid }, tabIndex: -1, 'aria-selected': 'false' },
      COLUMNS.map((c) => el('td', { className: `col-${c.key}${c.narrow === false ? ' wide-only' : ''}` }, cells[c.key])),
    );
  }

  thumbnail(study) {
    const uid = text(study, 'study');
    let node = this.thumbnails.get(uid);
    if (!node) {
      const img = el('img', { loading: 'lazy', decoding: 'async', alt: '', width: 64, height: 64, src: this.client.thumbnailUrl(uid) });
      // A study without an image (a report) or an archive without thumbnails:
      // its modality stands in.
      img.addEventListener('error', () => {
        const standIn = el('span', { className: 'no-thumb', textContent: values(study, tag.modalities)[0] ?? '?' });
        this.thumbnails.set(uid, standIn);
        img.replaceWith(standIn);
      });
      node = img;
      this.thumbnails.set(uid, img);
    }
    return node;
  }
}

function sex(study) {
  const s = text(study, 'sex');
  return ['M', 'F', 'O'].includes(s) ? t(`sex.${s}`) : '';
}
