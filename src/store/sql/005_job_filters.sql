-- 005_job_filters: indexes for the filters of GET /api/v1/jobs (?actor=, ?target=, ?since=,
-- ?status=failed). The list is newest first (ORDER BY id DESC): with (column, id) PostgreSQL
-- reads one actor's or one target's jobs in that order and stops at the page's end, instead of
-- walking the whole audit trail for a rare value. Failed jobs are few: a partial index.
CREATE INDEX jobs_actor ON jobs (actor, id);
CREATE INDEX jobs_target ON jobs (target, id);
CREATE INDEX jobs_created_at ON jobs (created_at);
CREATE INDEX jobs_failed ON jobs (id) WHERE status = 'failed';
