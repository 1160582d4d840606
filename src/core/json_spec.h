/* json_spec.h - table-driven validation of JSON request bodies: one spec array per resource,
 * walked by json_dispatch(), which refuses unknown fields and names the failing field as a JSON
 * pointer. Pure (no I/O); any thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/problem.h"

enum json_spec_type {
        JS_STRING,       /* const char * (borrowed from the json_t) */
        JS_CHOICE,       /* const char *, one of .choices */
        JS_BOOL,         /* bool */
        JS_INT,          /* int64_t in [min, max] */
        JS_STRING_ARRAY, /* json_t * (borrowed), an array of strings, at most .max items */
        JS_ANY,          /* json_t * (borrowed), checked by .check alone */
};

enum {
        JS_REQUIRED = 1 << 0, /* missing: missing_field (unless dispatching a patch) */
        JS_NULLABLE = 1 << 1, /* null allowed: strings become NULL, the field still counts as set */
        /* a read-only member of the resource (generation, updated_at, ...): json_dispatch()
         * takes any value and writes nothing; json_check_read_only() compares it */
        JS_READ_ONLY = 1 << 2,
        /* with JS_READ_ONLY: a count the clock moves (a certificate's days_left) - a reply read
         * a moment ago may be one off, so the current value +-1 is accepted */
        JS_CLOCK = 1 << 3,
        /* a member of a write's reply that is no part of the resource (warnings): accepted, so
         * that a reply can be sent back, and otherwise ignored */
        JS_REPLY_ONLY = 1 << 4,
};

struct json_spec;
/* An extra check on a well-typed value; fills reterr (with field) and returns < 0 to refuse. */
typedef int (*json_check_fn)(const struct json_spec *spec, json_t *value, const char *field,
                             struct problem *reterr);

struct json_spec {
        const char *name;
        enum json_spec_type type;
        unsigned flags;
        size_t offset;              /* where the value goes in the output struct */
        const char *const *choices; /* JS_CHOICE: NULL-terminated */
        int64_t min, max;           /* JS_INT: bounds; JS_STRING: max length in bytes (0: 4096) */
        json_check_fn check;
        enum problem_code invalid_code; /* code for a bad value; 0 = invalid_value */
};

enum {
        JSON_DISPATCH_PATCH = 1 << 0, /* no field is required (merge-patch bodies) */
};

/* Validates obj against the NULL-name-terminated spec, writes values into out and sets bit i of
 * *present for each spec[i] present in obj. prefix is the JSON pointer of obj ("" at the root). */
int json_dispatch(json_t *obj, const struct json_spec *spec, void *out, uint64_t *present,
                  unsigned flags, const char *prefix, struct problem *reterr);

/* The read-only members of obj (spec entries flagged JS_READ_ONLY) must equal the member of the
 * same name in current (the resource as a GET shows it now), so that a GET reply can be edited and
 * sent back, and a value that is not the current one is refused, never dropped: invalid_value
 * naming the member. current NULL (the resource does not exist yet): nothing to compare, accepted.
 * Timestamps compare as the same instant whatever their form (fraction, offset). */
int json_check_read_only(json_t *obj, const struct json_spec *spec, json_t *current,
                         const char *prefix, struct problem *reterr);
/* Copies the read-only members of from (per spec) into to, for a body normalized without them. */
void json_copy_read_only(json_t *from, const struct json_spec *spec, json_t *to);

/* Parses a request body into a JSON object: invalid_json (with line and column) for bad JSON,
 * duplicate keys or \u0000; invalid_value when the top level is not an object. */
int json_parse_body(const char *body, size_t len, json_t **ret, struct problem *reterr);

/* A body {"<member>": [item, item, ...]} read one item at a time, so that a bulk body of a
 * million items is never one tree: each item is parsed (jansson, duplicate keys refused) when
 * asked for. The whole body is checked as json_parse_body would - invalid_json with the line and
 * column, invalid_value for a top level that is not an object, unknown_field for another member,
 * missing_field without the member, invalid_value when it is not an array - and an item is handed
 * out before anything after it is read: a caller that refuses an item reads on to the end
 * (json_items_next without looking at the items) so that bad JSON or a bad shape after it is
 * what it says, as json_parse_body would have. Two differences remain: a member other than
 * the items given twice is not noticed (unknown_field instead of invalid_json), and jansson's
 * depth limit counts from each item. */
struct json_items {
        const char *body;
        size_t len, pos;
        const char *member, *what; /* the problem's words: "<member> must be <what>" */
        size_t count;              /* items handed out */
        size_t item_start;         /* where the last item handed out began */
        int state;                 /* where in the text pos is (json_spec.c) */
        bool seen, wrong;          /* the member was there; its value is no array */
        char unknown[128];         /* the first other member, said at the end */
};
void json_items_init(struct json_items *it, const char *body, size_t len, const char *member,
                     const char *what);
/* 1 and *ret an item (any JSON value: the caller checks its type), 0 at the end of a well-formed
 * body, < 0 with reterr filled. */
int json_items_next(struct json_items *it, json_t **ret, struct problem *reterr);
/* Goes on to the next item without reading it: 1 standing before it, 0 at the end of a
 * well-formed body, < 0 with reterr filled, as json_items_next (which is this, then the item). */
int json_items_advance(struct json_items *it, struct problem *reterr);
/* Where the next item is when the reader stands before one (json_items_advance) that is a JSON
 * object: its offset in the body (*off) and its length by a scan of strings and brackets; 0 when
 * it stands elsewhere or the scan finds no end. No check: a caller that knows these bytes to be
 * an item read before (compared whole) passes them with json_items_skip, any other reads them
 * with json_items_next. */
size_t json_items_peek(struct json_items *it, size_t *off);
/* Passes the item json_items_peek found (len bytes), as json_items_next would have. */
void json_items_skip(struct json_items *it, size_t len);
