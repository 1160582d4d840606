-- 013_policy_changes: what changed in tls_policies since a version, so that a node's policy map
-- takes only the rows a generation changed instead of being rebuilt (apply/plan.c, stage.c).
-- A row carries the version of its last change (003); a row deleted leaves its destination here
-- with a version of its own, drawn from the same sequence. Writers are serialised on the
-- generation row, so versions grow in commit order: "version > V" is everything committed after
-- a map rendered at V. Old tombstones are pruned (store_policies_prune_tombstones); a map older
-- than the newest pruned one is rebuilt whole.
CREATE INDEX tls_policies_version ON tls_policies (version);

CREATE TABLE tls_policy_tombstones (
    destination text NOT NULL,
    version bigint NOT NULL DEFAULT nextval('resource_version'),
    deleted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tls_policy_tombstones_version ON tls_policy_tombstones (version);

ALTER TABLE config_state ADD COLUMN tombstones_pruned bigint NOT NULL DEFAULT 0;

-- Per statement, with its rows: a bulk replace deleting 100,000 rows is one INSERT here.
CREATE FUNCTION tls_policy_tombstones_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tls_policy_tombstones (destination) SELECT destination FROM old_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER tls_policies_tombstone_deleted AFTER DELETE ON tls_policies
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tls_policy_tombstones_deleted();

-- No write renames a destination today; should one, the old name is gone from the map too.
CREATE FUNCTION tls_policy_tombstone_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tls_policy_tombstones (destination) VALUES (OLD.destination);
    RETURN NULL;
END
$$;
CREATE TRIGGER tls_policies_tombstone_renamed AFTER UPDATE ON tls_policies
    FOR EACH ROW WHEN (OLD.destination IS DISTINCT FROM NEW.destination)
    EXECUTE FUNCTION tls_policy_tombstone_renamed();
