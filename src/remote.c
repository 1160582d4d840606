/* remote.c - `smtptlsd push` and `smtptlsd pull` (remote.h): one libcurl request at a time to
 * SMTPTLSD_API_URL with SMTPTLSD_API_TOKEN, every wait bounded. Main thread. */
#include "remote.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util.h"

#define DEFAULT_URL       "http://127.0.0.1:8080"
#define CONNECT_TIMEOUT_S 10L
#define WAIT_S            300 /* ?wait= of the push: the job's own bound */
#define REQUEST_TIMEOUT_S (WAIT_S + 30L)
#define FILE_MAX          (1024UL * 1024 * 1024)
#define BUSY_RETRIES      6 /* a bulk replace in progress: 503 with Retry-After */
#define BUSY_WAIT_MAX_S   30

struct remote {
        char url[1024];
        char token[256];
        const char *ca_file;
};

struct reply {
        long status;
        struct strbuf body;
        char retry_after[16], job_id[24];
};

/* Where the daemon is and how to sign in, from the environment; -EINVAL with why on err. */
static int remote_from_env(struct remote *r, FILE *err)
{
        const char *url = getenv("SMTPTLSD_API_URL"), *token = getenv("SMTPTLSD_API_TOKEN"),
                   *token_file = getenv("SMTPTLSD_API_TOKEN_FILE");
        *r = (struct remote){ .ca_file = getenv("SMTPTLSD_API_CA_FILE") };
        snprintf(r->url, sizeof(r->url), "%s", isempty(url) ? DEFAULT_URL : url);
        size_t n = strlen(r->url);
        while (n && r->url[n - 1] == '/')
                r->url[--n] = 0;
        if (!isempty(token)) {
                snprintf(r->token, sizeof(r->token), "%s", token);
        } else if (!isempty(token_file)) {
                FILE *f = fopen(token_file, "re");
                if (!f || !fgets(r->token, sizeof(r->token), f)) {
                        fprintf(err, "smtptlsd: cannot read the token from %s: %s\n", token_file,
                                f ? "it is empty" : strerror(errno));
                        if (f)
                                fclose(f);
                        return -EINVAL;
                }
                fclose(f);
                r->token[strcspn(r->token, "\r\n")] = 0;
        }
        if (!r->token[0]) {
                fprintf(err, "smtptlsd: no token: set SMTPTLSD_API_TOKEN or "
                             "SMTPTLSD_API_TOKEN_FILE\n");
                return -EINVAL;
        }
        return 0;
}

/* Where the daemon is (remote_from_env) and libcurl ready: < 0 said on err. */
static int remote_begin(struct remote *r, FILE *err)
{
        int k = remote_from_env(r, err);
        if (k >= 0)
                curl_global_init(CURL_GLOBAL_DEFAULT);
        return k;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        struct strbuf *b = userdata;
        if (b->len + size * n > FILE_MAX || strbuf_add(b, data, size * n) < 0)
                return 0; /* curl: a write error */
        return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        struct reply *rep = userdata;
        size_t len = size * n;
        static const struct {
                const char *name;
                size_t off, size;
        } wanted[] = {
                { "Retry-After:", offsetof(struct reply, retry_after), sizeof(rep->retry_after) },
                { "Job-Id:", offsetof(struct reply, job_id), sizeof(rep->job_id) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(wanted); i++) {
                size_t k = strlen(wanted[i].name);
                if (len > k && strncasecmp(data, wanted[i].name, k) == 0) {
                        const char *v = data + k;
                        size_t vl = len - k;
                        while (vl && (*v == ' ' || *v == '\t')) {
                                v++;
                                vl--;
                        }
                        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                                vl--;
                        snprintf((char *)rep + wanted[i].off, wanted[i].size, "%.*s", (int)vl, v);
                }
        }
        return len;
}

/* One request; 0 with the reply, or -EIO with why on err (no answer). */
static int request(const struct remote *r, const char *method, const char *path,
                   const char *content_type, const char *accept, const char *body, size_t len,
                   struct reply *rep, FILE *err)
{
        char url[1200], auth[300], ctype[80], acc[80];
        struct curl_slist *headers = NULL;
        *rep = (struct reply){ 0 };
        snprintf(url, sizeof(url), "%s%s", r->url, path);
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->token);
        headers = curl_slist_append(headers, auth);
        if (content_type) {
                snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
                headers = curl_slist_append(headers, ctype);
        }
        snprintf(acc, sizeof(acc), "Accept: %s", accept);
        headers = curl_slist_append(headers, acc);
        headers = curl_slist_append(headers, "Expect:"); /* the body at once, no 100-continue */
        CURL *c = curl_easy_init();
        if (!c || !headers) {
                curl_slist_free_all(headers);
                curl_easy_cleanup(c);
                fprintf(err, "smtptlsd: out of memory\n");
                return -ENOMEM;
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &rep->body);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, rep);
        if (r->ca_file)
                curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
        CURLcode cr = curl_easy_perform(c);
        if (cr == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rep->status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        if (cr != CURLE_OK) {
                fprintf(err, "smtptlsd: %s %s: %s\n", method, url, curl_easy_strerror(cr));
                free(rep->body.p);
                rep->body = (struct strbuf){ 0 };
                return -EIO;
        }
        if (strbuf_add(&rep->body, "", 0) < 0) {
                fprintf(err, "smtptlsd: out of memory\n");
                return -ENOMEM;
        }
        return 0;
}

/* What a refusal says: "422 invalid_value at /lines/6: detail" on err; the exit status. */
static int refused(const char *what, const struct reply *rep, FILE *err)
{
        json_t *p = json_loads(rep->body.p ? rep->body.p : "", 0, NULL);
        const char *code = json_string_value(json_object_get(p, "code")),
                   *field = json_string_value(json_object_get(p, "field")),
                   *detail = json_string_value(json_object_get(p, "detail"));
        int status =
            rep->status >= 400 && rep->status < 500 && code ? REMOTE_REFUSED : REMOTE_UNREACHABLE;
        fprintf(err, "smtptlsd %s: %s (HTTP %ld%s%s%s%s)%s%s\n", what,
                status == REMOTE_REFUSED ? "refused" : "the daemon failed", rep->status,
                code ? " " : "", code ? code : "", !isempty(field) ? " at " : "",
                !isempty(field) ? field : "", detail ? ": " : "", detail ? detail : "");
        /* every item problem, when there are more */
        size_t i;
        json_t *e;
        json_array_foreach (json_object_get(p, "errors"), i, e)
                if (i > 0 && i < 20)
                        fprintf(err, "  %s: %s\n", json_string_value(json_object_get(e, "field")),
                                json_string_value(json_object_get(e, "detail")));
        json_decref(p);
        return status;
}

static int read_file(const char *path, struct strbuf *b, FILE *err)
{
        FILE *f = streq(path, "-") ? stdin : fopen(path, "re");
        if (!f) {
                int e = errno ? errno : EIO;
                fprintf(err, "smtptlsd push: cannot open %s: %s\n", path, strerror(e));
                return -e;
        }
        char buf[65536];
        size_t n;
        int r = 0;
        while (r >= 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
                if (b->len + n > FILE_MAX || strbuf_add(b, buf, n) < 0)
                        r = -EFBIG;
        if (r >= 0 && ferror(f))
                r = -EIO;
        if (f != stdin)
                fclose(f);
        if (r >= 0 && strbuf_add(b, "", 0) < 0)
                r = -ENOMEM;
        if (r < 0)
                fprintf(err, "smtptlsd push: cannot read %s: %s\n", path, strerror(-r));
        return r;
}

/* "added 1, changed 0, removed 3, unchanged 1" of a bulk's reply. */
static void counts(json_t *j, char *buf, size_t size)
{
        snprintf(buf, size, "added %lld, changed %lld, removed %lld, unchanged %lld",
                 (long long)json_integer_value(json_object_get(j, "added")),
                 (long long)json_integer_value(json_object_get(j, "changed")),
                 (long long)json_integer_value(json_object_get(j, "removed")),
                 (long long)json_integer_value(json_object_get(j, "unchanged")));
}

/* A bulk replace, tried again while another one holds the daemon's bulk slot (503). */
static int put_bulk(const struct remote *r, const char *query, const char *ctype,
                    const struct strbuf *file, struct reply *rep, FILE *err)
{
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/tls-policies%s", query);
        for (int attempt = 0;; attempt++) {
                int k = request(r, "PUT", path, ctype, "application/json", file->p, file->len, rep,
                                err);
                if (k < 0 || rep->status != 503 || attempt >= BUSY_RETRIES)
                        return k;
                long wait = strtol(rep->retry_after, NULL, 10);
                wait = wait < 1 ? 1 : wait > BUSY_WAIT_MAX_S ? BUSY_WAIT_MAX_S : wait;
                fprintf(err, "smtptlsd push: the daemon is busy (503); again in %ld s\n", wait);
                free(rep->body.p);
                sleep((unsigned)wait); /* bounded: BUSY_RETRIES times at most BUSY_WAIT_MAX_S */
        }
}

int remote_push(const struct cli_invocation *inv, FILE *out, FILE *err)
{
        struct remote r;
        struct strbuf file = { 0 };
        struct reply dry = { 0 }, real = { 0 };
        json_t *j = NULL;
        int status = REMOTE_UNREACHABLE;
        char summary[160];
        if (remote_begin(&r, err) < 0 || read_file(inv->file, &file, err) < 0)
                goto out;
        size_t lead = strspn(file.p, " \t\r\n");
        const char *ctype = file.p[lead] == '{' ? "application/json" : "text/plain";

        /* the dry run: what would change (also the whole check of the file) */
        if (put_bulk(&r, "?dry_run=true", ctype, &file, &dry, err) < 0)
                goto out;
        if (dry.status != 200) {
                status = refused("push", &dry, err);
                goto out;
        }
        j = json_loads(dry.body.p, 0, NULL);
        json_t *plan = json_object_get(j, "plan");
        /* a file without one policy removes them all: an empty checkout, a failed `git show`
         * into a pipe - not what a pipeline means unless it says so */
        if (!inv->allow_empty && json_integer_value(json_object_get(j, "removed")) > 0 &&
            json_integer_value(json_object_get(j, "added")) +
                    json_integer_value(json_object_get(j, "changed")) +
                    json_integer_value(json_object_get(j, "unchanged")) ==
                0) {
                fprintf(err,
                        "smtptlsd push: %s holds no policy: pushing it would remove all "
                        "%lld; refused (--allow-empty to mean it)\n",
                        inv->file, (long long)json_integer_value(json_object_get(j, "removed")));
                status = REMOTE_REFUSED;
                goto out;
        }
        if (!json_is_true(json_object_get(plan, "valid"))) {
                json_t *e = json_array_get(json_object_get(plan, "errors"), 0);
                fprintf(err, "smtptlsd push: refused: %s\n",
                        json_string_value(json_object_get(e, "detail"))
                            ? json_string_value(json_object_get(e, "detail"))
                            : "the plan is not valid");
                status = REMOTE_REFUSED;
                goto out;
        }
        const char *diff = json_string_value(json_object_get(plan, "tls_policy_diff"));
        if (!isempty(diff))
                fputs(diff, out);
        counts(j, summary, sizeof(summary));
        bool nothing = json_integer_value(json_object_get(j, "added")) == 0 &&
                       json_integer_value(json_object_get(j, "changed")) == 0 &&
                       json_integer_value(json_object_get(j, "removed")) == 0;
        if (inv->dry_run || nothing) {
                fprintf(err, "smtptlsd push: %s: %s\n",
                        nothing ? "nothing to change" : "dry run, nothing changed", summary);
                status = REMOTE_OK;
                goto out;
        }

        char query[32];
        snprintf(query, sizeof(query), "?wait=%d", WAIT_S);
        if (put_bulk(&r, query, ctype, &file, &real, err) < 0)
                goto out;
        json_decref(j);
        j = json_loads(real.body.p, 0, NULL);
        if (real.status == 200) {
                counts(j, summary, sizeof(summary));
                fprintf(err, "smtptlsd push: applied (job %s): %s\n",
                        real.job_id[0] ? real.job_id : "?", summary);
                status = REMOTE_OK;
        } else if (real.status == 202) {
                fprintf(err, "smtptlsd push: accepted, still running after %d s: job %s\n", WAIT_S,
                        real.job_id[0] ? real.job_id : "?");
                status = REMOTE_RUNNING;
        } else {
                status = refused("push", &real, err);
        }
out:
        json_decref(j);
        free(dry.body.p);
        free(real.body.p);
        free(file.p);
        return status;
}

int remote_pull(const struct cli_invocation *inv, FILE *out, FILE *err)
{
        (void)inv;
        struct remote r;
        struct reply rep = { 0 };
        int status = REMOTE_UNREACHABLE;
        if (remote_begin(&r, err) < 0)
                return status;
        if (request(&r, "GET", "/api/v1/tls-policies", NULL, "text/plain", NULL, 0, &rep, err) < 0)
                return status;
        if (rep.status == 200) {
                status =
                    fwrite(rep.body.p, 1, rep.body.len, out) == rep.body.len && fflush(out) == 0
                        ? REMOTE_OK
                        : REMOTE_UNREACHABLE;
        } else {
                status = refused("pull", &rep, err);
        }
        free(rep.body.p);
        return status;
}

/* The report of an import, for a terminal. */
static void print_import(json_t *j, bool dry_run, FILE *out)
{
        size_t i;
        json_t *m;
        json_array_foreach (json_object_get(j, "maps"), i, m) {
                bool adopt = streq(json_string_value(json_object_get(m, "action")), "adopt");
                fprintf(out, "%s %s: %lld entries", adopt ? "adopt" : "keep ",
                        json_string_value(json_object_get(m, "map")),
                        (long long)json_integer_value(json_object_get(m, "entries")));
                if (adopt)
                        fprintf(out, ", %lld imported, %lld already smtptlsd's, %lld shadowed",
                                (long long)json_integer_value(json_object_get(m, "imported")),
                                (long long)json_integer_value(json_object_get(m, "already")),
                                (long long)json_integer_value(json_object_get(m, "shadowed")));
                else
                        fprintf(out, " (it stays: %s)",
                                json_string_value(json_object_get(m, "reason")));
                fputc('\n', out);
        }
        json_array_foreach (json_object_get(j, "certificates"), i, m) {
                const char *action = json_string_value(json_object_get(m, "action")),
                           *name = json_string_value(json_object_get(m, "name")),
                           *reason = json_string_value(json_object_get(m, "reason"));
                fprintf(out, "certificate %s: %s%s%s%s%s\n",
                        json_string_value(json_array_get(json_object_get(m, "files"), 0)),
                        action ? action : "?", name ? " as " : "", name ? name : "",
                        reason ? ": " : "", reason ? reason : "");
        }
        json_t *st = json_object_get(j, "settings");
        if (st)
                fprintf(out, "settings: %s%s%s%s\n",
                        json_is_true(json_object_get(st, "written")) ? "written, " : "",
                        json_string_value(json_object_get(st, "action")),
                        json_object_get(st, "reason") ? ": " : "",
                        json_object_get(st, "reason")
                            ? json_string_value(json_object_get(st, "reason"))
                            : "");
        json_array_foreach (json_object_get(st, "differs"), i, m)
                fprintf(out, "  %s: %s here, %s in smtptlsd's settings\n",
                        json_string_value(json_object_get(m, "name")),
                        json_string_value(json_object_get(m, "live")),
                        json_string_value(json_object_get(m, "rendered")));
        json_array_foreach (json_object_get(j, "refused"), i, m)
                fprintf(out, "refused %s in %s: %s\n", json_string_value(json_object_get(m, "key")),
                        json_string_value(json_object_get(m, "map")),
                        json_string_value(json_object_get(m, "detail")));
        json_t *plan = json_object_get(j, "plan");
        json_array_foreach (json_object_get(plan, "main_cf"), i, m)
                fprintf(out, "main.cf %s:\n- %s\n+ %s\n",
                        json_string_value(json_object_get(m, "name")),
                        json_string_value(json_object_get(m, "old"))
                            ? json_string_value(json_object_get(m, "old"))
                            : "(not set)",
                        json_string_value(json_object_get(m, "new"))
                            ? json_string_value(json_object_get(m, "new"))
                            : "(removed)");
        const char *diff = json_string_value(json_object_get(plan, "tls_policy_diff"));
        if (dry_run && !isempty(diff))
                fputs(diff, out);
}

int remote_import(const struct cli_invocation *inv, FILE *out, FILE *err)
{
        struct remote r;
        struct reply rep = { 0 };
        int status = REMOTE_UNREACHABLE;
        if (remote_begin(&r, err) < 0)
                return status;
        char path[80];
        snprintf(path, sizeof(path), "/api/v1/import?%s%s",
                 inv->dry_run ? "dry_run=true" : "wait=300", inv->settings ? "&settings=true" : "");
        if (request(&r, "POST", path, NULL, "application/json", NULL, 0, &rep, err) < 0)
                return status;
        json_t *j = rep.status == 200 ? json_loads(rep.body.p, 0, NULL) : NULL;
        if (j) {
                print_import(j, inv->dry_run, out);
                if (inv->dry_run)
                        fprintf(err, "smtptlsd import: dry run, nothing changed: %lld to import\n",
                                (long long)json_integer_value(json_object_get(j, "imported")));
                else
                        fprintf(err,
                                "smtptlsd import: %lld policies added, %lld map(s) adopted "
                                "(job %s)\n",
                                (long long)json_integer_value(json_object_get(j, "added")),
                                (long long)json_integer_value(json_object_get(j, "adopted")),
                                rep.job_id[0] ? rep.job_id : "?");
                status = REMOTE_OK;
        } else if (rep.status == 202) {
                fprintf(err, "smtptlsd import: accepted, still running: job %s\n",
                        rep.job_id[0] ? rep.job_id : "?");
                status = REMOTE_RUNNING;
        } else {
                status = refused("import", &rep, err);
        }
        json_decref(j);
        free(rep.body.p);
        return status;
}
