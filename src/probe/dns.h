/* dns.h - the destination probe's DNS lookups through libunbound: a validating resolver (the
 * DNSSEC status of every answer is libunbound's own verdict from the configured trust anchor)
 * that forwards to the system's resolvers, to given ones, or resolves from the root, with stub
 * zones for split DNS and tests. One struct dns per probe (its own libunbound context and
 * cache); lookups run side by side and are bounded by a deadline and the thread's cancel
 * descriptor (probe_conn.h). Any thread; one struct dns is used by one thread at a time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/probe_verdict.h"

struct ub_result;

struct dns_config {
        /* "resolv.conf": the resolvers of /etc/resolv.conf (what Postfix asks); "root":
         * resolve from the root servers; else addresses to forward to ("192.0.2.53
         * 127.0.0.1@5353", '@' a port) */
        const char *resolvers;
        const char *stub_zones;        /* "zone=address[@port] ..." or "" */
        const char *trust_anchor_file; /* DS/DNSKEY records (zone-file form); "": none, all
                                          answers are insecure */
};

/* Whether cfg can be used (each address, each stub, the anchor file readable); err says what is
 * wrong. For the configuration's check at start-up. */
int dns_config_check(const struct dns_config *cfg, char *err, size_t errsize);

struct dns;
int dns_open(const struct dns_config *cfg, struct dns **ret, char *err, size_t errsize);
void dns_close(struct dns *d);

/* One question and its answer. */
struct dns_lookup {
        const char *name; /* asked: a host name (text form) */
        int type;         /* DNS_TYPE_* of core/dns_wire.h */
        /* answered */
        bool done;
        enum dns_security security;
        bool nxdomain;            /* the name does not exist */
        int rcode;                /* the DNS RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN) */
        char why[192];            /* for DNS_BOGUS and DNS_FAILED: why, in words */
        struct ub_result *result; /* the records (result->data/len), NULL for DNS_FAILED */
        int id;                   /* libunbound's number of the question while it is asked */
};

/* Asks every question of q[n] at once and waits until all are answered or the deadline (or the
 * thread's cancel descriptor) cuts it short: unanswered ones are DNS_FAILED "timed out" (or
 * "cancelled"). Returns 0, or -ECANCELED, -ENOMEM. */
int dns_lookup_all(struct dns *d, struct dns_lookup *q, size_t n, uint64_t deadline);
/* The answer's records: count and the i-th RDATA. */
size_t dns_lookup_count(const struct dns_lookup *q);
const uint8_t *dns_lookup_rdata(const struct dns_lookup *q, size_t i, size_t *len);
void dns_lookup_done(struct dns_lookup *q);
