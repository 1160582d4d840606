/* dns_wire.h - the RDATA of the records the destination probe looks up (MX, A, AAAA, TLSA, TXT),
 * read from the uncompressed wire form libunbound hands over (RFC 1035 3.3, RFC 6698 2.1,
 * RFC 3596). Every length is checked; a malformed record is -EBADMSG, never a partial value.
 * Pure (no I/O, no state); any thread. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define DNS_TYPE_A    1
#define DNS_TYPE_MX   15
#define DNS_TYPE_TXT  16
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_TLSA 52

#define DNS_NAME_TEXT_MAX 1024 /* a name in text form, every byte escaped as \DDD at worst */
#define DNS_ADDRESS_MAX   46   /* INET6_ADDRSTRLEN */
#define DNS_TLSA_DATA_MAX                                                                          \
        2048 /* bytes of certificate association data kept (a full                                 \
                certificate, 2 0 0, fits) */

/* The name at data[*pos] (uncompressed labels) into out in text form without the trailing dot
 * ("mx1.example.com"; the root is "."), letters as they are; bytes other than letters, digits,
 * '-' and '_' are written \DDD and a '.' inside a label "\.". Advances *pos past the name.
 * -EBADMSG: a label longer than 63, a name longer than 255 bytes, a compression pointer or
 * running past len. */
int dns_wire_name(const uint8_t *data, size_t len, size_t *pos, char out[DNS_NAME_TEXT_MAX]);

/* MX: preference and exchange. The exchange "." (RFC 7505, "no mail") comes out as ".". */
int dns_wire_mx(const uint8_t *data, size_t len, unsigned *pref, char host[DNS_NAME_TEXT_MAX]);

/* A (type DNS_TYPE_A, 4 bytes) or AAAA (DNS_TYPE_AAAA, 16 bytes) into numeric text. */
int dns_wire_address(int type, const uint8_t *data, size_t len, char out[DNS_ADDRESS_MAX]);

struct dns_tlsa {
        uint8_t usage, selector, mtype;
        size_t len;                      /* bytes in data */
        uint8_t data[DNS_TLSA_DATA_MAX]; /* certificate association data */
};
/* TLSA: -EBADMSG when shorter than 4 bytes, -EMSGSIZE when the data is over DNS_TLSA_DATA_MAX. */
int dns_wire_tlsa(const uint8_t *data, size_t len, struct dns_tlsa *out);

/* TXT: the character-strings concatenated (RFC 7208 3.3 / RFC 8461 3.1 read them so) into
 * out[size] NUL-terminated; a NUL byte inside is -EBADMSG, too long for out -EMSGSIZE. */
int dns_wire_txt(const uint8_t *data, size_t len, char *out, size_t size);
