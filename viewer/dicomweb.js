// A DICOMweb (PS3.18) client for the viewer: QIDO-RS searches, WADO-RS
// metadata and frames, and URLs of rendered images and thumbnails. It uses
// only the standard API, so the viewer works against any conformant archive;
// no UI here (errors carry a kind, the UI words them).

/**
 * A failed request, classified by what the user can be told:
 * 'unreachable' (no answer at all), 'not-found', 'bad-request', 'server'
 * (5xx) or 'decode' (the archive holds the image but cannot decode it).
 * `message` is the archive's own text/plain explanation when it gave one.
 */
export class DicomWebError extends Error {
  constructor(kind, status, message) {
    super(message);
    this.name = 'DicomWebError';
    this.kind = kind;
    this.status = status;
  }
}

const DICOM_JSON = 'application/dicom+json';

/**
 * The attributes the study list shows, asked for explicitly: some are not in
 * PS3.18 Table 6.7.1-2's default set (StudyDescription) and archives differ
 * in the rest.
 */
const STUDY_FIELDS = [
  '00080020', // StudyDate
  '00080030', // StudyTime
  '00080050', // AccessionNumber
  '00080061', // ModalitiesInStudy
  '00081030', // StudyDescription
  '00100010', // PatientName
  '00100020', // PatientID
  '00100030', // PatientBirthDate
  '00100040', // PatientSex
  '0020000D', // StudyInstanceUID
  '00201206', // NumberOfStudyRelatedSeries
  '00201208', // NumberOfStudyRelatedInstances
];

const SERIES_FIELDS = [
  '00080021', // SeriesDate
  '00080031', // SeriesTime
  '00080060', // Modality
  '0008103E', // SeriesDescription
  '00180015', // BodyPartExamined
  '0020000E', // SeriesInstanceUID
  '00200011', // SeriesNumber
  '00201209', // NumberOfSeriesRelatedInstances
];

function kindOf(status) {
  if (status === 404 || status === 410) return 'not-found';
  if (status === 422) return 'decode';
  if (status >= 500) return 'server';
  return 'bad-request';
}

export class DicomWeb {
  /** @param {string} root the DICOMweb root, e.g. '/dicomweb' or 'https://pacs/dicomweb' */
  constructor(root = '/dicomweb') {
    this.root = root.replace(/\/+$/, '');
  }

  /**
   * QIDO-RS study search (PS3.18 §10.6). `query` maps attribute keywords or
   * tags to matching values; empty values are left out. `fuzzy` asks for
   * fuzzy matching of person names.
   * @returns {Promise<object[]>} DICOM JSON objects
   */
  async searchStudies(query = {}, { limit, offset, fuzzy } = {}) {
    const params = new URLSearchParams();
    for (const [key, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.append(key, v);
    }
    params.set('includefield', STUDY_FIELDS.join(','));
    if (fuzzy) params.set('fuzzymatching', 'true');
    if (limit !== undefined) params.set('limit', limit);
    if (offset) params.set('offset', offset);
    return this.#json(`/studies?${params}`);
  }

  /** QIDO-RS: the series of a study. */
  async searchSeries(studyUID) {
    return this.#json(`/studies/${uid(studyUID)}/series?includefield=${SERIES_FIELDS.join(',')}`);
  }

  /** WADO-RS: metadata of every instance of a study (one object each). */
  async studyMetadata(studyUID) {
    return this.#json(`/studies/${uid(studyUID)}/metadata`);
  }

  /** WADO-RS: metadata of every instance of a series. */
  async seriesMetadata(studyUID, seriesUID) {
    return this.#json(`/studies/${uid(studyUID)}/series/${uid(seriesUID)}/metadata`);
  }

  /**
   * WADO-RS: one frame's native pixels (little endian, uncompressed). Asked as
   * `application/octet-stream` without `transfer-syntax=*`, so that an
   * archive holding a compressed frame decodes it (PS3.18 §8.7.3.5.2).
   * A 406 here means the archive cannot hand out the frame decoded, which
   * the user sees as an image that cannot be decoded.
   * @returns {Promise<ArrayBuffer>}
   */
  async frame(studyUID, seriesUID, sopUID, frame, { signal } = {}) {
    const url = `${this.#instance(studyUID, seriesUID, sopUID)}/frames/${frame}`;
    let res;
    try {
      res = await this.#fetch(url, 'multipart/related; type="application/octet-stream"', signal);
    } catch (e) {
      if (e instanceof DicomWebError && e.status === 406) throw new DicomWebError('decode', 406, e.message);
      throw e;
    }
    const type = res.headers.get('content-type') ?? '';
    const body = new Uint8Array(await res.arrayBuffer());
    return firstPart(body, type);
  }

  /**
   * URL of a rendered frame (PS3.18 §10.4.1.1.3). `viewport`: [width,
   * height]; `window`: [center, width] in modality units.
   */
  renderedUrl(studyUID, seriesUID, sopUID, { frame = 1, viewport, window } = {}) {
    const params = [];
    if (viewport) params.push(`viewport=${[viewport].flat().join(',')}`);
    if (window) params.push(`window=${[window].flat().join(',')}`);
    const query = params.length ? `?${params.join('&')}` : '';
    return `${this.root}${this.#instance(studyUID, seriesUID, sopUID)}/frames/${frame}/rendered${query}`;
  }

  /** URL of the thumbnail (PS3.18 §10.4.1.1.4, Sup 203) of a study, series or instance. */
  thumbnailUrl(studyUID, seriesUID = null, sopUID = null) {
    let path = `/studies/${uid(studyUID)}`;
    if (seriesUID) path += `/series/${uid(seriesUID)}`;
    if (seriesUID && sopUID) path += `/instances/${uid(sopUID)}`;
    return `${this.root}${path}/thumbnail`;
  }

  #instance(studyUID, seriesUID, sopUID) {
    return `/studies/${uid(studyUID)}/series/${uid(seriesUID)}/instances/${uid(sopUID)}`;
  }

  async #json(path) {
    const res = await this.#fetch(path, DICOM_JSON);
    // QIDO may answer 204 for "no match" (PS3.18 §10.6.3.2).
    if (res.status === 204) return [];
    const text = await res.text();
    if (!text.trim()) return [];
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new DicomWebError('server', res.status, `the archive's answer is not DICOM JSON: ${e.message}`);
    }
  }

  async #fetch(path, accept, signal) {
    let res;
    try {
      res = await fetch(`${this.root}${path}`, { headers: { Accept: accept }, signal });
    } catch (e) {
      // Aborts are the caller's own doing, not a fault to report.
      if (e.name === 'AbortError') throw e;
      throw new DicomWebError('unreachable', 0, e.message);
    }
    if (res.status === 401) {
      // Signed out (session ended or never begun): sign in, then come back here.
      signIn();
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new DicomWebError(kindOf(res.status), res.status, text.trim().slice(0, 500) || res.statusText);
    }
    return res;
  }
}

let signingIn = false;

/** Goes to the sign-in page, which returns to the current page afterwards. */
export function signIn() {
  // Several requests fail with 401 at once (who am I, the list, frames): one
  // navigation, not a later one aborting the first.
  if (signingIn) return;
  signingIn = true;
  // A share link has no one to sign in: its page says the link has ended.
  if ('shared' in document.body.dataset) {
    location.assign('/login?shared=1');
    return;
  }
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

function uid(u) {
  return encodeURIComponent(u);
}

const encoder = new TextEncoder();

/**
 * The body of the first part of a multipart/related response (or the whole
 * body when the archive answered with a single part directly), as its own
 * ArrayBuffer.
 */
function firstPart(body, contentType) {
  const boundary = /boundary="?([^";,]+)"?/i.exec(contentType)?.[1];
  if (!/^multipart\//i.test(contentType) || !boundary) return body.slice().buffer;
  const open = indexOf(body, encoder.encode(`--${boundary}`), 0);
  const headersEnd = open < 0 ? -1 : indexOf(body, encoder.encode('\r\n\r\n'), open);
  if (headersEnd < 0) throw new DicomWebError('decode', 0, 'the multipart answer has no complete part');
  const start = headersEnd + 4;
  const close = indexOf(body, encoder.encode(`\r\n--${boundary}`), start);
  return body.slice(start, close < 0 ? body.length : close).buffer;
}

function indexOf(hay, needle, from) {
  for (let i = hay.indexOf(needle[0], from); i >= 0 && i <= hay.length - needle.length; i = hay.indexOf(needle[0], i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/** The first value of attribute `tag` ("GGGGEEEE"), or undefined. */
export function value(json, tag) {
  return json?.[tag]?.Value?.[0];
}

/** All values of attribute `tag` (an empty array when absent). */
export function values(json, tag) {
  return json?.[tag]?.Value ?? [];
}

/**
 * A person name for display: the Alphabetic group (else Ideographic, else
 * Phonetic), components in reading order ("Иванов Сергей Петрович" from
 * "Иванов^Сергей^Петрович"). The archive sends DICOM JSON in UTF-8 whatever
 * the file's Specific Character Set was (ISO_IR 144, ISO_IR 192, …).
 */
export function personName(json, tag) {
  const v = value(json, tag);
  const name = typeof v === 'string' ? v : (v?.Alphabetic ?? v?.Ideographic ?? v?.Phonetic ?? '');
  const [family, given, middle, prefix, suffix] = name.split('^').map((s) => s.trim());
  return [prefix, family, given, middle].filter(Boolean).join(' ') + (suffix ? `, ${suffix}` : '');
}

/** DA "YYYYMMDD" as "DD.MM.YYYY" (the convention in Kazakhstan); anything else as given. */
export function formatDate(da) {
  const m = /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(String(da ?? '').trim());
  return m ? `${m[3]}.${m[2]}.${m[1]}` : String(da ?? '');
}

/** TM "HHMMSS.FFFFFF" (or "HH:MM:SS") as "HH:MM"; anything else as given. */
export function formatTime(tm) {
  const m = /^(\d{2}):?(\d{2})?/.exec(String(tm ?? '').trim());
  return m ? `${m[1]}:${m[2] ?? '00'}` : String(tm ?? '');
}
