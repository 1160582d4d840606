-- 012_fleet: what each node of a fleet reports beyond its generation, and what is per node.
-- nodes: its Postfix's myhostname (the hostname warnings of a per-node certificate are computed
-- against it), what its verifier last saw its smtpd serve, and a retry asked of it (POST
-- /api/v1/nodes/{name}/retry; the node clears it when it retries).
ALTER TABLE nodes ADD COLUMN myhostname text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN served_fingerprint text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN verified boolean;
ALTER TABLE nodes ADD COLUMN verified_at timestamptz;
ALTER TABLE nodes ADD COLUMN retry_requested boolean NOT NULL DEFAULT false;
-- the generation it last could not apply (a write waiting for the fleet tells failed from pending)
ALTER TABLE nodes ADD COLUMN failed_generation bigint;

-- A node's own certificate binding (each MX has its own hostname): replaces the settings'
-- certificate and additional_certificate on that node only. Gone with its node.
CREATE TABLE node_settings (
    node text PRIMARY KEY REFERENCES nodes (name) ON DELETE CASCADE,
    certificate_id bigint NOT NULL REFERENCES certificates (id) ON DELETE RESTRICT,
    additional_certificate_id bigint REFERENCES certificates (id) ON DELETE RESTRICT,
    version bigint NOT NULL DEFAULT nextval('resource_version'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (additional_certificate_id IS NULL OR additional_certificate_id <> certificate_id)
);
-- its version moves when (and only when) the binding really changes: its ETag, If-Match
CREATE TRIGGER node_settings_row_version BEFORE INSERT OR UPDATE ON node_settings
    FOR EACH ROW EXECUTE FUNCTION resource_row_version();

-- ACME certificates are per node (each scans its own live directory): which nodes have one.
CREATE TABLE certificate_nodes (
    certificate_id bigint NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    node text NOT NULL REFERENCES nodes (name) ON DELETE CASCADE, -- a deleted node holds none
    -- that node's copy (each node renews its own): what its scan found
    sha256_fingerprint text NOT NULL DEFAULT '',
    not_after timestamptz,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (certificate_id, node)
);

-- A certificate's representation shows its nodes and whether a node binds it: its version
-- changes with them (the ETags and the collection's version follow, as for the settings).
CREATE FUNCTION certificate_nodes_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE certificates SET version = nextval('resource_version')
        WHERE id IN (OLD.certificate_id, NEW.certificate_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER certificate_nodes_version AFTER INSERT OR DELETE ON certificate_nodes
    FOR EACH ROW EXECUTE FUNCTION certificate_nodes_version();

CREATE FUNCTION node_settings_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE certificates SET version = nextval('resource_version')
            WHERE id IN (OLD.certificate_id, OLD.additional_certificate_id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE certificates SET version = nextval('resource_version')
            WHERE id IN (NEW.certificate_id, NEW.additional_certificate_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER node_settings_version AFTER INSERT OR UPDATE OR DELETE ON node_settings
    FOR EACH ROW EXECUTE FUNCTION node_settings_version();
