/* sealed.h - private keys at rest: the key-encryption key (key_encryption_key_file, 32 bytes that
 * every node of a fleet shares) and the envelope a private key is stored in when it is configured
 * (AES-256-GCM, a random 96-bit nonce per value, the row it belongs to as additional data). Also
 * the wiping free() that jansson uses where JSON holds a key, so that a request body holding a key
 * does not linger in freed memory. Pure (OpenSSL, no I/O); any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define KEK_SIZE    32
#define KEK_ID_SIZE 17 /* 16 hex digits and NUL */

struct kek {
        unsigned char key[KEK_SIZE];
        char id[KEK_ID_SIZE]; /* hex of 8 bytes of SHA-256("smtptlsd kek id\0" || key): names the
                               * key in envelopes and messages, reveals nothing of it */
};

/* The key file's text: exactly 64 hex digits (`openssl rand -hex 32`), one trailing newline
 * allowed. -EINVAL otherwise. */
int kek_parse(const char *text, size_t len, struct kek *ret);
void kek_wipe(struct kek *k);

/* The envelope, text so that it fits the existing text columns:
 *   "sealed:v1:" <key id, 16 hex> ":" base64(nonce[12] || ciphertext || tag[16])
 * The additional data is the envelope's header ("sealed:v1:<id>:") followed by `context`, which
 * names the value's place (e.g. "certificates.private_key_pem:<name>:<fingerprint>"), so a value
 * copied to another row does not open there. */
#define SEALED_PREFIX "sealed:v1:"

/* Whether a stored value is an envelope (anything else is a plaintext PEM). */
bool sealed_is_sealed(const char *stored);
/* The key id of an envelope; -EINVAL when stored is not one. */
int sealed_key_id(const char *stored, char id[KEK_ID_SIZE]);
/* Seals len bytes; *ret is the envelope (malloc'ed, NUL-terminated). -ENOMEM, -EIO (OpenSSL). */
int sealed_seal(const struct kek *k, const char *context, const char *plain, size_t len,
                char **ret);
/* Opens an envelope into *ret (malloc'ed, NUL-terminated: free with free_wiped()). Errors:
 * -EINVAL not an envelope (or malformed), -EKEYREJECTED sealed with another key (kek NULL: no key
 * configured), -EBADMSG the tag does not verify (tampered, or moved from another context). */
int sealed_open(const struct kek *k, const char *context, const char *stored, char **ret);

/* free() that first wipes the whole allocation (malloc_usable_size), for buffers that may have
 * held a secret. NULL is fine. */
void free_wiped(void *p);

/* jansson's frees go through free_wiped() on a thread between json_wipe_begin() and
 * json_wipe_end() (nestable): around the parsing and release of JSON that holds a private key (an
 * upload's body, the pending keys read at start), so that neither the values nor the parser's
 * buffers linger in freed memory. Elsewhere (100,000-policy bodies) frees stay plain: wiping
 * every jansson free costs 15-45 % of parse + dump + free. json_wipe_install() once at start. */
void json_wipe_install(void);
void json_wipe_begin(void);
void json_wipe_end(void);
