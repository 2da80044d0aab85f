// Small pieces of interface every view uses: the error banner, short notices,
// the wording of DICOMweb errors, and copying a link. The reading view imports
// these from here (app.js re-exports showError too).

import { register, t } from './i18n.js';
import { DicomWebError } from './dicomweb.js';

register({
  en: {
    'ui.dismiss': 'Dismiss',
    'ui.copied': 'Link copied',
    'ui.copyManually': 'Copy this link:',
    'ui.close': 'Close',
    'error.unreachable': 'The archive cannot be reached. Check the network connection or ask the administrator whether the server is running.',
    'error.not-found': 'Not found in the archive.',
    'error.bad-request': 'The archive refused the request.',
    'error.server': 'The archive could not answer because of a problem on the server.',
    'error.decode': 'This image cannot be decoded.',
    'error.unexpected': 'Something went wrong in the viewer.',
    'error.detail': 'Details: {detail}',
  },
  ru: {
    'ui.dismiss': 'Закрыть',
    'ui.copied': 'Ссылка скопирована',
    'ui.copyManually': 'Скопируйте ссылку:',
    'ui.close': 'Закрыть',
    'error.unreachable': 'Нет связи с архивом. Проверьте подключение к сети или спросите администратора, работает ли сервер.',
    'error.not-found': 'В архиве не найдено.',
    'error.bad-request': 'Архив отклонил запрос.',
    'error.server': 'Архив не смог ответить из-за ошибки на сервере.',
    'error.decode': 'Это изображение не удаётся декодировать.',
    'error.unexpected': 'В работе просмотрщика произошла ошибка.',
    'error.detail': 'Подробности: {detail}',
  },
  kk: {
    'ui.dismiss': 'Жабу',
    'ui.copied': 'Сілтеме көшірілді',
    'ui.copyManually': 'Сілтемені көшіріңіз:',
    'ui.close': 'Жабу',
    'error.unreachable': 'Архивпен байланыс жоқ. Желіге қосылуды тексеріңіз немесе сервердің жұмыс істеп тұрғанын әкімшіден сұраңыз.',
    'error.not-found': 'Архивте табылмады.',
    'error.bad-request': 'Архив сұранысты қабылдамады.',
    'error.server': 'Сервердегі ақауға байланысты архив жауап бере алмады.',
    'error.decode': 'Бұл кескінді декодтау мүмкін емес.',
    'error.unexpected': 'Қарау бағдарламасында қате пайда болды.',
    'error.detail': 'Толығырақ: {detail}',
  },
});

/**
 * A sentence for the user about `err`: what happened in their language,
 * then the archive's own explanation, which is only in English.
 */
export function describeError(err) {
  if (err instanceof DicomWebError) {
    const words = t(`error.${err.kind}`);
    // An unreachable archive has no explanation of its own worth showing
    // ("Failed to fetch"): the sentence says it all.
    if (err.kind === 'unreachable' || !err.message) return words;
    return `${words} ${t('error.detail', { detail: err.message })}`;
  }
  return `${t('error.unexpected')} ${t('error.detail', { detail: err?.message ?? String(err) })}`;
}

/** The page's banner or notice area (index.html has both; made if a page lacks one). */
function region(id, role) {
  let area = document.getElementById(id);
  if (!area) {
    area = el('div', { id, role });
    document.body.prepend(area);
  }
  return area;
}

/**
 * Shows `message` in the error banner at the top of the page until
 * dismissed; the same message is not stacked twice. Returns a function that
 * removes it.
 */
export function showError(message) {
  const banner = region('errors', 'alert');
  const existing = [...banner.children].find((item) => item.dataset.message === message);
  if (existing) return () => existing.remove();
  const close = el('button', { type: 'button', className: 'icon', textContent: '×', 'aria-label': t('ui.dismiss'), dataset: { i18nAriaLabel: 'ui.dismiss' } });
  const item = el('div', { className: 'error', dataset: { message } }, el('p', { textContent: message }), close);
  close.addEventListener('click', () => item.remove());
  banner.append(item);
  return () => item.remove();
}

/** Removes every error banner (a new view starts clean). */
export function clearErrors() {
  document.getElementById('errors')?.replaceChildren();
}

/** A short message that goes away by itself ("Link copied"). */
export function showNotice(message) {
  const area = region('notices', 'status');
  const item = el('div', { className: 'notice', textContent: message });
  area.append(item);
  setTimeout(() => item.remove(), 2500);
}

/**
 * Copies `text` to the clipboard. The Clipboard API exists only in secure
 * contexts (HTTPS, localhost); a clinic's archive on plain http://pacs.lan
 * falls back to the older copy command, and failing that the link is shown
 * selected for the user to copy by hand.
 */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    showNotice(t('ui.copied'));
    return;
  } catch {
    // Not a secure context, or permission refused: try the next way.
  }
  const field = el('textarea', { value: text, readOnly: true, className: 'offscreen' });
  document.body.append(field);
  field.select();
  const copied = document.execCommand('copy');
  field.remove();
  if (copied) {
    showNotice(t('ui.copied'));
    return;
  }
  showLink(text);
}

function showLink(text) {
  const field = el('input', { readOnly: true, value: text });
  const close = el('button', { type: 'button', textContent: t('ui.close') });
  const dialog = el('dialog', { className: 'copy-dialog' }, el('p', { textContent: t('ui.copyManually') }), field, close);
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  field.select();
}

/**
 * A new element: `props` are properties (`className`, `textContent`, `title`,
 * …) except `dataset` (merged) and names with a dash or starting with `aria`
 * (set as attributes); `children` are nodes or strings (always text, never
 * HTML).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, v);
    else if (key.includes('-') || key.startsWith('aria')) node.setAttribute(key, v === true ? '' : v);
    else node[key] = v;
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** The IHE IID link that opens a study in this viewer, for charts and e-mails. */
export function studyLink(studyUID) {
  return `${location.origin}/viewer?studyUID=${encodeURIComponent(studyUID)}`;
}

const SVG = 'http://www.w3.org/2000/svg';

/** A chain-link icon (two interlocking rounded links), drawn here: no icon font, no request. */
export function linkIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  for (const x of [2, 11]) {
    const rect = document.createElementNS(SVG, 'rect');
    for (const [k, v] of Object.entries({ x, y: 8, width: 11, height: 8, rx: 4 })) rect.setAttribute(k, v);
    svg.append(rect);
  }
  return svg;
}
