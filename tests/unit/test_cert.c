/* test_cert.c - certificate uploads: every refusal with its exact code and field, normalization
 * (key as PKCS#8, chain reordered), bundles in every order, the description of a certificate, the
 * files checked as Postfix loads them, RFC 6125 hostnames and chain verification. The material is
 * made fresh by tests/unit/certs/gen.sh (openssl CLI, faketime) in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <regex.h>
#include <sys/stat.h>
#include <openssl/err.h>

#include "apply/fsutil.h"
#include "core/cert.h"
#include "util.h"

static char dir[64];
static time_t now_;

static struct {
        char name[32];
        char *text;
} cache[64];

/* The content of a generated file, loaded once. */
static const char *pem(const char *name)
{
        size_t i;
        for (i = 0; i < ARRAY_SIZE(cache) && cache[i].text; i++)
                if (streq(cache[i].name, name))
                        return cache[i].text;
        assert_true(i < ARRAY_SIZE(cache));
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open %s", path);
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        assert_non_null(m);
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                fwrite(chunk, 1, n, m);
        fclose(f);
        fclose(m);
        strcpy_bounded(cache[i].name, sizeof(cache[i].name), name);
        cache[i].text = buf;
        return buf;
}

/* Concatenation of up to 6 strings (NULL ends the list); the caller frees. */
static char *cat(const char *a, ...)
{
        char *buf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&buf, &size);
        va_list ap;
        va_start(ap, a);
        for (const char *s = a; s; s = va_arg(ap, const char *))
                fputs(s, m);
        va_end(ap);
        fclose(m);
        return buf;
}

static const char *path_of(const char *name)
{
        static char buf[4][256];
        static unsigned k;
        char *p = buf[k++ % 4];
        snprintf(p, 256, "%s/%s", dir, name);
        return p;
}

static int setup(void **state)
{
        const char *root = getenv("SMTPTLSD_SOURCE_ROOT");
        char cmd[512];
        strcpy(dir, "/tmp/smtptlsd-cert-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(cmd, sizeof(cmd), "sh %s/tests/unit/certs/gen.sh %s >%s/gen.log 2>&1",
                 root ? root : "..", dir, dir);
        if (system(cmd) != 0)
                fail_msg("%s failed; see %s/gen.log", cmd, dir);
        now_ = time(NULL);
        return 0;
}

static int teardown(void **state)
{
        for (size_t i = 0; i < ARRAY_SIZE(cache); i++) {
                free(cache[i].text);
                cache[i].text = NULL;
        }
        assert_int_equal(fs_remove_tree(dir), 0);
        return 0;
}

static size_t len_of(const char *s)
{
        return s ? strlen(s) : 0;
}

/* No detail may quote a key: no PEM line, no base64 of a DER key. */
static void assert_no_secret(const struct problem *p)
{
        static const char *const bad[] = { "-----", "MII", "MHc", "MC4C", "MIG" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (strstr(p->detail, bad[i]))
                        fail_msg("detail quotes material: %s", p->detail);
}

static void check_problem(int r, const struct problem *p, enum problem_code code, const char *field,
                          const char *what)
{
        if (r >= 0)
                fail_msg("%s: accepted", what);
        assert_int_equal(r, -EINVAL);
        if (p->code != code)
                fail_msg("%s: got %s (%s: %s), want %s", what, problem_code_name(p->code), p->field,
                         p->detail, problem_code_name(code));
        if (!streq(p->field, field))
                fail_msg("%s: field '%s', want '%s'", what, p->field, field);
        assert_true(p->detail[0] != 0);
        assert_no_secret(p);
        assert_int_equal(ERR_peek_error(), 0);
}

static void expect_import_at(const char *cert, const char *key, const char *chain, time_t now,
                             enum problem_code code, const char *field, const char *what)
{
        struct cert_import imp;
        struct problem p = { 0 };
        int r =
            cert_import(cert, len_of(cert), key, len_of(key), chain, len_of(chain), now, &imp, &p);
        check_problem(r, &p, code, field, what);
        assert_null(imp.cert_pem);
        assert_null(imp.key_pem);
        assert_null(imp.info.subject);
        problem_done(&p);
}

#define expect_import(cert, key, chain, code, field)                                               \
        expect_import_at(cert, key, chain, now_, code, field, #cert " + " #key " + " #chain)

static void import_ok(const char *cert, const char *key, const char *chain, struct cert_import *imp)
{
        struct problem p = { 0 };
        int r =
            cert_import(cert, len_of(cert), key, len_of(key), chain, len_of(chain), now_, imp, &p);
        if (r < 0)
                fail_msg("refused: %s (%s): %s", problem_code_name(p.code), p.field, p.detail);
        assert_int_equal(ERR_peek_error(), 0);
}

static void expect_bundle(const char *bundle, enum problem_code code, const char *what)
{
        struct cert_import imp;
        struct problem p = { 0 };
        int r = cert_import_bundle(bundle, len_of(bundle), now_, &imp, &p);
        check_problem(r, &p, code, "", what);
        assert_null(imp.cert_pem);
        problem_done(&p);
}

/* ---- accepted uploads ------------------------------------------------------------------- */

static void test_import_rsa(void **state)
{
        struct cert_import imp;
        import_ok(pem("leaf.pem"), pem("leaf.key"), pem("int.pem"), &imp);

        /* normalized: the leaf, the chain, the key as unencrypted PKCS#8 */
        assert_string_equal(imp.cert_pem, pem("leaf.pem"));
        assert_string_equal(imp.chain_pem, pem("int.pem"));
        char *full = cat(pem("leaf.pem"), pem("int.pem"), NULL);
        assert_string_equal(imp.fullchain_pem, full);
        free(full);
        assert_true(strncmp(imp.key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
        assert_string_equal(imp.key_pem, pem("leaf.key")); /* genpkey writes PKCS#8 too */

        const struct cert_info *i = &imp.info;
        assert_string_equal(i->subject, "CN=mx1.example.com,O=smtptlsd tests");
        assert_string_equal(i->issuer, "CN=smtptlsd Test Intermediate,O=smtptlsd tests");
        assert_string_equal(i->serial, "1A2B");
        assert_int_equal(i->n_dns_names, 3);
        assert_string_equal(i->dns_names[0], "mx1.example.com");
        assert_string_equal(i->dns_names[1], "mx2.example.com");
        assert_string_equal(i->dns_names[2], "*.relay.example.com");
        assert_string_equal(i->key_type, "RSA");
        assert_int_equal(i->key_bits, 2048);
        char fp[128];
        snprintf(fp, sizeof(fp), "%s", pem("leaf.fp"));
        fp[strcspn(fp, "\n")] = 0;
        assert_string_equal(i->sha256_fingerprint, fp);
        snprintf(fp, sizeof(fp), "%s", pem("leaf.spki"));
        fp[strcspn(fp, "\n")] = 0;
        assert_string_equal(i->spki_sha256, fp);
        assert_false(i->self_signed);
        assert_false(i->is_ca);
        assert_true(i->not_before <= now_ && now_ < i->not_after);
        assert_int_equal(i->n_chain, 1);
        assert_string_equal(i->chain[0].subject, "CN=smtptlsd Test Intermediate,O=smtptlsd tests");
        assert_string_equal(i->chain[0].issuer, "CN=smtptlsd Test Root CA,O=smtptlsd tests");
        cert_import_done(&imp);
        cert_import_done(&imp); /* idempotent */

        /* no chain at all is fine; a traditional "RSA PRIVATE KEY" comes out as PKCS#8 */
        import_ok(pem("leaf.pem"), pem("leaf.rsa.key"), NULL, &imp);
        assert_string_equal(imp.key_pem, pem("leaf.key"));
        assert_string_equal(imp.chain_pem, "");
        assert_string_equal(imp.fullchain_pem, pem("leaf.pem"));
        assert_int_equal(imp.info.n_chain, 0);
        cert_import_done(&imp);

        /* CRLF line ends, indentation and explanatory text before a block are tolerated */
        char *leaf = NULL;
        size_t size = 0;
        FILE *m = open_memstream(&leaf, &size);
        fputs("subject=CN = mx1.example.com\r\n", m);
        for (const char *c = pem("leaf.pem"); *c; c++) {
                if (*c == '\n')
                        fputs("  \r", m);
                fputc(*c, m);
        }
        fclose(m);
        import_ok(leaf, pem("leaf.key"), pem("int.pem"), &imp);
        assert_string_equal(imp.cert_pem, pem("leaf.pem"));
        cert_import_done(&imp);
        free(leaf);
}

static void test_import_other_keys(void **state)
{
        struct cert_import imp;

        /* EC P-256, with the EC PARAMETERS block ecparam writes */
        assert_non_null(strstr(pem("ec.key"), "EC PARAMETERS"));
        import_ok(pem("ec.pem"), pem("ec.key"), pem("int.pem"), &imp);
        assert_string_equal(imp.info.key_type, "EC");
        assert_int_equal(imp.info.key_bits, 256);
        assert_true(strncmp(imp.key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
        assert_null(strstr(imp.key_pem, "PARAMETERS"));
        cert_import_done(&imp);

        import_ok(pem("ed.pem"), pem("ed.key"), pem("int.pem"), &imp);
        assert_string_equal(imp.info.key_type, "Ed25519");
        cert_import_done(&imp);

        /* self-signed server certificate (CA:FALSE): accepted and flagged */
        import_ok(pem("self.pem"), pem("leaf.key"), NULL, &imp);
        assert_true(imp.info.self_signed);
        assert_false(imp.info.is_ca);
        cert_import_done(&imp);

        /* UTF-8 in the subject stays UTF-8 */
        import_ok(pem("utf8.pem"), pem("leaf.key"), NULL, &imp);
        assert_string_equal(imp.info.subject, "CN=Müller Mail,O=Société Générale");
        json_t *j = cert_info_to_json(&imp.info, now_);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "subject")), imp.info.subject);
        json_decref(j);
        cert_import_done(&imp);

        /* no SAN: the CN stands in; no extendedKeyUsage at all means any use */
        import_ok(pem("nosan.pem"), pem("leaf.key"), pem("int.pem"), &imp);
        assert_int_equal(imp.info.n_dns_names, 1);
        assert_string_equal(imp.info.dns_names[0], "legacy.example.com");
        cert_import_done(&imp);
}

static void test_chain_reordered(void **state)
{
        struct cert_import imp;
        char *expect = cat(pem("int.pem"), pem("ca.pem"), NULL);

        /* root first: reordered into issuer order */
        char *chain = cat(pem("ca.pem"), pem("int.pem"), NULL);
        import_ok(pem("leaf.pem"), pem("leaf.key"), chain, &imp);
        assert_string_equal(imp.chain_pem, expect);
        assert_int_equal(imp.info.n_chain, 2);
        assert_string_equal(imp.info.chain[0].subject,
                            "CN=smtptlsd Test Intermediate,O=smtptlsd tests");
        assert_string_equal(imp.info.chain[1].subject, "CN=smtptlsd Test Root CA,O=smtptlsd tests");
        cert_import_done(&imp);
        free(chain);

        /* a fullchain.pem sent as the certificate, the root as chain */
        char *full = cat(pem("leaf.pem"), pem("int.pem"), NULL);
        import_ok(full, pem("leaf.key"), pem("ca.pem"), &imp);
        assert_string_equal(imp.cert_pem, pem("leaf.pem"));
        assert_string_equal(imp.chain_pem, expect);
        cert_import_done(&imp);

        /* the leaf and duplicates repeated in the chain are dropped */
        chain = cat(pem("int.pem"), pem("leaf.pem"), pem("ca.pem"), pem("int.pem"), NULL);
        import_ok(full, pem("leaf.key"), chain, &imp);
        assert_string_equal(imp.chain_pem, expect);
        cert_import_done(&imp);
        free(chain);
        free(full);

        /* leaf + 9 chain certificates is the most (10), 11 is refused before parsing */
        chain = cat(pem("int.pem"), pem("int.pem"), pem("int.pem"), pem("int.pem"), pem("int.pem"),
                    pem("int.pem"), NULL);
        char *chain9 = cat(chain, pem("int.pem"), pem("int.pem"), pem("int.pem"), NULL);
        char *chain10 = cat(chain9, pem("int.pem"), NULL);
        import_ok(pem("leaf.pem"), pem("leaf.key"), chain9, &imp);
        assert_string_equal(imp.chain_pem, pem("int.pem"));
        cert_import_done(&imp);
        expect_import(pem("leaf.pem"), pem("leaf.key"), chain10, PROBLEM_INVALID_PEM, "/chain");
        char *leaf11 = cat(pem("leaf.pem"), chain10, NULL);
        expect_import(leaf11, pem("leaf.key"), NULL, PROBLEM_INVALID_PEM, "/certificate");
        free(leaf11);
        free(chain10);
        free(chain9);
        free(chain);
        free(expect);
}

/* ---- refusals --------------------------------------------------------------------------- */

static void test_refusals(void **state)
{
        const char *leaf = pem("leaf.pem"), *key = pem("leaf.key"), *chain = pem("int.pem");

        expect_import(leaf, pem("enc8.key"), chain, PROBLEM_ENCRYPTED_PRIVATE_KEY, "/private_key");
        expect_import(leaf, pem("enclegacy.key"), chain, PROBLEM_ENCRYPTED_PRIVATE_KEY,
                      "/private_key");
        expect_import(leaf, pem("other.key"), chain, PROBLEM_KEY_MISMATCH, "/private_key");
        expect_import(pem("ec.pem"), key, chain, PROBLEM_KEY_MISMATCH, "/private_key");
        expect_import(pem("expired.pem"), key, chain, PROBLEM_CERTIFICATE_EXPIRED, "/certificate");
        expect_import(pem("future.pem"), key, chain, PROBLEM_CERTIFICATE_NOT_YET_VALID,
                      "/certificate");
        expect_import(pem("rsa1024.pem"), pem("rsa1024.key"), chain, PROBLEM_WEAK_KEY,
                      "/private_key");
        expect_import(pem("ec224.pem"), pem("ec224.key"), chain, PROBLEM_WEAK_KEY, "/private_key");
        expect_import(chain, pem("int.key"), pem("ca.pem"), PROBLEM_NOT_A_SERVER_CERTIFICATE,
                      "/certificate");
        expect_import(pem("client.pem"), key, chain, PROBLEM_NOT_A_SERVER_CERTIFICATE,
                      "/certificate");
        expect_import(leaf, key, pem("other_ca.pem"), PROBLEM_CHAIN_MISMATCH, "/chain");
        expect_import(leaf, key, pem("ca.pem"), PROBLEM_CHAIN_MISMATCH, "/chain");
        char *extra = cat(chain, pem("other_ca.pem"), NULL);
        expect_import(leaf, key, extra, PROBLEM_CHAIN_MISMATCH, "/chain");
        free(extra);
        char *full = cat(leaf, pem("other_ca.pem"), NULL);
        expect_import(full, key, NULL, PROBLEM_CHAIN_MISMATCH, "/certificate");
        free(full);

        /* the first failure in the documented order is the one reported */
        expect_import(pem("expired.pem"), pem("enc8.key"), pem("other_ca.pem"),
                      PROBLEM_ENCRYPTED_PRIVATE_KEY, "/private_key");
        expect_import(pem("expired.pem"), pem("other.key"), NULL, PROBLEM_KEY_MISMATCH,
                      "/private_key");
        expect_import(pem("expired.pem"), key, pem("other_ca.pem"), PROBLEM_CERTIFICATE_EXPIRED,
                      "/certificate");
        expect_import(chain, pem("int.key"), pem("other_ca.pem"), PROBLEM_NOT_A_SERVER_CERTIFICATE,
                      "/certificate");
        expect_import("garbage", pem("enc8.key"), NULL, PROBLEM_INVALID_PEM, "/certificate");
        expect_import(leaf, pem("enc8.key"), "garbage", PROBLEM_INVALID_PEM, "/chain");
}

static void test_malformed(void **state)
{
        const char *leaf = pem("leaf.pem"), *key = pem("leaf.key"), *chain = pem("int.pem");
        char *s;

        /* empty, blank, missing */
        expect_import("", key, chain, PROBLEM_NO_CERTIFICATE, "/certificate");
        expect_import(" \n\t\r\n", key, chain, PROBLEM_NO_CERTIFICATE, "/certificate");
        expect_import(NULL, key, chain, PROBLEM_NO_CERTIFICATE, "/certificate");
        expect_import(leaf, "", chain, PROBLEM_NO_PRIVATE_KEY, "/private_key");
        expect_import(leaf, NULL, chain, PROBLEM_NO_PRIVATE_KEY, "/private_key");
        expect_import(leaf, leaf, chain, PROBLEM_NO_PRIVATE_KEY, "/private_key");

        /* not PEM */
        expect_import("hello world\n", key, chain, PROBLEM_INVALID_PEM, "/certificate");
        expect_import(leaf, "not a key", chain, PROBLEM_INVALID_PEM, "/private_key");
        expect_import(leaf, key, "not a chain", PROBLEM_INVALID_PEM, "/chain");

        /* trailing garbage after the last block, in each field */
        s = cat(leaf, "garbage\n", NULL);
        expect_import(s, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        free(s);
        s = cat(key, "\n\n  x", NULL);
        expect_import(leaf, s, chain, PROBLEM_INVALID_PEM, "/private_key");
        free(s);
        s = cat(chain, "-----BEGIN CERTIFICATE-----\nMIIB\n", NULL); /* half a second block */
        expect_import(leaf, key, s, PROBLEM_INVALID_PEM, "/chain");
        free(s);
        s = cat(leaf, "   \n\n\t\n", NULL); /* whitespace is fine */
        struct cert_import imp;
        import_ok(s, key, chain, &imp);
        cert_import_done(&imp);
        free(s);

        /* truncated, mismatched END, stray END, bad base64, NUL byte, unknown block */
        s = strdup(leaf);
        *strstr(s, "-----END") = 0;
        expect_import(s, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        free(s);
        s = strdup(leaf);
        memcpy(strstr(s, "-----END CERTIFICATE") + 9, "CERTIFICAT ", 11);
        expect_import(s, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        free(s);
        s = cat("-----END CERTIFICATE-----\n", leaf, NULL);
        expect_import(s, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        free(s);
        s = strdup(leaf);
        memcpy(strchr(s, '\n') + 10, "!!!!", 4);
        expect_import(s, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        free(s);
        s = strdup(leaf);
        char *nl = strchr(s, '\n');
        size_t n = strlen(s);
        nl[20] = 0;
        struct problem p = { 0 };
        int r = cert_import(s, n, key, strlen(key), NULL, 0, now_, &imp, &p);
        check_problem(r, &p, PROBLEM_INVALID_PEM, "/certificate", "NUL byte");
        problem_done(&p);
        free(s);
        expect_import("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE "
                      "REQUEST-----\n",
                      key, chain, PROBLEM_INVALID_PEM, "/certificate");
        expect_import("-----BEGIN certificate-----\nMIIB\n-----END certificate-----\n", key, chain,
                      PROBLEM_INVALID_PEM, "/certificate");

        /* keys where certificates belong, and the other way round */
        expect_import(key, key, chain, PROBLEM_INVALID_PEM, "/certificate");
        expect_import(leaf, key, key, PROBLEM_INVALID_PEM, "/chain");
        s = cat(key, leaf, NULL);
        expect_import(leaf, s, chain, PROBLEM_INVALID_PEM, "/private_key");
        free(s);
        s = cat(key, pem("other.key"), NULL);
        expect_import(leaf, s, chain, PROBLEM_INVALID_PEM, "/private_key");
        free(s);
        s = cat(key, key, key, NULL);
        expect_import(leaf, s, chain, PROBLEM_INVALID_PEM, "/private_key");
        free(s);
        expect_import(leaf,
                      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END "
                      "OPENSSH PRIVATE KEY-----\n",
                      chain, PROBLEM_INVALID_PEM, "/private_key");
}

static void test_too_large(void **state)
{
        size_t big = 2 * 1024 * 1024;
        char *buf = malloc(big + 1);
        const char *leaf = pem("leaf.pem");
        size_t l = strlen(leaf), n = 0;
        while (n + l <= big) {
                memcpy(buf + n, leaf, l);
                n += l;
        }
        memset(buf + n, '\n', big - n);
        buf[big] = 0;

        /* refused before any parsing: fast, and ahead of the garbage in the other fields */
        uint64_t t0 = now_monotonic_usec();
        expect_import(buf, pem("leaf.key"), NULL, PROBLEM_PAYLOAD_TOO_LARGE, "/certificate");
        uint64_t dt = now_monotonic_usec() - t0;
        if (dt > 20000)
                fail_msg("a 2 MiB upload took %llu us to refuse", (unsigned long long)dt);
        expect_import("garbage", buf, NULL, PROBLEM_PAYLOAD_TOO_LARGE, "/private_key");
        expect_import("garbage", "garbage", buf, PROBLEM_PAYLOAD_TOO_LARGE, "/chain");
        t0 = now_monotonic_usec();
        expect_bundle(buf, PROBLEM_PAYLOAD_TOO_LARGE, "2 MiB bundle");
        dt = now_monotonic_usec() - t0;
        if (dt > 20000)
                fail_msg("a 2 MiB bundle took %llu us to refuse", (unsigned long long)dt);

        /* exactly at the cap is not too large (it is then refused for its content) */
        char saved = buf[CERT_PEM_MAX];
        buf[CERT_PEM_MAX] = 0;
        expect_import(buf, pem("leaf.key"), NULL, PROBLEM_INVALID_PEM, "/certificate");
        buf[CERT_PEM_MAX] = saved;
        buf[CERT_PEM_MAX + 1] = 0;
        expect_import(buf, pem("leaf.key"), NULL, PROBLEM_PAYLOAD_TOO_LARGE, "/certificate");
        free(buf);
}

/* ---- bundles ---------------------------------------------------------------------------- */

static void permute(const char **v, size_t n, size_t k, void (*fn)(const char **, size_t),
                    unsigned *count)
{
        if (k == n) {
                fn(v, n);
                (*count)++;
                return;
        }
        for (size_t i = k; i < n; i++) {
                const char *t = v[k];
                v[k] = v[i];
                v[i] = t;
                permute(v, n, k + 1, fn, count);
                v[i] = v[k];
                v[k] = t;
        }
}

static void bundle_ok(const char **v, size_t n)
{
        char *bundle =
            cat(v[0], n > 1 ? v[1] : NULL, n > 2 ? v[2] : NULL, n > 3 ? v[3] : NULL, NULL);
        struct cert_import imp;
        struct problem p = { 0 };
        int r = cert_import_bundle(bundle, strlen(bundle), now_, &imp, &p);
        if (r < 0)
                fail_msg("bundle refused: %s: %s", problem_code_name(p.code), p.detail);
        assert_string_equal(imp.cert_pem, pem("leaf.pem"));
        assert_string_equal(imp.key_pem, pem("leaf.key"));
        char *expect = cat(pem("int.pem"), n > 3 ? pem("ca.pem") : NULL, NULL);
        assert_string_equal(imp.chain_pem, expect);
        assert_string_equal(imp.info.subject, "CN=mx1.example.com,O=smtptlsd tests");
        free(expect);
        cert_import_done(&imp);
        free(bundle);
}

static void test_bundle_orders(void **state)
{
        const char *v[] = { pem("leaf.key"), pem("leaf.pem"), pem("int.pem"), pem("ca.pem") };
        unsigned count = 0;
        permute(v, 4, 0, bundle_ok, &count);
        assert_int_equal(count, 24);
        count = 0;
        permute(v, 3, 0, bundle_ok, &count); /* v is back in order: key, leaf, int */
        assert_int_equal(count, 6);

        /* the split itself */
        char *cert = NULL, *key = NULL, *chain = NULL;
        struct problem p = { 0 };
        char *b = cat(pem("leaf.pem"), pem("leaf.key"), NULL);
        assert_int_equal(cert_parse_bundle(b, strlen(b), &cert, &key, &chain, &p), 0);
        assert_string_equal(cert, pem("leaf.pem"));
        assert_string_equal(key, pem("leaf.key"));
        assert_null(chain);
        free(cert);
        cert_secret_free(key);
        free(b);

        /* several certificates match the key: the first that is not a CA */
        b = cat(pem("leafca.pem"), pem("int.pem"), pem("leaf.key"), pem("leaf.pem"), NULL);
        assert_int_equal(cert_parse_bundle(b, strlen(b), &cert, &key, &chain, &p), 0);
        assert_string_equal(cert, pem("leaf.pem"));
        char *rest = cat(pem("leafca.pem"), pem("int.pem"), NULL);
        assert_string_equal(chain, rest);
        free(rest);
        free(cert);
        free(chain);
        cert_secret_free(key);
        free(b);

        /* none matches: the first non-CA is the leaf, and import reports the mismatch */
        b = cat(pem("int.pem"), pem("other.key"), pem("leaf.pem"), NULL);
        assert_int_equal(cert_parse_bundle(b, strlen(b), &cert, &key, &chain, &p), 0);
        assert_string_equal(cert, pem("leaf.pem"));
        assert_string_equal(chain, pem("int.pem"));
        free(cert);
        free(chain);
        cert_secret_free(key);
        expect_bundle(b, PROBLEM_KEY_MISMATCH, "bundle with a foreign key");
        free(b);

        /* an EC key with its parameters block */
        b = cat(pem("int.pem"), pem("ec.key"), pem("ec.pem"), NULL);
        struct cert_import imp;
        assert_int_equal(cert_import_bundle(b, strlen(b), now_, &imp, &p), 0);
        assert_string_equal(imp.info.key_type, "EC");
        cert_import_done(&imp);
        free(b);
}

static void test_bundle_refusals(void **state)
{
        char *b;

        expect_bundle("", PROBLEM_NO_CERTIFICATE, "empty bundle");
        expect_bundle(NULL, PROBLEM_NO_CERTIFICATE, "NULL bundle");
        expect_bundle("garbage", PROBLEM_INVALID_PEM, "garbage bundle");
        expect_bundle(pem("leaf.key"), PROBLEM_NO_CERTIFICATE, "key only");
        b = cat(pem("leaf.pem"), pem("int.pem"), NULL);
        expect_bundle(b, PROBLEM_NO_PRIVATE_KEY, "no key");
        free(b);
        b = cat(pem("leaf.pem"), pem("leaf.key"), pem("other.key"), NULL);
        expect_bundle(b, PROBLEM_INVALID_PEM, "two keys");
        free(b);
        b = cat(pem("enc8.key"), pem("leaf.pem"), pem("int.pem"), NULL);
        expect_bundle(b, PROBLEM_ENCRYPTED_PRIVATE_KEY, "encrypted PKCS#8");
        free(b);
        b = cat(pem("int.pem"), pem("leaf.pem"), pem("enclegacy.key"), NULL);
        expect_bundle(b, PROBLEM_ENCRYPTED_PRIVATE_KEY, "encrypted legacy");
        free(b);
        b = cat(pem("leaf.key"), pem("leaf.pem"), pem("int.pem"), "trailing\n", NULL);
        expect_bundle(b, PROBLEM_INVALID_PEM, "trailing garbage");
        free(b);
        b = cat(pem("leaf.key"), pem("expired.pem"), pem("int.pem"), NULL);
        expect_bundle(b, PROBLEM_CERTIFICATE_EXPIRED, "expired");
        free(b);
        b = cat(pem("leaf.key"), pem("leaf.pem"), pem("other_ca.pem"), NULL);
        expect_bundle(b, PROBLEM_CHAIN_MISMATCH, "foreign chain");
        free(b);
        b = cat(pem("int.key"), pem("int.pem"), pem("ca.pem"), NULL);
        expect_bundle(b, PROBLEM_NOT_A_SERVER_CERTIFICATE, "a CA with its key");
        free(b);
        /* 12 blocks: refused before parsing */
        char *five = cat(pem("int.pem"), pem("int.pem"), pem("int.pem"), pem("int.pem"),
                         pem("int.pem"), NULL);
        b = cat(pem("leaf.key"), pem("leaf.pem"), five, five, NULL);
        expect_bundle(b, PROBLEM_INVALID_PEM, "12 blocks");
        free(b);
        b = cat(pem("leaf.key"), pem("leaf.pem"), five, pem("int.pem"), pem("int.pem"),
                pem("int.pem"), pem("int.pem"), NULL);
        struct cert_import imp;
        struct problem p = { 0 };
        assert_int_equal(cert_import_bundle(b, strlen(b), now_, &imp, &p), 0); /* 11 is fine */
        cert_import_done(&imp);
        free(b);
        free(five);
}

/* ---- description ------------------------------------------------------------------------ */

static void test_info_json(void **state)
{
        struct cert_info info;
        struct problem p = { 0 };
        char *full = cat(pem("leaf.pem"), pem("int.pem"), NULL);
        assert_int_equal(cert_info_from_pem(full, strlen(full), &info, &p), 0);
        free(full);
        assert_string_equal(info.serial, "1A2B");
        assert_int_equal(info.n_chain, 1);

        json_t *j = cert_info_to_json(&info, info.not_after - 86400 - 43200);
        assert_non_null(j);
        static const char *const keys[] = { "subject",     "issuer",    "serial",
                                            "not_before",  "not_after", "days_left",
                                            "dns_names",   "key",       "sha256_fingerprint",
                                            "spki_sha256", "chain",     "self_signed" };
        assert_int_equal(json_object_size(j), ARRAY_SIZE(keys));
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                if (!json_object_get(j, keys[i]))
                        fail_msg("missing %s", keys[i]);
        assert_string_equal(json_string_value(json_object_get(j, "subject")), info.subject);
        assert_string_equal(json_string_value(json_object_get(j, "serial")), "1A2B");
        assert_int_equal(json_integer_value(json_object_get(j, "days_left")), 1);
        assert_string_equal(json_string_value(json_object_get(j, "sha256_fingerprint")),
                            info.sha256_fingerprint);
        assert_int_equal(strlen(info.sha256_fingerprint), 95);
        assert_int_equal(strlen(json_string_value(json_object_get(j, "spki_sha256"))), 64);
        assert_true(json_is_false(json_object_get(j, "self_signed")));
        json_t *key = json_object_get(j, "key");
        assert_string_equal(json_string_value(json_object_get(key, "type")), "RSA");
        assert_int_equal(json_integer_value(json_object_get(key, "bits")), 2048);
        assert_int_equal(json_array_size(json_object_get(j, "dns_names")), 3);
        json_t *chain = json_object_get(j, "chain");
        assert_int_equal(json_array_size(chain), 1);
        json_t *c0 = json_array_get(chain, 0);
        assert_int_equal(json_object_size(c0), 3);
        assert_string_equal(json_string_value(json_object_get(c0, "issuer")),
                            "CN=smtptlsd Test Root CA,O=smtptlsd tests");

        /* RFC 3339 UTC, consistent with the time_t */
        regex_t re;
        assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
                                 REG_EXTENDED | REG_NOSUB),
                         0);
        const char *na = json_string_value(json_object_get(j, "not_after"));
        assert_int_equal(regexec(&re, na, 0, NULL, 0), 0);
        assert_int_equal(
            regexec(&re, json_string_value(json_object_get(c0, "not_after")), 0, NULL, 0), 0);
        regfree(&re);
        char buf[32];
        struct tm tm;
        gmtime_r(&info.not_after, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        assert_string_equal(na, buf);
        json_decref(j);

        /* days_left is a floor: negative as soon as it expired */
        static const struct {
                time_t before;
                int64_t days;
        } cases[] = { { 86400, 1 },   { 1, 0 },       { 0, 0 },       { -1, -1 },
                      { -43200, -1 }, { -86400, -1 }, { -86401, -2 }, { 30 * 86400 + 5, 30 } };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                j = cert_info_to_json(&info, info.not_after - cases[i].before);
                assert_int_equal(json_integer_value(json_object_get(j, "days_left")),
                                 cases[i].days);
                json_decref(j);
        }
        cert_info_done(&info);
        cert_info_done(&info);

        assert_int_equal(cert_info_from_pem("junk", 4, &info, &p), -EINVAL);
        assert_int_equal(p.code, PROBLEM_INVALID_PEM);
        assert_null(info.subject);
        problem_done(&p);
}

/* ---- key and fullchain as Postfix loads them ------------------------------------------- */

static int check_pem(const char *key_name, const char *key, const char *chain_name,
                     const char *chain, struct cert_info *info, struct problem *p)
{
        const struct cert_pair pair = { .key_path = key_name,
                                        .chain_path = chain_name,
                                        .key_pem = key,
                                        .key_len = strlen(key),
                                        .chain_pem = chain,
                                        .chain_len = strlen(chain) };
        return cert_check_pem(&pair, now_, info, p);
}

static void expect_unusable(const char *key_name, const char *key, const char *chain_name,
                            const char *chain, const char *needle)
{
        struct cert_info info;
        struct problem p = { 0 };
        int r = check_pem(key_name, key, chain_name, chain, &info, &p);
        check_problem(r, &p, PROBLEM_CERTIFICATE_UNUSABLE, "", needle);
        if (!strstr(p.detail, needle))
                fail_msg("detail '%s' lacks '%s'", p.detail, needle);
        assert_null(info.subject);
        assert_int_equal(ERR_peek_error(), 0);
        problem_done(&p);
}

static void test_check_pem(void **state)
{
        struct cert_import imp;
        struct cert_info info;
        struct problem p = { 0 };

        import_ok(pem("leaf.pem"), pem("leaf.rsa.key"), pem("int.pem"), &imp);
        const char *key = imp.key_pem, *chain = imp.fullchain_pem;
        assert_int_equal(check_pem("ok.key", key, "ok.fullchain", chain, &info, &p), 0);
        assert_int_equal(ERR_peek_error(), 0);
        assert_string_equal(info.subject, imp.info.subject);
        assert_string_equal(info.sha256_fingerprint, imp.info.sha256_fingerprint);
        assert_int_equal(info.n_chain, 1);
        cert_info_done(&info);
        assert_int_equal(check_pem("ok.key", key, "ok.fullchain", chain, NULL, &p), 0);

        /* empty files: the file named, and OpenSSL's reason */
        expect_unusable("empty.key", "", "ok.fullchain", chain, "empty.key");
        expect_unusable("ok.key", key, "empty.pem", "", "empty.pem");
        /* a different key */
        expect_unusable("other.key", pem("other.key"), "ok.fullchain", chain,
                        "key values mismatch");
        expect_unusable("other.key", pem("other.key"), "ok.fullchain", chain, "other.key");
        /* an encrypted key: refused without prompting */
        expect_unusable("enc8.key", pem("enc8.key"), "ok.fullchain", chain, "enc8.key");
        /* garbage as chain, a key as chain, garbage after the chain's certificates */
        expect_unusable("ok.key", key, "garbage.pem", "garbage\n", "garbage.pem");
        expect_unusable("ok.key", key, "key-as-chain.pem", key, "key-as-chain.pem");
        char *broken =
            cat(chain, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", NULL);
        expect_unusable("ok.key", key, "broken.pem", broken, "broken.pem");
        free(broken);
        /* an expired leaf loads, but is unusable */
        char *expired = cat(pem("expired.pem"), pem("int.pem"), NULL);
        expect_unusable("ok.key", key, "expired.fullchain", expired, "expired on");
        free(expired);
        cert_import_done(&imp);
}

/* ---- hostnames -------------------------------------------------------------------------- */

static void test_hostnames(void **state)
{
        static char text[][32] = { "mx1.example.com",
                                   "*.example.net",
                                   "MX2.Example.ORG.",
                                   "f*o.example.com",
                                   "*.com",
                                   "*mx.example.io",
                                   "mx.*.example.edu",
                                   "*",
                                   "*.",
                                   "xn--bcher-kva.example" };
        char *names[ARRAY_SIZE(text)];
        for (size_t i = 0; i < ARRAY_SIZE(text); i++)
                names[i] = text[i];
        struct cert_info info = { .dns_names = names, .n_dns_names = ARRAY_SIZE(names) };
        static const struct {
                const char *host;
                bool covered;
        } cases[] = {
                { "mx1.example.com", true },
                { "MX1.EXAMPLE.COM", true },
                { "mx1.example.com.", true },
                { "mx.example.net", true },
                { "MX.Example.NET.", true },
                { "example.net", false },
                { "a.b.example.net", false },
                { ".example.net", false },
                { "*.example.net", false },
                { "mx2.example.org", true },
                { "foo.example.com", false },
                { "fo.example.com", false },
                { "example.com", false },
                { "anything.com", false },
                { "xmx.example.io", false },
                { "mx.example.io", false },
                { "mx.a.example.edu", false },
                { "com", false },
                { "", false },
                { ".", false },
                { "mx1.example.com..", false },
                { "mx1..example.com", false },
                { "mx1.example.co", false },
                { "mx1.example.comm", false },
                { "XN--BCHER-KVA.example", true },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                if (cert_covers_hostname(&info, cases[i].host) != cases[i].covered)
                        fail_msg("%s: want %s", cases[i].host,
                                 cases[i].covered ? "covered" : "not");
        assert_false(cert_covers_hostname(&info, NULL));
        assert_false(cert_covers_hostname(NULL, "mx1.example.com"));

        /* from a real certificate: SAN wildcard, and the CN fallback */
        struct cert_import imp;
        import_ok(pem("leaf.pem"), pem("leaf.key"), NULL, &imp);
        assert_true(cert_covers_hostname(&imp.info, "mx2.example.com"));
        assert_true(cert_covers_hostname(&imp.info, "in.relay.example.com"));
        assert_false(cert_covers_hostname(&imp.info, "relay.example.com"));
        assert_false(cert_covers_hostname(&imp.info, "example.com"));
        cert_import_done(&imp);
        import_ok(pem("nosan.pem"), pem("leaf.key"), NULL, &imp);
        assert_true(cert_covers_hostname(&imp.info, "legacy.example.com"));
        cert_import_done(&imp);
}

/* ---- chain verification ----------------------------------------------------------------- */

static void verify(const char *cert, const char *chain, const char *ca, time_t now, int ret,
                   bool want)
{
        bool v = !want;
        int r = cert_verify_chain(cert, len_of(cert), chain, len_of(chain), ca, now, &v);
        assert_int_equal(r, ret);
        if (r == 0 && v != want)
                fail_msg("verified=%d, want %d", v, want);
        assert_int_equal(ERR_peek_error(), 0);
}

static void test_verify_chain(void **state)
{
        const char *leaf = pem("leaf.pem"), *chain = pem("int.pem");
        const char *ca = path_of("ca.pem");
        char *full = cat(leaf, chain, NULL);

        verify(leaf, chain, ca, now_, 0, true);
        verify(full, NULL, ca, now_, 0, true);
        verify(leaf, NULL, ca, now_, 0, false); /* intermediate missing */
        verify(leaf, chain, path_of("other_ca.pem"), now_, 0, false);
        verify(leaf, chain, NULL, now_, 0, false);                 /* not in the system store */
        verify(leaf, chain, ca, now_ + 2 * 365 * 86400, 0, false); /* expired by then */
        verify(pem("client.pem"), chain, ca, now_, 0, false);      /* not for servers */
        verify(pem("expired.pem"), chain, ca, now_, 0, false);
        verify(leaf, chain, path_of("missing-ca.pem"), now_, -ENOENT, false);
        verify("garbage", NULL, ca, now_, -EINVAL, false);
        verify("", NULL, ca, now_, -EINVAL, false);
        free(full);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_import_rsa),      cmocka_unit_test(test_import_other_keys),
                cmocka_unit_test(test_chain_reordered), cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_malformed),       cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_bundle_orders),   cmocka_unit_test(test_bundle_refusals),
                cmocka_unit_test(test_info_json),       cmocka_unit_test(test_check_pem),
                cmocka_unit_test(test_hostnames),       cmocka_unit_test(test_verify_chain),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
