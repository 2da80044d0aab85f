-- Objects of deleted instances (DICOMweb DELETE), kept so that an object a
-- delete could not remove from the store is not taken for an orphan and
-- indexed again by `aina verify --repair`. A key stored again is removed from
-- here by the insert. The SQLite twin uses the same names.
CREATE TABLE deleted_objects (
    object_key     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    deleted_at     BIGINT NOT NULL
);
