"""Drives Aina with the independent `dicomweb-client` Python library.

Usage: python3 dicomweb_client_check.py DICOMWEB_ROOT FILE...
Stores the files with STOW-RS, then searches, retrieves, reads metadata and a
frame the way the library's users do. Exits non-zero with a message on any
mismatch.
"""
import hashlib
import io
import sys

import pydicom
from dicomweb_client.api import DICOMwebClient


def main() -> None:
    root, files = sys.argv[1], sys.argv[2:]
    client = DICOMwebClient(url=root)
    datasets = [pydicom.dcmread(f) for f in files]
    originals = {ds.SOPInstanceUID: open(f, "rb").read() for ds, f in zip(datasets, files)}

    result = client.store_instances(datasets=datasets)
    stored = result.ReferencedSOPSequence
    assert len(stored) == len(datasets), f"stored {len(stored)} of {len(datasets)}"

    study = datasets[0].StudyInstanceUID
    found = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert len(found) == 1, found
    name = pydicom.Dataset.from_json(found[0]).PatientName
    assert str(name) == str(datasets[0].PatientName), (name, datasets[0].PatientName)

    series = client.search_for_series(study_instance_uid=study)
    assert len(series) >= 1
    instances = client.search_for_instances(study_instance_uid=study)
    assert len(instances) == sum(1 for d in datasets if d.StudyInstanceUID == study)

    # Retrieve as stored (transfer-syntax=*) and compare the data sets.
    retrieved = client.retrieve_study(
        study, media_types=(("application/dicom", "*"),)
    )
    assert len(retrieved) == len(instances)
    for ds in retrieved:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        original = pydicom.dcmread(io.BytesIO(originals[ds.SOPInstanceUID]))
        assert ds.PixelData == original.PixelData, ds.SOPInstanceUID

    metadata = client.retrieve_study_metadata(study)
    assert len(metadata) == len(instances)
    meta = pydicom.Dataset.from_json(metadata[0], lambda uri: b"")
    assert meta.SOPInstanceUID in originals

    ds0 = datasets[0]
    frames = client.retrieve_instance_frames(
        study, ds0.SeriesInstanceUID, ds0.SOPInstanceUID, frame_numbers=[1],
        media_types=(("application/octet-stream", "*"),),
    )
    frame_len = ds0.Rows * ds0.Columns * ds0.SamplesPerPixel * ds0.BitsAllocated // 8
    assert frames[0] == ds0.PixelData[:frame_len], "frame 1 differs from the pixel data"

    single = client.retrieve_instance(
        study, ds0.SeriesInstanceUID, ds0.SOPInstanceUID,
        media_types=(("application/dicom", "*"),),
    )
    assert single.SOPInstanceUID == ds0.SOPInstanceUID
    print("dicomweb-client: store, search, retrieve, metadata, frames OK;",
          hashlib.sha256(originals[ds0.SOPInstanceUID]).hexdigest()[:12])


if __name__ == "__main__":
    main()
