/* layout.h - the one place that knows where smtptlsd's files live: main.cf and its staging and
 * last-known-good copies under the Postfix directory, and the rendered certificate files. Pure
 * (path arithmetic only); worker thread and the API (to show file paths). */
#pragma once

#include <stddef.h>

struct config;

#define LAYOUT_STATE_DIR ".smtptlsd" /* inside the Postfix directory: staging and lkg */
/* The largest main.cf (and master.cf) smtptlsd reads. */
#define LAYOUT_MAIN_CF_MAX (4u << 20)

/* <postfix_dir>/main.cf */
int layout_main_cf(const struct config *cfg, char *buf, size_t size);
/* <postfix_dir>/.smtptlsd: staged and last-known-good copies (same file system as main.cf) */
int layout_state_dir(const struct config *cfg, char *buf, size_t size);
/* <postfix_dir>/.smtptlsd/check: a directory postconf -c can read (main.cf + master.cf) */
int layout_check_dir(const struct config *cfg, char *buf, size_t size);
/* <postfix_dir>/.smtptlsd/main.cf.lkg */
int layout_main_cf_lkg(const struct config *cfg, char *buf, size_t size);
/* <postfix_dir>/master.cf, and its last-known-good copy <postfix_dir>/.smtptlsd/master.cf.lkg */
int layout_master_cf(const struct config *cfg, char *buf, size_t size);
int layout_master_cf_lkg(const struct config *cfg, char *buf, size_t size);
/* <postfix_dir>/.smtptlsd/master.cf.pending: a master.cf swapped and not yet settled (reloaded
 * and committed) */
int layout_master_cf_pending(const struct config *cfg, char *buf, size_t size);

/* The TLS policy map: <postfix_dir>/smtptlsd_tls_policy (the text, for humans and postmap) and
 * the indexed file postmap makes beside it (suffix by map type: .db, .lmdb, .cdb). Staged as
 * <postfix_dir>/.smtptlsd/tls_policy.new(.db); the previous index kept as .smtptlsd/tls_policy.lkg.
 */
#define LAYOUT_POLICY_MAP "smtptlsd_tls_policy"
int layout_policy_map(const struct config *cfg, char *buf, size_t size);
/* The live policy map's index: layout_policy_map's path with the map type's suffix (".db"). */
int layout_policy_index(const struct config *cfg, char *buf, size_t size);
int layout_policy_staged(const struct config *cfg, char *buf, size_t size);
int layout_policy_lkg(const struct config *cfg, char *buf, size_t size);
/* ".db" for hash and btree, ".lmdb", ".cdb" */
const char *layout_map_suffix(const char *type);
/* The file Postfix reads for the map TYPE:PATH (main.cf's token): the index of an indexed type
 * (hash, btree, lmdb, cdb), the source of texthash; -EINVAL for any other map. */
int layout_map_file(const char *spec, char *buf, size_t size);

/* An imported certificate's files live in a directory named after its content, so that a new
 * version never overwrites the files the live main.cf points at:
 * <certificate_directory>/<name>/<first 16 hex of the SHA-256 fingerprint>/{privkey,fullchain}.pem
 */
int layout_imported_dir(const struct config *cfg, const char *name, const char *fingerprint,
                        char *buf, size_t size);
/* ACME certificates are used in place: <acme_live_directory>/<name>/{privkey,fullchain}.pem */
int layout_acme_dir(const struct config *cfg, const char *name, char *buf, size_t size);
int layout_join(const char *dir, const char *file, char *buf, size_t size);

/* {"chain": path, "key": path} of a certificate as the API shows it (cert: name, type and
 * sha256_fingerprint of its JSON). */
#include <jansson.h>
json_t *layout_cert_files_json(const struct config *cfg, const json_t *cert);
