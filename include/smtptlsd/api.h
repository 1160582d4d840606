/* api.h - the resource handlers that the route table (src/api/routes.c) points at. Each runs on
 * an HTTP thread: parse, check, read or enqueue, reply. */
#pragma once

#include "smtptlsd/http.h"

int api_healthz(struct request *req, struct problem *reterr);
int api_readyz(struct request *req, struct problem *reterr);
int api_metrics(struct request *req, struct problem *reterr);

int api_tokens_list(struct request *req, struct problem *reterr);
int api_tokens_create(struct request *req, struct problem *reterr);
int api_tokens_delete(struct request *req, struct problem *reterr);
