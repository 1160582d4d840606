/* mtasts.c (probe) - a domain's MTA-STS record and policy (see mtasts.h): the lookups through
 * the probe's resolver, the fetch through libcurl pinned to the addresses found (CURLOPT_RESOLVE),
 * its bounds (time, size, HTTPS only, no redirects) and its cancellation. Probe threads. */
#include "probe/mtasts.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/dns_wire.h"
#include "probe/probe_conn.h"
#include "util.h"

int mtasts_global_init(void)
{
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -ENOMEM;
}

struct body {
        char *data;
        size_t len;
        bool too_large;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
        struct body *b = arg;
        size_t n = size * nmemb;
        if (b->len + n > MTASTS_POLICY_LIMIT) {
                b->too_large = true;
                return 0; /* ends the transfer */
        }
        char *grown = realloc(b->data, b->len + n + 1);
        if (!grown)
                return 0;
        memcpy(grown + b->len, ptr, n);
        b->data = grown;
        b->len += n;
        b->data[b->len] = 0;
        return n;
}

/* libcurl's progress callback: non-zero aborts (the thread's cancel descriptor was written). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        int fd = probe_cancel_fd();
        if (fd < 0)
                return 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, 0) > 0;
}

static void fetch(const char *domain, const char *addresses, const char *ca_file, uint64_t deadline,
                  struct mtasts_result *out)
{
        char url[600], resolve[900];
        struct body b = { 0 };
        uint64_t now = now_monotonic_usec();
        long ms = deadline > now ? (long)((deadline - now) / 1000) : 1;
        snprintf(url, sizeof(url), "https://mta-sts.%s/.well-known/mta-sts.txt", domain);
        snprintf(resolve, sizeof(resolve), "mta-sts.%s:443:%s", domain, addresses);
        struct curl_slist *pin = curl_slist_append(NULL, resolve);
        CURL *h = curl_easy_init();
        if (!h || !pin) {
                snprintf(out->error, sizeof(out->error), "policy fetch: out of memory");
                goto out;
        }
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_RESOLVE, pin);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* RFC 8461 3.3 */
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms > 0 ? ms : 1);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
        if (ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "smtptlsd-probe");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MTASTS_POLICY_LIMIT);
        char curl_err[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
        CURLcode rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->http_status);
        if (b.too_large) {
                snprintf(out->error, sizeof(out->error), "policy fetch: larger than %d bytes",
                         MTASTS_POLICY_LIMIT);
                goto out;
        }
        if (rc != CURLE_OK) {
                snprintf(out->error, sizeof(out->error), "policy fetch: %.200s",
                         curl_err[0] ? curl_err : curl_easy_strerror(rc));
                goto out;
        }
        if (out->http_status != 200) {
                snprintf(out->error, sizeof(out->error), "policy fetch: HTTP %ld%s",
                         out->http_status,
                         out->http_status / 100 == 3 ? " (redirects are not followed, RFC 8461 "
                                                       "3.3)"
                                                     : "");
                goto out;
        }
        char *type = NULL;
        curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type);
        if (!type || strncasecmp(type, "text/plain", 10) != 0) {
                snprintf(out->error, sizeof(out->error),
                         "policy fetch: media type %.100s, not text/plain", type ? type : "(none)");
                goto out;
        }
        char err[200];
        if (mtasts_policy_parse(b.data ? b.data : "", b.len, &out->policy, err, sizeof(err)) < 0) {
                snprintf(out->error, sizeof(out->error), "policy: %s", err);
                goto out;
        }
        out->has_policy = true;
out:
        if (h)
                curl_easy_cleanup(h);
        curl_slist_free_all(pin);
        free(b.data);
}

/* The TXT record among the answer's (exactly one v=STSv1, 3.1). */
static void take_record(const struct dns_lookup *q, struct mtasts_result *out)
{
        size_t n = dns_lookup_count(q), found = 0;
        for (size_t i = 0; i < n; i++) {
                size_t len;
                const uint8_t *data = dns_lookup_rdata(q, i, &len);
                char txt[256], id[MTASTS_ID_MAX + 1], err[160];
                if (dns_wire_txt(data, len, txt, sizeof(txt)) < 0)
                        continue;
                int r = mtasts_txt_parse(txt, id, err, sizeof(err));
                if (r == -ENOENT)
                        continue;
                found++;
                strcpy_bounded(out->record, sizeof(out->record), txt);
                if (r < 0)
                        snprintf(out->error, sizeof(out->error), "the TXT record: %s", err);
                else
                        strcpy_bounded(out->id, sizeof(out->id), id);
        }
        out->has_record = found > 0;
        if (found > 1) {
                snprintf(out->error, sizeof(out->error),
                         "%zu v=STSv1 TXT records: RFC 8461 3.1 treats that as no policy", found);
                out->id[0] = 0;
        }
}

int mtasts_check(struct dns *d, const char *domain, const char *ca_file, bool allow_private,
                 uint64_t deadline, struct mtasts_result *out)
{
        char txt_name[300], host[300];
        *out = (struct mtasts_result){ .looked_up = true };
        snprintf(txt_name, sizeof(txt_name), "_mta-sts.%s", domain);
        snprintf(host, sizeof(host), "mta-sts.%s", domain);
        struct dns_lookup q[3] = {
                { .name = txt_name, .type = DNS_TYPE_TXT },
                { .name = host, .type = DNS_TYPE_A },
                { .name = host, .type = DNS_TYPE_AAAA },
        };
        int r = dns_lookup_all(d, q, 3, deadline);
        if (r < 0)
                goto out;
        out->txt_security = q[0].security;
        if (q[0].security == DNS_FAILED || q[0].security == DNS_BOGUS) {
                snprintf(out->error, sizeof(out->error), "TXT lookup of %.100s: %.120s", txt_name,
                         q[0].why);
                goto out;
        }
        take_record(&q[0], out);
        if (!out->has_record || !out->id[0])
                goto out;
        char addresses[400] = "";
        size_t used = 0, refused = 0;
        for (int t = 1; t <= 2; t++) {
                size_t n = dns_lookup_count(&q[t]);
                for (size_t i = 0; i < n; i++) {
                        size_t len;
                        const uint8_t *data = dns_lookup_rdata(&q[t], i, &len);
                        char a[DNS_ADDRESS_MAX + 2];
                        if (dns_wire_address(q[t].type, data, len, a + 1) < 0)
                                continue;
                        if (!allow_private && probe_address_is_private(a + 1)) {
                                refused++;
                                continue;
                        }
                        /* CURLOPT_RESOLVE takes IPv6 addresses in brackets */
                        const char *text = a + 1;
                        if (q[t].type == DNS_TYPE_AAAA) {
                                a[0] = '[';
                                strcat(a, "]");
                                text = a;
                        }
                        /* whole addresses only: one that does not fit ends the list */
                        size_t need = strlen(text) + (used ? 1 : 0);
                        if (need >= sizeof(addresses) - used)
                                goto listed;
                        snprintf(addresses + used, sizeof(addresses) - used, "%s%s",
                                 used ? "," : "", text);
                        used += need;
                }
        }
listed:
        if (!used) {
                snprintf(out->error, sizeof(out->error), "%.100s has no address%s", host,
                         refused ? " the probe may connect to (probe_private_networks = deny)"
                                 : "");
                goto out;
        }
        fetch(domain, addresses, ca_file, deadline, out);
out:
        for (size_t i = 0; i < ARRAY_SIZE(q); i++)
                dns_lookup_done(&q[i]);
        if (r == 0 && probe_cancel_fd() >= 0) {
                struct pollfd p = { .fd = probe_cancel_fd(), .events = POLLIN };
                if (poll(&p, 1, 0) > 0)
                        r = -ECANCELED;
        }
        return r;
}
