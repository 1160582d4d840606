-- 016_job_items: a bulk's items (a bulk replace's, an import's, a state document's policies) in
-- a text column of their own instead of inside request as jsonb: PostgreSQL takes them as text
-- (about a tenth of the time of turning 5 MB into jsonb: issue 17) and reads them as JSON only
-- when a job applies them whole. lz4 where the server has it (Debian's does; PostgreSQL before
-- 14 has no column compression: pglz then).
--
-- Older nodes of a fleet keep running during an upgrade (docs/operations.md): they record their
-- bulks' items in request.body.policy and read them from there, and a job one of them recorded
-- may be resumed by the new binary after its restart. So nothing is moved here: the new binary
-- reads the items column, else request.body.policy (store/policies.c, load_incoming).
ALTER TABLE jobs ADD COLUMN items text;
DO $$
BEGIN
    EXECUTE 'ALTER TABLE jobs ALTER COLUMN items SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    NULL;
END
$$;
