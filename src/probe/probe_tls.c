/* probe_tls.c - the TLS part of the SMTP probe (see probe_tls.h): a small socket BIO of our own
 * that sends with MSG_NOSIGNAL (a peer that closes early cannot raise SIGPIPE in the caller), the
 * client context (trust anchors, signature algorithms), the handshake polled against the
 * deadline, and what the peer certificate says. Any thread; no globals. */
#include "probe/probe_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util.h"

/* ---- TLS ----------------------------------------------------------------------------------- */

/* A socket BIO that sends with MSG_NOSIGNAL; its data is a pointer to the fd. */
static int bio_fd_write(BIO *b, const char *data, int n)
{
        const int *fd = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        ssize_t k = send(*fd, data, (size_t)n, MSG_NOSIGNAL);
        if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        BIO_set_retry_write(b);
                return -1;
        }
        return (int)k;
}

static int bio_fd_read(BIO *b, char *data, int n)
{
        const int *fd = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        ssize_t k = recv(*fd, data, (size_t)n, 0);
        if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        BIO_set_retry_read(b);
                return -1;
        }
        return (int)k;
}

static long bio_fd_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_fd_create(BIO *b)
{
        BIO_set_init(b, 1);
        return 1;
}

BIO_METHOD *probe_tls_bio_method(void)
{
        BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "smtp probe socket");
        if (!m)
                return NULL;
        if (!BIO_meth_set_write(m, bio_fd_write) || !BIO_meth_set_read(m, bio_fd_read) ||
            !BIO_meth_set_ctrl(m, bio_fd_ctrl) || !BIO_meth_set_create(m, bio_fd_create)) {
                BIO_meth_free(m);
                return NULL;
        }
        return m;
}

/* The signature algorithms a client offers to be served the certificate of one key type (the
 * names of `openssl s_client -sigalgs`): with a server that holds one certificate per key type
 * (Postfix's smtpd_tls_chain_files), only that one can be chosen. TLS 1.3 binds ECDSA schemes to
 * curves: all three are offered. */
static const struct {
        const char *key_type, *sigalgs;
} sigalgs_by_key_type[] = {
        { "RSA", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pkcs1_sha256:"
                 "rsa_pkcs1_sha384:rsa_pkcs1_sha512" },
        { "RSA-PSS", "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512" },
        { "EC", "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512" },
        { "Ed25519", "ed25519" },
        { "Ed448", "ed448" },
};

const char *smtp_probe_sigalgs(const char *key_type)
{
        for (size_t i = 0; key_type && i < ARRAY_SIZE(sigalgs_by_key_type); i++)
                if (streq(sigalgs_by_key_type[i].key_type, key_type))
                        return sigalgs_by_key_type[i].sigalgs;
        return NULL;
}

/* verify false: no trust anchors are loaded (that takes tens of ms); only the certificate is read.
 * sigalgs (NULL: OpenSSL's default list) is the signature_algorithms extension sent. */
int probe_tls_ctx(const char *ca_file, bool verify, const char *sigalgs, SSL_CTX **ret,
                  struct smtp_probe_result *res)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
                probe_set_error(res, "TLS setup: %s", probe_ssl_reason());
                return -ENOMEM;
        }
        /* Complete the handshake whatever the chain: the verification result is a finding. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (sigalgs && SSL_CTX_set1_sigalgs_list(ctx, sigalgs) != 1) {
                probe_set_error(res, "TLS setup: signature algorithms \"%s\": %s", sigalgs,
                                probe_ssl_reason());
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        if (verify && (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                               : SSL_CTX_set_default_verify_paths(ctx) != 1)) {
                if (ca_file)
                        probe_set_error(res, "CA file %s: %s", ca_file, probe_ssl_reason());
                else
                        probe_set_error(res, "system trust store: %s", probe_ssl_reason());
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        *ret = ctx;
        return 0;
}

int probe_tls_ctx_paths(const char *ca_file, const char *ca_path, bool system, bool dane,
                        SSL_CTX **ret, struct smtp_probe_result *res)
{
        SSL_CTX *ctx = NULL;
        int r = probe_tls_ctx(NULL, false, NULL, &ctx, res);
        if (r < 0)
                return r;
        /* anchors that do not load make the chain untrusted, as in Postfix's smtp; the
         * handshake is still made and reported */
        if ((ca_file || ca_path) && SSL_CTX_load_verify_locations(ctx, ca_file, ca_path) != 1)
                snprintf(res->trust_error, sizeof(res->trust_error),
                         "the trust anchors %.90s%s%.90s do not load: %.40s",
                         ca_file ? ca_file : "", ca_file && ca_path ? " " : "",
                         ca_path ? ca_path : "", probe_ssl_reason());
        if (system && SSL_CTX_set_default_verify_paths(ctx) != 1 && !res->trust_error[0])
                snprintf(res->trust_error, sizeof(res->trust_error),
                         "the system's trust anchors do not load: %.100s", probe_ssl_reason());
        if (!ca_file && !ca_path && !system)
                snprintf(res->trust_error, sizeof(res->trust_error),
                         "no trust anchors: smtp_tls_CAfile and smtp_tls_CApath are empty and "
                         "tls_append_default_CA = no");
        ERR_clear_error();
        if (dane && SSL_CTX_dane_enable(ctx) <= 0) {
                probe_set_error(res, "TLS setup: DANE: %s", probe_ssl_reason());
                SSL_CTX_free(ctx);
                return -ENOMEM;
        }
        *ret = ctx;
        return 0;
}

static bool is_ip_literal(const char *s)
{
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The printable RFC 2253 form of a name. */
static void name_string(const X509_NAME *name, char *dst, size_t size)
{
        BIO *mem = BIO_new(BIO_s_mem());
        char *data = NULL;
        dst[0] = 0;
        if (!mem)
                return;
        if (X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253) >= 0) {
                long n = BIO_get_mem_data(mem, &data);
                if (n > 0)
                        probe_copy_printable(dst, size, data, (size_t)n);
        }
        BIO_free(mem);
}

static int collect_dns_names(X509 *cert, struct smtp_probe_result *res)
{
        GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        int r = 0;
        if (!names)
                return 0;
        int count = sk_GENERAL_NAME_num(names);
        size_t room = count < SMTP_PROBE_DNS_NAMES_MAX ? (size_t)count : SMTP_PROBE_DNS_NAMES_MAX;
        if (room > 0) {
                res->dns_names = calloc(room, sizeof(char *));
                if (!res->dns_names)
                        r = -ENOMEM;
        }
        for (int i = 0; r == 0 && i < count && res->n_dns_names < room; i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
                if (g->type != GEN_DNS)
                        continue;
                int len = ASN1_STRING_length(g->d.dNSName);
                if (len < 0 || len > 253)
                        continue;
                char *s = malloc((size_t)len + 1);
                if (!s) {
                        r = -ENOMEM;
                        break;
                }
                probe_copy_printable(s, (size_t)len + 1,
                                     (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                                     (size_t)len);
                res->dns_names[res->n_dns_names++] = s;
        }
        GENERAL_NAMES_free(names);
        return r;
}

/* "AB:CD:..." of n bytes into dst[size]. */
static void hex_pairs(const unsigned char *md, unsigned n, char *dst, size_t size)
{
        char *p = dst;
        dst[0] = 0;
        for (unsigned i = 0; i < n && i * 3 + 3 <= size; i++)
                p += snprintf(p, 4, i ? ":%02X" : "%02X", md[i]);
}

static int collect_cert(X509 *cert, struct smtp_probe_result *res)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        struct tm tm;

        if (X509_digest(cert, EVP_sha256(), md, &n) == 1)
                hex_pairs(md, n, res->sha256_fingerprint, sizeof(res->sha256_fingerprint));
        if (X509_pubkey_digest(cert, EVP_sha256(), md, &n) == 1)
                hex_pairs(md, n, res->pubkey_sha256, sizeof(res->pubkey_sha256));
        if (ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm) == 1)
                res->not_before = timegm(&tm);
        char cn[256];
        int k =
            X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
        if (k > 0)
                probe_copy_printable(res->common_name, sizeof(res->common_name), cn, (size_t)k);
        name_string(X509_get_subject_name(cert), res->subject, sizeof(res->subject));
        name_string(X509_get_issuer_name(cert), res->issuer, sizeof(res->issuer));
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
                res->not_after = timegm(&tm);
        EVP_PKEY *pub = X509_get0_pubkey(cert);
        const char *type = NULL;
        for (size_t i = 0; pub && i < ARRAY_SIZE(sigalgs_by_key_type); i++)
                if (EVP_PKEY_is_a(pub, sigalgs_by_key_type[i].key_type))
                        type = sigalgs_by_key_type[i].key_type;
        strcpy_bounded(res->key_type, sizeof(res->key_type), type ? type : "unknown");
        return collect_dns_names(cert, res);
}

/* The handshake on c->ssl by c->deadline: 0 done (protocol, cipher and group in res), 1 failed
 * (a finding: res->error; the session is freed), negative on timeout or allocation failure. */
static int tls_connect(struct probe_conn *c, BIO_METHOD *meth, struct smtp_probe_result *res)
{
        BIO *bio;
        int r;

        bio = BIO_new(meth);
        if (!bio) {
                probe_set_error(res, "TLS handshake: %s", probe_ssl_reason());
                return -ENOMEM;
        }
        BIO_set_data(bio, &c->fd);
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_connect_state(c->ssl);

        for (;;) {
                ERR_clear_error();
                errno = 0;
                r = SSL_connect(c->ssl);
                if (r == 1)
                        break;
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        r = probe_wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                          c->deadline);
                        if (r < 0)
                                return probe_io_error(res, "TLS handshake", r);
                        continue;
                }
                if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)
                        probe_set_error(res, "TLS handshake: %s",
                                        errno ? strerror(errno)
                                              : "connection closed by the server");
                else
                        probe_set_error(res, "TLS handshake: %s", probe_ssl_reason());
                SSL_free(TAKE_PTR(c->ssl)); /* no QUIT over a broken session */
                return 1;
        }

        res->handshake_ok = true;
        strcpy_bounded(res->protocol, sizeof(res->protocol), SSL_get_version(c->ssl));
        strcpy_bounded(res->cipher, sizeof(res->cipher), SSL_get_cipher_name(c->ssl));
        int nid = SSL_get_negotiated_group(c->ssl);
        const char *group = nid > 0 ? SSL_group_to_name(c->ssl, nid) : NULL;
        strcpy_bounded(res->group, sizeof(res->group), group ? group : "");
        return 0;
}

/* STARTTLS was accepted: handshake, then collect. Returns 0 when the handshake finished, 1 when it
 * failed (a finding, res->error says why), negative on timeout or allocation failure. */
int probe_tls_handshake(struct probe_conn *c, SSL_CTX *ctx, BIO_METHOD *meth,
                        const char *servername, bool verify, struct smtp_probe_result *res)
{
        int r;

        c->ssl = SSL_new(ctx);
        if (!c->ssl) {
                probe_set_error(res, "TLS handshake: %s", probe_ssl_reason());
                return -ENOMEM;
        }
        if (servername) {
                X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
                if (is_ip_literal(servername)) {
                        /* RFC 6066: no IP addresses in SNI; check the IP SANs instead */
                        r = X509_VERIFY_PARAM_set1_ip_asc(param, servername);
                } else {
                        X509_VERIFY_PARAM_set_hostflags(param,
                                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                        r = X509_VERIFY_PARAM_set1_host(param, servername, 0) == 1 &&
                            SSL_set_tlsext_host_name(c->ssl, servername) == 1;
                }
                if (r != 1) {
                        char shown[64];
                        probe_copy_printable(shown, sizeof(shown), servername, strlen(servername));
                        probe_set_error(res, "TLS handshake: unusable server name \"%s\"", shown);
                        return -EINVAL;
                }
        }
        r = tls_connect(c, meth, res);
        if (r != 0)
                return r;
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        if (!peer) {
                strcpy_bounded(res->verify_error, sizeof(res->verify_error), "no peer certificate");
                return 0;
        }
        r = collect_cert(peer, res);
        X509_free(peer);
        if (r < 0) {
                probe_set_error(res, "TLS handshake: out of memory");
                return r;
        }
        if (!verify) {
                strcpy_bounded(res->verify_error, sizeof(res->verify_error), "not checked");
                return 0;
        }
        long v = SSL_get_verify_result(c->ssl);
        res->verified = v == X509_V_OK;
        if (!res->verified)
                strcpy_bounded(res->verify_error, sizeof(res->verify_error),
                               X509_verify_cert_error_string(v));
        return 0;
}

/* The leaf's fingerprints by the digest Postfix matches fingerprint policies with, when it is
 * not SHA-256 (whose are always there). */
static void collect_digest(X509 *cert, const char *name, struct smtp_probe_result *res)
{
        const EVP_MD *md = EVP_get_digestbyname(name);
        unsigned char buf[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        if (!md || EVP_MD_is_a(md, "SHA256"))
                return;
        strcpy_bounded(res->digest_name, sizeof(res->digest_name), name);
        if (X509_digest(cert, md, buf, &n) == 1)
                hex_pairs(buf, n, res->cert_digest, sizeof(res->cert_digest));
        if (X509_pubkey_digest(cert, md, buf, &n) == 1)
                hex_pairs(buf, n, res->pubkey_digest, sizeof(res->pubkey_digest));
}

/* The chain the server sent, leaf first (at most SMTP_PROBE_CHAIN_MAX), into res. */
static int collect_chain(SSL *ssl, struct smtp_probe_result *res)
{
        STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
        int count = chain ? sk_X509_num(chain) : 0;
        if (count <= 0)
                return 0;
        if (count > SMTP_PROBE_CHAIN_MAX)
                count = SMTP_PROBE_CHAIN_MAX;
        res->chain = calloc((size_t)count, sizeof(*res->chain));
        if (!res->chain)
                return -ENOMEM;
        for (int i = 0; i < count; i++) {
                X509 *x = sk_X509_value(chain, i);
                struct smtp_probe_chain_cert *c = &res->chain[res->n_chain++];
                unsigned char md[EVP_MAX_MD_SIZE];
                unsigned n = 0;
                struct tm tm;
                name_string(X509_get_subject_name(x), c->subject, sizeof(c->subject));
                name_string(X509_get_issuer_name(x), c->issuer, sizeof(c->issuer));
                if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
                        c->not_before = timegm(&tm);
                if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
                        c->not_after = timegm(&tm);
                if (X509_digest(x, EVP_sha256(), md, &n) == 1)
                        hex_pairs(md, n, c->sha256_fingerprint, sizeof(c->sha256_fingerprint));
        }
        return 0;
}

/* Whether the chain the server sent verifies to ctx's trust anchors, names aside (what
 * Postfix calls trusted); the error in words into res. */
static int check_trust(SSL *ssl, SSL_CTX *ctx, X509 *peer, struct smtp_probe_result *res)
{
        X509_STORE_CTX *sctx = X509_STORE_CTX_new();
        if (!sctx)
                return -ENOMEM;
        int r = 0;
        if (X509_STORE_CTX_init(sctx, SSL_CTX_get_cert_store(ctx), peer,
                                SSL_get_peer_cert_chain(ssl)) != 1 ||
            X509_STORE_CTX_set_default(sctx, "ssl_server") != 1) {
                r = -ENOMEM;
        } else if (X509_verify_cert(sctx) == 1) {
                res->trusted = true;
                res->trust_error[0] = 0;
        } else if (!res->trust_error[0]) { /* a failed anchor load said why already */
                int e = X509_STORE_CTX_get_error(sctx);
                snprintf(res->trust_error, sizeof(res->trust_error), "%s (depth %d)",
                         X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(sctx));
        }
        X509_STORE_CTX_free(sctx);
        ERR_clear_error();
        return r;
}

/* The DANE set-up of one connection: base domain, no name checks for DANE-EE (RFC 7672 3.1.1),
 * the records. -EINVAL when none of them is usable to OpenSSL (dane_error says so). */
static int dane_setup(SSL *ssl, const struct smtp_probe_options *o, struct smtp_probe_result *res)
{
        const char *base = o->tlsa_base ? o->tlsa_base : o->servername;
        if (SSL_dane_enable(ssl, base) <= 0)
                return -ENOMEM;
        SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
        int usable = 0;
        for (size_t i = 0; i < o->n_tlsa; i++) {
                const struct dns_tlsa *t = &o->tlsa[i];
                int k = SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype, t->data, t->len);
                if (k > 0)
                        usable++;
        }
        ERR_clear_error();
        if (usable == 0) {
                strcpy_bounded(res->dane_error, sizeof(res->dane_error),
                               "no TLSA record is usable");
                return -EINVAL;
        }
        res->dane_checked = true;
        return 0;
}

int probe_tls_handshake_checked(struct probe_conn *c, SSL_CTX *ctx, BIO_METHOD *meth,
                                const struct smtp_probe_options *o, struct smtp_probe_result *res)
{
        c->ssl = SSL_new(ctx);
        if (!c->ssl) {
                probe_set_error(res, "TLS handshake: %s", probe_ssl_reason());
                return -ENOMEM;
        }
        /* SNI when the name can be one (an escaped or odd name goes without) */
        if (o->servername && !is_ip_literal(o->servername))
                SSL_set_tlsext_host_name(c->ssl, o->servername);
        ERR_clear_error();
        if (o->n_tlsa > 0) {
                int k = dane_setup(c->ssl, o, res);
                if (k == -ENOMEM) {
                        probe_set_error(res, "TLS handshake: out of memory");
                        return k;
                }
        }
        int r = tls_connect(c, meth, res);
        if (r != 0)
                return r;
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        if (!peer) {
                strcpy_bounded(res->trust_error, sizeof(res->trust_error), "no peer certificate");
                return 0;
        }
        r = collect_cert(peer, res);
        if (r == 0 && o->fingerprint_digest)
                collect_digest(peer, o->fingerprint_digest, res);
        if (r == 0)
                r = collect_chain(c->ssl, res);
        if (r == 0)
                r = check_trust(c->ssl, ctx, peer, res);
        X509_free(peer);
        if (r < 0) {
                probe_set_error(res, "TLS handshake: out of memory");
                return r;
        }
        if (res->dane_checked) {
                long v = SSL_get_verify_result(c->ssl);
                res->dane_verified =
                    v == X509_V_OK && SSL_get0_dane_authority(c->ssl, NULL, NULL) >= 0;
                if (!res->dane_verified)
                        strcpy_bounded(res->dane_error, sizeof(res->dane_error),
                                       v == X509_V_OK ? "no TLSA record matches"
                                                      : X509_verify_cert_error_string(v));
        }
        return 0;
}
