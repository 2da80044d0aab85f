//! Byte layout of a DICOM file (placeholder; being written).
