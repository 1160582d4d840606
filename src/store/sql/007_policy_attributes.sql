-- 007_policy_attributes: the policy attributes Postfix 3.7 takes that smtptlsd did not (issue 12):
-- servername (SNI: a host name, or hostname / nexthop), tafile (trust anchors at verify/secure),
-- connection_reuse (true/false; NULL = smtp_tls_connection_reuse applies). NULL = not set. The
-- values are validated by the daemon (src/core/policy.c) before they get here.
ALTER TABLE tls_policies
    ADD COLUMN servername text,
    ADD COLUMN tafile text,
    ADD COLUMN connection_reuse boolean;
