-- 006_outbound_ca: the trust anchors of the smtp client's verify and secure levels, rendered as
-- smtp_tls_CAfile: 'system' (the daemon's system_ca_file) or the absolute path of a PEM file. The
-- API checks the path byte by byte (src/core/settings.c outbound_ca_path_is_valid); the same
-- alphabet here, so that no row can carry a character main.cf would read otherwise.
ALTER TABLE settings ADD COLUMN outbound_ca text NOT NULL DEFAULT 'system'
    CHECK (outbound_ca = 'system' OR (outbound_ca ~ '^(/[A-Za-z0-9._+@-]+)+$'
                                      AND outbound_ca !~ '/\.\.?(/|$)'
                                      AND octet_length(outbound_ca) <= 1024));
-- /status warns when verify or secure policies exist and the smtp client has no trust anchors:
-- whether any exists, at once among a million rows.
CREATE INDEX tls_policies_need_trust ON tls_policies (destination)
    WHERE enabled AND level IN ('verify', 'secure');
-- ... and whether a fingerprint policy holds a digest that smtp_tls_fingerprint_digest (edited
-- after it was written) cannot produce: the fingerprint rows alone are read.
CREATE INDEX tls_policies_fingerprint ON tls_policies (destination)
    WHERE enabled AND level = 'fingerprint';
