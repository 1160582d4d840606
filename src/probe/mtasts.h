/* mtasts.h (probe) - a domain's MTA-STS (RFC 8461) as the probe sees it: the `_mta-sts` TXT
 * record (through the probe's resolver) and the policy fetched with libcurl from
 * https://mta-sts.<domain>/.well-known/mta-sts.txt (the name resolved by the probe's resolver as
 * well; HTTPS only, the certificate verified, no redirects, a bounded size and time, cancelled
 * with the probe). Parsing and matching are core/mtasts.h's. Probe threads. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/mtasts.h"
#include "core/probe_verdict.h"
#include "probe/dns.h"

struct mtasts_result {
        bool looked_up; /* the TXT lookup was made (a domain, not a literal) */
        enum dns_security txt_security;
        bool has_record;  /* a v=STSv1 record was found */
        char record[256]; /* its text */
        char id[MTASTS_ID_MAX + 1];
        bool has_policy; /* the policy was fetched and parsed */
        struct mtasts_policy policy;
        long http_status; /* 0: no answer */
        char error[256];  /* why there is no policy although there is a record */
};

/* Once per process, before threads: libcurl's global set-up. */
int mtasts_global_init(void);

/* The MTA-STS of domain into *out: ca_file (NULL: the system's) verifies the policy host;
 * allow_private as the probe's configuration. Returns 0 (findings in out), -ECANCELED. */
int mtasts_check(struct dns *d, const char *domain, const char *ca_file, bool allow_private,
                 uint64_t deadline, struct mtasts_result *out);
