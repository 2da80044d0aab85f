// Interface languages: Kazakh, Russian, English. Each module registers its own
// strings and asks for them with t(); nothing visible is written in code
// without going through it. The choice persists in localStorage; the first
// visit follows the browser's preferred languages.

export const LANGS = ['kk', 'ru', 'en'];

const STORAGE_KEY = 'aina.lang';
const dicts = { kk: {}, ru: {}, en: {} };
let current = initial();
let plurals = new Intl.PluralRules(current);
document.documentElement.lang = current;

function initial() {
  let saved = null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled by policy; the browser's languages decide then.
  }
  if (LANGS.includes(saved)) return saved;
  // The first of the user's languages we have wins: someone who lists
  // English before Russian gets English.
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGS.includes(base)) return base;
  }
  return 'en';
}

/**
 * Adds strings: `{en: {key: 'text'}, ru: {…}, kk: {…}}`. A value may also be
 * an object of plural forms (`{one, few, many, other}`, CLDR categories),
 * chosen by the `count` variable.
 */
export function register(dict) {
  for (const l of LANGS) Object.assign(dicts[l], dict[l]);
}

/**
 * The string for `key` in the current language (else English, else the key
 * itself, so a missing string shows up rather than vanishing), with `{name}`
 * replaced by `vars.name`.
 */
export function t(key, vars = {}) {
  let s = dicts[current][key] ?? dicts.en[key] ?? key;
  if (typeof s === 'object') {
    s = s[plurals.select(Number(vars.count))] ?? s.other ?? key;
  }
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

export function lang() {
  return current;
}

/** Switches the language, remembers it, and tells every module (`aina:lang`). */
export function setLang(l) {
  if (!LANGS.includes(l) || l === current) return;
  current = l;
  plurals = new Intl.PluralRules(l);
  try {
    localStorage.setItem(STORAGE_KEY, l);
  } catch {
    // Not remembered across visits, still switched for this one.
  }
  document.documentElement.lang = l;
  window.dispatchEvent(new CustomEvent('aina:lang', { detail: { lang: l } }));
}

const ATTRIBUTES = { i18nTitle: 'title', i18nPlaceholder: 'placeholder', i18nAriaLabel: 'aria-label' };

/**
 * Fills elements under `root` that name their strings: `data-i18n` (text),
 * `data-i18n-title`, `data-i18n-placeholder`, `data-i18n-aria-label`.
 */
export function translate(root = document) {
  const selector = '[data-i18n], [data-i18n-title], [data-i18n-placeholder], [data-i18n-aria-label]';
  for (const el of root.querySelectorAll(selector)) {
    if (el.dataset.i18n) el.textContent = t(el.dataset.i18n);
    for (const [key, attr] of Object.entries(ATTRIBUTES)) {
      if (el.dataset[key]) el.setAttribute(attr, t(el.dataset[key]));
    }
  }
}
