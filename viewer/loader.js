// Frame loading for the reading view: a priority queue of requests run a few
// at a time by worker.js, and a least-recently-used cache of decoded frames
// bounded by bytes. The main thread only routes messages; fetching, multipart
// parsing and histograms happen in the workers. (Previews are plain <img>
// elements: the browser fetches and decodes them.)

import { DicomWebError, signIn } from './dicomweb.js';

/** Frames kept decoded in memory (a 4096×3328 mammogram is 27 MB). */
const CACHE_BYTES = 512 * 1024 * 1024;
/**
 * Frame requests in flight at once. Chromium opens at most 6 HTTP/1.1
 * connections per host: two stay free for the previews and thumbnails.
 */
const PARALLEL = 4;
/**
 * Workers: receiving a body and scanning it take the worker's thread, so
 * with one worker a frame waits for the previous one's mip levels; more than
 * two gain nothing while the frames arrive one after another.
 */
const WORKERS = 2;

export const PRIORITY = { visible: 1, prefetch: 2 };

export class Loader {
  /** @param {{headers?: Record<string,string>}} opts headers for every request (e.g. authorization) */
  constructor({ headers = {} } = {}) {
    this.headers = headers;
    this.workers = Array.from({ length: WORKERS }, () => {
      const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
      w.onmessage = ({ data }) => this.settle(data);
      w.jobs = 0;
      return w;
    });
    this.nextId = 1;
    this.queue = []; // jobs not yet sent, kept sorted by priority
    this.running = new Map(); // id → job
    this.pending = new Map(); // cache key → promise, so a frame is fetched once
    this.cache = new Map(); // key → result; Map order is the LRU order
    this.bytes = 0;
  }

  /**
   * Decoded pixels of one frame.
   * @param {string} key  cache key: the URL, unless decoded differently
   * @param {string} url  WADO-RS frame URL
   * @param {object} image  what worker.js needs to decode it (columns, rows, bits…)
   * @returns {Promise<{pixels, levels, width, height, factor, stats}>}
   */
  frame(key, url, image, priority = PRIORITY.visible) {
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return Promise.resolve(hit);
    }
    return this.request(key, { url, image }, priority);
  }

  /** True if the frame is decoded and in memory. */
  has(key) {
    return this.cache.has(key);
  }

  request(key, msg, priority) {
    const existing = this.pending.get(key);
    if (existing) {
      existing.job.priority = Math.min(existing.job.priority, priority);
      this.sortQueue();
      return existing.promise;
    }
    const job = { id: this.nextId++, msg: { ...msg, headers: this.headers }, priority, key };
    const promise = new Promise((resolve, reject) => Object.assign(job, { resolve, reject }));
    this.pending.set(key, { job, promise });
    this.queue.push(job);
    this.sortQueue();
    // Requests made together (a layout's frames and their prefetches) are
    // sorted together before any is sent.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      queueMicrotask(() => {
        this.pumpQueued = false;
        this.pump();
      });
    }
    return promise;
  }

  sortQueue() {
    // Stable: equal priorities keep their order of request.
    this.queue.sort((a, b) => a.priority - b.priority);
  }

  pump() {
    while (this.running.size < PARALLEL && this.queue.length) {
      const job = this.queue.shift();
      this.running.set(job.id, job);
      job.worker = this.workers.reduce((a, b) => (b.jobs < a.jobs ? b : a));
      job.worker.jobs++;
      job.worker.postMessage({ ...job.msg, id: job.id });
    }
  }

  settle(data) {
    const job = this.running.get(data.id);
    if (!job) return;
    this.running.delete(data.id);
    job.worker.jobs--;
    this.pending.delete(job.key);
    if (data.ok) {
      this.store(job.key, data);
      job.resolve(data);
    } else {
      // The session ended while reading: sign in again, as every other
      // request does (the workers cannot navigate).
      if (data.status === 401) signIn();
      job.reject(new DicomWebError(data.kind, data.status, data.message));
    }
    this.pump();
  }

  store(key, result) {
    result.bytes = (result.levels ?? [result.pixels]).reduce((n, p) => n + p.byteLength, 0);
    this.cache.set(key, result);
    this.bytes += result.bytes;
    for (const [k, v] of this.cache) {
      if (this.bytes <= CACHE_BYTES) break;
      this.cache.delete(k);
      this.bytes -= v.bytes;
    }
  }

  /** Stops everything in flight and queued (another study was opened). */
  abortAll() {
    const abort = new DOMException('aborted', 'AbortError');
    for (const job of this.queue) job.reject(abort);
    for (const job of this.running.values()) {
      job.worker.postMessage({ type: 'abort', id: job.id });
      job.worker.jobs--;
      job.reject(abort);
    }
    this.queue = [];
    this.running.clear();
    this.pending.clear();
  }

  dispose() {
    this.abortAll();
    for (const w of this.workers) w.terminate();
    this.cache.clear();
    this.bytes = 0;
  }
}
