# docs/api.md is run, not just read (issue 11): every ```sh block of the walkthrough runs in
# document order with bash against a daemon that manages a real Postfix, as a reader would type it
# (the setup block creates the token file; BASE is the sandbox daemon's address; `smtptlsd` is the
# binary under test with the sandbox's configuration; the files the examples name - privkey.pem,
# fullchain.pem, cert.pem, chain.pem, policies.json, tls_policy - are in the working directory). Each block must
# exit 0, answer no error status or problem the doc does not announce, print no bare `null` (a jq
# path to a field that is not there), and where a ```json block follows it, print output with every
# key of that sample. A block that cannot run says so right before it: <!-- not-run: reason -->;
# one whose refusal is the point says <!-- expect: code -->.
import json
import os
import re
import shlex
import subprocess

import pytest

from tests.harness.daemon import sanitizer_env
from tests.system.test_settings import make_site  # noqa: F401  (a fixture)

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
API_MD = os.path.join(REPO, "docs", "api.md")
MARK = re.compile(r"<!--\s*(not-run|expect):\s*(.*?)\s*-->")


class Block:
    def __init__(self, line, text, mark):
        self.line, self.text, self.mark = line, text, mark
        self.sample = None  # the ```json block right after it: its expected shape

    def __repr__(self):
        return f"docs/api.md:{self.line}"


def blocks(path=API_MD):
    """The top-level ```sh blocks in document order, each with the <!-- --> mark right before
    it and the ```json sample right after it (only blank lines between)."""
    lines = open(path).read().split("\n")
    out, i, last_mark, prev_sh = [], 0, None, None
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(r"```(\w*)", line)
        if not m:
            mk = MARK.search(line)
            if mk:
                last_mark = (mk.group(1), mk.group(2))
            elif line.strip():
                last_mark, prev_sh = None, None
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        body = "\n".join(lines[i + 1:j])
        if m.group(1) == "sh":
            prev_sh = Block(i + 1, body, last_mark)
            out.append(prev_sh)
        elif m.group(1) == "json" and prev_sh is not None and prev_sh.sample is None:
            prev_sh.sample = json.loads(body)
            prev_sh = None
        else:
            prev_sh = None
        last_mark = None
        i = j + 1
    return out


def json_values(text):
    """Every JSON value in text (jq prints one after another), skipping what is not JSON."""
    dec, i, out = json.JSONDecoder(), 0, []
    while i < len(text):
        if text[i] in "{[":
            try:
                v, end = dec.raw_decode(text, i)
                out.append(v)
                i = end
                continue
            except ValueError:
                pass
        i += 1
    return out


def missing_keys(sample, got, where=""):
    """The keys of sample (recursively; the first item of lists) that got lacks."""
    out = []
    if isinstance(sample, dict):
        if not isinstance(got, dict):
            return [f"{where or '/'} is {type(got).__name__}, the doc shows an object"]
        for k, v in sample.items():
            if k not in got:
                out.append(f"{where}/{k}")
            elif v is not None and got[k] is not None:
                out += missing_keys(v, got[k], f"{where}/{k}")
    elif isinstance(sample, list) and sample and isinstance(got, list) and got:
        out += missing_keys(sample[0], got[0], f"{where}/0")
    return out


def test_the_block_reader_finds_marks_and_samples(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("x\n\n```sh\na\n```\n\n```json\n{\"k\": 1}\n```\n\n<!-- not-run: no -->\n"
                   "```sh\nb\n```\nprose\n\n```json\n{}\n```\n```sh\n  c\n```\n")
    got = blocks(str(doc))
    assert [(b.text, b.mark, b.sample) for b in got] == [
        ("a", None, {"k": 1}), ("b", ("not-run", "no"), None), ("  c", None, None)]
    assert missing_keys({"a": 1, "b": {"c": 2}, "l": [{"x": 1}]},
                        {"a": 0, "b": {"d": 1}, "l": [{"y": 1}]}) == ["/b/c", "/l/0/x"]


@pytest.fixture
def reader(make_site, certs, tmp_path):
    """A daemon managing a Postfix; a working directory with the files the examples name; a
    `smtptlsd` on PATH that is the binary under test with the sandbox's configuration."""
    site = make_site()
    work = tmp_path / "reader"
    (work / "bin").mkdir(parents=True)
    leaf = certs.chained_leaf()
    for name, src in (("privkey.pem", leaf.key), ("fullchain.pem", leaf.fullchain),
                      ("cert.pem", leaf.cert), ("chain.pem", leaf.chain)):
        with open(src) as f, open(work / name, "w") as out:
            out.write(f.read())
    (work / "policies.json").write_text(json.dumps({"items": [
        {"destination": ".example.com", "level": "encrypt"},
        {"destination": "[relay.example.net]:587", "level": "secure", "match": ["nexthop"]}]}))
    (work / "tls_policy").write_text("# partners\n"
                                     ".example.com            encrypt protocols=>=TLSv1.2\n"
                                     "[relay.example.net]:587 secure,\n"
                                     "    match=nexthop:dot-nexthop\n")
    wrapper = work / "bin" / "smtptlsd"
    wrapper.write_text("#!/bin/sh\nexec " + shlex.quote(site.d.binary) + " -c " +
                       shlex.quote(site.d.conf_path) + ' "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTLSD_")}
    env.update(site.d.env())
    env.update(sanitizer_env())
    env.update({"HOME": str(work), "PATH": f"{work / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
                "LC_ALL": "C"})
    return site, work, env


def test_api_md_examples_run(reader):
    import shutil
    assert shutil.which("jq") and shutil.which("curl"), "the examples need curl and jq (Debian)"
    site, work, env = reader
    base = site.d.url
    state = work / "state.sh"
    state.write_text("")
    ran, skipped, problems = 0, [], []
    for b in blocks():
        if b.mark and b.mark[0] == "not-run":
            assert b.mark[1], f"{b}: not-run without a reason"
            skipped.append(b)
            continue
        text = re.sub(r"^BASE=\S+", f"BASE={base}", b.text, flags=re.M)
        names = sorted(set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=", text, re.M)))
        script = ("set -eo pipefail\n"
                  f"source {shlex.quote(str(state))}\n"
                  f"{text}\n")
        if names:
            script += f"declare -p {' '.join(names)} >> {shlex.quote(str(state))}\n"
        p = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                           text=True, timeout=120)
        ran += 1
        out = p.stdout
        with open(work / "transcript.txt", "a") as t:   # kept with a failing run's files
            t.write(f"$ # {b}\n{text}\n{out}{p.stderr}\n")
        where = f"{b}:\n{b.text}\n--- stdout:\n{out[:2000]}\n--- stderr:\n{p.stderr[:1000]}"
        assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, where
        if p.returncode != 0:
            problems.append(f"exit {p.returncode}: {where}")
            continue
        expected = b.mark[1].split() if b.mark and b.mark[0] == "expect" else []
        statuses = re.findall(r"^HTTP/1\.1 (\d{3})", out, re.M)
        values = json_values(out)
        for s in statuses:
            if int(s) >= 400 and s not in expected:
                problems.append(f"status {s}: {where}")
        for v in values:
            if isinstance(v, dict) and isinstance(v.get("status"), int) and v["status"] >= 400 \
                    and "code" in v and v["code"] not in expected:
                problems.append(f"problem {v['code']}: {where}")
        seen = {v.get("code") for v in values if isinstance(v, dict)} | set(statuses)
        for code in expected:
            if code not in seen:
                problems.append(f"the doc announces {code}, which did not come: {where}")
        if re.search(r"^null$", out, re.M):
            problems.append(f"printed null (a field that is not there?): {where}")
        if b.sample is not None:
            if len(values) != 1:
                problems.append(f"one JSON value expected, as the doc shows: {where}")
            else:
                gone = missing_keys(b.sample, values[0])
                if gone:
                    problems.append(f"the doc's sample has {gone}, the reply not: {where}")
    assert not problems, f"{len(problems)} of {ran} examples fail:\n\n" + "\n\n".join(problems)
    assert ran >= 20, f"only {ran} examples ran"
    assert len(skipped) <= 4, f"{len(skipped)} examples are not run: {skipped}"


def test_created_token_location_answers(daemon):
    """POST /api/v1/tokens answers Location: it leads to the token (metadata, never the secret)."""
    r = daemon.http("POST", "/api/v1/tokens", {"name": "located", "scope": "read"})
    assert r.status == 201, r
    loc = r.headers.get("Location")
    assert loc == "/api/v1/tokens/located", r.headers
    got = daemon.get(loc)
    assert got.status == 200, got
    assert got.body["name"] == "located" and got.body["scope"] == "read", got.body
    assert got.body["created_at"] == r.body["created_at"], (got.body, r.body)
    assert "token" not in got.body and r.body["token"] not in got.raw.decode(), got.body
    assert daemon.get(loc, token=daemon.read_token).status == 403
    assert daemon.http("DELETE", loc).status == 204
    gone = daemon.get(loc)
    assert gone.status == 404 and gone.body["code"] == "not_found", gone
    assert daemon.get("/api/v1/tokens/no-such").status == 404
