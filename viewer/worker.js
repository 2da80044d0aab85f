// Frame fetching and pixel work, off the main thread: WADO-RS frame requests
// (PS3.18 §10.4, `multipart/related; type="application/octet-stream"`), the
// multipart parsing, masking to Bits Stored, downsampling of images larger
// than the GPU's textures, mip levels, and the histogram behind the automatic
// window. Buffers go back transferred, not copied. The cache, the queue and
// priorities live in loader.js.
//
// Self-contained on purpose (no imports): it must start fast and needs none
// of the page's modules.

const inflight = new Map(); // id → AbortController

self.onmessage = async ({ data: msg }) => {
  if (msg.type === 'abort') {
    inflight.get(msg.id)?.abort();
    inflight.delete(msg.id);
    return;
  }
  const controller = new AbortController();
  inflight.set(msg.id, controller);
  try {
    const res = await get(msg.url, msg.headers, controller.signal);
    const body = new Uint8Array(await res.arrayBuffer());
    const frame = decodeFrame(body, res.headers.get('content-type') ?? '', msg.image);
    reply(msg.id, frame, [...new Set((frame.levels ?? [frame.pixels]).map((p) => p.buffer))]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    self.postMessage({ id: msg.id, ok: false, kind: e.kind ?? 'decode', status: e.status ?? 0, message: e.message });
  } finally {
    inflight.delete(msg.id);
  }
};

function reply(id, result, transfer) {
  self.postMessage({ id, ok: true, ...result }, transfer);
}

class FetchError extends Error {
  constructor(kind, status, message) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

/** Kinds as in dicomweb.js's DicomWebError, so the page words them alike. */
function kindOf(status) {
  if (status === 404 || status === 410) return 'not-found';
  if (status === 400) return 'bad-request';
  // 406: the archive cannot send it uncompressed; 422: it cannot decode it.
  if (status === 406 || status === 415 || status === 422) return 'decode';
  return 'server';
}

async function get(url, headers, signal) {
  let res;
  try {
    const accept = 'multipart/related; type="application/octet-stream"';
    res = await fetch(url, { headers: { ...headers, Accept: accept }, signal, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new FetchError('unreachable', 0, e.message);
  }
  if (!res.ok) {
    const text = (await res.text().catch(() => '')).slice(0, 300);
    throw new FetchError(kindOf(res.status), res.status, text || res.statusText);
  }
  return res;
}

/**
 * The first part of a multipart/related body (or the whole body if it is not
 * multipart): [start, end) into `body`, and the part's Content-Type.
 */
function firstPart(body, contentType) {
  const m = /boundary="?([^";,]+)"?/i.exec(contentType);
  if (!/^multipart\//i.test(contentType) || !m) return { start: 0, end: body.length, type: contentType };
  const delimiter = bytes(`--${m[1]}`);
  const open = indexOf(body, delimiter, 0);
  if (open < 0) throw new FetchError('decode', 0, 'multipart body without its boundary');
  const headersEnd = indexOf(body, bytes('\r\n\r\n'), open);
  if (headersEnd < 0) throw new FetchError('decode', 0, 'multipart part without headers');
  const start = headersEnd + 4;
  // The closing delimiter is at the very end: search only the tail, not
  // megabytes of pixels.
  const next = indexOf(body, bytes(`\r\n--${m[1]}`), Math.max(start, body.length - 256));
  const head = new TextDecoder().decode(body.subarray(open, headersEnd));
  const type = /content-type:\s*([^\r\n;]+)/i.exec(head)?.[1].trim() ?? 'application/octet-stream';
  return { start, end: next < 0 ? body.length : next, type };
}

const bytes = (s) => new TextEncoder().encode(s);

function indexOf(hay, needle, from) {
  const first = needle[0];
  outer: for (let i = hay.indexOf(first, from); i >= 0 && i <= hay.length - needle.length; i = hay.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Native pixels of one frame → typed array ready for the GPU, plus the
 * statistics for the automatic window.
 * `image`: {columns, rows, bitsAllocated, bitsStored, signed, samples,
 * planar, padding, maxTexture}.
 */
function decodeFrame(body, contentType, image) {
  const part = firstPart(body, contentType);
  if (!/application\/octet-stream/i.test(part.type)) {
    throw new FetchError('decode', 0, `the archive sent ${part.type}, not decoded pixels`);
  }
  const { columns, rows, bitsAllocated, samples } = image;
  if (bitsAllocated !== 8 && bitsAllocated !== 16) {
    throw new FetchError('decode', 0, `Bits Allocated ${bitsAllocated} is not supported`);
  }
  const expected = columns * rows * samples * (bitsAllocated / 8);
  if (part.end - part.start < expected) {
    throw new FetchError('decode', 0, `frame has ${part.end - part.start} bytes, ${expected} expected`);
  }
  // A Uint16Array must start on an even offset, which the part rarely does
  // (its headers have any length): move the pixels one byte down in place
  // rather than copy 27 MB, and hand the whole buffer over.
  let offset = part.start;
  if (bitsAllocated === 16 && offset % 2) {
    body.copyWithin(offset - 1, offset, offset + expected);
    offset -= 1;
  }
  if (samples === 3) {
    const rgb = new Uint8Array(body.buffer, offset, expected);
    return { pixels: image.planar ? interleave(rgb, columns * rows) : rgb, width: columns, height: rows, factor: 1 };
  }
  const Array_ = bitsAllocated === 16 ? (image.signed ? Int16Array : Uint16Array) : image.signed ? Int8Array : Uint8Array;
  let pixels = new Array_(body.buffer, offset, columns * rows);
  normalize(pixels, image.bitsStored, image.signed);
  let [width, height, factor] = [columns, rows, 1];
  if (Math.max(columns, rows) > image.maxTexture) {
    factor = Math.ceil(Math.max(columns, rows) / image.maxTexture);
    ({ pixels, width, height } = downsample(pixels, columns, rows, factor));
  }
  return { pixels, levels: mipmaps(pixels, width, height), width, height, factor, stats: autoWindow(pixels, width, height, image) };
}

/**
 * Bits above Bits Stored are not part of the value (old modalities put
 * overlays there): mask them off, or sign-extend from the high bit, once here
 * so that the shader, the histogram and ROI statistics read plain values.
 */
function normalize(pixels, bitsStored, signed) {
  if (bitsStored >= pixels.BYTES_PER_ELEMENT * 8) return;
  const shift = 32 - bitsStored;
  const mask = 2 ** bitsStored - 1;
  if (signed) for (let i = 0; i < pixels.length; i++) pixels[i] = (pixels[i] << shift) >> shift;
  else for (let i = 0; i < pixels.length; i++) pixels[i] &= mask;
}

/**
 * Mip levels for the GPU: level k is level 0 averaged over 2^k × 2^k, each
 * side floor(side / 2^k) as WebGL expects, down to about 512 pixels. A
 * screen pixel then never needs more than 2×2 texels of some level.
 */
function mipmaps(pixels, width, height) {
  const levels = [pixels];
  let [src, w, h] = [pixels, width, height];
  while (Math.max(w, h) > 512 && Math.min(w, h) >= 2) {
    const [nw, nh] = [w >> 1, h >> 1];
    const out = new pixels.constructor(nw * nh);
    for (let y = 0; y < nh; y++) {
      const a = 2 * y * w;
      const b = a + w;
      for (let x = 0; x < nw; x++) {
        out[y * nw + x] = (src[a + 2 * x] + src[a + 2 * x + 1] + src[b + 2 * x] + src[b + 2 * x + 1] + 2) >> 2;
      }
    }
    levels.push(out);
    [src, w, h] = [out, nw, nh];
  }
  return levels;
}

/** Planar (R…G…B…) to interleaved (RGBRGB…), Planar Configuration 1. */
function interleave(planar, n) {
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    out[3 * i] = planar[i];
    out[3 * i + 1] = planar[n + i];
    out[3 * i + 2] = planar[2 * n + i];
  }
  return out;
}

/** Box average by an integer factor, for images wider than the GPU allows. */
function downsample(src, w, h, f) {
  const width = Math.floor(w / f);
  const height = Math.floor(h / f);
  const out = new src.constructor(width * height);
  const n = f * f;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let j = 0; j < f; j++) {
        const row = (y * f + j) * w + x * f;
        for (let i = 0; i < f; i++) sum += src[row + i];
      }
      out[y * width + x] = Math.round(sum / n);
    }
  }
  return { pixels: out, width, height };
}

/**
 * A window from the image itself, in stored values: the 0.5th and 99.5th
 * percentiles of a histogram that leaves out the border (collimator edges),
 * the Pixel Padding Value, and the background — the most common value range
 * when it sits at either end (a mammogram is mostly empty air). Also min/max.
 * About a million pixels on a regular grid are plenty for percentiles and
 * keep this to a few milliseconds on a 4096×3328 mammogram.
 */
function autoWindow(pixels, width, height, { padding }) {
  const step = Math.max(1, Math.floor(Math.sqrt((width * height) / 1e6)));
  const x0 = Math.floor(width * 0.02);
  const y0 = Math.floor(height * 0.02);
  const sample = new Int32Array(Math.ceil((width - 2 * x0) / step) * Math.ceil((height - 2 * y0) / step));
  let n = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let y = y0; y < height - y0; y += step) {
    for (let i = y * width + x0, end = y * width + width - x0; i < end; i += step) {
      const v = pixels[i];
      if (v === padding) continue;
      sample[n++] = v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (n === 0) return null;
  const bins = Math.min(4096, max - min + 1);
  const scale = (bins - 1) / Math.max(1, max - min);
  const hist = new Uint32Array(bins);
  for (let k = 0; k < n; k++) hist[Math.round((sample[k] - min) * scale)]++;
  let total = n;
  let mode = 0;
  for (let b = 1; b < bins; b++) if (hist[b] > hist[mode]) mode = b;
  if (hist[mode] > total * 0.02 && (mode < bins * 0.2 || mode > bins * 0.8)) {
    // Drop the background peak down to its tails (1% of the peak).
    const floor = hist[mode] * 0.01;
    let lo = mode;
    let hi = mode;
    while (lo > 0 && hist[lo - 1] > floor) lo--;
    while (hi < bins - 1 && hist[hi + 1] > floor) hi++;
    for (let b = lo; b <= hi; b++) {
      total -= hist[b];
      hist[b] = 0;
    }
  }
  const percentile = (p) => {
    let acc = 0;
    const target = total * p;
    for (let b = 0; b < bins; b++) {
      acc += hist[b];
      if (acc > target) return min + b / scale;
    }
    return max;
  };
  const low = total > 0 ? percentile(0.005) : min;
  const high = total > 0 ? percentile(0.995) : max;
  return { min, max, low, high: Math.max(high, low + 1) };
}
