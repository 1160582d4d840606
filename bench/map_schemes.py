#!/usr/bin/python3
# map_schemes.py - which way of updating a large Postfix TLS policy map is fastest while a kill -9
# at any moment still leaves Postfix reading the old map or the new one (issue 17, write path).
#
# No daemon: Postfix's own postmap on files in a temporary directory (a minimal config directory
# of its own, passed with -c). Per N (--sizes) it times, once each:
#   1. the full rebuild smtptlsd does today (src/apply/stage.c stage_map): write the text, postmap
#      TYPE:staged, postmap -s to read every entry back (not cdb: it has no sequence operation),
#      a copy of the index (the last-known-good copy), rename of index and text;
#   2. in-place updates: postmap -i -r with one changed line, postmap -d of one key, each on the
#      live index, and the same update on a copy of the index renamed over the live one;
#   3. maps sharded by a stable hash of the key (K files, all listed in smtp_tls_policy_maps):
#      rebuilding one shard, building all K one after another and 2 at a time;
#   4. (at the largest N) what a kill -9 of postmap leaves behind: postmap -i fed many new lines,
#      and an in-place full rebuild, killed after --kill-ms; the entries are then counted;
#   5. one postmap -q per type at the largest N.
# Everything runs one at a time (2 workers only in the "2 in parallel" column). Standard library
# only; run as root with Debian's /usr/bin/python3 and postfix, postfix-cdb, postfix-lmdb.
#
#   /usr/bin/python3 bench/map_schemes.py [--sizes 100000,1000000] [--types hash,btree,lmdb,cdb]
#          [--shards 16,64,256] [--kill-ms 50] [--kill-lines 100000] [--keep]

import argparse
import concurrent.futures
import fcntl
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib

SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}
IN_PLACE_TYPES = ("hash", "btree", "lmdb")  # cdb cannot be updated in place (checked in part 2)
SHARD_TYPES = ("cdb", "hash", "lmdb")


# -- the map's lines ------------------------------------------------------------------------------
def entry(i, generation=0):
    """Row i of a map: a domain, a [host]:port next hop or a parent-domain wildcard, each with a
    realistic policy. generation changes the value (not the key), so a later map replaces rows."""
    kind = i % 3
    if kind == 0:
        return (f"example-{i}.com",
                "encrypt protocols=>=TLSv1.2" if generation == 0 else "encrypt protocols=>=TLSv1.3")
    if kind == 1:
        return (f"[mx.host-{i}.net]:25",
                "secure match=nexthop:dot-nexthop" if generation == 0 else "secure match=nexthop")
    return (f".sub-{i}.org", "may" if generation == 0 else "encrypt")


def render(entries):
    return "".join(f"{k} {v}\n" for k, v in entries)


def shard_of(key, k):
    """Stable shard number of a key: CRC-32 of the key as Postfix looks it up (lower case)."""
    return zlib.crc32(key.lower().encode()) % k


# -- helpers --------------------------------------------------------------------------------------
class Bench:
    def __init__(self, top):
        self.top = top
        self.cf = os.path.join(top, "cf")
        os.makedirs(self.cf)
        with open(os.path.join(self.cf, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.6\n")
        # Postfix commands wait ~2 s while main.cf looks freshly written: date it back.
        old = time.time() - 60
        os.utime(os.path.join(self.cf, "main.cf"), (old, old))

    def postmap(self, *args, stdin=None, check=True, stdout=subprocess.DEVNULL):
        """Runs postmap -c CF ARGS; returns (seconds, CompletedProcess)."""
        t = time.perf_counter()
        p = subprocess.run(["postmap", "-c", self.cf, *args], stdin=stdin, stdout=stdout,
                           stderr=subprocess.PIPE, text=True, timeout=1800,
                           input=None)
        dt = time.perf_counter() - t
        if check and p.returncode != 0:
            raise RuntimeError(f"postmap {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return dt, p

    def postmap_input(self, args, text, check=True):
        t = time.perf_counter()
        p = subprocess.run(["postmap", "-c", self.cf, *args], input=text, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=1800)
        dt = time.perf_counter() - t
        if check and p.returncode != 0:
            raise RuntimeError(f"postmap {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return dt, p

    def count(self, mtype, path):
        """Entries of a map by postmap -s (None and the error when it cannot be read)."""
        p = subprocess.run(["postmap", "-c", self.cf, "-s", f"{mtype}:{path}"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=1800)
        n = p.stdout.count(b"\n")
        return n, p.returncode, p.stderr.decode(errors="replace").strip()


def timed(fn, *a):
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def write_fsync(path, text):
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def copy_fsync(src, dst):
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_fsync(pairs, d):
    for a, b in pairs:
        os.rename(a, b)
    fsync_dir(d)


def ms(s):
    return "-" if s is None else f"{s * 1000:,.1f}"


def table(title, head, rows):
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(str(h).rjust(w) if i else str(h).ljust(w) for i, (h, w) in
                    enumerate(zip(head, widths))))
    for r in rows:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))))
    sys.stdout.flush()


def mb(path):
    try:
        return f"{os.path.getsize(path) / 1e6:,.1f}"
    except OSError:
        return "-"


# -- part 1: the full rebuild of today ------------------------------------------------------------
def full_rebuild(b, d, mtype, text, n):
    """stage_map's steps, each timed. Leaves d/live (text) and d/live<suffix> (index)."""
    sfx = SUFFIX[mtype]
    staged, live, lkg = (os.path.join(d, x) for x in ("staged", "live", "lkg"))
    t = {}
    t["write"] = timed(write_fsync, staged, text)
    t["postmap"], _ = b.postmap(f"{mtype}:{staged}")
    if mtype == "cdb":
        t["verify"] = None  # postmap -s: "sequence operation is not supported" for cdb
    else:
        t0 = time.perf_counter()
        with open(os.devnull, "w") as null:
            b.postmap("-s", f"{mtype}:{staged}", stdout=null)
        t["verify"] = time.perf_counter() - t0
    # the daemon copies the live index to lkg; the staged one has the same size
    t["copy"] = timed(copy_fsync, staged + sfx, lkg + sfx)
    t["rename"] = timed(rename_fsync, [(staged + sfx, live + sfx), (staged, live)], d)
    t["total"] = sum(v for v in t.values() if v is not None)
    if mtype == "lmdb":
        # LMDB only: postmap TYPE:live rebuilds the live index in ONE transaction (part 4 kills it)
        write_fsync(live, text)
        t["in_place"], _ = b.postmap(f"{mtype}:{live}")
    return t, mb(live + sfx)


# -- part 2: in place ------------------------------------------------------------------------------
def in_place(b, d, mtype, n):
    """On the live index of part 1: one changed row by postmap -i -r, one key deleted by postmap -d,
    and the change made on a copy renamed over the live index. Each checked with postmap -q."""
    sfx = SUFFIX[mtype]
    live = os.path.join(d, "live")
    i = n // 2 - (n // 2) % 3  # an example-I.com row
    key, new = entry(i, 1)
    res = {}
    if mtype == "cdb":
        _, p = b.postmap_input(["-i", "-r", f"cdb:{live}"], f"{key} {new}\n", check=False)
        res["cdb"] = f"exit {p.returncode}: {p.stderr.strip()}"
        return res
    res["update"], _ = b.postmap_input(["-i", "-r", f"{mtype}:{live}"], f"{key} {new}\n")
    res["query"], q = b.postmap_input(["-q", key, f"{mtype}:{live}"], "")
    assert q.stdout.strip() == new, (mtype, q.stdout)
    dkey = entry(i + 1)[0]
    res["delete"], _ = b.postmap("-d", dkey, f"{mtype}:{live}")
    _, q = b.postmap("-q", dkey, f"{mtype}:{live}", check=False)
    assert q.returncode == 1, (mtype, "deleted key still found")
    # on a copy, renamed over the live index
    tmp = os.path.join(d, "tmp")
    key2, new2 = entry(i + 3, 1)
    res["c_copy"] = timed(copy_fsync, live + sfx, tmp + sfx)
    res["c_update"], _ = b.postmap_input(["-i", "-r", f"{mtype}:{tmp}"], f"{key2} {new2}\n")
    res["c_rename"] = timed(rename_fsync, [(tmp + sfx, live + sfx)], d)
    res["c_total"] = res["c_copy"] + res["c_update"] + res["c_rename"]
    _, q = b.postmap("-q", key2, f"{mtype}:{live}", stdout=subprocess.PIPE)
    assert q.stdout.strip() == new2, (mtype, q.stdout)
    return res


# -- part 3: shards -------------------------------------------------------------------------------
def build_shard(b, d, mtype, idx, text):
    """write + postmap + rename of shard idx (staged as s<idx>.new)."""
    sfx = SUFFIX[mtype]
    staged, final = os.path.join(d, f"s{idx}.new"), os.path.join(d, f"s{idx}")
    write_fsync(staged, text)
    b.postmap(f"{mtype}:{staged}")
    rename_fsync([(staged + sfx, final + sfx), (staged, final)], d)


def shards(b, d, mtype, k, texts, probe_key):
    sfx = SUFFIX[mtype]
    os.makedirs(d)
    res = {}
    t = time.perf_counter()
    for idx in range(k):
        build_shard(b, d, mtype, idx, texts[idx])
    res["all_seq"] = time.perf_counter() - t
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        for f in [ex.submit(build_shard, b, d, mtype, idx, texts[idx]) for idx in range(k)]:
            f.result()
    res["all_par2"] = time.perf_counter() - t
    # one shard, as stage_map would do it: write, postmap, verify, copy to lkg, rename
    s = shard_of(probe_key, k)
    staged, final, lkg = (os.path.join(d, x) for x in (f"s{s}.new", f"s{s}", f"s{s}.lkg"))
    t0 = time.perf_counter()
    write_fsync(staged, texts[s])
    t1 = time.perf_counter()
    b.postmap(f"{mtype}:{staged}")
    t2 = time.perf_counter()
    if mtype != "cdb":
        with open(os.devnull, "w") as null:
            b.postmap("-s", f"{mtype}:{staged}", stdout=null)
    t3 = time.perf_counter()
    copy_fsync(final + sfx, lkg + sfx)
    t4 = time.perf_counter()
    rename_fsync([(staged + sfx, final + sfx), (staged, final)], d)
    t5 = time.perf_counter()
    res.update(one_rows=texts[s].count("\n"), one_write=t1 - t0, one_postmap=t2 - t1,
               one_verify=None if mtype == "cdb" else t3 - t2, one_copy=t4 - t3,
               one_rename=t5 - t4, one_total=t5 - t0)
    # a lookup through all K maps in order (postmap -q takes a list, first match wins), for a key
    # in the last shard listed and for a missing key: every file is opened, as by a new smtp
    maps = [f"{mtype}:{os.path.join(d, f's{i}')}" for i in range(k)]
    res["q_hit"], q = b.postmap("-q", probe_key, *maps, stdout=subprocess.PIPE)
    assert q.stdout.strip(), (mtype, k, "probe key not found")
    res["q_miss"], q = b.postmap("-q", "missing.invalid", *maps, check=False)
    assert q.returncode == 1
    return res


# -- part 4: kill -9 ------------------------------------------------------------------------------
def killed(b, d, mtype, base_text, base_n, extra_text, extra_n, full_text, kill_ms):
    """postmap -i -r fed extra_n new rows, and an in-place full rebuild (postmap TYPE:f, from a
    text of base_n + extra_n rows), each on a map of base_n rows and killed after kill_ms."""
    out = {}
    for mode in ("incremental", "rebuild"):
        path = os.path.join(d, f"{mtype}-{mode}")
        write_fsync(path, base_text)
        b.postmap(f"{mtype}:{path}")
        before, _, _ = b.count(mtype, path)
        if mode == "incremental":
            src = os.path.join(d, "extra")
            write_fsync(src, extra_text)
            argv = ["postmap", "-c", b.cf, "-i", "-r", f"{mtype}:{path}"]
        else:
            src = os.devnull
            write_fsync(path, full_text)  # the text postmap reads; the index is the old one
            argv = ["postmap", "-c", b.cf, f"{mtype}:{path}"]
        with open(src) as stdin:
            t = time.perf_counter()
            p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            time.sleep(kill_ms / 1000)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            lived = time.perf_counter() - t
        after, rc, err = b.count(mtype, path)
        q_old = b.postmap("-q", entry(0)[0], f"{mtype}:{path}", check=False,
                          stdout=subprocess.PIPE)[1]
        out[mode] = dict(before=before, full=base_n + extra_n, after=after, dump_rc=rc,
                         dump_err=err.splitlines()[-1][:90] if err else "",
                         killed=p.returncode == -signal.SIGKILL, lived=lived,
                         q=f"exit {q_old.returncode} {q_old.stdout.strip()[:30]}")
        for f in os.listdir(d):
            if f.startswith(f"{mtype}-{mode}"):
                os.unlink(os.path.join(d, f))
    return out


def lock_check(b, d, mtype):
    """Which postmap operations wait for an exclusive fcntl(2) lock on the index held by another
    process (Postfix's readers and writers lock lmdb maps this way: lmdb_table(5))."""
    path = os.path.join(d, f"lock-{mtype}")
    write_fsync(path, render(entry(i) for i in range(1000)))
    b.postmap(f"{mtype}:{path}")
    key, new = entry(0, 1)
    out = []
    fd = os.open(path + SUFFIX[mtype], os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        for args, inp in ((["-i", "-r"], f"{key} {new}\n"), (["-q", key], None),
                          (["-d", entry(1)[0]], None)):
            try:
                subprocess.run(["postmap", "-c", b.cf, *args, f"{mtype}:{path}"], input=inp,
                               text=True, capture_output=True, timeout=2, check=True)
                out.append("ran")
            except subprocess.TimeoutExpired:
                out.append("waits")
    finally:
        os.close(fd)
    return out


# -- main -----------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    ap.add_argument("--types", default="hash,btree,lmdb,cdb")
    ap.add_argument("--shards", default="16,64,256", help="comma-separated shard counts K")
    ap.add_argument("--kill-ms", default="50,300,800",
                    help="comma-separated delays: kill -9 postmap after each (part 4)")
    ap.add_argument("--kill-base", type=int, default=0,
                    help="rows of the map killed into (part 4; default: the largest size)")
    ap.add_argument("--kill-lines", type=int, default=100000, help="new rows fed to postmap -i")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1..5")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    types = [t for t in a.types.split(",") if t]
    ks = [int(x) for x in a.shards.split(",")]
    skip = set(a.skip.split(","))
    for t in types:
        if t not in SUFFIX:
            ap.error(f"unknown map type {t}")

    top = tempfile.mkdtemp(prefix="stls-mapschemes-", dir="/tmp")
    b = Bench(top)
    pv = subprocess.run(["postconf", "-c", b.cf, "-h", "mail_version"], capture_output=True,
                        text=True).stdout.strip()
    print("command: " + " ".join([sys.executable] + sys.argv))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; postfix {pv}; "
          f"{os.cpu_count()} CPUs; kernel {platform.release()}; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; dir {top}")
    print("times in ms, one run each; every file write, copy and rename is followed by fsync "
          "(of the file / its directory)")
    avail = subprocess.run(["postconf", "-c", b.cf, "-m"], capture_output=True, text=True).stdout
    for t in types:
        if t not in avail.split():
            sys.exit(f"postmap lacks map type {t}: apt-get install postfix-{t}")
    try:
        run(a, b, top, sizes, types, ks, skip)
    finally:
        if a.keep:
            print(f"\nkept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
        print(f"load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run(a, b, top, sizes, types, ks, skip):
    rows1, rows2, rows3, cdb_note = [], [], [], ""
    for n in sizes:
        entries = [entry(i) for i in range(n)]
        text = render(entries)
        for mtype in types:
            d = os.path.join(top, f"n{n}-{mtype}")
            os.makedirs(d)
            if "1" not in skip or "2" not in skip:
                t, size = full_rebuild(b, d, mtype, text, n)
                rows1.append([f"{n:,}", mtype, size, ms(t["write"]), ms(t["postmap"]),
                              ms(t["verify"]) if mtype != "cdb" else "n/a", ms(t["copy"]),
                              ms(t["rename"]), ms(t["total"]), ms(t.get("in_place"))])
            if "2" not in skip:
                r = in_place(b, d, mtype, n)
                if "cdb" in r:
                    cdb_note = r["cdb"]
                else:
                    rows2.append([f"{n:,}", mtype, ms(r["update"]), ms(r["query"]),
                                  ms(r["delete"]), ms(r["c_copy"]), ms(r["c_update"]),
                                  ms(r["c_rename"]), ms(r["c_total"])])
            if not a.keep:
                shutil.rmtree(d)
        if "1" not in skip:
            table(f"1. full rebuild as stage_map does it (N={n:,})",
                  ["N", "type", "index MB", "write", "postmap", "postmap -s", "copy", "rename",
                   "total", "lmdb in place"], [r for r in rows1 if r[0] == f"{n:,}"])
            print("   lmdb in place: postmap lmdb:live over the live index (no staging, copy or "
                  "rename): one LMDB transaction, see part 4")
            print("   cdb: postmap -s is not supported (\"sequence operation is not supported\"); "
                  "smtptlsd reads the .cdb itself (src/apply/cdb.c), not timed here")
        if "2" not in skip:
            table(f"2. in place (N={n:,}): postmap -i -r one changed row / postmap -q it / "
                  "postmap -d one key; then on a copy: copy + postmap -i -r + rename",
                  ["N", "type", "-i live", "-q", "-d live", "copy", "-i copy", "rename",
                   "copy total"], [r for r in rows2 if r[0] == f"{n:,}"])
            if cdb_note:
                print(f"   cdb: postmap -i -r cdb:f -> {cdb_note}")
        if "3" not in skip:
            for k in ks:
                texts = [[] for _ in range(k)]
                for key, v in entries:
                    texts[shard_of(key, k)].append(f"{key} {v}\n")
                texts = ["".join(x) for x in texts]
                probe = entries[n // 2 - (n // 2) % 3][0]
                for mtype in [t for t in SHARD_TYPES if t in types]:
                    d = os.path.join(top, f"n{n}-k{k}-{mtype}")
                    r = shards(b, d, mtype, k, texts, probe)
                    rows3.append([f"{n:,}", k, mtype, f"{r['one_rows']:,}", ms(r["one_write"]),
                                  ms(r["one_postmap"]),
                                  ms(r["one_verify"]) if mtype != "cdb" else "n/a",
                                  ms(r["one_copy"]), ms(r["one_rename"]), ms(r["one_total"]),
                                  ms(r["all_seq"]), ms(r["all_par2"]), ms(r["q_hit"]),
                                  ms(r["q_miss"])])
                    if not a.keep:
                        shutil.rmtree(d)
            table(f"3. sharded by crc32(lower(key)) % K (N={n:,}): one shard rebuilt as stage_map "
                  "does (write, postmap, postmap -s, copy, rename); all K built (write+postmap+"
                  "rename each) sequentially and 2 at a time; postmap -q over all K maps listed",
                  ["N", "K", "type", "shard rows", "write", "postmap", "postmap -s", "copy",
                   "rename", "one shard", "all K seq", "all K par2", "-q hit", "-q miss"],
                  [r for r in rows3 if r[0] == f"{n:,}"])
        del entries, text

    nmax = a.kill_base or max(sizes)
    if "4" not in skip:
        base = render(entry(i) for i in range(nmax))
        extra = render(entry(i) for i in range(nmax, nmax + a.kill_lines))
        d = os.path.join(top, "kill")
        os.makedirs(d)
        rows4 = []
        for mtype in [t for t in IN_PLACE_TYPES if t in types]:
            for kill_ms in [float(x) for x in a.kill_ms.split(",")]:
                r = killed(b, d, mtype, base, nmax, extra, a.kill_lines, base + extra, kill_ms)
                for mode, x in r.items():
                    verdict = ("UNREADABLE" if x["dump_rc"] != 0 else
                               "old map" if x["after"] == x["before"] else
                               "new map" if x["after"] == x["full"] else
                               "EMPTY" if x["after"] == 0 else "PARTIAL")
                    rows4.append([mtype, mode, f"{kill_ms:g}", f"{x['before']:,}",
                                  f"{x['full']:,}", f"{x['lived'] * 1000:.0f}",
                                  "yes" if x["killed"] else "no (ended)", f"{x['after']:,}",
                                  x["dump_rc"], verdict, x["q"], x["dump_err"]])
        rows4b = [["lmdb", *lock_check(b, d, "lmdb")]] if "lmdb" in types else []
        table(f"4. kill -9 after KILL ms: 'incremental' = postmap -i -r TYPE:f < "
              f"{a.kill_lines:,} new rows; 'rebuild' = postmap TYPE:f in place from a text of "
              f"{nmax:,} + {a.kill_lines:,} rows; entries counted with postmap -s",
              ["type", "mode", "KILL", "before", "if complete", "ms alive", "killed", "after kill",
               "-s exit", "verdict", "-q row 0", "postmap -s stderr (last line)"], rows4)
        table("4b. lmdb, while another process holds an exclusive fcntl lock on the .lmdb (2 s "
              "limit): lmdb_table(5) wants every read and write transaction under such a lock",
              ["type", "postmap -i -r", "postmap -q", "postmap -d"], rows4b)
        shutil.rmtree(d)

    if "5" not in skip:
        d = os.path.join(top, "query")
        os.makedirs(d)
        path = os.path.join(d, "m")
        write_fsync(path, render(entry(i) for i in range(nmax)))
        rows5 = []
        key, val = entry(nmax // 2 - (nmax // 2) % 3)
        for mtype in types:
            b.postmap(f"{mtype}:{path}")
            t, q = b.postmap("-q", key, f"{mtype}:{path}", stdout=subprocess.PIPE)
            assert q.stdout.strip() == val
            t2, _ = b.postmap("-q", "missing.invalid", f"{mtype}:{path}", check=False)
            rows5.append([f"{nmax:,}", mtype, mb(path + SUFFIX[mtype]), ms(t), ms(t2)])
            if mtype in ("hash", "btree"):
                os.unlink(path + ".db")
        table("5. postmap -q (one process: start, open, lookup)",
              ["N", "type", "index MB", "-q hit", "-q miss"], rows5)


if __name__ == "__main__":
    main()
