/* reply_cache.h - the read model the HTTP threads serve from: the 200 JSON replies of the routes
 * with a `cached` stamp (the hot GETs: settings, policies, certificates, status, ...), each kept
 * with its ETag and headers under the change count it was read under (changes.h) and its stamp,
 * for at most REPLY_CACHE_TTL_USEC. A request for the same URL (path, query, scope) while the
 * count
 * has not moved gets the very bytes again - no database round trip, no rendering; its
 * If-None-Match is answered 304 from the kept tag. Any commit of this process, any generation
 * heard from another node and any change of the worker's state moves the count: a reply never
 * outlives a write this node has acknowledged. The age limit bounds what no count sees (time in a
 * reply, another node's heartbeat). Entries are reference counted: a reply being sent keeps its
 * bytes while a newer one replaces it. HTTP threads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Response;
struct reply_cache;
struct reply_cache_entry;
struct request;

#define REPLY_CACHE_TTL_USEC  1000000u
#define REPLY_CACHE_MAX_BYTES (16u << 20) /* all entries, keys and bodies */
#define REPLY_CACHE_MAX_ENTRY (2u << 20)  /* a larger reply is not kept */

int reply_cache_new(struct reply_cache **ret);
void reply_cache_free(struct reply_cache *c);

/* Looks req up (url is its path as sent): on a current entry, sets req's reply from it (status
 * 200, headers, the entry's bytes by reference) and returns true. Otherwise remembers the key and
 * the change count in req for reply_cache_keep and returns false. */
bool reply_cache_serve(struct reply_cache *c, struct request *req, const char *url);
/* Keeps req's reply (a 200 JSON reply with an ETag, not secret, not too large) under the key
 * and count reply_cache_serve noted; the reply's body moves into the entry. */
void reply_cache_keep(struct reply_cache *c, struct request *req);
/* An MHD response sending the entry's bytes (holding a reference until MHD is done). */
struct MHD_Response *reply_cache_response(struct reply_cache_entry *e);
void reply_cache_entry_unref(struct reply_cache_entry *e);
