// The reading view: one study on screen. Loads the study's metadata (one
// WADO-RS call), hangs it (hanging.js), and runs one Viewport per cell of the
// layout — first the server's preview as an <img>, then the full 16-bit frame
// fetched by the workers (loader.js) on a WebGL2 canvas (gl.js), with
// measurements (tools.js), corner text, cine and the tag browser (tags.js).
// Keyboard shortcuts act on the active viewport; the help panel lists them.
//
// Only the public DICOMweb API is used. Performance marks for the benchmark:
// `aina:first-image` (first viewport painted), `aina:full:<SOP UID>` (that
// image at full resolution), `aina:all-full` (every viewport full).

import { register, t, translate } from './i18n.js';
import { value, values, personName, formatDate, formatTime } from './dicomweb.js';
import { describeError, el, showNotice } from './ui.js';
import { Renderer, MAX_TEXTURE } from './gl.js';
import { Loader, PRIORITY } from './loader.js';
import * as tools from './tools.js';
import { groupSeries, hang, comparison, stackOf, laterality, view as mammoView, POSITIONS } from './hanging.js';
import { tagBrowser } from './tags.js';

/** Longer side of the progressive preview, px (the archive keeps one this size). */
const PREVIEW = 1024;
/** After the last drag or wheel step, the image is redrawn fully filtered. */
const SETTLE_MS = 150;
/** Neighbours fetched ahead while scrolling a stack. */
const PREFETCH_AHEAD = 8;
const PREFETCH_BEHIND = 3;

let session = null;

/**
 * Opens a study in `container` (replacing what was there and any study open
 * before). `onBack` returns to the list; aborting `signal` closes the view.
 * Returns the session, whose `close()` frees its GPU memory, workers, key
 * bindings and requests.
 */
export function openStudy(container, { client, studyUID, patientID, onBack, signal }) {
  session?.close();
  const s = new Session(container, { client, studyUID, patientID, onBack });
  session = s;
  signal?.addEventListener('abort', () => s.close(), { once: true });
  s.start();
  return s;
}

/** The stylesheet travels with the module, so the shell need not know about it. */
function ensureStylesheet() {
  const href = new URL('./reading.css', import.meta.url).href;
  if ([...document.styleSheets].some((s) => s.href === href) || document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(el('link', { rel: 'stylesheet', href }));
}

// ------------------------------------------------------------- metadata

const num = (json, tag, i = 0) => {
  const v = values(json, tag)[i];
  return v === undefined || v === null || v === '' ? undefined : Number(v);
};
const str = (json, tag) => String(value(json, tag) ?? '').trim();

/**
 * What the view needs to know about one frame, from the instance's metadata:
 * geometry, pixel format, Modality LUT, the data set's window, spacing.
 * Enhanced multi-frame objects keep some of these in functional groups
 * (PS3.3 C.7.6.16): per-frame first, then shared.
 */
function imageInfo(instance, frame) {
  const group = (seq, tag, i) => {
    for (const [fgTag, index] of [['52009230', frame - 1], ['52009229', 0]]) {
      const item = values(instance, fgTag)[index];
      const v = item && num(value(item, seq), tag, i);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  const either = (tag, seq, i = 0) => num(instance, tag, i) ?? group(seq, tag, i);
  const modality = str(instance, '00080060');
  const photometric = str(instance, '00280004') || 'MONOCHROME2';
  const center = either('00281050', '00289132');
  const width = either('00281051', '00289132');
  const voiFunction = str(instance, '00281056').toUpperCase();
  const spacingOf = (tag, seq) => {
    const row = seq ? either(tag, seq, 0) : num(instance, tag, 0);
    const column = seq ? either(tag, seq, 1) : num(instance, tag, 1);
    return row > 0 && column > 0 ? { row, column } : null;
  };
  const pixel = spacingOf('00280030', '00289110');
  const imager = spacingOf('00181164');
  const rescaleType = str(instance, '00281054');
  return {
    studyUID: str(instance, '0020000D'),
    seriesUID: str(instance, '0020000E'),
    sop: str(instance, '00080018'),
    frame,
    frames: Math.max(1, num(instance, '00280008') ?? 1),
    modality,
    columns: num(instance, '00280011') ?? 0,
    rows: num(instance, '00280010') ?? 0,
    bitsAllocated: num(instance, '00280100') ?? 16,
    bitsStored: num(instance, '00280101') ?? num(instance, '00280100') ?? 16,
    signed: num(instance, '00280103') === 1,
    samples: num(instance, '00280002') ?? 1,
    planar: num(instance, '00280006') === 1,
    padding: num(instance, '00280120'),
    slope: either('00281053', '00289145') ?? 1,
    intercept: either('00281052', '00289145') ?? 0,
    // PS3.3 C.11.2.1.2: a window is only valid with a width of at least 1.
    window: center !== undefined && width >= 1 ? { center, width, voi: voiFunction === 'SIGMOID' ? 2 : voiFunction === 'LINEAR_EXACT' ? 1 : 0 } : null,
    // MONOCHROME1 and an INVERSE Presentation LUT each turn black to white.
    baseInvert: (photometric === 'MONOCHROME1') !== (str(instance, '20500020') === 'INVERSE'),
    // Measurements: Pixel Spacing (in the patient) first, else Imager Pixel
    // Spacing (at the detector: magnification not corrected).
    spacing: pixel ? { ...pixel, detector: false } : imager ? { ...imager, detector: true } : null,
    // Mammography hanging and true size compare detectors: Imager first.
    detectorSpacing: imager ?? pixel,
    units: rescaleType && rescaleType !== 'US' ? rescaleType : modality === 'CT' ? 'HU' : '',
    laterality: laterality(instance),
    view: mammoView(instance),
  };
}

function hasPixels(instance) {
  return num(instance, '00280010') > 0 && num(instance, '00280011') > 0;
}

// --------------------------------------------------------------- session

class Session {
  constructor(container, { client, studyUID, patientID, onBack }) {
    Object.assign(this, { container, client, studyUID, patientID, onBack });
    this.loader = new Loader();
    this.viewports = [];
    this.active = null;
    this.tool = 'wl';
    this.mode = 'standard'; // or 'prior' (comparison)
    this.priorView = 'CC';
    this.prior = null;
    this.marksByImage = new Map(); // "sop#frame" → measurements
    this.dirty = new Set();
    this.raf = 0;
    this.cine = { playing: false, fps: 15, last: 0, raf: 0 };
    this.closed = false;
    this.onKey = (e) => this.key(e);
    this.onLang = () => this.relabel();
  }

  async start() {
    ensureStylesheet();
    performance.clearMarks('aina:first-image');
    performance.clearMarks('aina:all-full');
    this.root = el('div', { className: 'rv', dataset: { study: this.studyUID } });
    this.container.replaceChildren(this.root);
    this.root.append(el('p', { className: 'rv-loading', role: 'status' }, t('reading.loading')));
    document.addEventListener('keydown', this.onKey);
    window.addEventListener('aina:lang', this.onLang);
    let meta;
    try {
      meta = await this.client.studyMetadata(this.studyUID);
    } catch (e) {
      if (this.closed || e.name === 'AbortError') return;
      return this.fail(e.kind === 'not-found' ? t('reading.notFound') : describeError(e));
    }
    if (this.closed) return;
    const images = meta.filter(hasPixels);
    if (meta.length === 0) return this.fail(t('reading.notFound'));
    if (images.length === 0) return this.fail(t('reading.noImages'));
    this.images = images;
    this.series = groupSeries(images);
    this.first = images[0];
    this.patientID ??= str(this.first, '00100020');
    this.studyDate = str(this.first, '00080020');
    this.isMammo = images.some((i) => str(i, '00080060') === 'MG');
    const hanging = hang(this.series);
    // Ask for the previews and full frames on screen before building the
    // page, so that the network works while the DOM is made (the viewports'
    // <img> elements then find the previews in the page's memory cache).
    this.early = [];
    for (const cell of hanging.cells) {
      const item = cell.stack[0];
      if (!item) continue;
      const info = imageInfo(item.instance, item.frame);
      const img = new Image();
      img.src = this.previewUrl(info);
      this.early.push(img);
      this.fetchFrame(info, PRIORITY.visible).catch(() => {});
    }
    // An image starts loading in a microtask after its src is set: let those
    // run before the page is built.
    await null;
    if (this.closed) return;
    this.build();
    this.hang(hanging);
  }

  /** A study that cannot be shown: the reason in words and a way back. */
  fail(message) {
    this.root.replaceChildren(
      el('div', { className: 'rv-fail', role: 'alert' },
        el('p', {}, message),
        el('button', { type: 'button', className: 'rv-back', dataset: { i18n: 'reading.back' }, onclick: () => this.back() }, t('reading.back'))),
    );
  }

  back() {
    this.close();
    this.onBack?.();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.stopCine();
    cancelAnimationFrame(this.raf);
    document.removeEventListener('keydown', this.onKey);
    window.removeEventListener('aina:lang', this.onLang);
    for (const vp of this.viewports) vp.dispose();
    this.viewports = [];
    this.loader.dispose();
    if (session === this) session = null;
  }

  // ---- the page

  build() {
    const button = (key, shortcut, action, extra = {}) => {
      const b = el('button', { type: 'button', className: 'rv-btn', onclick: () => { action(); this.active?.el.focus({ preventScroll: true }); }, ...extra });
      b.dataset.i18n = key;
      b.dataset.shortcut = shortcut;
      return b;
    };
    const group = (...items) => el('div', { className: 'rv-group', role: 'group' }, ...items);
    this.layoutButtons = Object.fromEntries(
      Object.keys(POSITIONS).map((l, i) => [l, button(`reading.layout.${l}`, `Shift+${[1, 2, 4][i]}`, () => this.setLayout(l), { dataset: { layout: l } })]),
    );
    const toolKeys = { wl: 'W', zoom: 'Z', pan: 'P', length: 'L', angle: 'G', roi: 'O' };
    this.toolButtons = Object.fromEntries(
      Object.entries(toolKeys).map(([tool, k]) => [tool, button(`reading.tool.${tool}`, k, () => this.setTool(tool), { dataset: { tool } })]),
    );
    this.presetSelect = el('select', { className: 'rv-presets', onchange: () => this.preset(Number(this.presetSelect.value)) });
    this.fpsInput = el('input', { type: 'number', min: 1, max: 60, value: this.cine.fps, className: 'rv-fps', onchange: () => { this.cine.fps = Math.min(60, Math.max(1, Number(this.fpsInput.value) || 15)); } });
    this.cineButton = button('reading.cine', 'Space', () => this.toggleCine());
    this.cineGroup = group(this.cineButton, el('label', { className: 'rv-fps-label' }, this.fpsInput, el('span', { dataset: { i18n: 'reading.fps' } })));
    // A shared study is opened without its patient: no prior to look for.
    this.priorButton = button('reading.prior', 'C', () => this.togglePrior(), { hidden: !this.isMammo || !this.patientID, dataset: { action: 'prior' } });
    this.priorViewButton = button('reading.priorView', 'M', () => this.togglePriorView(), { hidden: true, dataset: { action: 'prior-view' } });
    this.tagsButton = button('reading.tags', 'D', () => this.toggleTags(), { dataset: { action: 'tags' } });
    this.helpButton = button('reading.help', '?', () => this.toggleHelp(), { dataset: { action: 'help' } });
    const act = (key, shortcut, fn, name) => button(key, shortcut, () => this.active && fn(this.active), { dataset: { action: name } });
    const bar = el('div', { className: 'rv-bar', role: 'toolbar' },
      group(button('reading.back', '', () => this.back(), { className: 'rv-btn rv-back', hidden: !this.onBack })),
      group(...Object.values(this.layoutButtons)),
      group(...Object.values(this.toolButtons)),
      group(this.presetSelect,
        act('reading.invert', 'I', (v) => v.invert(), 'invert'),
        act('reading.rotate', 'R', (v) => v.rotate(), 'rotate'),
        act('reading.flipH', 'H', (v) => v.flip(true), 'flip-h'),
        act('reading.flipV', 'V', (v) => v.flip(false), 'flip-v')),
      group(act('reading.fit', 'F', (v) => v.fit(), 'fit'),
        act('reading.actual', 'A', (v) => v.actualPixels(), 'actual'),
        act('reading.trueSize', 'T', (v) => v.trueSize(), 'true-size'),
        act('reading.reset', 'Esc / 0', (v) => v.reset(), 'reset')),
      this.cineGroup,
      group(this.priorButton, this.priorViewButton),
      group(button('reading.overlay', '\\', () => this.toggleOverlay()), this.tagsButton, this.helpButton),
    );
    this.strip = el('nav', { className: 'rv-strip', dataset: { i18nAriaLabel: 'reading.series' } });
    for (const s of this.series) {
      const info = imageInfo(s.first, 1);
      const img = el('img', { src: this.client.thumbnailUrl(this.studyUID, s.uid), alt: '', loading: 'lazy', decoding: 'async' });
      const caption = el('span', { className: 'rv-thumb-text' },
        `${str(s.first, '00200011') || '–'} · ${info.modality} · ${str(s.first, '0008103E')}`,
        el('br'), t('reading.images', { count: stackOf(s.instances).length }));
      const thumb = el('button', { type: 'button', className: 'rv-thumb', dataset: { series: s.uid }, onclick: () => this.active?.setStack(stackOf(s.instances)) }, img, caption);
      img.addEventListener('error', () => img.replaceWith(el('span', { className: 'rv-thumb-missing' }, info.modality)));
      s.thumb = thumb;
      s.caption = caption;
      this.strip.append(thumb);
    }
    this.grid = el('div', { className: 'rv-grid' });
    this.tags = tagBrowser();
    this.tags.hidden = true;
    this.help = this.buildHelp();
    this.root.replaceChildren(bar, el('div', { className: 'rv-body' }, this.strip, this.grid, this.tags), this.help);
    this.relabel();
  }

  /** Every visible string again, in the current language. */
  relabel() {
    if (!this.root) return;
    translate(this.root);
    // A study that failed to open has only its message and back button.
    if (!this.help) return;
    for (const b of this.root.querySelectorAll('.rv-btn[data-shortcut]')) {
      b.title = b.dataset.shortcut ? `${t(b.dataset.i18n)} (${b.dataset.shortcut})` : t(b.dataset.i18n);
    }
    for (const s of this.series ?? []) {
      s.caption.lastChild.textContent = t('reading.images', { count: stackOf(s.instances).length });
    }
    this.fillPresets(true);
    if (this.help.open) this.fillHelp();
    this.tags.relabel();
    for (const vp of this.viewports) vp.relabel();
  }

  // ---- layout

  /** Replaces every viewport by the cells of a hanging `{layout, cells}`. */
  hang({ layout, cells }) {
    this.stopCine();
    for (const vp of this.viewports) vp.dispose();
    this.layout = layout;
    this.grid.className = `rv-grid rv-layout-${layout}`;
    this.allFullMarked = false;
    this.viewports = POSITIONS[layout].map((position) => {
      const cell = cells.find((c) => c.position === position) ?? { stack: [], position, study: 'current' };
      return new Viewport(this, cell);
    });
    this.grid.replaceChildren(...this.viewports.map((v) => v.el));
    for (const [l, b] of Object.entries(this.layoutButtons)) b.classList.toggle('rv-on', l === layout);
    this.priorButton.classList.toggle('rv-on', this.mode === 'prior');
    this.priorViewButton.hidden = this.mode !== 'prior';
    this.setActive(this.viewports.find((v) => v.stack.length) ?? this.viewports[0]);
    // Sizes are known once the grid is in the page: place images, then load.
    this.fitMammography();
    for (const vp of this.viewports) {
      if (!vp.cell.mammo) vp.fit();
      vp.load();
    }
  }

  /** A plain layout: the current viewports keep their images, new ones take the next series. */
  setLayout(layout) {
    if (this.mode === 'prior') this.mode = 'standard';
    const kept = this.viewports.map((v) => v.stack).filter((s) => s.length);
    const stacks = [...kept];
    for (const s of this.series) {
      if (stacks.length >= POSITIONS[layout].length) break;
      const stack = stackOf(s.instances);
      if (!stacks.some((k) => k[0]?.instance === stack[0].instance)) stacks.push(stack);
    }
    this.hang({ layout, cells: POSITIONS[layout].map((position, i) => ({ stack: stacks[i] ?? [], position, study: 'current' })) });
  }

  /**
   * IHE mammography: one scale (screen pixels per mm at the detector) for
   * every mammogram on screen, the largest at which all of them fit; each
   * pinned to its chest-wall edge.
   */
  fitMammography() {
    const mammo = this.viewports.filter((v) => v.cell.mammo && v.info);
    if (!mammo.length) return;
    const perMm = Math.min(...mammo.map((v) => v.fitScale() / v.mmPerPixel()));
    for (const v of mammo) v.place(perMm * v.mmPerPixel(), v.cell.align);
  }

  setActive(vp) {
    if (!vp || this.active === vp) return;
    this.active?.el.classList.remove('rv-active');
    this.active = vp;
    vp.el.classList.add('rv-active');
    this.stopCine();
    this.syncControls();
  }

  /** Toolbar and side panels follow the active viewport. */
  syncControls() {
    const vp = this.active;
    const item = vp?.item;
    for (const s of this.series ?? []) s.thumb.classList.toggle('rv-on', Boolean(item) && s.instances.includes(item.instance));
    this.cineGroup.hidden = !vp || vp.stack.length < 2;
    this.fillPresets();
    if (!this.tags.hidden) this.tags.update(item?.instance ?? null);
  }

  /** The preset menu for the active image's modality (rebuilt only when that or the language changes). */
  fillPresets(force = false) {
    if (!this.presetSelect) return;
    const modality = this.active?.info?.modality ?? '';
    if (!force && modality === this.presetsFor) return;
    this.presetsFor = modality;
    const list = tools.presets(modality);
    this.presetSelect.replaceChildren(
      el('option', { value: '', disabled: true, selected: true }, t('reading.presets')),
      ...list.map((p, i) => el('option', { value: i + 1 }, `${i + 1} · ${t(p.key)}`)),
    );
  }

  preset(n) {
    this.active?.applyPreset(n);
    this.presetSelect.selectedIndex = 0;
  }

  setTool(tool) {
    this.tool = tool;
    for (const [name, b] of Object.entries(this.toolButtons)) b.classList.toggle('rv-on', name === tool);
    this.root.dataset.tool = tool;
    for (const vp of this.viewports) {
      vp.drawing = null;
      vp.redrawMarks();
    }
  }

  toggleOverlay() {
    this.root.classList.toggle('rv-no-overlay');
  }

  toggleTags() {
    this.tags.hidden = !this.tags.hidden;
    this.tagsButton.classList.toggle('rv-on', !this.tags.hidden);
    if (!this.tags.hidden) this.tags.update(this.active?.item?.instance ?? null);
  }

  // ---- help

  buildHelp() {
    const dialog = el('dialog', { className: 'rv-help' });
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog) dialog.close();
    });
    return dialog;
  }

  fillHelp() {
    const rows = SHORTCUTS.map(([keys, key]) => el('tr', {}, el('th', {}, el('kbd', {}, keys)), el('td', {}, t(key))));
    this.help.replaceChildren(
      el('h2', {}, t('reading.help.title')),
      el('table', {}, el('tbody', {}, ...rows)),
      el('p', { className: 'rv-help-note' }, t('reading.help.mouse')),
      el('p', { className: 'rv-help-note' }, t('reading.help.trueSize')),
      el('p', { className: 'rv-help-note' }, t('reading.help.layouts')),
      el('form', { method: 'dialog' }, el('button', { className: 'rv-btn' }, t('reading.close'))),
    );
  }

  /** The help is written when opened (in the language of that moment): nothing to build before the first image. */
  toggleHelp() {
    if (this.help.open) {
      this.help.close();
      return;
    }
    this.fillHelp();
    this.help.showModal();
  }

  // ---- prior comparison (mammography)

  async togglePrior() {
    if (!this.isMammo) return;
    if (this.mode === 'prior') {
      this.mode = 'standard';
      this.hang(hang(this.series));
      return;
    }
    try {
      this.prior ??= await this.findPrior();
    } catch (e) {
      showNotice(describeError(e));
      return;
    }
    if (this.closed) return;
    if (!this.prior) {
      showNotice(t('reading.noPrior'));
      return;
    }
    const cells = comparison(this.images, this.prior.images, this.priorView);
    if (!cells) {
      showNotice(t('reading.priorMissingViews', { view: this.priorView }));
      return;
    }
    this.mode = 'prior';
    this.hang(cells);
  }

  togglePriorView() {
    if (this.mode !== 'prior') return;
    this.priorView = this.priorView === 'CC' ? 'MLO' : 'CC';
    const cells = comparison(this.images, this.prior.images, this.priorView);
    if (cells) this.hang(cells);
    else showNotice(t('reading.priorMissingViews', { view: this.priorView }));
  }

  /** The most recent earlier mammography study of the same patient (QIDO-RS). */
  async findPrior() {
    if (!this.patientID) return null;
    const studies = await this.client.searchStudies({ PatientID: this.patientID, ModalitiesInStudy: 'MG' }, { limit: 100 });
    const earlier = studies
      .map((s) => ({ uid: str(s, '0020000D'), date: str(s, '00080020') }))
      .filter((s) => s.uid && s.uid !== this.studyUID && (!this.studyDate || (s.date && s.date < this.studyDate)))
      .sort((a, b) => b.date.localeCompare(a.date));
    if (!earlier.length) return null;
    const meta = await this.client.studyMetadata(earlier[0].uid);
    return { ...earlier[0], images: meta.filter(hasPixels) };
  }

  // ---- cine

  toggleCine() {
    if (this.cine.playing) return this.stopCine();
    const vp = this.active;
    if (!vp || vp.stack.length < 2) return;
    this.cine.playing = true;
    this.cineButton.classList.add('rv-on');
    vp.prefetch(vp.stack.length);
    const tick = (now) => {
      if (!this.cine.playing) return;
      if (now - this.cine.last >= 1000 / this.cine.fps) {
        // Wait for a frame that is not in memory yet rather than flash its preview.
        if (vp.ready(vp.nextIndex())) {
          this.cine.last = now;
          vp.show(vp.nextIndex());
        }
      }
      this.cine.raf = requestAnimationFrame(tick);
    };
    this.cine.raf = requestAnimationFrame(tick);
  }

  stopCine() {
    this.cine.playing = false;
    cancelAnimationFrame(this.cine.raf);
    this.cineButton?.classList.remove('rv-on');
  }

  // ---- drawing and performance marks

  requestRender(vp) {
    this.dirty.add(vp);
    if (!this.raf) this.raf = requestAnimationFrame(() => this.frame());
  }

  frame() {
    this.raf = 0;
    const dirty = [...this.dirty];
    this.dirty.clear();
    for (const vp of dirty) vp.render();
    // Marks after the draw calls of this animation frame: the browser
    // presents what was drawn right after this callback.
    const painted = this.viewports.filter((v) => v.painted);
    if (painted.length && !performance.getEntriesByName('aina:first-image').length) {
      performance.mark('aina:first-image');
      this.early = null;
      this.prepareGpu();
    }
    for (const vp of dirty) {
      if (vp.state === 'full' && vp.markPending) {
        vp.markPending = false;
        performance.mark(`aina:full:${vp.info.sop}`);
      }
    }
    const shown = this.viewports.filter((v) => v.stack.length);
    if (!this.allFullMarked && shown.length && shown.every((v) => v.state === 'full' && v.painted)) {
      this.allFullMarked = true;
      performance.mark('aina:all-full');
    }
  }

  /**
   * Once the first image is on screen, and while the full frames are still
   * on their way, makes each viewport's WebGL context and shader, one per
   * task: with a software GPU each costs tens to hundreds of milliseconds
   * that would otherwise come after the frame.
   */
  prepareGpu() {
    const pending = this.viewports.filter((v) => v.info && v.renderer === undefined);
    const next = () => {
      const vp = pending.shift();
      if (!vp || this.closed) return;
      vp.gl()?.program(vp.info.samples === 3 ? 'rgb' : vp.info.signed ? 'int' : 'uint');
      setTimeout(next, 0);
    };
    setTimeout(next, 0);
  }

  // ---- keyboard

  key(e) {
    if (!this.root?.isConnected) return;
    if (e.target.closest?.('input, textarea, select, [contenteditable]') || e.ctrlKey || e.metaKey || e.altKey) return;
    if (this.help.open && e.key !== '?') return;
    const vp = this.active;
    // Physical keys (KeyboardEvent.code): the shortcuts stay where they are on a
    // Kazakh or Russian layout, where the letters are Cyrillic.
    const code = e.code;
    const layouts = { Digit1: '1x1', Digit2: '1x2', Digit4: '2x2' };
    let handled = true;
    if (e.key === '?' || (code === 'Slash' && e.shiftKey)) this.toggleHelp();
    else if (e.shiftKey && layouts[code]) this.setLayout(layouts[code]);
    else if (!e.shiftKey && /^Digit[1-5]$/.test(code)) vp?.applyPreset(Number(code.slice(5)));
    else if (code === 'Digit0' || code === 'Numpad0') vp?.reset();
    else if (code === 'Escape') {
      if (vp?.drawing) vp.cancelDrawing();
      else vp?.reset();
    } else if (TOOL_KEYS[code]) this.setTool(TOOL_KEYS[code]);
    else if (code === 'KeyI') vp?.invert();
    else if (code === 'KeyR') vp?.rotate();
    else if (code === 'KeyH') vp?.flip(true);
    else if (code === 'KeyV') vp?.flip(false);
    else if (code === 'KeyF') vp?.fit();
    else if (code === 'KeyA') vp?.actualPixels();
    else if (code === 'KeyT') vp?.trueSize();
    else if (code === 'Space') this.toggleCine();
    else if (code === 'ArrowDown' || code === 'PageDown') vp?.scroll(code === 'PageDown' ? 10 : 1);
    else if (code === 'ArrowUp' || code === 'PageUp') vp?.scroll(code === 'PageUp' ? -10 : -1);
    else if (code === 'Home') vp?.show(0);
    else if (code === 'End') vp?.show(vp.stack.length - 1);
    else if (code === 'Backslash' || code === 'IntlBackslash') this.toggleOverlay();
    else if (code === 'KeyD') this.toggleTags();
    else if (code === 'KeyC') this.togglePrior();
    else if (code === 'KeyM') this.togglePriorView();
    else if (code === 'Delete' || code === 'Backspace') vp?.deleteLastMeasurement();
    else handled = false;
    if (handled) e.preventDefault();
  }

  /**
   * The decoded frame (see loader.js), downsampled by the worker if larger
   * than `maxTexture`; the same request is made only once.
   */
  fetchFrame(info, priority, maxTexture = MAX_TEXTURE) {
    // A rare GPU below the usual limit gets its own cache entry.
    const key = maxTexture < MAX_TEXTURE ? `${this.frameUrl(info)}#max=${maxTexture}` : this.frameUrl(info);
    return this.loader.frame(key, this.frameUrl(info), { ...info, maxTexture }, priority);
  }

  frameUrl(info) {
    const u = encodeURIComponent;
    return new URL(`${this.client.root}/studies/${u(info.studyUID)}/series/${u(info.seriesUID)}/instances/${u(info.sop)}/frames/${info.frame}`, location.href).href;
  }

  previewUrl(info) {
    const window = info.window ? [info.window.center, info.window.width] : undefined;
    const url = this.client.renderedUrl(info.studyUID, info.seriesUID, info.sop, { frame: info.frame, viewport: [PREVIEW, PREVIEW], window });
    return new URL(url, location.href).href;
  }
}

const TOOL_KEYS = { KeyW: 'wl', KeyZ: 'zoom', KeyP: 'pan', KeyL: 'length', KeyG: 'angle', KeyO: 'roi' };

/** The help panel's table: keys as printed on the keyboard, and what they do. */
const SHORTCUTS = [
  ['W', 'reading.key.wl'], ['Z', 'reading.key.zoom'], ['P', 'reading.key.pan'],
  ['L', 'reading.key.length'], ['G', 'reading.key.angle'], ['O', 'reading.key.roi'],
  ['1 – 5', 'reading.key.presets'], ['I', 'reading.key.invert'], ['R', 'reading.key.rotate'],
  ['H / V', 'reading.key.flip'], ['F', 'reading.key.fit'], ['A', 'reading.key.actual'],
  ['T', 'reading.key.trueSize'], ['Esc / 0', 'reading.key.reset'],
  ['↑ ↓ / PgUp PgDn / Home End', 'reading.key.stack'], ['Space', 'reading.key.cine'],
  ['Shift+1 / 2 / 4', 'reading.key.layout'],
  ['Del', 'reading.key.delete'], ['\\', 'reading.key.overlay'], ['D', 'reading.key.tags'],
  ['C', 'reading.key.prior'], ['M', 'reading.key.priorView'], ['?', 'reading.key.help'],
];

// -------------------------------------------------------------- viewport

class Viewport {
  constructor(session, cell) {
    this.s = session;
    // `hung` is the cell as the hanging protocol placed it; `cell` drops the
    // mammography placement once the user turns the image, and Reset restores it.
    this.hung = cell;
    this.cell = cell;
    this.stack = cell.stack;
    this.index = 0;
    this.state = 'empty';
    this.view = tools.newView();
    this.userInvert = false;
    this.win = null;
    this.full = null;
    this.fitted = true;
    this.painted = false;
    this.drawing = null;
    this.loadToken = 0;
    this.el = el('div', { className: 'rv-vp', tabIndex: -1, dataset: { position: cell.position, study: cell.study, state: 'empty' } });
    // The preview: the browser fetches, decodes and scales it, so the first
    // picture needs no WebGL context, shader or texture. Decoded in the frame
    // that shows it (sync), so that it appears whole in that frame.
    this.preview = el('img', { className: 'rv-preview', alt: '', hidden: true, draggable: false, decoding: 'sync' });
    this.canvas = el('canvas', { className: 'rv-gl' });
    this.marks = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    this.marks.setAttribute('class', 'rv-marks');
    this.corners = Object.fromEntries(['tl', 'tr', 'bl', 'br'].map((c) => [c, el('div', { className: `rv-corner rv-${c}` })]));
    this.message = el('div', { className: 'rv-msg', role: 'alert', hidden: true });
    this.el.append(this.preview, this.canvas, this.marks, ...Object.values(this.corners), this.message);
    tools.attach(this, () => this.s.tool);
    this.resizer = new ResizeObserver(() => {
      if (this.fitted) this.cell.mammo ? this.s.fitMammography() : this.fit();
      this.requestRender();
    });
    this.resizer.observe(this.el);
    this.applyCellOrientation();
  }

  get item() {
    return this.stack[this.index];
  }

  /** Metadata of the image shown (cached per stack position). */
  get info() {
    const item = this.item;
    if (!item) return null;
    if (this.infoFor !== item) {
      this.infoFor = item;
      this.infoCache = imageInfo(item.instance, item.frame);
    }
    return this.infoCache;
  }

  get measurements() {
    const info = this.info;
    if (!info) return [];
    const key = `${info.sop}#${info.frame}`;
    if (!this.s.marksByImage.has(key)) this.s.marksByImage.set(key, []);
    return this.s.marksByImage.get(key);
  }

  dispose() {
    this.loadToken++;
    clearTimeout(this.settle);
    this.resizer.disconnect();
    this.renderer?.dispose();
    this.preview.removeAttribute('src');
  }

  /**
   * The WebGL renderer, made when the first full frame arrives; null (with
   * the reason on screen) where the browser has no WebGL2.
   */
  gl() {
    if (this.renderer !== undefined) return this.renderer;
    try {
      this.renderer = new Renderer(this.canvas, {
        onLost: () => this.showMessage(() => t('reading.glLost')),
        onRestored: () => {
          this.showMessage(null);
          this.requestRender();
        },
      });
    } catch {
      this.renderer = null;
      this.showMessage(() => t('reading.noWebgl'));
    }
    return this.renderer;
  }

  activate() {
    this.s.setActive(this);
  }

  /** Another series in this viewport: a fresh view and the series' own window. */
  setStack(stack) {
    this.stack = stack;
    this.index = 0;
    this.cell = { ...this.cell, stack, mammo: false, flipH: false, flipV: false, align: null };
    this.hung = this.cell;
    this.view = tools.newView();
    this.userInvert = false;
    this.win = null;
    this.renderer?.clear();
    this.load();
    this.fit();
  }

  applyCellOrientation() {
    if (this.cell.flipH) tools.flip(this.view, true);
    if (this.cell.flipV) tools.flip(this.view, false);
  }

  // ---- loading

  show(index) {
    const i = Math.min(this.stack.length - 1, Math.max(0, index));
    if (i === this.index && this.state !== 'empty') return;
    this.index = i;
    this.drawing = null;
    this.load();
  }

  scroll(delta) {
    this.show(this.index + delta);
  }

  nextIndex() {
    return (this.index + 1) % this.stack.length;
  }

  /** True if the stack position's full frame is in memory. */
  ready(index) {
    const item = this.stack[index];
    return Boolean(item) && this.s.loader.has(this.s.frameUrl(imageInfo(item.instance, item.frame)));
  }

  /**
   * Shows the current item: the preview first (unless the full frame is in
   * memory already), the full frame when it arrives. A newer `load()`
   * supersedes the answers to an older one.
   */
  load() {
    const info = this.info;
    const token = ++this.loadToken;
    // Keep the previous frame on screen while scrolling a stack of one size;
    // an image of another size would be drawn stretched.
    if (this.renderer?.image && this.geometry !== `${info?.columns}x${info?.rows}`) this.renderer.clear();
    this.full = null;
    this.showMessage(null);
    if (!info) {
      this.setState('empty');
      this.requestRender();
      return;
    }
    Object.assign(this.el.dataset, { sop: info.sop, laterality: info.laterality, view: info.view, studyUid: info.studyUID });
    this.setState('loading');
    this.previewShown = false;
    if (!this.s.loader.has(this.s.frameUrl(info))) {
      const img = this.preview;
      // A preview that fails is not reported: the full frame's request says why.
      img.onload = () => token === this.loadToken && this.setPreview();
      img.src = this.s.previewUrl(info);
      // One fetched ahead (Session.start) is complete at once: shown in the
      // page's very first frame rather than after a load event.
      if (img.complete && img.naturalWidth) this.setPreview();
    }
    this.s.fetchFrame(info, PRIORITY.visible).then(
      (frame) => token === this.loadToken && this.setFull(frame),
      (e) => token === this.loadToken && e.name !== 'AbortError' && this.setError(e),
    );
    this.updateOverlay();
    if (this.s.active === this) this.s.syncControls();
  }

  setState(state) {
    this.state = state;
    this.el.dataset.state = state;
  }

  /** The preview has loaded: shown until the full frame replaces it. */
  setPreview() {
    if (this.state === 'full') return;
    this.previewShown = true;
    // After a failed full frame the preview is still worth showing, under the message.
    if (this.state !== 'error') this.setState('preview');
    this.painted = true;
    this.requestRender();
  }

  setFull(frame) {
    const info = this.info;
    const renderer = this.gl();
    if (!renderer) return;
    if (Math.max(frame.width, frame.height) > renderer.maxTexture) {
      const token = this.loadToken;
      this.s.fetchFrame(info, PRIORITY.visible, renderer.maxTexture).then(
        (smaller) => token === this.loadToken && this.setFull(smaller),
        (e) => token === this.loadToken && this.setError(e),
      );
      return;
    }
    this.full = frame;
    if (info.samples === 3) {
      renderer.setImage({ kind: 'rgb', pixels: frame.pixels, width: frame.width, height: frame.height });
    } else {
      renderer.setImage({ kind: 'gray', levels: frame.levels, width: frame.width, height: frame.height, signed: info.signed });
    }
    this.win ??= this.defaults().dataset ?? this.defaults().auto ?? this.defaults().full;
    this.setState('full');
    this.geometry = `${info.columns}x${info.rows}`;
    this.painted = true;
    this.markPending = true;
    this.requestRender();
    this.prefetch(PREFETCH_AHEAD);
  }

  setError(e) {
    this.setState('error');
    this.showMessage(() => `${t('reading.imageError')} ${describeError(e)}`);
    this.requestRender();
  }

  /** Starts fetching the next `ahead` frames of the stack (and a few behind). */
  prefetch(ahead) {
    for (let d = 1; d <= ahead; d++) {
      for (const i of [this.index + d, d <= PREFETCH_BEHIND ? this.index - d : -1]) {
        const item = this.stack[i];
        if (!item) continue;
        this.s.fetchFrame(imageInfo(item.instance, item.frame), PRIORITY.prefetch).catch(() => {});
      }
    }
  }

  /** A message over the image, `words()` giving it in the current language; null hides it. */
  showMessage(words) {
    this.words = words;
    this.message.hidden = !words;
    this.message.textContent = words ? words() : '';
  }

  hasImage() {
    return this.state === 'preview' || this.state === 'full';
  }

  // ---- window

  /** The windows presets draw on, in modality units. */
  defaults() {
    const info = this.info;
    const stats = this.full?.stats;
    const m = (v) => v * info.slope + info.intercept;
    const range = (lo, hi) => {
      const [a, b] = [m(lo), m(hi)].sort((x, y) => x - y);
      return { center: (a + b) / 2, width: Math.max(1, b - a), voi: 0 };
    };
    return {
      dataset: info.window ? { ...info.window } : null,
      auto: stats ? range(stats.low, stats.high) : null,
      full: stats ? range(stats.min, stats.max) : range(0, 2 ** info.bitsStored - 1),
    };
  }

  applyPreset(n) {
    const info = this.info;
    if (!info || info.samples !== 1) return;
    const preset = tools.presets(info.modality)[n - 1];
    const w = preset?.make(this.defaults());
    if (!w) {
      showNotice(t('reading.presetUnavailable'));
      return;
    }
    this.win = { voi: 0, ...w };
    this.requestRender();
  }

  /** W/L drag: right widens the window, down raises the centre. */
  adjustWindow(dx, dy) {
    if (!this.win || this.info?.samples !== 1) return;
    const stats = this.full?.stats;
    const info = this.info;
    const range = stats ? (stats.max - stats.min) * Math.abs(info.slope) : 2 ** info.bitsStored * Math.abs(info.slope);
    const k = Math.max(range, 1) / 600;
    this.win = { ...this.win, center: this.win.center + dy * k, width: Math.max(1, this.win.width + dx * k) };
    this.interacted();
  }

  invert() {
    this.userInvert = !this.userInvert;
    this.requestRender();
  }

  // ---- geometry

  size() {
    return [this.el.clientWidth || 1, this.el.clientHeight || 1];
  }

  fitScale() {
    const info = this.info;
    const [vw, vh] = this.size();
    return tools.fitScale(this.view, info.columns, info.rows, vw, vh);
  }

  mmPerPixel() {
    return this.info.detectorSpacing?.column ?? 1;
  }

  place(scale, align) {
    const info = this.info;
    tools.place(this.view, scale, info.columns, info.rows, this.size()[0], align);
    this.fitted = true;
    this.requestRender();
  }

  fit() {
    if (!this.info) return;
    if (this.cell.mammo) {
      this.s.fitMammography();
      return;
    }
    this.place(this.fitScale(), null);
  }

  /** One image pixel on one device pixel. */
  actualPixels() {
    this.zoomTo(1 / devicePixelRatio);
  }

  /** Physical size at the detector, assuming 96 CSS px per inch. */
  trueSize() {
    const spacing = this.info?.detectorSpacing;
    if (!spacing) {
      showNotice(t('reading.noSpacing'));
      return;
    }
    this.zoomTo(spacing.column * tools.CSS_PX_PER_MM);
  }

  zoomTo(scale) {
    if (!this.info) return;
    const [vw, vh] = this.size();
    tools.zoomAt(this.view, scale / this.view.scale, vw / 2, vh / 2, vw, vh);
    this.fitted = false;
    this.requestRender();
  }

  zoom(factor, sx, sy) {
    const [vw, vh] = this.size();
    tools.zoomAt(this.view, factor, sx, sy, vw, vh);
    this.fitted = false;
    this.interacted();
  }

  pan(dx, dy) {
    this.view.panX += dx;
    this.view.panY += dy;
    this.fitted = false;
    this.interacted();
  }

  rotate() {
    tools.rotate(this.view);
    this.refitIfFitted();
  }

  flip(horizontal) {
    tools.flip(this.view, horizontal);
    this.refitIfFitted();
  }

  refitIfFitted() {
    // A turned mammogram no longer has its chest wall at its hanging edge.
    this.cell = { ...this.cell, mammo: false, align: null };
    if (this.fitted) this.fit();
    this.requestRender();
  }

  /** The view as hung: orientation, fit, the data set's window, no inversion. */
  reset() {
    this.cell = this.hung;
    this.view = tools.newView();
    this.applyCellOrientation();
    this.userInvert = false;
    this.fitted = true;
    const d = this.info && this.full ? this.defaults() : null;
    if (d) this.win = d.dataset ?? d.auto ?? d.full;
    this.fit();
    this.requestRender();
  }

  toScreen(x, y) {
    const info = this.info;
    const [vw, vh] = this.size();
    return tools.toScreen(this.view, info.columns, info.rows, vw, vh, x, y);
  }

  toImage(sx, sy) {
    const info = this.info;
    const [vw, vh] = this.size();
    return tools.toImage(this.view, info.columns, info.rows, vw, vh, sx, sy);
  }

  stackLength() {
    return this.stack.length;
  }

  // ---- measurements

  spacing() {
    return this.info?.spacing ?? null;
  }

  valueUnits() {
    return this.info?.units ?? '';
  }

  commitDrawing() {
    this.measurements.push(this.drawing);
    this.drawing = null;
  }

  cancelDrawing() {
    this.drawing = null;
    this.redrawMarks();
  }

  deleteLastMeasurement() {
    this.measurements.pop();
    this.redrawMarks();
  }

  redrawMarks() {
    if (this.info) tools.drawMarks(this);
    else this.marks.replaceChildren();
  }

  /**
   * Mean and standard deviation, in modality units, of the full-resolution
   * pixels whose centres fall inside the rectangle (image coordinates);
   * null until the full frame is here. Remembered per rectangle: labels are
   * redrawn on every pan and zoom.
   */
  roiStats(x0, y0, x1, y1) {
    const f = this.full;
    const info = this.info;
    if (!f || info.samples !== 1) return null;
    const key = [x0, y0, x1, y1].join();
    f.roi ??= new Map();
    if (f.roi.has(key)) return f.roi.get(key);
    const k = f.factor;
    const clampX = (v) => Math.min(f.width - 1, Math.max(0, v));
    const clampY = (v) => Math.min(f.height - 1, Math.max(0, v));
    const ax = clampX(Math.ceil(Math.min(x0, x1) / k - 0.5));
    const bx = clampX(Math.floor(Math.max(x0, x1) / k - 0.5));
    const ay = clampY(Math.ceil(Math.min(y0, y1) / k - 0.5));
    const by = clampY(Math.floor(Math.max(y0, y1) / k - 0.5));
    let n = 0;
    let sum = 0;
    let sum2 = 0;
    for (let y = ay; y <= by; y++) {
      for (let i = y * f.width + ax, end = y * f.width + bx; i <= end; i++) {
        const v = f.pixels[i] * info.slope + info.intercept;
        sum += v;
        sum2 += v * v;
        n++;
      }
    }
    const result = n ? { n, mean: sum / n, sd: Math.sqrt(Math.max(0, sum2 / n - (sum / n) ** 2)) } : null;
    f.roi.set(key, result);
    return result;
  }

  // ---- drawing

  requestRender() {
    this.s.requestRender(this);
  }

  /**
   * Marks a window, zoom or pan change by the user: drawn in the fast mode
   * while changes keep coming, then once more fully filtered.
   */
  interacted() {
    this.lastInteraction = performance.now();
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.requestRender(), SETTLE_MS);
    this.requestRender();
  }

  render() {
    const info = this.info;
    const [vw, vh] = this.size();
    this.el.dataset.scale = String(this.view.scale);
    // The preview stands in until the full frame is here (and stays under an
    // error message); otherwise the canvas shows the full frame, or the
    // previous one of the stack while the next loads.
    const preview = this.previewShown && this.state !== 'full';
    this.preview.hidden = !preview;
    this.canvas.style.visibility = preview ? 'hidden' : 'visible';
    if (preview) this.placePreview(info, vw, vh);
    const renderer = this.renderer;
    if (renderer) {
      renderer.resize(vw, vh, devicePixelRatio);
      const image = renderer.image;
      if (!info || !image || !this.win) {
        renderer.draw({ matrix: tools.clipMatrix(this.view, 1, 1, vw, vh) });
      } else {
        renderer.draw({
          matrix: tools.clipMatrix(this.view, info.columns, info.rows, vw, vh),
          texelsPerPixel: image.width / info.columns / (this.view.scale * devicePixelRatio),
          window: this.win,
          invert: info.baseInvert !== this.userInvert,
          interactive: performance.now() - (this.lastInteraction ?? -Infinity) < SETTLE_MS,
          slope: info.slope,
          intercept: info.intercept,
        });
      }
    }
    this.updateOverlay();
    this.redrawMarks();
  }

  /**
   * The preview <img> laid out as the canvas would draw the image: sized in
   * image pixels, then the view's matrix as a CSS transform. The server has
   * applied the window and MONOCHROME1; only the user's invert remains.
   */
  placePreview(info, vw, vh) {
    const [a, b, c, d] = this.view.m;
    const s = this.view.scale;
    const [w, h] = [info.columns, info.rows];
    const e = vw / 2 + this.view.panX - (s * (a * w + b * h)) / 2;
    const f = vh / 2 + this.view.panY - (s * (c * w + d * h)) / 2;
    Object.assign(this.preview.style, {
      width: `${w}px`,
      height: `${h}px`,
      transform: `matrix(${s * a}, ${s * c}, ${s * b}, ${s * d}, ${e}, ${f})`,
      filter: this.userInvert ? 'invert(1)' : '',
    });
  }

  relabel() {
    this.updateOverlay();
    this.redrawMarks();
    this.showMessage(this.words);
  }

  /** Text in the four corners: patient, study, series/image, technique and display. */
  updateOverlay() {
    const info = this.info;
    const text = this.cornerText(info);
    // Rewritten only when changed: this runs on every redraw of a drag.
    for (const [corner, e] of Object.entries(this.corners)) {
      if (e.textContent !== text[corner]) e.textContent = text[corner];
    }
  }

  cornerText(info) {
    if (!info) return { tl: t('reading.emptyViewport'), tr: '', bl: '', br: '' };
    const inst = this.item.instance;
    const lines = (...l) => l.filter(Boolean).join('\n');
    const sex = str(inst, '00100040');
    const birth = str(inst, '00100030');
    const tl = lines(
      personName(inst, '00100010'),
      str(inst, '00100020') && `${t('reading.id')} ${str(inst, '00100020')}`,
      [birth && formatDate(birth), ['F', 'M', 'O'].includes(sex) ? t(`reading.sex.${sex}`) : sex].filter(Boolean).join(' · '),
    );
    const tr = lines(
      this.cell.study === 'prior' ? t('reading.priorLabel') : '',
      [formatDate(str(inst, '00080020')), formatTime(str(inst, '00080030'))].filter(Boolean).join(' '),
      str(inst, '00081030'),
      str(inst, '00080080'),
    );
    const frames = info.frames > 1 ? `${t('reading.frame')} ${info.frame}/${info.frames}` : '';
    const bl = lines(
      [str(inst, '00200011') && `${t('reading.seriesShort')} ${str(inst, '00200011')}`, str(inst, '0008103E')].filter(Boolean).join(' · '),
      `${t('reading.imageShort')} ${str(inst, '00200013') || '–'} · ${this.index + 1}/${this.stack.length}`,
      frames,
    );
    const kvp = num(inst, '00180060');
    const mas = num(inst, '00181152') ?? (num(inst, '00181153') !== undefined ? num(inst, '00181153') / 1000 : undefined);
    const technique = [kvp !== undefined && `${kvp} kV`, mas !== undefined && `${+mas.toFixed(2)} mAs`].filter(Boolean).join(' · ');
    const shownWindow = this.win ?? info.window;
    const w = shownWindow ? `${t('reading.wl')} ${Math.round(shownWindow.center)}/${Math.round(shownWindow.width)}` : '';
    const br = lines(
      technique,
      [info.laterality, info.view].filter(Boolean).join(' '),
      w,
      `${t('reading.zoom')} ${Math.round(this.view.scale * devicePixelRatio * 100)}%${this.userInvert ? ` · ${t('reading.inverted')}` : ''}`,
      this.state === 'preview' || this.state === 'loading' ? t('reading.previewNote') : '',
      this.full?.factor > 1 ? t('reading.downsampled', { factor: this.full.factor }) : '',
      info.spacing?.detector ? t('reading.atDetector') : !info.spacing ? t('reading.noSpacingShort') : '',
    );
    return { tl, tr, bl, br };
  }
}

// ---------------------------------------------------------------- strings

register({
  en: {
    'reading.loading': 'Loading the study…',
    'reading.notFound': 'This study is not in the archive (it may have been deleted or the link is wrong).',
    'reading.noImages': 'This study has no images to show (only reports or other documents).',
    'reading.back': '← Studies',
    'reading.close': 'Close',
    'reading.series': 'Series',
    'reading.images': { one: '{count} image', other: '{count} images' },
    'reading.layout.1x1': '1×1',
    'reading.layout.1x2': '1×2',
    'reading.layout.2x2': '2×2',
    'reading.tool.wl': 'W/L',
    'reading.tool.zoom': 'Zoom',
    'reading.tool.pan': 'Pan',
    'reading.tool.length': 'Length',
    'reading.tool.angle': 'Angle',
    'reading.tool.roi': 'ROI',
    'reading.presets': 'Window…',
    'reading.invert': 'Invert',
    'reading.rotate': 'Rotate',
    'reading.flipH': 'Flip ↔',
    'reading.flipV': 'Flip ↕',
    'reading.fit': 'Fit',
    'reading.actual': '1:1',
    'reading.trueSize': 'True size',
    'reading.reset': 'Reset',
    'reading.cine': 'Cine',
    'reading.fps': 'fps',
    'reading.prior': 'Compare with prior',
    'reading.priorView': 'CC ⇄ MLO',
    'reading.overlay': 'Text',
    'reading.tags': 'Tags',
    'reading.help': 'Keys',
    'reading.help.title': 'Keyboard shortcuts',
    'reading.help.mouse': 'Mouse: left button uses the selected tool (window/level by default: right–left changes the width, up–down the level); right button drag zooms; middle button or Shift + drag pans; the wheel scrolls through a stack (zooms a single image; Ctrl + wheel always zooms). Measurements: drag, or click point by point.',
    'reading.help.trueSize': 'True size shows the image at its size on the detector assuming the screen has 96 CSS pixels per inch (the browser’s definition, already multiplied by the display’s pixel ratio). Most monitors differ a little: check with a ruler before measuring on screen; measurements themselves always use the image’s pixel spacing.',
    'reading.help.layouts': 'Shortcuts are physical keys: they stay in place on the Kazakh and Russian keyboard layouts.',
    'reading.key.wl': 'Window/level tool',
    'reading.key.zoom': 'Zoom tool',
    'reading.key.pan': 'Pan tool',
    'reading.key.length': 'Length (mm)',
    'reading.key.angle': 'Angle',
    'reading.key.roi': 'Rectangle ROI: mean, SD, area',
    'reading.key.presets': 'Window presets for the modality (1 = from the image header)',
    'reading.key.invert': 'Invert',
    'reading.key.rotate': 'Rotate 90° clockwise',
    'reading.key.flip': 'Flip horizontally / vertically',
    'reading.key.fit': 'Fit to viewport',
    'reading.key.actual': '1:1 — one image pixel per screen pixel',
    'reading.key.trueSize': 'True size (see below)',
    'reading.key.reset': 'Reset the view',
    'reading.key.stack': 'Previous / next image (10 at a time / first, last)',
    'reading.key.cine': 'Play / stop cine',
    'reading.key.layout': 'Layout 1×1 / 1×2 / 2×2',
    'reading.key.delete': 'Delete the last measurement',
    'reading.key.overlay': 'Show / hide the corner text',
    'reading.key.tags': 'DICOM tag browser',
    'reading.key.prior': 'Mammography: compare with the prior study',
    'reading.key.priorView': 'Comparison: switch between CC and MLO',
    'reading.key.help': 'This help',
    'reading.glLost': 'The graphics card was reset; the image is being restored…',
    'reading.noWebgl': 'This browser cannot show images: WebGL 2 is not available. Use a current Chrome, Edge, Firefox or Yandex Browser.',
    'reading.imageError': 'This image cannot be shown.',
    'reading.emptyViewport': 'Choose a series on the left',
    'reading.id': 'ID',
    'reading.sex.F': 'F',
    'reading.sex.M': 'M',
    'reading.sex.O': 'other',
    'reading.priorLabel': 'PRIOR',
    'reading.frame': 'Frame',
    'reading.seriesShort': 'Se',
    'reading.imageShort': 'Im',
    'reading.wl': 'C/W',
    'reading.zoom': 'Zoom',
    'reading.inverted': 'inverted',
    'reading.previewNote': 'preview — full resolution loading',
    'reading.downsampled': 'shown at 1:{factor} (image larger than the graphics card allows)',
    'reading.atDetector': 'mm at the detector',
    'reading.noSpacingShort': 'no pixel spacing: measurements in px',
    'reading.noSpacing': 'This image has no pixel spacing: true size is not possible.',
    'reading.presetUnavailable': 'This preset is not available for this image: it needs a window in the image header, or the full-resolution image (try again in a moment).',
    'reading.noPrior': 'No earlier mammography study of this patient.',
    'reading.priorMissingViews': 'The prior study has no {view} pair to compare.',
    'preset.default': 'From the image header',
    'preset.auto': 'Automatic',
    'preset.full': 'Full range',
    'preset.soft': 'Soft',
    'preset.dense': 'Dense',
    'preset.soft-tissue': 'Soft tissue',
    'preset.lung': 'Lung',
    'preset.bone': 'Bone',
    'preset.brain': 'Brain',
    'unit.mm': 'mm',
    'unit.px': 'px',
    'unit.mm2': 'mm²',
    'unit.px2': 'px²',
    'measure.roi': 'mean {mean} SD {sd} {units}',
    'measure.roi-pending': 'mean: waiting for full resolution',
    'tags.title': 'DICOM tags',
    'tags.filter': 'Filter: tag, name or value',
    'tags.bulk': '(bulk data)',
    'tags.binary': '(binary, {n} bytes)',
    'tags.private': 'private',
    'tags.items': { one: '{count} item', other: '{count} items' },
    'tags.item': 'Item {n}',
  },
  ru: {
    'reading.loading': 'Исследование загружается…',
    'reading.notFound': 'Этого исследования нет в архиве (возможно, оно удалено или ссылка неверна).',
    'reading.noImages': 'В исследовании нет изображений (только отчёты или другие документы).',
    'reading.back': '← Исследования',
    'reading.close': 'Закрыть',
    'reading.series': 'Серии',
    'reading.images': { one: '{count} снимок', few: '{count} снимка', many: '{count} снимков', other: '{count} снимка' },
    'reading.layout.1x1': '1×1',
    'reading.layout.1x2': '1×2',
    'reading.layout.2x2': '2×2',
    'reading.tool.wl': 'Окно',
    'reading.tool.zoom': 'Масштаб',
    'reading.tool.pan': 'Сдвиг',
    'reading.tool.length': 'Длина',
    'reading.tool.angle': 'Угол',
    'reading.tool.roi': 'Область',
    'reading.presets': 'Окно…',
    'reading.invert': 'Инверсия',
    'reading.rotate': 'Повернуть',
    'reading.flipH': 'Отразить ↔',
    'reading.flipV': 'Отразить ↕',
    'reading.fit': 'Вписать',
    'reading.actual': '1:1',
    'reading.trueSize': 'Истинный размер',
    'reading.reset': 'Сброс',
    'reading.cine': 'Кино',
    'reading.fps': 'кадр/с',
    'reading.prior': 'Сравнить с предыдущим',
    'reading.priorView': 'CC ⇄ MLO',
    'reading.overlay': 'Текст',
    'reading.tags': 'Теги',
    'reading.help': 'Клавиши',
    'reading.help.title': 'Клавиши быстрого доступа',
    'reading.help.mouse': 'Мышь: левая кнопка — выбранный инструмент (по умолчанию окно: вправо–влево меняет ширину, вверх–вниз — уровень); перетаскивание правой кнопкой — масштаб; средняя кнопка или Shift + перетаскивание — сдвиг; колесо листает стопку снимков (для одного снимка — масштаб; Ctrl + колесо — всегда масштаб). Измерения: перетаскиванием или щелчками по точкам.',
    'reading.help.trueSize': 'Истинный размер показывает снимок в размере на детекторе в предположении, что на экране 96 CSS-пикселей на дюйм (определение браузера, уже умноженное на плотность пикселей дисплея). Большинство мониторов немного отличаются: проверьте линейкой, прежде чем мерить по экрану; сами измерения всегда используют размер пикселя из снимка.',
    'reading.help.layouts': 'Клавиши привязаны к физическим кнопкам: на казахской и русской раскладке они на тех же местах.',
    'reading.key.wl': 'Инструмент «окно/уровень»',
    'reading.key.zoom': 'Инструмент «масштаб»',
    'reading.key.pan': 'Инструмент «сдвиг»',
    'reading.key.length': 'Длина (мм)',
    'reading.key.angle': 'Угол',
    'reading.key.roi': 'Прямоугольная область: среднее, СКО, площадь',
    'reading.key.presets': 'Предустановки окна для модальности (1 — из заголовка снимка)',
    'reading.key.invert': 'Инверсия',
    'reading.key.rotate': 'Повернуть на 90° по часовой стрелке',
    'reading.key.flip': 'Отразить по горизонтали / вертикали',
    'reading.key.fit': 'Вписать в окно',
    'reading.key.actual': '1:1 — один пиксель снимка на пиксель экрана',
    'reading.key.trueSize': 'Истинный размер (см. ниже)',
    'reading.key.reset': 'Сбросить вид',
    'reading.key.stack': 'Предыдущий / следующий снимок (по 10 / первый, последний)',
    'reading.key.cine': 'Запустить / остановить кино',
    'reading.key.layout': 'Раскладка 1×1 / 1×2 / 2×2',
    'reading.key.delete': 'Удалить последнее измерение',
    'reading.key.overlay': 'Показать / скрыть текст по углам',
    'reading.key.tags': 'Просмотр тегов DICOM',
    'reading.key.prior': 'Маммография: сравнить с предыдущим исследованием',
    'reading.key.priorView': 'Сравнение: переключить CC и MLO',
    'reading.key.help': 'Эта справка',
    'reading.glLost': 'Видеокарта была перезапущена; изображение восстанавливается…',
    'reading.noWebgl': 'Этот браузер не может показывать снимки: нет WebGL 2. Используйте актуальный Chrome, Edge, Firefox или Яндекс Браузер.',
    'reading.imageError': 'Этот снимок невозможно показать.',
    'reading.emptyViewport': 'Выберите серию слева',
    'reading.id': 'ID',
    'reading.sex.F': 'Ж',
    'reading.sex.M': 'М',
    'reading.sex.O': 'другой',
    'reading.priorLabel': 'ПРЕДЫДУЩЕЕ',
    'reading.frame': 'Кадр',
    'reading.seriesShort': 'Сер.',
    'reading.imageShort': 'Сн.',
    'reading.wl': 'Ц/Ш',
    'reading.zoom': 'Масштаб',
    'reading.inverted': 'инверсия',
    'reading.previewNote': 'превью — загружается полное разрешение',
    'reading.downsampled': 'показано 1:{factor} (снимок больше, чем позволяет видеокарта)',
    'reading.atDetector': 'мм на детекторе',
    'reading.noSpacingShort': 'нет размера пикселя: измерения в пикселях',
    'reading.noSpacing': 'В снимке нет размера пикселя: истинный размер невозможен.',
    'reading.presetUnavailable': 'Эта предустановка недоступна для снимка: нужно окно в заголовке снимка или снимок в полном разрешении (повторите чуть позже).',
    'reading.noPrior': 'Более ранних маммографий этого пациента нет.',
    'reading.priorMissingViews': 'В предыдущем исследовании нет пары {view} для сравнения.',
    'preset.default': 'Из заголовка снимка',
    'preset.auto': 'Автоматически',
    'preset.full': 'Весь диапазон',
    'preset.soft': 'Мягкое',
    'preset.dense': 'Плотное',
    'preset.soft-tissue': 'Мягкие ткани',
    'preset.lung': 'Лёгкие',
    'preset.bone': 'Кости',
    'preset.brain': 'Мозг',
    'unit.mm': 'мм',
    'unit.px': 'пикс.',
    'unit.mm2': 'мм²',
    'unit.px2': 'пикс.²',
    'measure.roi': 'среднее {mean} СКО {sd} {units}',
    'measure.roi-pending': 'среднее: ждём полное разрешение',
    'tags.title': 'Теги DICOM',
    'tags.filter': 'Фильтр: тег, название или значение',
    'tags.bulk': '(двоичные данные)',
    'tags.binary': '(двоичные, {n} байт)',
    'tags.private': 'частный',
    'tags.items': { one: '{count} элемент', few: '{count} элемента', many: '{count} элементов', other: '{count} элемента' },
    'tags.item': 'Элемент {n}',
  },
  kk: {
    'reading.loading': 'Зерттеу жүктелуде…',
    'reading.notFound': 'Бұл зерттеу архивте жоқ (жойылған болуы мүмкін немесе сілтеме қате).',
    'reading.noImages': 'Бұл зерттеуде көрсететін сурет жоқ (тек есептер немесе басқа құжаттар).',
    'reading.back': '← Зерттеулер',
    'reading.close': 'Жабу',
    'reading.series': 'Сериялар',
    'reading.images': { one: '{count} сурет', other: '{count} сурет' },
    'reading.layout.1x1': '1×1',
    'reading.layout.1x2': '1×2',
    'reading.layout.2x2': '2×2',
    'reading.tool.wl': 'Терезе',
    'reading.tool.zoom': 'Масштаб',
    'reading.tool.pan': 'Жылжыту',
    'reading.tool.length': 'Ұзындық',
    'reading.tool.angle': 'Бұрыш',
    'reading.tool.roi': 'Аймақ',
    'reading.presets': 'Терезе…',
    'reading.invert': 'Инверсия',
    'reading.rotate': 'Бұру',
    'reading.flipH': 'Шағылдыру ↔',
    'reading.flipV': 'Шағылдыру ↕',
    'reading.fit': 'Сыйдыру',
    'reading.actual': '1:1',
    'reading.trueSize': 'Нақты өлшем',
    'reading.reset': 'Қалпына келтіру',
    'reading.cine': 'Кино',
    'reading.fps': 'кадр/с',
    'reading.prior': 'Алдыңғымен салыстыру',
    'reading.priorView': 'CC ⇄ MLO',
    'reading.overlay': 'Мәтін',
    'reading.tags': 'Тегтер',
    'reading.help': 'Пернелер',
    'reading.help.title': 'Жылдам пернелер',
    'reading.help.mouse': 'Тінтуір: сол жақ батырма таңдалған құралды қолданады (әдепкіде терезе: оңға–солға ені, жоғары–төмен деңгейі өзгереді); оң жақ батырмамен сүйреу — масштаб; ортаңғы батырма немесе Shift + сүйреу — жылжыту; дөңгелек суреттер бумасын парақтайды (жалғыз суретте — масштаб; Ctrl + дөңгелек — әрқашан масштаб). Өлшеу: сүйреп немесе нүктелерді басып.',
    'reading.help.trueSize': 'Нақты өлшем суретті детектордағы өлшемімен көрсетеді, экранда бір дюймге 96 CSS-пиксель келеді деп есептейді (браузер анықтамасы, дисплейдің пиксель тығыздығына көбейтілген). Мониторлардың көбі сәл өзгеше: экраннан өлшемес бұрын сызғышпен тексеріңіз; өлшеулердің өзі әрқашан суреттегі пиксель өлшемін пайдаланады.',
    'reading.help.layouts': 'Пернелер физикалық батырмаларға байланған: қазақ және орыс пернетақта орналасуында да сол орнында.',
    'reading.key.wl': '«Терезе/деңгей» құралы',
    'reading.key.zoom': '«Масштаб» құралы',
    'reading.key.pan': '«Жылжыту» құралы',
    'reading.key.length': 'Ұзындық (мм)',
    'reading.key.angle': 'Бұрыш',
    'reading.key.roi': 'Тікбұрышты аймақ: орташа, СОА, аудан',
    'reading.key.presets': 'Модальдыққа арналған терезе баптаулары (1 — сурет тақырыбынан)',
    'reading.key.invert': 'Инверсия',
    'reading.key.rotate': 'Сағат тілімен 90° бұру',
    'reading.key.flip': 'Көлденең / тік шағылдыру',
    'reading.key.fit': 'Терезеге сыйдыру',
    'reading.key.actual': '1:1 — экранның бір пикселіне суреттің бір пикселі',
    'reading.key.trueSize': 'Нақты өлшем (төменде қараңыз)',
    'reading.key.reset': 'Көріністі қалпына келтіру',
    'reading.key.stack': 'Алдыңғы / келесі сурет (10-нан / бірінші, соңғы)',
    'reading.key.cine': 'Киноны қосу / тоқтату',
    'reading.key.layout': 'Орналасу 1×1 / 1×2 / 2×2',
    'reading.key.delete': 'Соңғы өлшеуді жою',
    'reading.key.overlay': 'Бұрыштағы мәтінді көрсету / жасыру',
    'reading.key.tags': 'DICOM тегтерін қарау',
    'reading.key.prior': 'Маммография: алдыңғы зерттеумен салыстыру',
    'reading.key.priorView': 'Салыстыру: CC мен MLO арасында ауысу',
    'reading.key.help': 'Осы анықтама',
    'reading.glLost': 'Бейнекарта қайта іске қосылды; сурет қалпына келтірілуде…',
    'reading.noWebgl': 'Бұл браузер суреттерді көрсете алмайды: WebGL 2 жоқ. Chrome, Edge, Firefox немесе Яндекс Браузердің жаңа нұсқасын пайдаланыңыз.',
    'reading.imageError': 'Бұл суретті көрсету мүмкін емес.',
    'reading.emptyViewport': 'Сол жақтан серияны таңдаңыз',
    'reading.id': 'ID',
    'reading.sex.F': 'Ә',
    'reading.sex.M': 'Е',
    'reading.sex.O': 'басқа',
    'reading.priorLabel': 'АЛДЫҢҒЫ',
    'reading.frame': 'Кадр',
    'reading.seriesShort': 'Сер.',
    'reading.imageShort': 'Сур.',
    'reading.wl': 'О/Е',
    'reading.zoom': 'Масштаб',
    'reading.inverted': 'инверсия',
    'reading.previewNote': 'алдын ала көрініс — толық ажыратымдылық жүктелуде',
    'reading.downsampled': '1:{factor} көрсетілген (сурет бейнекарта рұқсат ететіннен үлкен)',
    'reading.atDetector': 'детектордағы мм',
    'reading.noSpacingShort': 'пиксель өлшемі жоқ: өлшеулер пиксельмен',
    'reading.noSpacing': 'Бұл суретте пиксель өлшемі жоқ: нақты өлшем мүмкін емес.',
    'reading.presetUnavailable': 'Бұл баптау осы суретке қолжетімсіз: сурет тақырыбында терезе немесе толық ажыратымдылықтағы сурет керек (сәлден соң қайталаңыз).',
    'reading.noPrior': 'Бұл пациенттің бұрынғы маммографиясы жоқ.',
    'reading.priorMissingViews': 'Алдыңғы зерттеуде салыстыруға {view} жұбы жоқ.',
    'preset.default': 'Сурет тақырыбынан',
    'preset.auto': 'Автоматты',
    'preset.full': 'Толық ауқым',
    'preset.soft': 'Жұмсақ',
    'preset.dense': 'Тығыз',
    'preset.soft-tissue': 'Жұмсақ тіндер',
    'preset.lung': 'Өкпе',
    'preset.bone': 'Сүйек',
    'preset.brain': 'Ми',
    'unit.mm': 'мм',
    'unit.px': 'пикс.',
    'unit.mm2': 'мм²',
    'unit.px2': 'пикс.²',
    'measure.roi': 'орташа {mean} СОА {sd} {units}',
    'measure.roi-pending': 'орташа: толық ажыратымдылық күтілуде',
    'tags.title': 'DICOM тегтері',
    'tags.filter': 'Сүзгі: тег, атауы немесе мәні',
    'tags.bulk': '(екілік деректер)',
    'tags.binary': '(екілік, {n} байт)',
    'tags.private': 'жеке',
    'tags.items': { one: '{count} элемент', other: '{count} элемент' },
    'tags.item': '{n}-элемент',
  },
});
