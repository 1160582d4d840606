/* probe_tls.h - the TLS part of the SMTP probe (smtp_probe.h): its socket BIO, the client
 * context, the handshake after STARTTLS and the peer certificate's details. Any thread; no
 * globals. */
#pragma once

#include <stdbool.h>
#include <openssl/ssl.h>

#include "probe/probe_conn.h"
#include "probe/smtp_probe.h"

/* A socket BIO method that sends with MSG_NOSIGNAL (BIO_meth_free it); NULL when out of memory. */
BIO_METHOD *probe_tls_bio_method(void);
/* The client context into *ret: with verify, the trust anchors of ca_file (NULL: the system
 * store); sigalgs (NULL: OpenSSL's) the signature algorithms offered. -EINVAL with res->error. */
int probe_tls_ctx(const char *ca_file, bool verify, const char *sigalgs, SSL_CTX **ret,
                  struct smtp_probe_result *res);
/* The destination probe's context: the trust anchors of ca_file and ca_path (NULL: none) and,
 * with system, OpenSSL's default ones, as Postfix's smtp client loads them (no anchors at all is
 * a context that trusts nothing); with dane, OpenSSL's DANE support enabled. */
int probe_tls_ctx_paths(const char *ca_file, const char *ca_path, bool system, bool dane,
                        SSL_CTX **ret, struct smtp_probe_result *res);
/* The destination probe's handshake (smtp_probe_address): SNI o->servername, DANE with o->tlsa,
 * then the certificate, the chain, its trust (names aside) and the DANE result into res. Same
 * returns as probe_tls_handshake. */
int probe_tls_handshake_checked(struct probe_conn *c, SSL_CTX *ctx, BIO_METHOD *meth,
                                const struct smtp_probe_options *o, struct smtp_probe_result *res);
/* STARTTLS was accepted: handshake on c (SNI and the name check with servername), then what the
 * peer certificate says into res. 0 when the handshake finished, 1 when it failed (a finding,
 * res->error says why), negative on timeout or allocation failure. */
int probe_tls_handshake(struct probe_conn *c, SSL_CTX *ctx, BIO_METHOD *meth,
                        const char *servername, bool verify, struct smtp_probe_result *res);
