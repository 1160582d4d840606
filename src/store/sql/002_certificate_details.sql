-- 002_certificate_details: what the API shows of a certificate, computed once when it is imported
-- or scanned (parsing PEM on every list request would be wasted work), and searchable for the
-- console's autocomplete.
ALTER TABLE certificates
    ADD COLUMN subject text NOT NULL DEFAULT '',
    ADD COLUMN dns_names text[] NOT NULL DEFAULT '{}',
    ADD COLUMN info jsonb,
    ADD COLUMN chain_verified boolean,
    ADD COLUMN missing boolean NOT NULL DEFAULT false;

-- ACME and system rows point at files; imported rows carry their PEM.
ALTER TABLE certificates ADD CONSTRAINT certificates_imported_has_pem
    CHECK (type <> 'imported' OR (certificate_pem IS NOT NULL AND private_key_pem IS NOT NULL))
    NOT VALID;
