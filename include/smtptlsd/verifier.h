/* verifier.h - after a reload that changed what smtpd presents, checks in the background that a
 * STARTTLS handshake to the local smtpd serves the bound certificate (or that no STARTTLS is
 * offered with inbound mode none), and records the outcome on the jobs and for /status. Its own
 * thread; the worker submits. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct verifier;

int verifier_start(const struct config *cfg, struct verifier **ret);
void verifier_stop(struct verifier *v);
/* Replaces any check not yet started: only the newest expectation matters. */
void verifier_submit(struct verifier *v, const int64_t *job_ids, size_t n, bool expect_starttls,
                     const char *fingerprint);
/* {"state": "idle"|"checking"|"verified"|"failed", "served_fingerprint_matches": bool|null,
 *  "detail": "..."} */
json_t *verifier_status(struct verifier *v);
/* The SHA-256 fingerprint smtpd served at the last finished check ("" before one, or when it
 * offered no STARTTLS). */
void verifier_served(struct verifier *v, char *buf, size_t size);
