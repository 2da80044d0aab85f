// DICOM tag browser: every attribute of the shown instance's metadata (DICOM
// JSON, PS3.18 F.2) as tag, keyword, VR and value, sequences expandable, with
// a filter over all four. Keywords come from a compact dictionary of the
// attributes a radiologist or a support engineer looks for; others show the
// tag alone (private tags are marked as such).

import { t } from './i18n.js';

// PS3.6 keywords of common attributes.
const KEYWORDS = {
  '00020010': 'TransferSyntaxUID',
  '00080005': 'SpecificCharacterSet', '00080008': 'ImageType', '00080012': 'InstanceCreationDate',
  '00080013': 'InstanceCreationTime', '00080016': 'SOPClassUID', '00080018': 'SOPInstanceUID',
  '00080020': 'StudyDate', '00080021': 'SeriesDate', '00080022': 'AcquisitionDate', '00080023': 'ContentDate',
  '00080030': 'StudyTime', '00080031': 'SeriesTime', '00080032': 'AcquisitionTime', '00080033': 'ContentTime',
  '00080050': 'AccessionNumber', '00080056': 'InstanceAvailability', '00080060': 'Modality',
  '00080061': 'ModalitiesInStudy', '00080068': 'PresentationIntentType', '00080070': 'Manufacturer',
  '00080080': 'InstitutionName', '00080090': 'ReferringPhysicianName', '00080100': 'CodeValue',
  '00080102': 'CodingSchemeDesignator', '00080104': 'CodeMeaning', '00081010': 'StationName',
  '00081030': 'StudyDescription', '0008103E': 'SeriesDescription', '00081040': 'InstitutionalDepartmentName',
  '00081050': 'PerformingPhysicianName', '00081090': 'ManufacturerModelName', '00081190': 'RetrieveURL',
  '00082218': 'AnatomicRegionSequence', '00083002': 'AvailableTransferSyntaxUID',
  '00100010': 'PatientName', '00100020': 'PatientID', '00100030': 'PatientBirthDate', '00100040': 'PatientSex',
  '00101010': 'PatientAge', '00101020': 'PatientSize', '00101030': 'PatientWeight',
  '00180015': 'BodyPartExamined', '00180050': 'SliceThickness', '00180060': 'KVP', '00180088': 'SpacingBetweenSlices',
  '00181000': 'DeviceSerialNumber', '00181020': 'SoftwareVersions', '00181110': 'DistanceSourceToDetector',
  '00181111': 'DistanceSourceToPatient', '00181114': 'EstimatedRadiographicMagnificationFactor',
  '00181150': 'ExposureTime', '00181151': 'XRayTubeCurrent', '00181152': 'Exposure', '00181153': 'ExposureInuAs',
  '00181164': 'ImagerPixelSpacing', '00181191': 'AnodeTargetMaterial', '001811A0': 'BodyPartThickness',
  '001811A2': 'CompressionForce', '00181508': 'PositionerType', '00185100': 'PatientPosition',
  '00185101': 'ViewPosition', '00187004': 'DetectorType', '00187050': 'FilterMaterial',
  '0020000D': 'StudyInstanceUID', '0020000E': 'SeriesInstanceUID', '00200010': 'StudyID',
  '00200011': 'SeriesNumber', '00200012': 'AcquisitionNumber', '00200013': 'InstanceNumber',
  '00200020': 'PatientOrientation', '00200032': 'ImagePositionPatient', '00200037': 'ImageOrientationPatient',
  '00200052': 'FrameOfReferenceUID', '00200060': 'Laterality', '00200062': 'ImageLaterality',
  '00201041': 'SliceLocation', '00201206': 'NumberOfStudyRelatedSeries', '00201208': 'NumberOfStudyRelatedInstances',
  '00280002': 'SamplesPerPixel', '00280004': 'PhotometricInterpretation', '00280006': 'PlanarConfiguration',
  '00280008': 'NumberOfFrames', '00280010': 'Rows', '00280011': 'Columns', '00280030': 'PixelSpacing',
  '00280100': 'BitsAllocated', '00280101': 'BitsStored', '00280102': 'HighBit', '00280103': 'PixelRepresentation',
  '00280120': 'PixelPaddingValue', '00280301': 'BurnedInAnnotation', '00281040': 'PixelIntensityRelationship',
  '00281041': 'PixelIntensityRelationshipSign', '00281050': 'WindowCenter', '00281051': 'WindowWidth',
  '00281052': 'RescaleIntercept', '00281053': 'RescaleSlope', '00281054': 'RescaleType',
  '00281055': 'WindowCenterWidthExplanation', '00281056': 'VOILUTFunction', '00282110': 'LossyImageCompression',
  '00283010': 'VOILUTSequence', '00289110': 'PixelMeasuresSequence', '00289132': 'FrameVOILUTSequence',
  '00289145': 'PixelValueTransformationSequence', '00400316': 'OrganDose', '00400318': 'OrganExposed',
  '00400555': 'AcquisitionContextSequence', '00540220': 'ViewCodeSequence', '00540222': 'ViewModifierCodeSequence',
  '20500020': 'PresentationLUTShape', '52009229': 'SharedFunctionalGroupsSequence',
  '52009230': 'PerFrameFunctionalGroupsSequence', '7FE00010': 'PixelData',
};

const keyword = (tag) => KEYWORDS[tag] ?? '';

const formatTag = (tag) => `(${tag.slice(0, 4)},${tag.slice(4)})`;

function formatValue(element) {
  if (element.BulkDataURI) return t('tags.bulk');
  if (element.InlineBinary) return t('tags.binary', { n: Math.floor((element.InlineBinary.length * 3) / 4) });
  const vals = element.Value ?? [];
  return vals.map((v) => (v && typeof v === 'object' ? [v.Alphabetic, v.Ideographic, v.Phonetic].filter(Boolean).join(' = ') : String(v))).join('\\');
}

/**
 * The tag browser panel. Returns the element; call `update(instance)` on it
 * when another image becomes active, `relabel()` when the language changes.
 */
export function tagBrowser() {
  const panel = document.createElement('section');
  panel.className = 'rv-tags';
  const title = document.createElement('h2');
  const filter = document.createElement('input');
  filter.type = 'search';
  filter.className = 'rv-tags-filter';
  const list = document.createElement('div');
  list.className = 'rv-tags-list';
  panel.append(title, filter, list);
  let current = null;

  const render = () => {
    title.textContent = t('tags.title');
    filter.placeholder = t('tags.filter');
    filter.setAttribute('aria-label', t('tags.filter'));
    list.replaceChildren();
    if (!current) return;
    const needle = filter.value.trim().toLowerCase();
    list.append(dataset(current, needle, 0));
  };
  filter.addEventListener('input', render);
  panel.relabel = render;
  panel.update = (instance) => {
    current = instance;
    render();
  };
  render();
  return panel;
}

/** One data set as rows; sequences become <details> whose items nest. */
function dataset(json, needle, depth) {
  const box = document.createElement('div');
  box.className = 'rv-tags-set';
  for (const tag of Object.keys(json).sort()) {
    const el = json[tag];
    const kw = keyword(tag) || (parseInt(tag.slice(3, 4), 16) % 2 === 1 ? t('tags.private') : '');
    const text = el.vr === 'SQ' ? '' : formatValue(el);
    const own = [formatTag(tag), tag, kw, el.vr, text].join(' ').toLowerCase();
    if (el.vr === 'SQ') {
      const items = (el.Value ?? []).map((item) => dataset(item, own.includes(needle) ? '' : needle, depth + 1));
      const matching = items.filter((i) => i.childElementCount > 0);
      if (needle && !own.includes(needle) && matching.length === 0) continue;
      const details = document.createElement('details');
      // Open a sequence when the filter found something inside it.
      details.open = Boolean(needle) && !own.includes(needle);
      const summary = document.createElement('summary');
      summary.append(row(tag, kw, 'SQ', t('tags.items', { count: items.length })));
      details.append(summary);
      items.forEach((item, i) => {
        const head = document.createElement('div');
        head.className = 'rv-tags-item';
        head.textContent = t('tags.item', { n: i + 1 });
        details.append(head, item);
      });
      box.append(details);
    } else if (!needle || own.includes(needle)) {
      box.append(row(tag, kw, el.vr, text));
    }
  }
  return box;
}

function row(tag, kw, vr, text) {
  const r = document.createElement('div');
  r.className = 'rv-tags-row';
  r.dataset.tag = tag;
  for (const [cls, s] of [['tag', formatTag(tag)], ['kw', kw], ['vr', vr ?? ''], ['val', text]]) {
    const c = document.createElement('span');
    c.className = `rv-tags-${cls}`;
    c.textContent = s;
    if (cls === 'val') c.title = s;
    r.append(c);
  }
  return r;
}
