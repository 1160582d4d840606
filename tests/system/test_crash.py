# kill -9 of the daemon at random moments while writes flow (issue 3, "Proof"): after every kill the
# files Postfix reads are a complete old or new version (checked BEFORE the restart, as the crash left
# them, and again after it), no staged file survives the restart, and every write that got a 2xx is in
# the database and on disk. The random seed is printed; SMTPTLSD_CRASH_SEED=<seed> replays a run and
# SMTPTLSD_CRASH_ROUNDS=<n> changes the number of rounds (default 50).
import http.client
import os
import random
import threading
import time

from tests.harness.util import run, wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_settings import (  # noqa: F401  (make_site is a fixture)
    MANAGED, expected_state, fingerprint_of_pem, make_site, openssl_key_matches, parse_main_cf,
    settings_view, wait_served,
)

ROUNDS = int(os.environ.get("SMTPTLSD_CRASH_ROUNDS", "50"))
# The parameters derived here from the settings; the others (the profile's protocols and ciphers,
# the policy map) are learnt from the daemon.
DERIVED = ("smtpd_tls_security_level", "smtp_tls_security_level", "smtpd_tls_chain_files",
           "smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_auth_only",
           "smtpd_tls_received_header", "smtpd_tls_loglevel", "smtp_tls_loglevel")
CERTS = ("k0", "k1", "k2")


def crash_binary():
    """The ASan build is used when it is fast enough (it is, on 2 cores); SMTPTLSD_CRASH_BIN may name
    another (e.g. build/smtptlsd)."""
    if os.environ.get("SMTPTLSD_CRASH_BIN"):
        return os.path.abspath(os.environ["SMTPTLSD_CRASH_BIN"])
    return None  # the harness's default (build-asan/smtptlsd if built)


class Renderer:
    """The managed main.cf parameters a settings state must produce. The levels, the certificate
    files, auth_only, received_header and the log levels are derived here from the settings and
    the certificate rows; the rest (the profile's protocols and ciphers, the policy map) is learnt
    from the daemon's own /api/v1/config, one write per profile at the start."""

    def __init__(self, site):
        self.site = site
        self.profiles = {}
        self.pems = {}  # name -> (certificate + chain PEM, key PEM) as the database holds them

    def add_cert(self, name):
        self.site.add_cert(name)
        row = self.site.sql(f"SELECT certificate_pem || coalesce(chain_pem, '') || '\x1f' || "
                            f"private_key_pem FROM certificates WHERE name = '{name}'")
        self.pems[name] = tuple(row.split("\x1f"))

    def learn(self):
        for profile in ("modern", "intermediate", "legacy"):
            self.site.put_ok({"mode": "may", "certificate": CERTS[0], "profile": profile})
            cfg = self.site.config()["main_cf"]
            self.profiles[profile] = {k: v for k, v in cfg.items()
                                      if k not in DERIVED and v is not None}

    def render(self, state):
        s = state
        inbound = s["inbound_mode"] or s["mode"]
        outbound = s["outbound_mode"] or s["mode"]
        p = {"smtpd_tls_security_level": inbound, "smtp_tls_security_level": outbound,
             "smtpd_tls_auth_only": "yes" if s["auth_only"] else "no",
             "smtpd_tls_received_header": "yes" if s["received_header"] else "no",
             "smtpd_tls_loglevel": str(s["loglevel"]), "smtp_tls_loglevel": str(s["loglevel"])}
        if s["certificate"]:
            d = self.version_dir(s["certificate"])
            p["smtpd_tls_chain_files"] = f"{d}/privkey.pem, {d}/fullchain.pem"
        p.update(self.profiles[s["profile"]])
        return p

    def version_dir(self, name):
        fp = self.site.fingerprints[name]
        return os.path.join(self.site.cert_dir, name, fp.replace(":", "").lower()[:16])


def random_body(rng):
    return {"mode": rng.choice(["may", "may", "encrypt", "none"]), "certificate": rng.choice(CERTS),
            "profile": rng.choice(["modern", "intermediate", "legacy"]),
            "loglevel": rng.randrange(0, 5), "received_header": rng.random() < 0.5,
            "auth_only": rng.random() < 0.8}


def writer(site, rng, stop, out, lock):
    """PUT random settings until stop is set or the daemon goes away; records every attempt as
    (job id or None, HTTP status or the exception, body)."""
    while not stop.is_set():
        body = random_body(rng)
        t0 = time.monotonic()
        try:
            r = site.d.http("PUT", "/api/v1/settings", body, timeout=30)
            entry = (int(r.headers["Job-Id"]) if r.headers.get("Job-Id") else None, r.status, body,
                     time.monotonic() - t0)
        except (OSError, http.client.HTTPException) as e:
            with lock:
                out.append((None, repr(e), body, None))
            return
        with lock:
            out.append(entry)


def live_version_problems(site, renderer, candidates):
    """Problems with the files as they are now (the daemon dead or alive): main.cf must parse and
    its managed parameters must be exactly the rendering of one of the candidate states, whose
    certificate files must exist, be complete, and match the database's PEM."""
    problems = []
    proc = run(["postconf", "-c", site.pf.config_dir, "-n"], check=False)
    if proc.returncode != 0 or "warning:" in proc.stderr:
        problems.append(f"postconf -n: exit {proc.returncode}: {proc.stderr.strip()[:300]}")
    text = site.main_cf().decode()
    live = {k: v for k, v in parse_main_cf(text).items() if k in MANAGED}
    matches = [c for c in candidates if renderer.render(c) == live]
    if not matches:
        problems.append(f"main.cf's managed parameters are no complete version: {live}\n"
                        f"    candidates: {[settings_view(c) for c in candidates]}")
        return problems
    state = matches[0]
    if state["certificate"]:
        d = renderer.version_dir(state["certificate"])
        key, chain = os.path.join(d, "privkey.pem"), os.path.join(d, "fullchain.pem")
        if not (os.path.isfile(key) and os.path.isfile(chain)):
            problems.append(f"main.cf points at {d}, which lacks its files: "
                            f"{os.listdir(d) if os.path.isdir(d) else 'no directory'}")
            return problems
        name = state["certificate"]
        want_chain, want_key = renderer.pems[name]
        with open(chain) as f:
            got_chain = f.read()
        with open(key) as f:
            got_key = f.read()
        if got_chain.strip() != want_chain.strip() or got_key.strip() != want_key.strip():
            problems.append(f"{d}: files differ from the database's PEM (torn write?)")
        if not openssl_key_matches(key, chain):
            problems.append(f"{d}: privkey.pem does not match fullchain.pem")
        if fingerprint_of_pem(got_chain) != site.fingerprints[name]:
            problems.append(f"{d}: fullchain.pem is not {name}'s certificate")
    return problems


def leftover_problems(site):
    """Staged and temporary files that must not survive a restart."""
    problems = []
    cfg_entries = set(os.listdir(site.pf.config_dir))
    allowed = {"main.cf", "master.cf", ".smtptlsd"}
    maps = parse_main_cf(site.main_cf().decode()).get("smtp_tls_policy_maps", "")
    for m in maps.replace(",", " ").split():
        base = os.path.basename(m.split(":", 1)[-1])
        allowed |= {base, base + ".db", base + ".lmdb", base + ".cdb"}
    extra = cfg_entries - allowed
    if extra:
        problems.append(f"unexpected files in the Postfix configuration directory: {sorted(extra)}")
    if os.path.isdir(site.state_dir):
        for entry in os.listdir(site.state_dir):
            path = os.path.join(site.state_dir, entry)
            if ".lkg" in entry and not entry.endswith((".restore", ".tmp", ".new")):
                continue  # last-known-good main.cf (and policy map)
            if entry == "check" and os.path.isdir(path) and not os.listdir(path):
                continue
            if entry == "policy_map.version":
                continue  # what the live policy map is (src/apply/map_state.h)
            problems.append(f"left in {site.state_dir}: {entry} "
                            f"{os.listdir(path) if os.path.isdir(path) else ''}")
    if os.path.isdir(site.cert_dir):
        for name in os.listdir(site.cert_dir):
            parent = os.path.join(site.cert_dir, name)
            for version in os.listdir(parent):
                path = os.path.join(parent, version)
                if version.startswith(".") or version.endswith((".new", ".tmp")):
                    problems.append(f"staged certificate directory left: {path}")
                    continue
                files = sorted(os.listdir(path)) if os.path.isdir(path) else None
                if files != ["fullchain.pem", "privkey.pem"]:
                    problems.append(f"incomplete certificate directory {path}: {files}")
    return problems


def settle(site, timeout=20):
    """Wait until no job is queued or running (jobs left by the kill are resumed after a restart);
    returns every job (the audit trail, oldest first)."""
    def done():
        jobs = site.jobs()
        return jobs if not [j for j in jobs if j["status"] in ("queued", "running")] else None
    return wait_until(done, timeout, "the resumed jobs to finish", interval=0.1)


def after_restart_problems(site, renderer, acked):
    """Every acknowledged write is applied and in the files; the files are the database state."""
    problems = []
    jobs = {j["id"]: j for j in settle(site)}
    for jid, body in acked.items():
        if jid not in jobs:
            problems.append(f"acknowledged job {jid} is not in the database")
        elif jobs[jid]["status"] != "applied":
            problems.append(f"acknowledged job {jid} is {jobs[jid]['status']}: {jobs[jid]}")
        elif settings_view(jobs[jid]["after"]) != expected_state(body):
            problems.append(f"acknowledged job {jid}: after {jobs[jid]['after']} is not what it "
                            f"wrote ({body})")
    st = site.status()
    settings = site.settings()
    state = settings_view(settings)
    gen = settings["generation"]
    if st["state"] != "in_sync" or not (st["applied_generation"] == st["desired_generation"] == gen):
        problems.append(f"status after restart: {st['state']}, applied {st['applied_generation']}, "
                        f"desired {st['desired_generation']}, database generation {gen}")
    top = max([jobs[j]["generation"] or 0 for j in acked if j in jobs] or [0])
    if top > gen:
        problems.append(f"an acknowledged job has generation {top} > the current {gen}")
    # the settings are the `after` of a job applied in the current generation (the last batch)
    afters = [settings_view(j["after"]) for j in jobs.values()
              if j["status"] == "applied" and j["generation"] == gen]
    if gen > 0 and state not in afters:
        problems.append(f"the settings {state} are not the result of any job of generation {gen}")
    cfg = site.config()
    if cfg["drift"]:
        problems.append(f"drift after restart: {cfg['drift']}")
    live = {k: v for k, v in parse_main_cf(site.main_cf().decode()).items() if k in MANAGED}
    if live != renderer.render(state):
        problems.append(f"main.cf after restart is not the database state {state}: {live}")
    problems += live_version_problems(site, renderer, [state])
    problems += leftover_problems(site)
    inbound = state["inbound_mode"] or state["mode"]
    want = site.fingerprints[state["certificate"]] if inbound != "none" else None
    try:
        wait_served(site.pf.port, want, timeout=10)
    except AssertionError as e:
        problems.append(str(e))
    return problems


def test_kill9_while_writes_flow(make_site):
    seed = int(os.environ.get("SMTPTLSD_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nkill -9 test: seed {seed} (SMTPTLSD_CRASH_SEED={seed} replays it), {ROUNDS} rounds")
    rng = random.Random(seed)
    site = make_site(start=False)
    if crash_binary():
        site.d.binary = crash_binary()
    site.d.start()
    setup_tokens(site.d)
    renderer = Renderer(site)
    for name in CERTS:
        renderer.add_cert(name)
    renderer.learn()
    committed = settings_view(site.settings())
    other = dict(committed, loglevel=(committed["loglevel"] + 1) % 5)
    assert live_version_problems(site, renderer, [committed]) == []
    assert live_version_problems(site, renderer, [other]), "the version check sees nothing"

    acked = {}  # job id -> body, every write that got a 2xx
    kill_delays, writes_per_round, restart_times, write_times = [], [], [], []
    ahead = 0
    phase = {"writes": 0.0, "check after kill": 0.0, "restart": 0.0, "check after restart": 0.0}
    problems = []
    t_start = time.monotonic()
    for rnd in range(ROUNDS):
        if time.monotonic() - t_start > 300:
            problems.append(f"stopped after {rnd} rounds: over 300 s")
            break
        stop, lock, attempts = threading.Event(), threading.Lock(), []
        threads = [threading.Thread(target=writer,
                                    args=(site, random.Random(rng.random()), stop, attempts, lock))
                   for _ in range(2)]
        t_phase = time.monotonic()
        for t in threads:
            t.start()
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        site.d.kill9()
        stop.set()
        for t in threads:
            t.join(35)
        kill_delays.append(delay)
        round_acked = {jid: body for jid, status, body, _ in attempts
                       if jid is not None and isinstance(status, int) and 200 <= status < 300}
        write_times += [t for _, status, _, t in attempts if isinstance(status, int)]
        bad = [(jid, status) for jid, status, _, _ in attempts
               if isinstance(status, int) and not 200 <= status < 300]
        if bad:
            problems.append(f"round {rnd}: writes refused while the daemon ran: {bad}")
        acked.update(round_acked)
        writes_per_round.append(len(round_acked))

        phase["writes"] += time.monotonic() - t_phase
        t_phase = time.monotonic()
        # the files as the crash left them: a complete old or new version
        candidates = [committed] + [expected_state(b) for _, _, b, _ in attempts]
        for p in live_version_problems(site, renderer, candidates):
            problems.append(f"round {rnd}, right after the kill ({delay:.3f} s): {p}")
        live = {k: v for k, v in parse_main_cf(site.main_cf().decode()).items() if k in MANAGED}
        unacked = [expected_state(b) for jid, st, b, _ in attempts if jid not in round_acked]
        if any(renderer.render(c) == live for c in unacked) and renderer.render(committed) != live \
                and not any(renderer.render(expected_state(b)) == live for b in round_acked.values()):
            ahead += 1  # the kill left the files of a write whose client got no reply

        # sometimes kill again during the start-up reconcile
        if rnd % 6 == 5:
            site.d.start(wait_ready=False)
            time.sleep(rng.uniform(0.0, 0.4))
            site.d.kill9()
            for p in live_version_problems(site, renderer, candidates):
                problems.append(f"round {rnd}, killed during start-up: {p}")

        phase["check after kill"] += time.monotonic() - t_phase
        t0 = time.monotonic()
        site.d.start()
        restart_times.append(time.monotonic() - t0)
        phase["restart"] += time.monotonic() - t0
        t_phase = time.monotonic()
        site.d.mark_fd_baseline()
        for p in after_restart_problems(site, renderer, round_acked):
            problems.append(f"round {rnd}, after the restart: {p}")
        phase["check after restart"] += time.monotonic() - t_phase
        committed = settings_view(site.settings())
        if len(problems) > 30:
            break

    # all acknowledged writes of all rounds, once more at the end
    for p in after_restart_problems(site, renderer, acked):
        problems.append(f"at the end: {p}")
    elapsed = time.monotonic() - t_start
    print(f"{len(kill_delays)} kills in {elapsed:.0f} s ({ahead} left main.cf at the version of a "
          f"write whose client got no reply: killed mid-apply); {len(acked)} acknowledged writes "
          f"({min(writes_per_round)}-{max(writes_per_round)} per round); restart to READY "
          f"median {sorted(restart_times)[len(restart_times) // 2]:.2f} s, "
          f"max {max(restart_times):.2f} s; write (PUT) median "
          f"{sorted(write_times)[len(write_times) // 2] if write_times else 0:.2f} s; time in " +
          ", ".join(f"{k} {v:.0f} s" for k, v in phase.items()))
    assert len(kill_delays) >= min(50, ROUNDS) or problems
    assert not problems, f"seed {seed}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
