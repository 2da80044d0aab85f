// Hanging protocols: which image goes in which viewport, and how it is turned.
// Pure functions of the DICOM JSON metadata (PS3.18 F.2), so the rules can be
// read and tested without a browser.
//
// Mammography follows the IHE Mammography Image profile's display rules: the
// four screening views hung R | L with CC above MLO, chest walls facing each
// other, and each view found from ImageLaterality and ViewCodeSequence —
// never from file or instance order, which differs between modalities.

import { value, values } from './dicomweb.js';

const TAG = {
  modality: '00080060',
  seriesUID: '0020000E',
  seriesNumber: '00200011',
  instanceNumber: '00200013',
  sopUID: '00080018',
  frames: '00280008',
  laterality: '00200060',
  imageLaterality: '00200062',
  patientOrientation: '00200020',
  viewPosition: '00185101',
  viewCodeSequence: '00540220',
  codeValue: '00080100',
};

// ViewCodeSequence code values (PS3.16 CID 4014), SNOMED CT and the legacy
// SNOMED-RT (SRT) codes older modalities still send.
const VIEW_CODES = {
  399162004: 'CC', 'R-10242': 'CC',
  399368009: 'MLO', 'R-10226': 'MLO',
  399260004: 'ML', 'R-10224': 'ML',
  399352003: 'LM', 'R-10228': 'LM',
};

/** Laterality of an image: ImageLaterality, else the series' Laterality. */
export function laterality(instance) {
  const l = String(value(instance, TAG.imageLaterality) ?? value(instance, TAG.laterality) ?? '').toUpperCase();
  return l === 'R' || l === 'L' || l === 'B' ? l : '';
}

/** Mammography view ('CC', 'MLO', 'ML', 'LM'…): ViewCodeSequence, else ViewPosition. */
export function view(instance) {
  const item = value(instance, TAG.viewCodeSequence);
  const code = item ? value(item, TAG.codeValue) : undefined;
  if (code && VIEW_CODES[code]) return VIEW_CODES[code];
  return String(value(instance, TAG.viewPosition) ?? '').toUpperCase();
}

const number = (json, tag) => Number(value(json, tag) ?? NaN);

/** Series in display order, each with its instances in order. */
export function groupSeries(instances) {
  const bySeries = new Map();
  for (const inst of instances) {
    const uid = value(inst, TAG.seriesUID);
    if (!bySeries.has(uid)) bySeries.set(uid, { uid, instances: [] });
    bySeries.get(uid).instances.push(inst);
  }
  const byNumber = (tag) => (a, b) => (number(a, tag) || 0) - (number(b, tag) || 0);
  const series = [...bySeries.values()];
  for (const s of series) {
    s.instances.sort(byNumber(TAG.instanceNumber));
    s.first = s.instances[0];
    s.modality = value(s.first, TAG.modality) ?? '';
  }
  return series.sort((a, b) => byNumber(TAG.seriesNumber)(a.first, b.first));
}

/** Every frame of the given instances, in order: what a viewport scrolls through. */
export function stackOf(instances) {
  return instances.flatMap((instance) => {
    const n = Math.max(1, number(instance, TAG.frames) || 1);
    return Array.from({ length: n }, (_, i) => ({ instance, frame: i + 1 }));
  });
}

export const POSITIONS = {
  '1x1': ['center'],
  '1x2': ['left', 'right'],
  '2x2': ['top-left', 'top-right', 'bottom-left', 'bottom-right'],
};

/**
 * The hanging for a study: `{layout, cells}` where each cell is
 * `{stack, position, flipH, flipV, align, study}`.
 * - MG with the four screening views: the IHE mammography 2×2.
 * - Two series (e.g. chest PA + lateral), or one series of two radiographs: 1×2.
 * - Otherwise 1×1 with the first series.
 */
export function hang(series) {
  const all = series.flatMap((s) => s.instances);
  if (all.some((i) => value(i, TAG.modality) === 'MG')) {
    const mammo = mammography([all, all], ['CC', 'MLO'], ['current', 'current']);
    if (mammo) return mammo;
  }
  let stacks;
  if (series.length === 2) stacks = series.map((s) => stackOf(s.instances));
  else if (series.length === 1 && series[0].instances.length === 2 && stackOf(series[0].instances).length === 2) {
    stacks = series[0].instances.map((i) => stackOf([i]));
  } else stacks = [stackOf(series[0]?.instances ?? [])];
  const layout = stacks.length === 2 ? '1x2' : '1x1';
  return { layout, cells: stacks.map((stack, i) => ({ stack, position: POSITIONS[layout][i], study: 'current' })) };
}

/**
 * Two rows of R | L mammograms: row r shows view `rows[r]` taken from the
 * instances `pools[r]` of study `studies[r]`. The screening hanging is RCC
 * top-left, LCC top-right, RMLO bottom-left, LMLO bottom-right. Null if a
 * view is missing.
 */
function mammography(pools, rows, studies) {
  const cells = [];
  for (const [r, wanted] of rows.entries()) {
    for (const side of ['R', 'L']) {
      const found = find(pools[r], side, wanted);
      if (!found) return null;
      cells.push({
        stack: stackOf([found]),
        position: POSITIONS['2x2'][r * 2 + (side === 'R' ? 0 : 1)],
        study: studies[r],
        mammo: true,
        ...chestWall(found, side, wanted),
      });
    }
  }
  return { layout: '2x2', cells };
}

/**
 * Current above prior, one view at a time (`view` 'CC' or 'MLO'): R | L in
 * each row, same orientation rules as the screening hanging.
 */
export function comparison(current, prior, wanted) {
  return mammography([current, prior], [wanted, wanted], ['current', 'prior']);
}

/** The last image of that laterality and view (a retake replaces the first). */
function find(instances, side, wanted) {
  const matches = instances.filter((i) => laterality(i) === side && view(i) === wanted);
  return matches[matches.length - 1];
}

/**
 * How to turn a mammogram so that its chest wall faces the other breast:
 * R views have the chest wall on the screen's right (they hang on the left),
 * L views on the left. PatientOrientation's first value is the direction of
 * increasing column: posterior (P, towards the chest wall) for a correctly
 * oriented R view, anterior (A) for an L view; otherwise flip horizontally.
 * Vertically: MLO has the head (H) up, i.e. the column direction is F;
 * CC has the lateral side up, i.e. the column direction is medial (the
 * patient's L for the right breast, R for the left). `align` pins the image
 * to its chest-wall edge of the viewport.
 */
function chestWall(instance, side, wanted) {
  const [row = '', column = ''] = values(instance, TAG.patientOrientation).map(String);
  const towardsWall = side === 'R' ? 'P' : 'A';
  const awayFromWall = side === 'R' ? 'A' : 'P';
  const flipH = row.includes(awayFromWall) && !row.includes(towardsWall);
  let flipV = false;
  if (wanted === 'MLO' || wanted === 'ML' || wanted === 'LM') flipV = column.includes('H');
  else if (wanted === 'CC') flipV = column.includes(side === 'R' ? 'R' : 'L');
  return { flipH, flipV, align: side === 'R' ? 'right' : 'left', laterality: side, view: wanted };
}
