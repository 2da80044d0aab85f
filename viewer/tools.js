// Interaction and measurement for one viewport: the view transform (zoom,
// pan, quarter-turn rotation, flips) and its inverse, mouse tools (window/
// level, zoom, pan, length, angle, rectangle ROI), window presets per
// modality, and the measurement overlay drawn in SVG over the WebGL canvas.
//
// Measurements live in image pixel coordinates (x right along a row, y down
// along a column, pixel centres at +0.5), so they stay on the anatomy through
// every zoom, pan, rotation and flip; they are converted to millimetres with
// Pixel Spacing (PS3.3 10.7.1.3: row spacing first, then column spacing).

import { lang, t } from './i18n.js';

/** CSS pixels per inch by definition (CSS Values 4); true size rests on it. */
export const CSS_PX_PER_MM = 96 / 25.4;

// ---------------------------------------------------------------- geometry

/**
 * A fresh view: identity orientation. `m` = [a, b, c, d] maps image axes to
 * screen axes (screen x = a·x + b·y, screen y = c·x + d·y); it only ever holds
 * 0 and ±1. `scale` is CSS pixels per image pixel, `pan` the CSS offset of the
 * image centre from the viewport centre.
 */
export function newView() {
  return { m: [1, 0, 0, 1], scale: 1, panX: 0, panY: 0 };
}

/** Rotates 90° clockwise on screen (y points down). */
export function rotate(view) {
  const [a, b, c, d] = view.m;
  view.m = [-c, -d, a, b];
}

export function flip(view, horizontal) {
  const [a, b, c, d] = view.m;
  view.m = horizontal ? [-a, -b, c, d] : [a, b, -c, -d];
}

/** Width and height of the image as shown, in image pixels (rotation swaps them). */
function extent(view, w, h) {
  const [a, b, c, d] = view.m;
  return [Math.abs(a) * w + Math.abs(b) * h, Math.abs(c) * w + Math.abs(d) * h];
}

/** Scale at which the whole image fits the viewport. */
export function fitScale(view, w, h, vw, vh) {
  const [ew, eh] = extent(view, w, h);
  return Math.min(vw / ew, vh / eh);
}

/**
 * Sets the scale and centres the image, or pins its left/right edge to the
 * viewport's (`align`: a mammogram's chest wall).
 */
export function place(view, scale, w, h, vw, align) {
  view.scale = scale;
  view.panY = 0;
  const slack = (vw - extent(view, w, h)[0] * scale) / 2;
  view.panX = align === 'right' ? slack : align === 'left' ? -slack : 0;
}

/** Image pixel coordinates → CSS pixels in the viewport. */
export function toScreen(view, w, h, vw, vh, x, y) {
  const [a, b, c, d] = view.m;
  const dx = x - w / 2;
  const dy = y - h / 2;
  return [vw / 2 + view.panX + view.scale * (a * dx + b * dy), vh / 2 + view.panY + view.scale * (c * dx + d * dy)];
}

/** CSS pixels in the viewport → image pixel coordinates (m is orthogonal: its inverse is its transpose). */
export function toImage(view, w, h, vw, vh, sx, sy) {
  const [a, b, c, d] = view.m;
  const u = (sx - vw / 2 - view.panX) / view.scale;
  const v = (sy - vh / 2 - view.panY) / view.scale;
  return [a * u + c * v + w / 2, b * u + d * v + h / 2];
}

/** 3×3 column-major matrix: unit image square → WebGL clip space. */
export function clipMatrix(view, w, h, vw, vh) {
  const [a, b, c, d] = view.m;
  const s = view.scale;
  const ox = vw / 2 + view.panX - s * (a * w + b * h) / 2;
  const oy = vh / 2 + view.panY - s * (c * w + d * h) / 2;
  const kx = 2 / vw;
  const ky = -2 / vh;
  return [kx * s * a * w, ky * s * c * w, 0, kx * s * b * h, ky * s * d * h, 0, kx * ox - 1, ky * oy + 1, 1];
}

/** Zoom by `factor` keeping the image point under (sx, sy) in place. */
export function zoomAt(view, factor, sx, sy, vw, vh) {
  const next = Math.min(64, Math.max(0.01, view.scale * factor));
  const k = next / view.scale;
  const cx = sx - vw / 2;
  const cy = sy - vh / 2;
  view.panX = cx - (cx - view.panX) * k;
  view.panY = cy - (cy - view.panY) * k;
  view.scale = next;
}

// ----------------------------------------------------------------- presets

/**
 * Window presets per modality, keys 1–5. CT in Hounsfield units; projection
 * radiography and mammography have no absolute scale, so their presets derive
 * from the image: `auto` is the robust range worker.js measured, `soft`
 * favours fat and the skin line (lower, wider), `dense` looks into
 * fibroglandular tissue (higher, narrower).
 * Each returns {center, width} or null when the image lacks what it needs.
 */
export function presets(modality) {
  const dataset = { key: 'preset.default', make: (d) => d.dataset };
  const auto = { key: 'preset.auto', make: (d) => d.auto };
  const full = { key: 'preset.full', make: (d) => d.full };
  const fixed = (key, center, width) => ({ key, make: () => ({ center, width }) });
  const relative = (key, at, share) => ({
    key,
    make: ({ auto: a }) => a && { center: a.center - a.width / 2 + at * a.width, width: a.width * share },
  });
  if (modality === 'CT') {
    return [dataset, fixed('preset.soft-tissue', 40, 400), fixed('preset.lung', -600, 1500), fixed('preset.bone', 480, 2500), fixed('preset.brain', 40, 80)];
  }
  if (['MG', 'CR', 'DX', 'RG', 'XA', 'RF'].includes(modality)) {
    return [dataset, auto, relative('preset.soft', 0.35, 0.8), relative('preset.dense', 0.7, 0.5), full];
  }
  return [dataset, auto, full];
}

// ------------------------------------------------------------ measurements

const POINTS = { length: 2, angle: 3, roi: 2 };
const MEASURE_TOOLS = Object.keys(POINTS);

/**
 * Physical distance between image points, mm, or px when spacing is unknown.
 * `spacing` is {row, column} in mm (row = vertical distance between rows).
 */
function distance(p, q, spacing) {
  const sx = spacing?.column ?? 1;
  const sy = spacing?.row ?? 1;
  return Math.hypot((q[0] - p[0]) * sx, (q[1] - p[1]) * sy);
}

/** Angle at vertex `b` in degrees, measured in physical space. */
function angle(a, b, c, spacing) {
  const sx = spacing?.column ?? 1;
  const sy = spacing?.row ?? 1;
  const u = [(a[0] - b[0]) * sx, (a[1] - b[1]) * sy];
  const v = [(c[0] - b[0]) * sx, (c[1] - b[1]) * sy];
  const cos = (u[0] * v[0] + u[1] * v[1]) / (Math.hypot(...u) * Math.hypot(...v) || 1);
  return (Math.acos(Math.min(1, Math.max(-1, cos))) * 180) / Math.PI;
}

/**
 * The label of a finished measurement as lines of text, in the current
 * language and its number format.
 */
function label(m, vp) {
  const spacing = vp.spacing();
  const unit = spacing ? t('unit.mm') : t('unit.px');
  const fmt = (x) => x.toLocaleString(lang(), { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  if (m.type === 'length') return [`${fmt(distance(m.points[0], m.points[1], spacing))} ${unit}`];
  if (m.type === 'angle') return [`${fmt(angle(...m.points, spacing))}°`];
  const [[x0, y0], [x1, y1]] = m.points;
  const area = Math.abs(x1 - x0) * Math.abs(y1 - y0) * (spacing ? spacing.row * spacing.column : 1);
  const s = vp.roiStats(x0, y0, x1, y1);
  const stats = s ? t('measure.roi', { mean: fmt(s.mean), sd: fmt(s.sd), units: vp.valueUnits() }).trim() : t('measure.roi-pending');
  return [stats, `${fmt(area)} ${spacing ? t('unit.mm2') : t('unit.px2')}`];
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  parent.append(el);
  return el;
}

/** Redraws every measurement of the viewport (and the one being drawn). */
export function drawMarks(vp) {
  const layer = vp.marks;
  const all = vp.drawing ? [...vp.measurements, vp.drawing] : vp.measurements;
  if (!all.length && !layer.firstChild) return;
  layer.replaceChildren();
  for (const m of all) {
    const pts = m.points.map(([x, y]) => vp.toScreen(x, y));
    const g = svg('g', { class: `rv-mark rv-mark-${m.type}`, 'data-type': m.type }, layer);
    if (m.type === 'roi' && pts.length === 2) {
      const [[x0, y0], [x1, y1]] = pts;
      svg('rect', { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0) }, g);
    } else {
      svg('polyline', { points: pts.map((p) => p.join(',')).join(' ') }, g);
    }
    for (const [x, y] of pts) svg('circle', { cx: x, cy: y, r: 3 }, g);
    // While a rectangle is being drawn its statistics would be recomputed on
    // every mouse move: they appear when it is done.
    if (m !== vp.drawing || (m.type !== 'roi' && m.points.length === POINTS[m.type])) {
      const anchor = pts[m.type === 'angle' ? 1 : pts.length - 1];
      // Keep the label inside the viewport: left of the point near the right edge.
      const right = anchor[0] > vp.el.clientWidth * 0.6;
      const x = anchor[0] + (right ? -8 : 8);
      const lines = label(m, vp);
      const text = svg('text', { x, y: anchor[1] - 8 - 16 * (lines.length - 1), class: 'rv-mark-label', 'text-anchor': right ? 'end' : 'start' }, g);
      lines.forEach((line, i) => {
        svg('tspan', { x, dy: i ? 16 : 0 }, text).textContent = line;
      });
    }
  }
}

// ------------------------------------------------------------- interaction

/**
 * Mouse handling on a viewport. `vp` is the reading view's Viewport; `tool()`
 * returns the left button's tool ('wl', 'zoom', 'pan', 'length', 'angle',
 * 'roi'). Right drag zooms, middle drag (or Shift + left) pans, the wheel
 * scrolls a stack (zooms a single image; Ctrl + wheel always zooms).
 */
export function attach(vp, tool) {
  const el = vp.el;
  let drag = null;
  const local = (e) => {
    const r = el.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  el.addEventListener('contextmenu', (e) => e.preventDefault());

  // Measuring: the last point of `vp.drawing` follows the mouse; a click, or
  // the end of a drag, fixes it, and the measurement is done when it has all
  // its points (so a length is one drag or two clicks).
  const advance = (p) => {
    const m = vp.drawing;
    m.points[m.points.length - 1] = p;
    if (m.points.length >= POINTS[m.type]) vp.commitDrawing();
    else m.points.push(p);
    vp.redrawMarks();
  };

  el.addEventListener('pointerdown', (e) => {
    if (e.button > 2) return;
    vp.activate();
    const [sx, sy] = local(e);
    let mode = e.button === 2 ? 'zoom' : e.button === 1 || e.shiftKey ? 'pan' : tool();
    e.preventDefault();
    el.setPointerCapture(e.pointerId);
    if (MEASURE_TOOLS.includes(mode)) {
      if (!vp.hasImage()) return;
      const p = vp.toImage(sx, sy);
      if (vp.drawing?.type === mode) advance(p);
      else vp.drawing = { type: mode, points: [p, p] };
      mode = 'measure';
    }
    drag = { mode, sx, sy, x: sx, y: sy, moved: false };
  });

  el.addEventListener('pointermove', (e) => {
    const [sx, sy] = local(e);
    if (vp.drawing) {
      vp.drawing.points[vp.drawing.points.length - 1] = vp.toImage(sx, sy);
      vp.redrawMarks();
    }
    if (!drag) return;
    const dx = sx - drag.x;
    const dy = sy - drag.y;
    drag.x = sx;
    drag.y = sy;
    if (Math.hypot(sx - drag.sx, sy - drag.sy) > 3) drag.moved = true;
    if (drag.mode === 'wl') vp.adjustWindow(dx, dy);
    else if (drag.mode === 'zoom') vp.zoom(Math.exp(-dy / 150), drag.sx, drag.sy);
    else if (drag.mode === 'pan') vp.pan(dx, dy);
  });

  const end = (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
    if (d.mode === 'measure' && d.moved && vp.drawing) advance(vp.toImage(...local(e)));
  };
  el.addEventListener('pointerup', end);
  el.addEventListener('pointercancel', end);

  el.addEventListener(
    'wheel',
    (e) => {
      e.preventDefault();
      const [sx, sy] = local(e);
      if (!e.ctrlKey && vp.stackLength() > 1) vp.scroll(Math.sign(e.deltaY));
      else vp.zoom(Math.exp(-e.deltaY / 500), sx, sy);
    },
    { passive: false },
  );
}
