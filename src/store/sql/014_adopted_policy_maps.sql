-- 014_adopted_policy_maps: the administrator's policy maps whose entries were imported into
-- tls_policies (POST /api/v1/import): smtp_tls_policy_maps no longer lists them (plan.c), so that
-- a policy deleted through smtptlsd does not come back from the old file. `spec` is the map's
-- token in main.cf, byte for byte ("hash:/etc/postfix/tls_policy").
CREATE TABLE adopted_policy_maps (
    spec text PRIMARY KEY,
    entries integer NOT NULL,
    actor text NOT NULL,
    adopted_at timestamptz NOT NULL DEFAULT now()
);
