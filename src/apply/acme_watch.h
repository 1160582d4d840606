/* acme_watch.h - watches the ACME live directory with inotify; when certbot (or any ACME client)
 * creates, renews or removes a certificate there, queues a rescan job, which re-reads the files
 * and reloads Postfix when the bound certificate changed. Its own thread. */
#pragma once

struct app;
struct acme_watch;

int acme_watch_start(struct app *app, struct acme_watch **ret);
void acme_watch_stop(struct acme_watch *w);
