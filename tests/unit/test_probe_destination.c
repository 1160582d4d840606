/* test_probe_destination.c - the destination probe's pure parts of the probe room: a policy key
 * into what is probed (probe_destination_parse) and the addresses probe_private_networks = deny
 * refuses (probe_address_is_private). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "probe/probe.h"
#include "probe/probe_conn.h"
#include "util.h"

static const struct {
        const char *key;
        bool any_port;
        int ret;
        const char *name;
        unsigned port;
        bool literal, subdomains, is_address;
} forms[] = {
        { "example.com", false, 0, "example.com", 25, false, false, false },
        { ".example.com", false, 0, "example.com", 25, false, true, false },
        { "relay.example:587", false, 0, "relay.example", 587, false, false, false },
        { "relay.example:submission", false, 0, "relay.example", 587, false, false, false },
        { "relay.example:smtps", false, 0, "relay.example", 465, false, false, false },
        { "relay.example:2525", false, -EINVAL, NULL, 0, false, false, false },
        { "relay.example:2525", true, 0, "relay.example", 2525, false, false, false },
        { "relay.example:imap", true, -EINVAL, NULL, 0, false, false, false },
        { "[mx.example.net]", false, 0, "mx.example.net", 25, true, false, false },
        { "[mx.example.net]:2525", false, 0, "mx.example.net", 2525, true, false, false },
        { "[192.0.2.1]:25", false, 0, "192.0.2.1", 25, true, false, true },
        { "[ipv6:2001:db8::1]:465", false, 0, "2001:db8::1", 465, true, false, true },
        { "[2001:db8::1]", false, 0, "2001:db8::1", 25, true, false, true },
        { "[mx.example.net", false, -EINVAL, NULL, 0, false, false, false },
        { "[]:25", false, -EINVAL, NULL, 0, false, false, false },
        { "[mx.example.net]x", false, -EINVAL, NULL, 0, false, false, false },
        { "[mx.example.net]:0", false, -EINVAL, NULL, 0, false, false, false },
        { "[mx.example.net]:65536", false, -EINVAL, NULL, 0, false, false, false },
        { "", false, -EINVAL, NULL, 0, false, false, false },
        { ".", false, -EINVAL, NULL, 0, false, false, false },
};

static void test_forms(void **state)
{
        for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
                struct probe_destination d;
                char err[256];
                int r =
                    probe_destination_parse(forms[i].key, forms[i].any_port, &d, err, sizeof(err));
                if (r != forms[i].ret)
                        fail_msg("%s: %d (%s), expected %d", forms[i].key, r, err, forms[i].ret);
                if (r < 0) {
                        assert_true(err[0] != 0);
                        continue;
                }
                assert_string_equal(d.key, forms[i].key);
                assert_string_equal(d.name, forms[i].name);
                assert_int_equal(d.port, forms[i].port);
                assert_int_equal(d.literal, forms[i].literal);
                assert_int_equal(d.subdomains, forms[i].subdomains);
                assert_int_equal(d.is_address, forms[i].is_address);
        }
}

static void test_smtp_settings(void **state)
{
        struct probe_destination d;
        char err[64];
        assert_int_equal(probe_destination_parse("example.com", false, &d, err, sizeof(err)), 0);
        probe_destination_set_smtp(&d, "/etc/ssl/ca.pem", NULL, true, "nexthop", NULL, "ipv4",
                                   "md5");
        assert_string_equal(d.ca_file, "/etc/ssl/ca.pem");
        assert_string_equal(d.ca_path, "");
        assert_true(d.ca_default && d.only_ipv4 && !d.only_ipv6);
        assert_string_equal(d.fingerprint_digest, "md5");
        probe_destination_set_smtp(&d, NULL, NULL, false, NULL, NULL, "ipv4, ipv6", NULL);
        assert_false(d.only_ipv4 || d.only_ipv6);
        probe_destination_set_smtp(&d, NULL, NULL, false, NULL, NULL, "all", NULL);
        assert_false(d.only_ipv4 || d.only_ipv6);
        probe_destination_set_smtp(&d, NULL, NULL, false, NULL, NULL, "ipv6", NULL);
        assert_true(d.only_ipv6 && !d.only_ipv4);
        struct probe_target t = probe_target_of(&d, NULL, 0);
        assert_string_equal(t.nexthop, "example.com");
        assert_string_equal(t.verify_default, "");
}

static void test_private_addresses(void **state)
{
        static const char *const private[] = {
                "127.0.0.1",
                "10.1.2.3",
                "172.16.0.1",
                "172.31.255.255",
                "192.168.1.1",
                "169.254.1.1",
                "100.64.0.1",
                "0.0.0.0",
                "224.0.0.1",
                "255.255.255.255",
                "198.18.0.1",
                "192.0.0.8",
                "::1",
                "::",
                "fc00::1",
                "fd12::1",
                "fe80::1",
                "fec0::1",
                "ff02::1",
                "::ffff:10.0.0.1",
                "64:ff9b::a00:1",
                "2002:a00:1::1",
                "not an address",
        };
        static const char *const public[] = {
                "192.0.2.1",        "198.51.100.7",      "203.0.113.9", "172.32.0.1",
                "100.128.0.1",      "198.20.0.1",        "2001:db8::1", "2a00::1",
                "::ffff:192.0.2.1", "64:ff9b::c000:201",
        };
        for (size_t i = 0; i < ARRAY_SIZE(private); i++)
                if (!probe_address_is_private(private[i]))
                        fail_msg("%s should be private", private[i]);
        for (size_t i = 0; i < ARRAY_SIZE(public); i++)
                if (probe_address_is_private(public[i]))
                        fail_msg("%s should not be private", public[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_forms),
                cmocka_unit_test(test_smtp_settings),
                cmocka_unit_test(test_private_addresses),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
