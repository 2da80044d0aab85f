-- What EHRs integrate with (docs/integration.md). The SQLite twin uses the
-- same names.

-- The change feed: every create, replace and delete of an instance, in one
-- total order. `seq` is MAX + 1 taken inside the indexing write transaction
-- under one advisory lock held to commit, so sequence numbers become visible
-- in order and without gaps, whichever node wrote them: a poller at
-- `since=N` never skips a later-committed lower number. Immutable: the
-- triggers below refuse UPDATE, DELETE and TRUNCATE.
CREATE TABLE change_feed (
    seq                  BIGINT PRIMARY KEY NOT NULL,
    -- create | replace | delete
    kind                 TEXT COLLATE "C" NOT NULL,
    study_instance_uid   TEXT COLLATE "C" NOT NULL,
    series_instance_uid  TEXT COLLATE "C" NOT NULL,
    sop_instance_uid     TEXT COLLATE "C" NOT NULL,
    patient_id           TEXT COLLATE "C",
    time_ms              BIGINT NOT NULL
);
CREATE FUNCTION change_feed_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the change feed is immutable';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER change_feed_no_update BEFORE UPDATE OR DELETE ON change_feed
    FOR EACH ROW EXECUTE FUNCTION change_feed_immutable();
CREATE TRIGGER change_feed_no_truncate BEFORE TRUNCATE ON change_feed
    FOR EACH STATEMENT EXECUTE FUNCTION change_feed_immutable();

-- How far each configured webhook has been delivered (the last sequence
-- number its endpoint acknowledged with a 2xx), and which node delivers to
-- it: the holder of an unexpired lease, so that several nodes configured
-- with the same URL send each entry once, in order.
CREATE TABLE webhook_cursors (
    url            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    seq            BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    holder         TEXT COLLATE "C",
    lease_until    BIGINT NOT NULL DEFAULT 0
);

-- Share links: read-only access to one study, for a chart or a referral
-- letter. The link holds a random secret; the table its SHA-256.
CREATE TABLE share_links (
    id                  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    secret_sha256       TEXT COLLATE "C" NOT NULL,
    study_instance_uid  TEXT COLLATE "C" NOT NULL,
    created_by          TEXT NOT NULL,
    note                TEXT,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    revoked_at          BIGINT,
    last_used_at        BIGINT
);
CREATE INDEX share_links_study ON share_links (study_instance_uid);
