/* probe.h - the destination probe (POST /api/v1/probe, the policy guard, the watch): for a
 * destination as a TLS policy names it, the MX hosts in preference order (no MX: the domain
 * itself, RFC 5321 5.1), each host's addresses and TLSA records (libunbound, DNSSEC-validated,
 * probe/dns.h), and at each address the SMTP conversation, the TLS handshake, the chain's trust
 * and the DANE check (probe/smtp_probe.h), all bounded by per-step timeouts and one deadline, and
 * the addresses probed side by side; for a domain its MTA-STS record and policy
 * (probe/mtasts.h) alongside. The report holds evidence only; what each level would do
 * with it is core/probe_verdict.h's, and its JSON form probe/report.h's. Any thread (the probe
 * runner's); no globals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/dns_wire.h"
#include "core/probe_verdict.h"
#include "probe/dns.h"
#include "probe/mtasts.h"
#include "probe/smtp_probe.h"

#define PROBE_TLSA_MAX 16 /* usable TLSA records kept per host */

struct probe_config {
        struct dns_config dns;
        const char *https_ca_file;  /* verifies MTA-STS policy hosts; NULL: the system's */
        uint64_t timeout_usec;      /* the whole probe */
        uint64_t step_timeout_usec; /* one address's conversation */
        unsigned max_hosts;         /* MX hosts probed (the most preferred) */
        unsigned max_addresses;     /* addresses probed in all */
        bool allow_private;         /* connect to loopback, private and link-local addresses */
};

/* A destination as the probe takes it, from a normalized policy key. */
struct probe_destination {
        char key[256];   /* the policy key, "example.com", "[mx.example]:587" */
        char name[256];  /* the domain (MX lookup) or the literal host (name or address) */
        unsigned port;   /* 25 unless the key names one */
        bool literal;    /* [host]: no MX lookup */
        bool subdomains; /* ".example.com": the parent domain is probed as a sample */
        bool is_address; /* a literal IP address (no lookups at all) */
        /* the trust anchors Postfix's smtp client uses: smtp_tls_CAfile, smtp_tls_CApath (""
         * none) and tls_append_default_CA (the system's besides); set by the caller */
        char ca_file[256];
        char ca_path[256];
        bool ca_default;
        /* main.cf's smtp_tls_verify_cert_match and smtp_tls_secure_cert_match (verdicts only) */
        char verify_match[256];
        char secure_match[256];
        /* inet_protocols: the families Postfix's smtp uses (both false: both) */
        bool only_ipv4, only_ipv6;
        /* smtp_tls_fingerprint_digest ("": sha256), for fingerprint's match */
        char fingerprint_digest[32];
};

/* How Postfix's smtp client judges (probe_destination's ca_* and *_match); strings may be
 * NULL. */
void probe_destination_set_smtp(struct probe_destination *d, const char *ca_file,
                                const char *ca_path, bool ca_default, const char *verify_match,
                                const char *secure_match, const char *inet_protocols,
                                const char *fingerprint_digest);
/* The verdicts' target for d with a policy's match list (borrowed). */
struct probe_target probe_target_of(const struct probe_destination *d, const char *const *match,
                                    size_t n_match);

/* The key's parts into *out: -EINVAL with err[size] naming what is wrong (a service name other
 * than smtp, submission, submissions/smtps; unless any_port, a port outside 25, 465, 587
 * without brackets). */
int probe_destination_parse(const char *key, bool any_port, struct probe_destination *out,
                            char *err, size_t size);

struct probe_address {
        char address[DNS_ADDRESS_MAX];
        int status; /* smtp_probe_address()'s return, or -EPERM (refused) */
        struct smtp_probe_result smtp;
        uint64_t elapsed_usec;
};

struct probe_host {
        char name[DNS_NAME_TEXT_MAX];
        unsigned preference;
        enum dns_security address_security; /* of the A/AAAA answers (IP literal: SECURE) */
        char address_error[192];            /* no address: why */
        enum dns_security tlsa_security;
        enum dane_state dane;
        char dane_note[192];   /* why DANE_NONE or DANE_FAILED, in words */
        struct dns_tlsa *tlsa; /* the usable records (RFC 7672 3.1: usage 2 or 3, selector 0
                                  or 1, matching type 0, 1 or 2 of the right length; owned) */
        size_t n_tlsa;
        size_t n_tlsa_unusable; /* records Postfix ignores */
        struct probe_address *addresses;
        size_t n_addresses;
};

struct probe_report {
        struct probe_destination dest;
        enum dns_security mx_security; /* literal: the address lookup's */
        bool implicit_mx;              /* no MX records: the domain itself */
        struct mtasts_result mta_sts;  /* a domain's MTA-STS (looked_up false for a literal) */
        char error[256];               /* why no host could be probed ("" when some were) */
        struct probe_host *hosts;
        size_t n_hosts;
        time_t probed_at;
        uint64_t elapsed_usec;
        bool cancelled; /* cut short by the daemon's stop */
};

/* Probes dest with cfg. Always fills *ret (probe_report_done() it): a failure of the
 * destination (no such domain, nothing answers) is a report with error set, not an error.
 * Returns 0, -ENOMEM, or -ECANCELED (the thread's cancel descriptor). */
int probe_run(const struct probe_config *cfg, const struct probe_destination *dest,
              struct probe_report *ret);
void probe_report_done(struct probe_report *r);
/* Whether r holds a failure that may pass by itself (a lookup with no answer, a conversation
 * that timed out, a probe cut short): such a report is not cached. */
bool probe_report_transient(const struct probe_report *r);
