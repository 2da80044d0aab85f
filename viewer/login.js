// The sign-in page: posts the user name and password to /auth/login, which
// sets the session cookie, then returns to where the user was going (`next`,
// a path on this server only: never another site).

import { register, t, lang, setLang, translate } from './i18n.js';

register({
  en: {
    'app.language': 'Language',
    'login.title': 'Sign in to Aina',
    'login.username': 'User name',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.wrong': 'Wrong user name or password.',
    'login.locked': 'Too many failed attempts. Try again in {minutes} min.',
    'login.off': 'Sign-in is not needed on this server.',
    'login.failed': 'Sign-in failed: {reason}',
    'login.shareEnded': 'The share link you opened has expired or was revoked. Ask whoever sent it for a new one, or sign in.',
  },
  ru: {
    'app.language': 'Язык',
    'login.title': 'Вход в Aina',
    'login.username': 'Имя пользователя',
    'login.password': 'Пароль',
    'login.submit': 'Войти',
    'login.wrong': 'Неверное имя пользователя или пароль.',
    'login.locked': 'Слишком много неудачных попыток. Повторите через {minutes} мин.',
    'login.off': 'На этом сервере вход не требуется.',
    'login.failed': 'Не удалось войти: {reason}',
    'login.shareEnded': 'Ссылка, по которой вы открыли исследование, истекла или отозвана. Попросите новую у того, кто её прислал, или войдите.',
  },
  kk: {
    'app.language': 'Тіл',
    'login.title': 'Aina жүйесіне кіру',
    'login.username': 'Пайдаланушы аты',
    'login.password': 'Құпиясөз',
    'login.submit': 'Кіру',
    'login.wrong': 'Пайдаланушы аты немесе құпиясөз қате.',
    'login.locked': 'Сәтсіз әрекеттер тым көп. {minutes} минуттан кейін қайталаңыз.',
    'login.off': 'Бұл серверде кіру қажет емес.',
    'login.failed': 'Кіру мүмкін болмады: {reason}',
    'login.shareEnded': 'Сіз ашқан сілтеменің мерзімі өтті немесе ол қайтарып алынды. Жіберген адамнан жаңасын сұраңыз немесе жүйеге кіріңіз.',
  },
});

const form = document.getElementById('login');
const error = document.getElementById('login-error');
const langSelect = document.getElementById('lang');
langSelect.value = lang();
langSelect.addEventListener('change', () => setLang(langSelect.value));
// A share link that ended while its study was open lands here.
const shareEnded = new URLSearchParams(location.search).get('shared') === '1';
const sayShareEnded = () => {
  if (shareEnded) error.textContent = t('login.shareEnded');
};
window.addEventListener('aina:lang', () => {
  translate();
  sayShareEnded();
});
translate();
sayShareEnded();

/**
 * Where to go after signing in: a path on this server, else the study list.
 * Resolved as the browser would (it drops tabs and newlines, so `/\t/evil`
 * is `//evil`, another site) and kept only if it stays on this origin.
 */
function next() {
  const n = new URLSearchParams(location.search).get('next') ?? '';
  if (!n.startsWith('/')) return '/';
  try {
    const url = new URL(n, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
  } catch {
    return '/';
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    const res = await fetch('/auth/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        username: document.getElementById('username').value.trim(),
        password: document.getElementById('password').value,
      }),
    });
    if (res.ok) {
      location.assign(next());
      return;
    }
    if (res.status === 401) {
      error.textContent = t('login.wrong');
    } else if (res.status === 429) {
      const seconds = Number(res.headers.get('Retry-After')) || 900;
      error.textContent = t('login.locked', { minutes: Math.ceil(seconds / 60) });
    } else {
      const body = await res.json().catch(() => ({}));
      error.textContent = res.status === 400 && /authentication is off/.test(body.error ?? '')
        ? t('login.off')
        : t('login.failed', { reason: body.error ?? res.statusText });
    }
  } catch (e) {
    error.textContent = t('login.failed', { reason: e.message });
  } finally {
    button.disabled = false;
  }
});
