/* dns_wire.c - the RDATA of the records the destination probe looks up (dns_wire.h): names in
 * uncompressed wire form to escaped text, MX, A/AAAA, TLSA and TXT, every length checked before a
 * byte is read. Pure; any thread. */
#include "core/dns_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "core/chars.h"
#include "util.h"

#define DNS_LABEL_MAX 63  /* RFC 1035 2.3.4; the top two bits set are a pointer (4.1.4) */
#define DNS_NAME_MAX  255 /* bytes of a name on the wire, its root label included */

/* Appends one byte of a label to out at *o in the escaped text form. out has room: a name is at
 * most 255 bytes on the wire, so at most 4 * 255 characters of text. */
static void put_label_byte(char *out, size_t *o, uint8_t c)
{
        if (is_alnum(c) || c == '-' || c == '_')
                out[(*o)++] = (char)c;
        else if (c == '.') {
                out[(*o)++] = '\\';
                out[(*o)++] = '.';
        } else
                *o += (size_t)snprintf(out + *o, 5, "\\%03u", (unsigned)c);
}

int dns_wire_name(const uint8_t *data, size_t len, size_t *pos, char out[DNS_NAME_TEXT_MAX])
{
        size_t p = *pos, wire = 0, o = 0;

        out[0] = 0;
        for (;;) {
                if (p >= len)
                        goto bad;
                size_t l = data[p++];
                wire += 1 + l;
                if (l > DNS_LABEL_MAX || wire > DNS_NAME_MAX || l > len - p)
                        goto bad;
                if (l == 0)
                        break;
                if (o)
                        out[o++] = '.';
                for (size_t i = 0; i < l; i++)
                        put_label_byte(out, &o, data[p + i]);
                p += l;
        }
        if (o == 0)
                out[o++] = '.';
        out[o] = 0;
        *pos = p;
        return 0;
bad:
        out[0] = 0; /* never a partial name */
        return -EBADMSG;
}

int dns_wire_mx(const uint8_t *data, size_t len, unsigned *pref, char host[DNS_NAME_TEXT_MAX])
{
        size_t pos = 2;

        *pref = 0;
        host[0] = 0;
        if (len < 3)
                return -EBADMSG;
        int r = dns_wire_name(data, len, &pos, host);
        if (r < 0)
                return r;
        if (pos != len) { /* bytes after the exchange */
                host[0] = 0;
                return -EBADMSG;
        }
        *pref = (unsigned)data[0] << 8 | data[1];
        return 0;
}

int dns_wire_address(int type, const uint8_t *data, size_t len, char out[DNS_ADDRESS_MAX])
{
        int family;

        out[0] = 0;
        if (type == DNS_TYPE_A && len == 4)
                family = AF_INET;
        else if (type == DNS_TYPE_AAAA && len == 16)
                family = AF_INET6;
        else if (type == DNS_TYPE_A || type == DNS_TYPE_AAAA)
                return -EBADMSG;
        else
                return -EINVAL;
        if (!inet_ntop(family, data, out, DNS_ADDRESS_MAX)) {
                out[0] = 0;
                return -errno;
        }
        return 0;
}

int dns_wire_tlsa(const uint8_t *data, size_t len, struct dns_tlsa *out)
{
        out->usage = out->selector = out->mtype = 0;
        out->len = 0;
        /* usage, selector, matching type and the association data, which RFC 6698 2.1 does not
         * allow to be empty: a record of the three fields alone is malformed */
        if (len < 4)
                return -EBADMSG;
        if (len - 3 > DNS_TLSA_DATA_MAX)
                return -EMSGSIZE;
        out->usage = data[0];
        out->selector = data[1];
        out->mtype = data[2];
        out->len = len - 3;
        memcpy(out->data, data + 3, out->len);
        return 0;
}

int dns_wire_txt(const uint8_t *data, size_t len, char *out, size_t size)
{
        size_t total = 0;

        if (size > 0)
                out[0] = 0;
        /* one or more <length><bytes> strings that cover the RDATA exactly (RFC 1035 3.3.14) */
        if (len == 0)
                return -EBADMSG;
        for (size_t p = 0; p < len;) {
                size_t l = data[p++];
                if (l > len - p || memchr(data + p, 0, l))
                        return -EBADMSG;
                total += l;
                p += l;
        }
        if (total >= size)
                return -EMSGSIZE;
        size_t o = 0;
        for (size_t p = 0; p < len;) {
                size_t l = data[p++];
                memcpy(out + o, data + p, l);
                o += l;
                p += l;
        }
        out[o] = 0;
        return 0;
}
