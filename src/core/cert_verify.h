/* cert_verify.h - checking certificates against what uses them (cert_verify.c): rendered files
 * loaded the way Postfix loads them, hostname coverage (RFC 6125), chain verification. Pure, no
 * I/O except the CA file cert_verify_chain() may be named; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/cert_info.h"
#include "core/problem.h"

/* The bytes of a rendered key and fullchain file, read by the caller (apply/), and their paths (for
 * messages only: nothing here opens a file). */
struct cert_pair {
        const char *key_path, *chain_path;
        const char *key_pem, *chain_pem;
        size_t key_len, chain_len;
};
/* Loads key and chain exactly as Postfix loads its files (SSL_CTX_use_certificate_chain_file's
 * rules on the bytes: the first certificate is the leaf, the rest the chain;
 * SSL_CTX_use_PrivateKey, SSL_CTX_check_private_key; never prompts for a passphrase). Any
 * failure, or a leaf expired at now: certificate_unusable (field "") with a detail naming the file
 * and OpenSSL's reason. On success fills *info_ret when not NULL. */
int cert_check_pem(const struct cert_pair *pair, time_t now, struct cert_info *info_ret,
                   struct problem *reterr);

/* RFC 6125: whether a dNSName of info covers hostname. Case-insensitive, a trailing dot ignored, a
 * wildcard only as the whole left-most label of a name with at least three labels ("*.example.com"
 * covers "mx.example.com", not "example.com" nor "a.b.example.com"); no partial wildcards. */
bool cert_covers_hostname(const struct cert_info *info, const char *hostname);

/* Whether the leaf (the first certificate of cert_pem) chains, through the other certificates of
 * cert_pem and chain_pem (NULL for none), to a trust anchor of ca_file, or of the system store
 * (X509_STORE_set_default_paths) when ca_file is NULL, at time now, for TLS server use. Returns 0
 * with *verified set; -EINVAL when the PEM does not parse, -ENOENT when ca_file cannot be loaded,
 * -ENOMEM. */
int cert_verify_chain(const char *cert_pem, size_t cert_len, const char *chain_pem,
                      size_t chain_len, const char *ca_file, time_t now, bool *verified);
