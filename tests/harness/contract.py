# contract: checks every reply of the daemon against api/openapi.yaml, the contract. The spec is
# loaded and its schemas compiled once per process; check() is called by Daemon.http and
# RawRequest.response for every reply they receive and raises ContractError at once on a mismatch:
#   - the path+method must be an operation of the spec (else the reply must be a problem: 404/405);
#   - the status must be one the operation declares;
#   - every header the response declares `required` must be present, and every declared header
#     that is present must match its schema (ETag, Location, Retry-After, Job-Id, ...);
#   - the Content-Type must be a media type the response declares (none declared: no body), and
#     a JSON body must match its schema (OpenAPI 3.1 = JSON Schema 2020-12, $refs resolved).
# KNOWN_DRIFT lists the mismatches other work on issue 11 owns; the lead empties it at merge.
import json
import os
import re
import threading

import jsonschema
import yaml

from .util import REPO_ROOT, HarnessError

SPEC_PATH = os.path.join(REPO_ROOT, "api", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# (METHOD, path template, status) -> "owner: <helper> - reason". A mismatch on such a key is not
# raised. Every entry is work another part of issue 11 owns; the lead empties this at merge.
KNOWN_DRIFT = {}


class ContractError(HarnessError, AssertionError):
    """A reply that does not match api/openapi.yaml."""


class _Operation:
    def __init__(self, template, method, op):
        self.template, self.method, self.responses = template, method, op.get("responses", {})


class Contract:
    """The compiled spec: operations by path regex, and one validator per schema met."""

    def __init__(self, path=SPEC_PATH):
        with open(path) as f:
            self.spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        jsonschema.Draft202012Validator.check_schema({"$defs": self.spec["components"]["schemas"]})
        self.resolver = jsonschema.RefResolver.from_schema(self.spec)
        self.paths = []
        for template, item in self.spec["paths"].items():
            ops = {m.upper(): _Operation(template, m, item[m]) for m in METHODS if m in item}
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self.paths.append((template.count("{"), template, re.compile(rx), ops))
        self.paths.sort(key=lambda p: (p[0], p[1]))  # literal paths before templated ones
        self.problem = self.spec["components"]["schemas"]["Problem"]
        self._validators = {}
        self._lock = threading.Lock()

    # -- lookup -----------------------------------------------------------------------------------
    def deref(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            _, obj = self.resolver.resolve(obj["$ref"])
        return obj

    def route(self, path):
        """(template, {METHOD: _Operation}) of a request path (query ignored), or (None, {})."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        for _, template, rx, ops in self.paths:
            if rx.match(path):
                return template, ops
        return None, {}

    def operations(self):
        """{(METHOD, template)} the spec declares."""
        return {(m, t) for _, t, _, ops in self.paths for m in ops}

    def validator(self, schema):
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            v = self._validators.get(key)
            if v is None:
                v = self._validators[key] = jsonschema.Draft202012Validator(
                    schema, resolver=self.resolver)
            return v

    # -- the check --------------------------------------------------------------------------------
    def mismatch(self, method, path, status, headers, raw):
        """Why the reply does not match the spec (a str), or None. headers: a case-insensitive
        mapping with .get (http.client's message, or a dict with lower-case keys)."""
        method = method.upper()
        template, ops = self.route(path)
        ctype = _header(headers, "Content-Type") or ""
        media = ctype.split(";")[0].strip().lower()
        # HEAD is GET without the body (RFC 9110 9.3.2); the spec lists GET only.
        op = ops.get(method) or (ops.get("GET") if method == "HEAD" else None)
        if op is None:
            # Not an operation of the spec: the daemon must refuse it with a problem.
            if status not in (404, 405) and not (template is None and status in (400, 401)):
                return f"{method} {path} is no operation of the spec, yet answered {status}"
            return self._check_body(raw, media, {"application/problem+json":
                                                 {"schema": self.problem}})
        responses = {str(k): v for k, v in op.responses.items()}
        resp = responses.get(str(status)) or responses.get(f"{status // 100}XX") \
            or responses.get("default")
        if resp is None:
            return (f"status {status} is not declared for {method} {template} "
                    f"(declared: {', '.join(sorted(responses))})")
        resp = self.deref(resp)
        for name, h in (resp.get("headers") or {}).items():
            h = self.deref(h)
            value = _header(headers, name)
            if value is None:
                if h.get("required"):
                    return f"header {name} is declared required and missing"
                continue
            schema = h.get("schema", {})
            if "integer" in _types(schema):
                try:
                    value = int(value)
                except ValueError:
                    return f"header {name}: {value!r} is not an integer"
            err = self._schema_error(schema, value)
            if err:
                return f"header {name}: {err}"
        return self._check_body(raw, media, resp.get("content") or {}, method)

    def _check_body(self, raw, media, content, method="GET"):
        if not content:
            if raw:
                return f"the response declares no body, yet {len(raw)} bytes came ({media})"
            return None
        declared = {k.split(";")[0].strip().lower(): v for k, v in content.items()}
        if method == "HEAD":
            return None
        if media not in declared:
            return f"Content-Type {media or '(none)'} is not declared ({', '.join(declared)})"
        schema = declared[media].get("schema")
        if schema is None:
            return None
        if media == "application/json" or media.endswith("+json"):
            try:
                body = json.loads(raw)
            except ValueError as e:
                return f"the body is not JSON: {e}"
        else:
            body = raw.decode("utf-8", errors="strict")
        return self._schema_error(schema, body)

    def _schema_error(self, schema, instance):
        err = jsonschema.exceptions.best_match(self.validator(schema).iter_errors(instance))
        if err is None:
            return None
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        return f"at {where}: {err.message} (schema {'/'.join(str(p) for p in err.absolute_schema_path)})"


def _types(schema):
    t = schema.get("type", [])
    return t if isinstance(t, list) else [t]


def _header(headers, name):
    v = headers.get(name)
    return v if v is not None else headers.get(name.lower())


_contract = None
_contract_lock = threading.Lock()


def contract():
    """The spec, loaded and compiled once per process."""
    global _contract
    with _contract_lock:
        if _contract is None:
            _contract = Contract()
        return _contract


def check(method, path, status, headers, raw):
    """Raise ContractError if the reply does not match the spec (unless KNOWN_DRIFT lists it)."""
    c = contract()
    why = c.mismatch(method, path, status, headers, raw)
    if why is None:
        return
    template, _ = c.route(path)
    if (method.upper(), template, status) in KNOWN_DRIFT:
        return
    record = os.environ.get("SMTPTLSD_CONTRACT_RECORD")
    if record:  # a survey of the whole suite: write it down, do not fail
        with open(record, "a") as f:
            f.write(json.dumps({"method": method.upper(), "path": template or path,
                                "status": status, "why": why,
                                "test": os.environ.get("PYTEST_CURRENT_TEST", "")}) + "\n")
        return
    raise ContractError(f"reply does not match api/openapi.yaml: {method.upper()} {path} -> "
                        f"{status}: {why}\nbody: {raw[:600]!r}")
