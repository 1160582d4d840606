-- 008_additional_certificate: a second bound certificate, of another key type than the first
-- (RSA beside ECDSA): Postfix serves both from one smtpd_tls_chain_files list and picks by the
-- client's signature algorithms. It needs a first one and is never the same row.
ALTER TABLE settings
    ADD COLUMN additional_certificate_id bigint REFERENCES certificates (id) ON DELETE RESTRICT,
    ADD CONSTRAINT settings_additional_certificate
        CHECK (additional_certificate_id IS NULL
               OR (certificate_id IS NOT NULL AND additional_certificate_id <> certificate_id));

-- A certificate's in_use is true for either binding: a row gets a new version when, and only
-- when, it becomes bound or unbound (moving from one binding to the other changes no in_use).
CREATE OR REPLACE FUNCTION resource_binding_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE certificates SET version = nextval('resource_version')
        WHERE id IN (OLD.certificate_id, OLD.additional_certificate_id,
                     NEW.certificate_id, NEW.additional_certificate_id)
          AND coalesce(id IN (OLD.certificate_id, OLD.additional_certificate_id), false)
              <> coalesce(id IN (NEW.certificate_id, NEW.additional_certificate_id), false);
    RETURN NULL;
END
$$;
DROP TRIGGER settings_binding_version ON settings;
CREATE TRIGGER settings_binding_version AFTER UPDATE OF certificate_id, additional_certificate_id
    ON settings FOR EACH ROW
    WHEN (OLD.certificate_id IS DISTINCT FROM NEW.certificate_id
          OR OLD.additional_certificate_id IS DISTINCT FROM NEW.additional_certificate_id)
    EXECUTE FUNCTION resource_binding_version();
