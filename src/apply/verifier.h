/* verifier.h - after a reload that changed what smtpd presents, checks in the background that a
 * STARTTLS handshake to the local smtpd serves the bound certificate (or that no STARTTLS is
 * offered with inbound mode none), and that the enabled submission services serve it too (465:
 * TLS from the first byte; 587: after STARTTLS), and records the outcome on the jobs and for
 * /status. Its own thread; the worker submits. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct verifier;

int verifier_start(const struct config *cfg, struct verifier **ret);
void verifier_stop(struct verifier *v);
/* What one handshake must be served: a certificate, and (with two or more bound) its key type,
 * whose signature algorithms alone the client then offers. */
#define VERIFIER_EXPECT_MAX 2
struct verifier_expect {
        char fingerprint[96];
        char key_type[16];
};
/* A submission service to check besides the MX: its master.cf name ([host:]port; no host: the
 * host of smtp_probe_address) and whether TLS starts at once (submissions) or after STARTTLS. */
struct verifier_service {
        char name[65];
        bool wrapper;
};
#define VERIFIER_SERVICES_MAX 2
/* Replaces any check not yet started and stops one in progress (which records nothing): only
 * the newest expectation matters, and its outcome is recorded on their jobs too. With
 * expect_starttls, each of the n_expect certificates must be served (with one, to a client
 * offering OpenSSL's default signature algorithms; with more, to one offering only those of its
 * key type); without, no STARTTLS may be offered. settle: wait a moment before the first
 * handshake (a reload nobody's reply waits on - a fleet follower's - whose first connections an
 * smtpd from before it may still take: let a client's be served rather than this check's). */
void verifier_submit(struct verifier *v, const int64_t *job_ids, size_t n, bool expect_starttls,
                     const struct verifier_expect *expect, size_t n_expect,
                     const struct verifier_service *services, size_t n_services, bool settle);
/* {"state": "idle"|"checking"|"verified"|"failed", "served_fingerprint_matches": bool|null,
 *  "detail": "...", "served_fingerprints": [what verifier_served says, one string each]} */
json_t *verifier_status(struct verifier *v);
/* The SHA-256 fingerprints smtpd served at the last finished check, joined by ',' (one per
 * expected certificate; "" before one, or when it offered no STARTTLS). */
void verifier_served(struct verifier *v, char *buf, size_t size);
