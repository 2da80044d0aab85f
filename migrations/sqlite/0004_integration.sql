-- What EHRs integrate with (docs/integration.md). The PostgreSQL twin uses the
-- same names.

-- The change feed: every create, replace and delete of an instance, in one
-- total order. `seq` is MAX + 1 taken inside the indexing write transaction,
-- which holds the database's one write lock (PostgreSQL: an advisory lock
-- taken just before the insert), so sequence numbers become visible in
-- order, without gaps: a poller at `since=N` never skips a later-committed
-- lower number. Immutable: the triggers below refuse UPDATE and DELETE.
CREATE TABLE change_feed (
    seq                  INTEGER PRIMARY KEY NOT NULL,
    -- create | replace | delete
    kind                 TEXT NOT NULL,
    study_instance_uid   TEXT NOT NULL,
    series_instance_uid  TEXT NOT NULL,
    sop_instance_uid     TEXT NOT NULL,
    patient_id           TEXT,
    time_ms              BIGINT NOT NULL
);
CREATE TRIGGER change_feed_no_update BEFORE UPDATE ON change_feed
BEGIN
    SELECT RAISE(ABORT, 'the change feed is immutable');
END;
CREATE TRIGGER change_feed_no_delete BEFORE DELETE ON change_feed
BEGIN
    SELECT RAISE(ABORT, 'the change feed is immutable');
END;

-- How far each configured webhook has been delivered (the last sequence
-- number its endpoint acknowledged with a 2xx), and which node delivers to
-- it: the holder of an unexpired lease, so that several nodes configured
-- with the same URL send each entry once, in order.
CREATE TABLE webhook_cursors (
    url            TEXT PRIMARY KEY NOT NULL,
    seq            BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    holder         TEXT,
    lease_until    BIGINT NOT NULL DEFAULT 0
);

-- Share links: read-only access to one study, for a chart or a referral
-- letter. The link holds a random secret; the table its SHA-256.
CREATE TABLE share_links (
    id                  TEXT PRIMARY KEY NOT NULL,
    secret_sha256       TEXT NOT NULL,
    study_instance_uid  TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    note                TEXT,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    last_used_at        BIGINT
);
CREATE INDEX share_links_study ON share_links (study_instance_uid);
