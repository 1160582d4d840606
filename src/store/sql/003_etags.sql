-- 003_etags: versions for ETags and If-Match. Every row of tls_policies and certificates carries
-- a version, and config_state one per collection, all drawn from ONE sequence: a tag is never
-- issued twice, not even to a row deleted and created again under the same name. Triggers keep
-- them, so no write path can forget to: a row gets a new version when it is inserted and when an
-- UPDATE really changes it (an UPDATE that changes nothing leaves the row, updated_at included,
-- as it was); a collection gets a new version when a statement inserted, deleted or changed one
-- of its rows.
CREATE SEQUENCE resource_version;

ALTER TABLE config_state
    ADD COLUMN policies_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN certificates_version bigint NOT NULL DEFAULT 0;
UPDATE config_state SET policies_version = nextval('resource_version'),
                        certificates_version = nextval('resource_version');

-- Existing rows each get a version of their own (a volatile default is evaluated per row).
ALTER TABLE tls_policies ADD COLUMN version bigint NOT NULL DEFAULT nextval('resource_version');
ALTER TABLE tls_policies ALTER COLUMN version DROP DEFAULT;
ALTER TABLE certificates ADD COLUMN version bigint NOT NULL DEFAULT nextval('resource_version');
ALTER TABLE certificates ALTER COLUMN version DROP DEFAULT;

-- BEFORE INSERT OR UPDATE, per row. An UPDATE that sets version itself asks for a new one (the
-- binding trigger below does: a certificate's in_use changed although its row did not).
CREATE FUNCTION resource_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    forced boolean;
    ts timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := nextval('resource_version');
        RETURN NEW;
    END IF;
    forced := NEW.version IS DISTINCT FROM OLD.version;
    ts := NEW.updated_at;
    NEW.version := OLD.version;
    NEW.updated_at := OLD.updated_at;
    IF forced OR NEW IS DISTINCT FROM OLD THEN
        NEW.version := nextval('resource_version');
        NEW.updated_at := ts;
    END IF;
    RETURN NEW;
END
$$;

-- AFTER INSERT / UPDATE / DELETE, per statement, with the statement's rows (transition tables):
-- TG_ARGV[0] names the config_state column of the collection. Each test is its own statement:
-- a transition table exists only for the events it was declared for.
CREATE FUNCTION resource_collection_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        changed := EXISTS (SELECT 1 FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        changed := EXISTS (SELECT 1 FROM old_rows);
    ELSE
        -- a changed row has a version no row had before the statement
        changed := EXISTS (SELECT 1 FROM new_rows n
                           WHERE NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.version = n.version));
    END IF;
    IF changed THEN
        EXECUTE format('UPDATE config_state SET %I = nextval(''resource_version'')', TG_ARGV[0]);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tls_policies_row_version BEFORE INSERT OR UPDATE ON tls_policies
    FOR EACH ROW EXECUTE FUNCTION resource_row_version();
CREATE TRIGGER tls_policies_inserted AFTER INSERT ON tls_policies
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('policies_version');
CREATE TRIGGER tls_policies_updated AFTER UPDATE ON tls_policies
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('policies_version');
CREATE TRIGGER tls_policies_deleted AFTER DELETE ON tls_policies
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('policies_version');

CREATE TRIGGER certificates_row_version BEFORE INSERT OR UPDATE ON certificates
    FOR EACH ROW EXECUTE FUNCTION resource_row_version();
CREATE TRIGGER certificates_inserted AFTER INSERT ON certificates
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('certificates_version');
CREATE TRIGGER certificates_updated AFTER UPDATE ON certificates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('certificates_version');
CREATE TRIGGER certificates_deleted AFTER DELETE ON certificates
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION resource_collection_version('certificates_version');

-- A certificate's representation shows in_use (whether settings binds it): binding or unbinding
-- one is a change of that certificate (and so of the collection).
CREATE FUNCTION resource_binding_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE certificates SET version = nextval('resource_version')
        WHERE id IN (OLD.certificate_id, NEW.certificate_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER settings_binding_version AFTER UPDATE OF certificate_id ON settings
    FOR EACH ROW WHEN (OLD.certificate_id IS DISTINCT FROM NEW.certificate_id)
    EXECUTE FUNCTION resource_binding_version();
