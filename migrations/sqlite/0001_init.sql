-- Aina metadata index, SQLite dialect. The PostgreSQL twin in migrations/postgres
-- uses the same table, column and index names (BLOB becomes BYTEA, the
-- autoincrement id an identity column). Never edit this file once applied:
-- add a new numbered migration instead.
--
-- Conventions, so both dialects compare plain stored values:
-- * Search columns are normalised in Rust at ingest: `*_fold` are case-folded
--   (aina_dicomweb::fold), dates are 'YYYYMMDD', times 'HHMMSS[.ffffff]'.
-- * study_date / study_time are NOT NULL with '' for "absent" so the study list
--   order (date desc, time desc, uid) is served by one index with the same NULL
--   placement in both dialects.
-- * Timestamps are Unix milliseconds (BIGINT), set by the application.
-- * Counts and modalities_in_study count current (not superseded) instances only
--   and are recomputed in the insert/remove transaction.

CREATE TABLE studies (
    study_instance_uid            TEXT PRIMARY KEY NOT NULL,
    patient_name                  TEXT,
    -- fold() of the Alphabetic group, trailing empty components removed.
    patient_name_fold             TEXT,
    -- Folded words of all groups and components, as ' w1 w2 ' (fuzzy matching).
    patient_name_words            TEXT,
    patient_id                    TEXT,
    issuer_of_patient_id          TEXT,
    patient_birth_date            TEXT,
    patient_sex                   TEXT,
    study_date                    TEXT NOT NULL DEFAULT '',
    study_time                    TEXT NOT NULL DEFAULT '',
    accession_number              TEXT,
    referring_physician_name      TEXT,
    referring_physician_name_fold TEXT,
    study_id                      TEXT,
    study_description             TEXT,
    timezone_offset_from_utc      TEXT,
    -- Sorted distinct modalities of the study's current series, backslash-joined.
    modalities_in_study           TEXT NOT NULL DEFAULT '',
    number_of_series              BIGINT NOT NULL DEFAULT 0,
    number_of_instances           BIGINT NOT NULL DEFAULT 0,
    -- DICOM JSON (PS3.18 Annex F) of the study- and patient-level attributes.
    attrs_json                    TEXT NOT NULL,
    created_at                    BIGINT NOT NULL,
    updated_at                    BIGINT NOT NULL
);

CREATE INDEX studies_order_idx ON studies (study_date DESC, study_time DESC, study_instance_uid);
CREATE INDEX studies_patient_name_fold_idx ON studies (patient_name_fold);
CREATE INDEX studies_patient_id_idx ON studies (patient_id);
CREATE INDEX studies_accession_number_idx ON studies (accession_number);
CREATE INDEX studies_patient_birth_date_idx ON studies (patient_birth_date);
CREATE INDEX studies_study_id_idx ON studies (study_id);

CREATE TABLE series (
    series_instance_uid                 TEXT PRIMARY KEY NOT NULL,
    study_instance_uid                  TEXT NOT NULL REFERENCES studies (study_instance_uid),
    modality                            TEXT,
    series_number                       BIGINT,
    series_description                  TEXT,
    body_part_examined                  TEXT,
    performed_procedure_step_start_date TEXT,
    performed_procedure_step_start_time TEXT,
    number_of_instances                 BIGINT NOT NULL DEFAULT 0,
    -- DICOM JSON of the series-level attributes.
    attrs_json                          TEXT NOT NULL,
    created_at                          BIGINT NOT NULL,
    updated_at                          BIGINT NOT NULL
);

CREATE INDEX series_study_order_idx ON series (study_instance_uid, series_number, series_instance_uid);
CREATE INDEX series_modality_idx ON series (modality, study_instance_uid);

CREATE TABLE instances (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    sop_instance_uid    TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL REFERENCES series (series_instance_uid),
    study_instance_uid  TEXT NOT NULL REFERENCES studies (study_instance_uid),
    sop_class_uid       TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    instance_number     BIGINT,
    -- Rows / Columns (0028,0010/0011); "rows" is a keyword in both dialects.
    pixel_rows          BIGINT,
    pixel_columns       BIGINT,
    bits_allocated      BIGINT,
    number_of_frames    BIGINT,
    -- SHA-256 of the original file, lowercase hex.
    sha256              TEXT NOT NULL,
    size_bytes          BIGINT NOT NULL,
    stored_bytes        BIGINT NOT NULL,
    object_key          TEXT NOT NULL UNIQUE,
    -- The container's segment table, so one frame is one ranged read.
    container_index     BLOB NOT NULL,
    -- WADO-RS metadata, served verbatim.
    metadata_json       TEXT NOT NULL,
    -- Set when a newer version under the same SOP Instance UID was kept (keep-both).
    superseded_at       BIGINT,
    created_at          BIGINT NOT NULL
);

-- At most one current version per SOP Instance UID; superseded versions are free.
CREATE UNIQUE INDEX instances_current_sop_idx ON instances (sop_instance_uid) WHERE superseded_at IS NULL;
CREATE INDEX instances_sop_idx ON instances (sop_instance_uid);
CREATE INDEX instances_series_order_idx ON instances (series_instance_uid, instance_number, sop_instance_uid);
CREATE INDEX instances_study_idx ON instances (study_instance_uid);
CREATE INDEX instances_sop_class_idx ON instances (sop_class_uid);
