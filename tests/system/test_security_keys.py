# Private keys (issue 10, item 5): an uploaded key never reaches the jobs table, not even while its
# job is pending; it waits in pending_keys and ends up only in certificates.private_key_pem, and
# with key_encryption_key_file configured nowhere in PostgreSQL in plaintext at all (no table, no
# pg_dump, no WAL segment). The encrypted key serves end to end, survives a restart, and a wrong or
# missing key file names the certificate without tearing anything; an upload acknowledged with 202
# survives kill -9; the key file's permissions are checked at start; no piece of a key is left in
# the daemon's memory. The envelope itself has a C unit test (tests/unit/test_sealed.c).
import json
import os
import re
import shutil
import uuid

import pytest

from tests.harness.util import run, wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_certificates import (  # noqa: F401  (make_site is a fixture)
    json_body, make_site, poll_served, version_of,
)
from tests.system.test_fault_points import fault_build

KEY_A = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
KEY_B = "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff"
SEALED = re.compile(r"^sealed:v1:[0-9a-f]{16}:[A-Za-z0-9+/=]+$")


def write_key_file(path, text=KEY_A + "\n", mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def key_chunks(key_path):
    """64-character pieces of the key's base64 body, as uploaded and as the daemon normalizes it
    (PKCS#8): every full PEM line, and 64-character windows of the joined body."""
    chunks = set()
    pkcs8 = run(["openssl", "pkey", "-in", key_path]).stdout
    with open(key_path) as f:
        texts = (f.read(), pkcs8)
    for text in texts:
        lines = [l for l in text.splitlines() if l and not l.startswith("-----")]
        body = "".join(lines)
        chunks |= {l for l in lines if len(l) == 64}
        chunks |= {body[i:i + 64] for i in range(0, len(body) - 63, 8)}
    assert len(chunks) > 10, chunks
    return chunks


class Keys:
    """A certificate site (tests/system/test_certificates.py) plus its database."""

    def __init__(self, site, pg):
        self.site, self.pg = site, pg
        self.db = site.d.config["database_url"].rsplit("/", 1)[1]

    def sql(self, query):
        return self.pg.psql(query, db=self.db).strip()

    def places(self, chunks):
        """Every table.column of the database where one of the chunks appears."""
        found = set()
        tables = self.sql("SELECT table_name FROM information_schema.tables "
                          "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'").split()
        assert {"jobs", "certificates", "pending_keys"} <= set(tables), tables
        for t in tables:
            rows = json.loads(self.sql(f'SELECT coalesce(json_agg(to_jsonb(t)), \'[]\')::text '
                                       f'FROM "{t}" t') or "[]")
            for row in rows:
                for column, value in row.items():
                    text = value if isinstance(value, str) else json.dumps(value)
                    if any(c in text for c in chunks):
                        found.add(f"{t}.{column}")
        return found

    def stored_key(self, name):
        return self.sql(f"SELECT private_key_pem FROM certificates WHERE name = '{name}'")


def wal_holds(pg, chunks):
    """Whether any WAL segment of the cluster holds one of the chunks (as written)."""
    wal = os.path.join(pg.datadir, "pg_wal")
    needles = [c.encode() for c in chunks]
    for name in os.listdir(wal):
        path = os.path.join(wal, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if any(n in data for n in needles):
            return True
    return False


def arm(d, text):
    with open(os.path.join(d.workdir, "fault"), "w") as f:
        f.write(text + "\n")


def disarm(d):
    path = os.path.join(d.workdir, "fault")
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def keys_site(make_site, pg):
    """keys_site(kek=False): a daemon (with fault points, not armed) managing a Postfix sandbox;
    kek=True: with key_encryption_key_file (KEY_A)."""
    def make(kek=False):
        site = make_site(start=False)
        if not fault_build(site.d.binary):
            pytest.skip(f"{site.d.binary} has no fault points (build-asan has: scripts/build)")
        if kek:
            site.kek_path = write_key_file(os.path.join(site.d.workdir, "kek"))
            site.d.config["key_encryption_key_file"] = site.kek_path
            site.d.write_config()
        site.d.extra_env["SMTPTLSD_FAULT_FILE"] = os.path.join(site.d.workdir, "fault")
        site.d.start()
        setup_tokens(site.d)
        return Keys(site, pg)
    return make


def restart(d, kek_path=None, key=None, before_start=None):
    """Stop d; write `key` to kek_path (when given) and configure it (kek_path None: no key file);
    run before_start(); start and take the fd baseline."""
    d.stop()
    if key is not None:
        write_key_file(kek_path, key + "\n")
    if kek_path:
        d.config["key_encryption_key_file"] = kek_path
    else:
        d.config.pop("key_encryption_key_file", None)
    d.write_config()
    if before_start:
        before_start()
    d.start()
    d.mark_fd_baseline()


def fresh_leaf(certs, kind="rsa"):
    return certs.leaf(f"k{uuid.uuid4().hex[:10]}", ("mx.test.example",), kind=kind)


def upload_during_stall(k, name, cert):
    """Uploads with ?wait=0 while the worker stalls before its COMMIT: the job is accepted (202)
    and, seen from outside its transaction, still pending. Returns the 202 response."""
    d = k.site.d
    arm(d, "before_commit stall 6000")
    r = k.site.put(name, json_body(cert), query="?wait=0")
    assert r.status == 202, r
    d.wait_log(r"fault injection: stalling 6000 ms at before_commit", timeout=20)
    disarm(d)
    return r


@pytest.mark.parametrize("kek", [False, True], ids=["plain", "key_file"])
def test_key_never_in_jobs_and_only_sealed_with_a_key_file(keys_site, certs, pg, kek):
    k = keys_site(kek=kek)
    cert = fresh_leaf(certs)
    chunks = key_chunks(cert.key)

    r = upload_during_stall(k, "mx", cert)
    job_id = r.headers["Job-Id"]
    # pending: the job row holds a reference, the key waits in pending_keys (sealed with the file)
    request = k.sql(f"SELECT request::text FROM jobs WHERE id = {job_id}")
    assert "private_key_ref" in request and "PRIVATE KEY" not in request, request
    pending = k.sql(f"SELECT private_key FROM pending_keys WHERE job_id = {job_id}")
    assert pending, "the accepted upload has no pending key"
    during = k.places(chunks)
    if kek:
        assert SEALED.match(pending), pending[:40]
        assert during == set(), f"plaintext key in {during} while the job is pending"
    else:
        assert during == {"pending_keys.private_key"}, during

    # applied: the pending key is gone with the job's end
    job = wait_until(lambda: (lambda j: j if j["status"] == "applied" else None)(
        k.site.job(job_id)), 30, "the upload to be applied")
    assert job["status"] == "applied", job
    assert k.sql("SELECT count(*) FROM pending_keys") == "0"
    after = k.places(chunks)
    stored = k.stored_key("mx")
    if kek:
        assert SEALED.match(stored), stored[:40]
        assert after == set(), f"plaintext key in {after}"
        dump = pg.dump(k.db)
        assert "sealed:v1:" in dump
        assert not any(c in dump for c in chunks), "the plaintext key is in pg_dump's output"
        k.sql("CHECKPOINT")
        assert not wal_holds(pg, chunks), "the plaintext key is in a WAL segment"
    else:
        assert after == {"certificates.private_key_pem"}, after
        assert "BEGIN PRIVATE KEY" in stored
        assert any(c in pg.dump(k.db) for c in chunks), "the dump check cannot see a key"

    # every way of reading a job shows no key either
    for body in (k.site.job(job_id), k.site.jobs()):
        text = json.dumps(body)
        assert not any(c in text for c in chunks) and "private_key" not in text, text[:300]


def test_encrypted_key_serves_survives_restart_and_wrong_key_tears_nothing(keys_site, certs):
    k = keys_site(kek=True)
    site, d = k.site, k.site.d
    cert = fresh_leaf(certs, kind="ec")
    fp = cert.fingerprint()
    site.put_ok("mx", json_body(cert))
    assert SEALED.match(k.stored_key("mx"))
    site.bind("mx")
    poll_served(site.pf.port, fp, 10)
    key_path, chain_path = site.chain_files()
    assert os.path.dirname(key_path).endswith(version_of(fp))
    with open(key_path) as f:
        rendered_key = f.read()
    assert "PRIVATE KEY" in rendered_key  # Postfix gets the plaintext, 0600 root

    # a restart that must render the files again reads the key back from its envelope
    vdir = os.path.dirname(key_path)
    restart(d, site.kek_path, before_start=lambda: shutil.rmtree(vdir))
    wait_until(lambda: site.status()["state"] == "in_sync" or None, 20, "in_sync after restart")
    with open(key_path) as f:
        assert f.read() == rendered_key
    poll_served(site.pf.port, fp, 10)

    # the wrong key file: the certificate is named, the daemon stays up, nothing is touched
    main_cf = open(site.pf.main_cf, "rb").read()
    stored = k.stored_key("mx")
    pattern = (r"certificate 'mx' is unusable: its private key is encrypted with key "
               r"[0-9a-f]{16}, and key_encryption_key_file holds another key")
    d.expect_error(pattern)
    restart(d, site.kek_path, KEY_B, before_start=lambda: shutil.rmtree(vdir))
    d.wait_log(r"start-up reconcile failed: " + pattern, timeout=20)
    st = site.status()
    assert st["state"] == "failed", st
    assert open(site.pf.main_cf, "rb").read() == main_cf, "main.cf changed"
    assert not os.path.exists(vdir), "files were written without the key"
    assert k.stored_key("mx") == stored, "the row was changed"
    assert site.get("mx")["name"] == "mx"
    # a write that needs the key fails with the same clear reason, and changes nothing
    r = d.http("PATCH", "/api/v1/settings", {"loglevel": 2}, timeout=60)
    assert r.status == 422 and r.body["code"] == "certificate_unusable", r
    assert "'mx'" in r.body["detail"], r.body
    assert open(site.pf.main_cf, "rb").read() == main_cf

    # no key file at all: the same, saying so
    d.expect_error(r"key_encryption_key_file is not configured")
    restart(d, None)
    d.wait_log(r"certificate 'mx' is unusable: .*key_encryption_key_file is not configured",
               timeout=20)

    # the right key again: everything comes back
    restart(d, site.kek_path, KEY_A)
    wait_until(lambda: site.status()["state"] == "in_sync" or None, 20, "in_sync with the key")
    with open(key_path) as f:
        assert f.read() == rendered_key
    poll_served(site.pf.port, fp, 10)


def test_envelope_moved_to_another_row_does_not_open(keys_site, certs):
    """A database writer who copies one row's sealed key into another row gets nothing: the
    envelope names its row (additional data), the binding fails naming the certificate, and
    nothing changes."""
    k = keys_site(kek=True)
    site, d = k.site, k.site.d
    a, b = fresh_leaf(certs, kind="ec"), fresh_leaf(certs, kind="ec")
    site.put_ok("a", json_body(a))
    site.put_ok("b", json_body(b))
    k.sql("UPDATE certificates SET private_key_pem = "
          "(SELECT private_key_pem FROM certificates WHERE name = 'a') WHERE name = 'b'")
    main_cf = open(site.pf.main_cf, "rb").read()
    r = d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "b"}, timeout=60)
    assert r.status == 422 and r.body["code"] == "certificate_unusable", r
    assert "certificate 'b' is unusable: its encrypted private key does not decrypt" in \
        r.body["detail"], r.body
    assert open(site.pf.main_cf, "rb").read() == main_cf
    assert site.status()["state"] == "in_sync"
    site.bind("a")
    poll_served(site.pf.port, a.fingerprint(), 10)


def test_plaintext_rows_are_sealed_at_start(keys_site, certs):
    """Rows stored before the key file was configured keep working, and are sealed at the first
    start with the key file."""
    k = keys_site(kek=False)
    site, d = k.site, k.site.d
    cert = fresh_leaf(certs, kind="ec")
    site.put_ok("old", json_body(cert))
    assert "BEGIN PRIVATE KEY" in k.stored_key("old")
    restart(d, os.path.join(d.workdir, "kek"), KEY_A)
    d.wait_log(r"encrypted the private keys of 1 certificate\(s\) with key [0-9a-f]{16}")
    assert SEALED.match(k.stored_key("old"))
    assert k.places(key_chunks(cert.key)) == set()
    site.bind("old")
    poll_served(site.pf.port, cert.fingerprint(), 10)


@pytest.mark.parametrize("kek", [False, True], ids=["plain", "key_file"])
def test_kill9_after_202_of_an_upload_keeps_it(keys_site, certs, kek):
    k = keys_site(kek=kek)
    site, d = k.site, k.site.d
    cert = fresh_leaf(certs)
    fp = cert.fingerprint()
    r = upload_during_stall(k, "mx", cert)
    job_id = int(r.headers["Job-Id"])
    d.kill9()

    d.start()
    d.mark_fd_baseline()
    d.wait_log(rf"resuming job {job_id} \(certificates.put mx\)", timeout=20)
    job = wait_until(lambda: (lambda j: j if j["status"] != "queued" and j["status"] != "running"
                              else None)(site.job(job_id)), 30, "the resumed upload to finish")
    assert job["status"] == "applied", job
    assert site.get("mx")["sha256_fingerprint"] == fp
    assert k.sql("SELECT count(*) FROM pending_keys") == "0"
    assert SEALED.match(k.stored_key("mx")) if kek else "PRIVATE KEY" in k.stored_key("mx")
    site.bind("mx")
    poll_served(site.pf.port, fp, 10)


KEY_FILE_CASES = {
    "group_readable": (lambda p: write_key_file(p, mode=0o640), r"mode 0640 lets others read"),
    "world_readable": (lambda p: write_key_file(p, mode=0o604), r"mode 0604 lets others read"),
    "not_root": (lambda p: (write_key_file(p), os.chown(p, 65534, 65534)),
                 r"owned by uid 65534; it must belong to root"),
    "symlink": (lambda p: (write_key_file(p + ".real"), os.symlink(p + ".real", p)),
                r"a symbolic link is refused"),
    "not_hex": (lambda p: write_key_file(p, "z" * 64 + "\n"), r"must hold 64 hex digits"),
    "short": (lambda p: write_key_file(p, KEY_A[:62] + "\n"), r"must hold 64 hex digits"),
    "missing": (lambda p: None, r"No such file or directory"),
}


@pytest.mark.parametrize("case", list(KEY_FILE_CASES))
def test_key_file_permissions_and_format_checked_at_start(make_daemon, case):
    d = make_daemon(start=False)
    path = os.path.join(d.workdir, "kek")
    make, message = KEY_FILE_CASES[case]
    make(path)
    d.config["key_encryption_key_file"] = path
    d.write_config()
    d.start(wait_ready=False)
    rc = d.proc.wait(30)
    d.stopped = True
    assert rc == 2, (rc, d.log_tail())
    text = d.log_text()
    assert f"key_encryption_key_file {path}:" in text and re.search(message, text), text
    # the good file starts
    if os.path.lexists(path):
        os.unlink(path)
    write_key_file(path)
    d.start()
    assert d.alive()
    d.stop()


def memory_holds(pid, chunks):
    """Whether the process's readable, private memory holds one of the chunks."""
    needles = [c.encode() for c in chunks]
    hits = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            addr, perms = parts[0], parts[1]
            path = parts[5] if len(parts) > 5 else ""
            if not perms.startswith("r") or path.startswith("/") or path == "[vvar]":
                continue
            start, end = (int(x, 16) for x in addr.split("-"))
            if end - start > (1 << 30):
                continue  # ASan's shadow and reserved ranges
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            for n in needles:
                i = data.find(n)
                if i >= 0:
                    hits.append((line.strip(), hex(start + i)))
                    break
    return hits


def test_key_not_left_in_daemon_memory(keys_site, certs):
    """After a JSON and a PEM-bundle upload have been applied, no piece of the key is anywhere in
    the daemon's anonymous memory (heap, ASan's quarantine of freed blocks included): the request
    bodies, jansson's strings and parser buffers, the normalized key, the job's copy, libpq's
    results and the rendered key were wiped. With the key file, since without it libpq's send
    buffer keeps the PEM it sent until the connection's next statements overwrite it."""
    k = keys_site(kek=True)
    site, d = k.site, k.site.d
    cert = fresh_leaf(certs)
    chunks = key_chunks(cert.key)
    site.put_ok("mx", json_body(cert))
    site.put_ok("mx2", open(cert.cert).read() + open(cert.key).read())
    site.bind("mx")  # renders privkey.pem from the decrypted key
    hits = memory_holds(d.pid, chunks)
    assert not hits, hits[:5]
