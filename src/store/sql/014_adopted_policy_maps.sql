-- 014_adopted_policy_maps: the administrator's policy maps whose entries were imported into
-- tls_policies (POST /api/v1/import): smtp_tls_policy_maps no longer lists them (plan.c), so that
-- a policy deleted through smtptlsd does not come back from the old file. Per node: an import
-- reads the main.cf and the map files of the node it runs on, and other nodes keep theirs.
-- `spec` is the map's token in main.cf, byte for byte ("hash:/etc/postfix/tls_policy");
-- `digest` what its entries were when it was adopted (apply/postfix.h postmap_content_digest, not
-- the file's bytes: postmap rebuilds an unchanged source into other bytes): should the token come
-- back holding other entries (configuration management writing it again), it is listed again,
-- not dropped.
CREATE TABLE adopted_policy_maps (
    node text NOT NULL,
    spec text NOT NULL,
    digest text NOT NULL,
    entries integer NOT NULL,
    actor text NOT NULL,
    adopted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, spec)
);
