-- 004_private_keys: a private key never travels in a job's request (jobs.request is the audit
-- trail's and stays in the WAL and in backups). An upload's key waits here, referenced by the job
-- (request.private_key_ref), from the moment the upload is accepted (inserted in the same
-- statement as the job: an acknowledged upload survives a crash) until the job ends (deleted in
-- the statement that finishes the job: for an applied job, in the transaction that writes the
-- certificate row). With key_encryption_key_file set, private_key holds an AES-256-GCM envelope
-- ("sealed:v1:...", src/core/sealed.c), as certificates.private_key_pem then does.
CREATE TABLE pending_keys (
    ref text PRIMARY KEY CHECK (ref ~ '^[0-9a-f]{32}$'),
    job_id bigint NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    private_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
