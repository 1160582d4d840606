-- 010_probes: the destination probe's audit trail (POST /api/v1/probe, the policy guard, the
-- watch): who asked to probe which destination and when (inserted before the probe connects
-- anywhere), and when it ends its outcome, the recommended level and the report. The newest row
-- of a destination is its last result. forced: a policy write went on past this failing probe
-- (?probe=true&force=true).
CREATE TABLE probes (
    id bigserial PRIMARY KEY,
    node text NOT NULL,
    actor text NOT NULL,
    destination text NOT NULL,
    level text,
    reason text NOT NULL CHECK (reason IN ('request', 'guard', 'watch')),
    outcome text CHECK (outcome IN ('passed', 'failed', 'reachable', 'unreachable', 'cancelled')),
    recommended text,
    forced boolean NOT NULL DEFAULT false,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX probes_destination ON probes (destination, id DESC);
