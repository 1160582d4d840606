/* policy_host.c - the warnings of a TLS policy write that need more than the row: the other rows,
 * main.cf and master.cf as postconf reads them, the tafile as Postfix loads it (see
 * policy_host.h). Worker thread. */
#include "apply/policy_host.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "apply/postfix.h"
#include "store/store.h"
#include "util.h"

int policy_parent_warnings(struct db_conn *db, const char *destination, json_t *warnings,
                           struct problem *reterr)
{
        json_t *names = NULL;
        bool more = false;
        int r =
            store_policies_uncovered(db, destination, POLICY_UNCOVERED_MAX, &names, &more, reterr);
        if (r < 0)
                return r;
        size_t i;
        json_t *it;
        json_array_foreach (names, i, it) {
                const char *d = json_string_value(it);
                warnings_add(warnings, "parent_domain_not_covered",
                             "'%s' covers the subdomains of %s only, not %s itself (Postfix looks "
                             "up the full name, then its dotted parents): add a policy for '%s' "
                             "if it needs one",
                             d, d + 1, d + 1, d + 1);
        }
        if (more)
                warnings_add(warnings, "parent_domain_not_covered",
                             "more '.domain' policies than these %d have no policy for the "
                             "domain itself",
                             POLICY_UNCOVERED_MAX);
        json_decref(names);
        return 0;
}

/* As Postfix's tls_dane_load_trustfile(): PEM certificates and public keys, at least one, and
 * nothing malformed. Returns the number of anchors, or -errno (the file cannot be opened). */
static int count_trust_anchors(const char *path)
{
        BIO *bp = BIO_new_file(path, "r");
        if (!bp) {
                int e = errno;
                ERR_clear_error();
                return e ? -e : -EIO;
        }
        int n = 0;
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        long len = 0;
        while (PEM_read_bio(bp, &name, &header, &data, &len)) {
                if (streq(name, PEM_STRING_X509) || streq(name, PEM_STRING_X509_OLD) ||
                    streq(name, PEM_STRING_PUBLIC))
                        n++;
                OPENSSL_free(name);
                OPENSSL_free(header);
                OPENSSL_free(data);
        }
        ERR_clear_error();
        BIO_free(bp);
        return n;
}

static void exclude_warning(const struct config *cfg, const struct policy *p, json_t *warnings)
{
        static const char *const params[] = { "smtp_tls_exclude_ciphers",
                                              "smtp_tls_mandatory_exclude_ciphers" };
        char dropped[2][512] = { "", "" };
        bool any = false;
        for (size_t k = 0; k < ARRAY_SIZE(params); k++) {
                _cleanup_free_ char *value = NULL;
                /* the mandatory list applies from encrypt up (Postfix's set_cipher_grade) */
                if (k == 1 && p->level < TLS_LEVEL_ENCRYPT)
                        continue;
                if (postconf_value(cfg, params[k], &value) < 0)
                        continue;
                policy_exclude_dropped(p, value, dropped[k], sizeof(dropped[k]));
                any = any || dropped[k][0];
        }
        if (!any)
                return;
        char what[1200] = "";
        size_t o = 0;
        for (size_t k = 0; k < ARRAY_SIZE(params); k++) {
                if (!dropped[k][0])
                        continue;
                int w = snprintf(what + o, sizeof(what) - o, "%s%s (%s)", o ? " and " : "",
                                 params[k], dropped[k]);
                if (w < 0 || (size_t)w >= sizeof(what) - o)
                        break;
                o += (size_t)w;
        }
        warnings_add(warnings, "exclude_replaces_main_cf",
                     "%s: a policy's exclude replaces the exclusions of main.cf rather than adding "
                     "to them; for this destination Postfix no longer excludes what %s lists: add "
                     "those to exclude to keep them",
                     p->destination, what);
}

void policy_host_warnings(const struct config *cfg, const struct policy *p, json_t *warnings)
{
        if (!p->enabled || p->level == TLS_LEVEL_NONE)
                return;
        if (p->tafile[0]) {
                int n = count_trust_anchors(p->tafile);
                if (n <= 0)
                        warnings_add(warnings, "tafile_unusable",
                                     "%s: Postfix cannot load tafile %s (%s): until it can, it "
                                     "defers all mail to this destination (where smtp runs "
                                     "chrooted, the path is inside the chroot)",
                                     p->destination, p->tafile,
                                     n < 0 ? strerror(-n)
                                           : "no PEM certificate or public key in it");
        }
        if (p->connection_reuse == POLICY_REUSE_YES) {
                bool defined = true;
                if (postconf_service(cfg, "tlsproxy/unix", &defined) >= 0 && !defined)
                        warnings_add(warnings, "connection_reuse_without_tlsproxy",
                                     "%s: connection_reuse needs the tlsproxy service, which "
                                     "master.cf does not define (Debian ships it commented "
                                     "out): every delivery to this destination would be "
                                     "deferred",
                                     p->destination);
        }
        if (p->n_exclude)
                exclude_warning(cfg, p, warnings);
}
