-- Users, API tokens, viewer sessions and the audit log (SQLite dialect; the
-- PostgreSQL twin uses the same names). Timestamps are Unix milliseconds.
-- Never edit once applied: add a new numbered migration instead.

-- Local users of the viewer and the API. password_hash is an Argon2id PHC string.
CREATE TABLE users (
    username       TEXT PRIMARY KEY NOT NULL,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- API tokens for devices and EHRs. The token is `aina_<id>_<secret>`; only the
-- SHA-256 of the secret is kept (the secret is 256 random bits, so a fast hash
-- is enough), and the token is shown once, when created.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    secret_sha256  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    last_used_at   BIGINT
);
CREATE INDEX api_tokens_name ON api_tokens (name);

-- Viewer sessions: the cookie holds a random id, the table its SHA-256.
CREATE TABLE sessions (
    id_sha256      TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL REFERENCES users (username),
    csrf_token     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX sessions_username ON sessions (username);

-- Every read and write of patient data, every login and failed login.
-- Append-only: the triggers below refuse UPDATE and DELETE.
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms        BIGINT NOT NULL,
    -- user name, token name, OIDC subject, calling AE title, or 'anonymous'
    actor          TEXT NOT NULL,
    role           TEXT,
    -- session | token | oidc | dicom | anonymous | cli
    method         TEXT NOT NULL,
    -- the peer's IP address
    source         TEXT NOT NULL,
    -- query | retrieve | render | store | delete | login | login-failed |
    -- logout | user | token | audit
    action         TEXT NOT NULL,
    -- success | refused | failed
    outcome        TEXT NOT NULL,
    -- HTTP status or DIMSE status
    status         BIGINT,
    patient_id     TEXT,
    study_uid      TEXT,
    series_uid     TEXT,
    sop_uid        TEXT,
    -- the request (method and path, query string) or DIMSE operation
    detail         TEXT
);
CREATE INDEX audit_events_time ON audit_events (time_ms);
CREATE INDEX audit_events_actor ON audit_events (actor, time_ms);
CREATE INDEX audit_events_patient ON audit_events (patient_id, time_ms);
CREATE INDEX audit_events_study ON audit_events (study_uid, time_ms);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
