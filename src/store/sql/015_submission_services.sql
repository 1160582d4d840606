-- 015_submission_services: the client-facing services in master.cf that settings manage
-- (apply/mastercf.c): submission (STARTTLS required, 587) and submissions (implicit TLS, 465).
-- A NULL service is one smtptlsd leaves alone (the default: master.cf is the administrator's
-- until a settings write names the service); else its master.cf name ([host:]port) and whether
-- it is enabled (its entry there) or disabled (commented out).
ALTER TABLE settings
    ADD COLUMN submission_service text,
    ADD COLUMN submission_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN submissions_service text,
    ADD COLUMN submissions_enabled boolean NOT NULL DEFAULT false;
