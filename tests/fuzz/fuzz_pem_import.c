/* fuzz_pem_import.c - certificate uploads: cert_import() with the three fields of a JSON upload,
 * and cert_parse_bundle()/cert_import_bundle() with an application/x-pem-file body.
 *
 * Input: byte 0 picks the path (bit 0: fields or bundle; bit 1: a missing chain is NULL or "");
 * the rest is the certificate, the key and the chain separated by 0xff bytes (fields mode), or the
 * bundle (bundle mode). Each field is handed over in a buffer of exactly its length, without a
 * terminating NUL: the functions take (pointer, length).
 *
 * Properties (any violation traps):
 *  - no crash, no leak, and the calling thread's OpenSSL error queue is empty after every call;
 *  - a refusal carries a code, a field among "", /certificate, /private_key, /chain ("" for a
 *    bundle) and a detail, and leaves the output zeroed;
 *  - cert_import_bundle() agrees with cert_parse_bundle() followed by cert_import();
 *  - an accepted upload is normalized: one leaf, a PKCS#8 key, fullchain = leaf + chain; importing
 *    the normalized output again (as fields, and as a bundle) gives identical output; its
 *    description (cert_info_to_json) is complete, valid JSON, and the same as
 *    cert_info_from_pem() of the fullchain gives; each plain dNSName covers itself
 *    (cert_covers_hostname: any case, trailing dot). */
#include <jansson.h>
#include <openssl/err.h>
#include <stdlib.h>

#include "core/cert.h"
#include "fuzz_common.h"

#define SEP 0xff
/* 2027-01-01T00:00:00Z: inside the validity of the seed certificates (tests/fuzz/gen-pem-seeds). */
#define NOW ((time_t)1798761600)

static void check_error_queue(const char *what)
{
        unsigned long e = ERR_peek_error();
        if (e) {
                char buf[256];
                ERR_error_string_n(e, buf, sizeof(buf));
                ERR_clear_error();
                fuzz_fail("%s left the OpenSSL error queue non-empty: %s", what, buf);
        }
}

/* A copy of [p, p+n) in a buffer of exactly n bytes (ASan sees any read past the end). */
static char *exact_copy(const uint8_t *p, size_t n)
{
        char *c = malloc(n ? n : 1);
        if (!c)
                abort();
        if (n)
                memcpy(c, p, n);
        return c;
}

static size_t count_str(const char *s, const char *needle)
{
        size_t n = 0, k = strlen(needle);
        for (const char *p = s; (p = strstr(p, needle)); p += k)
                n++;
        return n;
}

static bool is_upper_hex_pairs(const char *s, size_t pairs)
{
        if (strlen(s) != pairs * 3 - 1)
                return false;
        for (size_t i = 0; s[i]; i++) {
                bool sep = i % 3 == 2;
                char c = s[i];
                if (sep ? c != ':' : !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

static bool is_lower_hex(const char *s, size_t n)
{
        if (strlen(s) != n)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

/* The description must be complete and survive a dump and a reload. Returns it (owned). */
static json_t *check_info_json(const struct cert_info *info, const char *what)
{
        static const char *const members[] = {
                "subject",   "issuer",      "serial", "not_before",         "not_after",
                "days_left", "dns_names",   "key",    "sha256_fingerprint", "spki_sha256",
                "chain",     "self_signed",
        };
        json_t *j = cert_info_to_json(info, NOW);
        FUZZ_ASSERT(j, "%s: cert_info_to_json returned NULL (subject '%s', %zu dns_names)", what,
                    info->subject ? info->subject : "(null)", info->n_dns_names);
        for (size_t i = 0; i < ARRAY_SIZE(members); i++)
                FUZZ_ASSERT(json_object_get(j, members[i]), "%s: description lacks %s", what,
                            members[i]);
        FUZZ_ASSERT(json_array_size(json_object_get(j, "dns_names")) == info->n_dns_names &&
                        json_array_size(json_object_get(j, "chain")) == info->n_chain,
                    "%s: description drops names or chain entries", what);
        char *text = json_dumps(j, JSON_COMPACT);
        FUZZ_ASSERT(text, "%s: description does not dump", what);
        json_error_t e;
        json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, &e);
        FUZZ_ASSERT(back && json_equal(back, j), "%s: description is not valid JSON: %s", what,
                    e.text);
        json_decref(back);
        free(text);
        return j;
}

static void check_problem(const struct problem *p, bool bundle, const char *what)
{
        fuzz_check_problem(p, NULL, what);
        if (bundle)
                FUZZ_ASSERT(p->field[0] == 0, "%s: bundle problem at '%s'", what, p->field);
        else
                FUZZ_ASSERT(!p->field[0] || strcmp(p->field, "/certificate") == 0 ||
                                strcmp(p->field, "/private_key") == 0 ||
                                strcmp(p->field, "/chain") == 0,
                            "%s: problem at '%s'", what, p->field);
}

static void check_zeroed(const struct cert_import *imp, const char *what)
{
        FUZZ_ASSERT(!imp->cert_pem && !imp->chain_pem && !imp->fullchain_pem && !imp->key_pem &&
                        !imp->info.subject && !imp->info.issuer && !imp->info.serial &&
                        !imp->info.dns_names && !imp->info.chain && !imp->info.n_dns_names &&
                        !imp->info.n_chain,
                    "%s: refused but the output is not zeroed", what);
}

static void check_same(const struct cert_import *a, const struct cert_import *b, const char *what)
{
        FUZZ_ASSERT(strcmp(a->cert_pem, b->cert_pem) == 0, "%s: cert_pem differs", what);
        FUZZ_ASSERT(strcmp(a->chain_pem, b->chain_pem) == 0, "%s: chain_pem differs", what);
        FUZZ_ASSERT(strcmp(a->fullchain_pem, b->fullchain_pem) == 0, "%s: fullchain differs", what);
        FUZZ_ASSERT(strcmp(a->key_pem, b->key_pem) == 0, "%s: key_pem differs", what);
        json_t *ja = check_info_json(&a->info, what), *jb = check_info_json(&b->info, what);
        FUZZ_ASSERT(json_equal(ja, jb) && a->info.is_ca == b->info.is_ca, "%s: description differs",
                    what);
        json_decref(ja);
        json_decref(jb);
}

/* A plain host name: LDH labels, no wildcard, no trailing dot. */
static bool plain_hostname(const char *s)
{
        size_t n = strlen(s), label = 0;
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i <= n; i++) {
                if (i == n || s[i] == '.') {
                        if (label == 0 || label > 63)
                                return false;
                        label = 0;
                        continue;
                }
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                        return false;
                label++;
        }
        return true;
}

/* RFC 6125 as cert.h states it: each plain name of the certificate covers itself, whatever the
 * case, with or without a trailing dot. */
static void check_hostnames(const struct cert_info *info)
{
        for (size_t i = 0; i < info->n_dns_names; i++) {
                const char *name = info->dns_names[i];
                FUZZ_ASSERT(name, "import: NULL dns_name %zu", i);
                if (!plain_hostname(name))
                        continue;
                char v[260];
                size_t n = strlen(name);
                FUZZ_ASSERT(cert_covers_hostname(info, name), "'%s' does not cover itself", name);
                for (size_t k = 0; k <= n; k++)
                        v[k] = name[k] >= 'a' && name[k] <= 'z' ? (char)(name[k] - 32) : name[k];
                FUZZ_ASSERT(cert_covers_hostname(info, v), "'%s' does not cover '%s'", name, v);
                v[n] = '.';
                v[n + 1] = 0;
                FUZZ_ASSERT(cert_covers_hostname(info, v), "'%s' does not cover '%s'", name, v);
        }
        FUZZ_ASSERT(!cert_covers_hostname(info, "") && !cert_covers_hostname(info, "."),
                    "an empty host name is covered");
}

/* An accepted upload: normalized, described, and a fixed point of the import. */
static void check_accepted(const struct cert_import *imp)
{
        FUZZ_ASSERT(imp->cert_pem && imp->chain_pem && imp->fullchain_pem && imp->key_pem,
                    "import: accepted with a NULL output");
        FUZZ_ASSERT(count_str(imp->cert_pem, "-----BEGIN ") == 1 &&
                        count_str(imp->cert_pem, "-----BEGIN CERTIFICATE-----\n") == 1,
                    "import: cert_pem is not one CERTIFICATE block");
        FUZZ_ASSERT(count_str(imp->key_pem, "-----BEGIN ") == 1 &&
                        strncmp(imp->key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0,
                    "import: key_pem is not one PKCS#8 PRIVATE KEY block");
        size_t lc = strlen(imp->cert_pem), lch = strlen(imp->chain_pem);
        FUZZ_ASSERT(strlen(imp->fullchain_pem) == lc + lch &&
                        memcmp(imp->fullchain_pem, imp->cert_pem, lc) == 0 &&
                        memcmp(imp->fullchain_pem + lc, imp->chain_pem, lch) == 0,
                    "import: fullchain is not leaf + chain");
        FUZZ_ASSERT(count_str(imp->chain_pem, "-----BEGIN ") == imp->info.n_chain &&
                        count_str(imp->chain_pem, "-----BEGIN CERTIFICATE-----\n") ==
                            imp->info.n_chain &&
                        imp->info.n_chain < CERT_CHAIN_MAX_CERTS,
                    "import: chain_pem holds other than %zu certificates", imp->info.n_chain);
        FUZZ_ASSERT(imp->info.subject && imp->info.issuer && imp->info.serial &&
                        imp->info.key_type[0] && imp->info.key_bits > 0,
                    "import: incomplete description");
        FUZZ_ASSERT(is_upper_hex_pairs(imp->info.sha256_fingerprint, 32),
                    "import: fingerprint '%s'", imp->info.sha256_fingerprint);
        FUZZ_ASSERT(is_lower_hex(imp->info.spki_sha256, 64), "import: spki '%s'",
                    imp->info.spki_sha256);
        FUZZ_ASSERT(imp->info.not_before <= NOW && NOW <= imp->info.not_after,
                    "import: accepted a certificate not valid now");
        FUZZ_ASSERT(!imp->info.is_ca, "import: accepted a CA certificate as the leaf");
        json_t *j = check_info_json(&imp->info, "import");
        check_hostnames(&imp->info);

        /* the same description from the stored form */
        struct cert_info info = { 0 };
        struct problem p = { 0 };
        int r = cert_info_from_pem(imp->fullchain_pem, strlen(imp->fullchain_pem), &info, &p);
        check_error_queue("cert_info_from_pem");
        FUZZ_ASSERT(r == 0, "cert_info_from_pem refuses an accepted fullchain: %s", p.detail);
        json_t *j2 = check_info_json(&info, "cert_info_from_pem");
        FUZZ_ASSERT(json_equal(j, j2), "cert_info_from_pem describes the fullchain differently");
        json_decref(j2);
        json_decref(j);
        cert_info_done(&info);
        problem_done(&p);

        /* idempotence: the normalized fields, imported again */
        struct cert_import again = { 0 };
        r = cert_import(imp->cert_pem, lc, imp->key_pem, strlen(imp->key_pem),
                        lch ? imp->chain_pem : NULL, lch, NOW, &again, &p);
        check_error_queue("cert_import (again)");
        FUZZ_ASSERT(r == 0, "normalized upload refused: %s (%s at '%s')", p.detail,
                    problem_code_name(p.code), p.field);
        check_same(imp, &again, "re-import");
        cert_import_done(&again);
        problem_done(&p);

        /* and as one bundle, key first */
        size_t lk = strlen(imp->key_pem), lf = strlen(imp->fullchain_pem);
        char *bundle = malloc(lk + lf);
        if (!bundle)
                abort();
        memcpy(bundle, imp->key_pem, lk);
        memcpy(bundle + lk, imp->fullchain_pem, lf);
        r = cert_import_bundle(bundle, lk + lf, NOW, &again, &p);
        check_error_queue("cert_import_bundle (again)");
        FUZZ_ASSERT(r == 0, "normalized bundle refused: %s (%s)", p.detail,
                    problem_code_name(p.code));
        check_same(imp, &again, "bundle re-import");
        cert_import_done(&again);
        problem_done(&p);
        free(bundle);
}

static void fuzz_fields(const uint8_t *data, size_t size, bool null_chain)
{
        const uint8_t *f[3] = { NULL, NULL, NULL };
        size_t n[3] = { 0, 0, 0 }, k = 0;
        const uint8_t *start = data;
        for (size_t i = 0; i <= size && k < 3; i++)
                if (i == size || data[i] == SEP) {
                        f[k] = start;
                        n[k++] = (size_t)(data + i - start);
                        start = data + i + 1;
                }
        char *cert = exact_copy(f[0], n[0]);
        char *key = exact_copy(f[1], n[1]);
        char *chain = k == 3 ? exact_copy(f[2], n[2]) : NULL;
        const char *chain_arg = chain ? chain : null_chain ? NULL : "";

        struct cert_import imp;
        struct problem p = { 0 };
        memset(&imp, 0xa5, sizeof(imp)); /* "on failure it is left zeroed": whatever it held */
        int r = cert_import(cert, n[0], key, n[1], chain_arg, chain ? n[2] : 0, NOW, &imp, &p);
        check_error_queue("cert_import");
        if (r < 0) {
                check_problem(&p, false, "cert_import");
                check_zeroed(&imp, "cert_import");
        } else {
                FUZZ_ASSERT(r == 0 && p.code == PROBLEM_NONE, "cert_import: %d with a problem", r);
                check_accepted(&imp);
                cert_import_done(&imp);
        }
        problem_done(&p);
        free(cert);
        free(key);
        free(chain);
}

static void fuzz_bundle(const uint8_t *data, size_t size)
{
        char *text = exact_copy(data, size);
        char *cert = NULL, *key = NULL, *chain = NULL;
        struct problem p1 = { 0 }, p2 = { 0 }, p3 = { 0 };
        struct cert_import imp, split;

        int r1 = cert_parse_bundle(text, size, &cert, &key, &chain, &p1);
        check_error_queue("cert_parse_bundle");
        memset(&imp, 0xa5, sizeof(imp));
        int r2 = cert_import_bundle(text, size, NOW, &imp, &p2);
        check_error_queue("cert_import_bundle");
        if (r2 < 0) {
                check_problem(&p2, true, "cert_import_bundle");
                check_zeroed(&imp, "cert_import_bundle");
        }
        if (r1 < 0) {
                check_problem(&p1, true, "cert_parse_bundle");
                FUZZ_ASSERT(r2 < 0 && p2.code == p1.code,
                            "cert_import_bundle (%s) disagrees with cert_parse_bundle (%s)",
                            problem_code_name(p2.code), problem_code_name(p1.code));
        } else {
                FUZZ_ASSERT(cert && key, "cert_parse_bundle: accepted without cert or key");
                FUZZ_ASSERT(!chain || chain[0], "cert_parse_bundle: empty chain is not NULL");
                memset(&split, 0, sizeof(split));
                int r3 = cert_import(cert, strlen(cert), key, strlen(key), chain,
                                     chain ? strlen(chain) : 0, NOW, &split, &p3);
                check_error_queue("cert_import (split bundle)");
                FUZZ_ASSERT((r3 < 0) == (r2 < 0) && p3.code == p2.code,
                            "cert_import_bundle (%s) disagrees with its parts (%s)",
                            problem_code_name(p2.code), problem_code_name(p3.code));
                if (r3 == 0) {
                        check_same(&imp, &split, "bundle vs parts");
                        check_accepted(&imp);
                        cert_import_done(&split);
                }
        }
        if (r2 == 0)
                cert_import_done(&imp);
        free(cert);
        free(chain);
        cert_secret_free(key);
        problem_done(&p1);
        problem_done(&p2);
        problem_done(&p3);
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        if (data[0] & 1)
                fuzz_bundle(data + 1, size - 1);
        else
                fuzz_fields(data + 1, size - 1, data[0] & 2);
        return 0;
}
