# PostgresSandbox: a private PostgreSQL 15 cluster in a directory of its own, run as the postgres user
# (PostgreSQL refuses root), trust authentication, fsync off, on 127.0.0.1 at a random free port plus a
# unix socket. The port is kept in BASEDIR/port so that restart() and a later run reuse the same one.
import hashlib
import os
import pwd
import shutil

from .util import HarnessError, free_port, run, tail, wait_until

PG_BIN = "/usr/lib/postgresql/15/bin"
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.65535" and a margin included


class PostgresSandbox:
    def __init__(self, basedir, port=None, user="postgres"):
        self.basedir = os.path.abspath(basedir)
        self.datadir = os.path.join(self.basedir, "data")
        self.logfile = os.path.join(self.basedir, "postgresql.log")
        self.user = user
        self._port_file = os.path.join(self.basedir, "port")
        self.port = port or self._saved_port()
        self._fixed_port = port is not None

    # -- layout -----------------------------------------------------------------------------------
    def _saved_port(self):
        try:
            with open(self._port_file) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def socket_dir(self):
        """basedir if the socket path fits, else a short directory under /tmp named after basedir."""
        if len(os.path.join(self.basedir, ".s.PGSQL.65535")) < SOCKET_PATH_MAX:
            return self.basedir
        digest = hashlib.sha1(self.basedir.encode()).hexdigest()[:10]
        return f"/tmp/stls-pgsock-{digest}"

    def _as_user(self, argv, timeout=60, check=True):
        # cwd: a directory the postgres user may enter (the caller's cwd may be /root).
        return run(["runuser", "-u", self.user, "--"] + argv, timeout=timeout, check=check,
                   cwd=self.basedir)

    def initialized(self):
        return os.path.exists(os.path.join(self.datadir, "PG_VERSION"))

    def init(self):
        """initdb if the cluster does not exist yet (idempotent)."""
        pw = pwd.getpwnam(self.user)
        os.makedirs(self.basedir, exist_ok=True)
        os.chmod(self.basedir, 0o755)
        os.chown(self.basedir, pw.pw_uid, pw.pw_gid)
        if self.initialized():
            return
        if os.path.exists(self.datadir):
            shutil.rmtree(self.datadir)  # a half-made cluster from an interrupted initdb
        self._as_user([f"{PG_BIN}/initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], timeout=120)

    # -- life cycle -------------------------------------------------------------------------------
    def is_running(self):
        if not self.initialized():
            return False
        return self._as_user([f"{PG_BIN}/pg_ctl", "-D", self.datadir, "status"], timeout=10,
                             check=False).returncode == 0

    def start(self, timeout=30, keep_port=False):
        """Start the cluster (initdb first if needed) on self.port (a port given to the constructor, or
        keep_port=True, must be used; a saved one is tried first), else on a fresh free port."""
        self.init()
        if self.is_running():
            return self
        sock = self.socket_dir
        if sock != self.basedir:
            os.makedirs(sock, exist_ok=True)
            os.chmod(sock, 0o755)
            pw = pwd.getpwnam(self.user)
            os.chown(sock, pw.pw_uid, pw.pw_gid)
        attempts = 1 if (self._fixed_port or keep_port) else 3
        for attempt in range(attempts):
            if self.port is None or attempt > 0:
                self.port = free_port()
            opts = (f"-p {self.port} -k '{sock}' -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off")
            proc = self._as_user([f"{PG_BIN}/pg_ctl", "-D", self.datadir, "-w", "-t", str(timeout),
                                  "-l", self.logfile, "-o", opts, "start"],
                                 timeout=timeout + 10, check=False)
            if proc.returncode == 0:
                with open(self._port_file, "w") as f:
                    f.write(f"{self.port}\n")
                return self
        raise HarnessError(f"PostgreSQL did not start on port {self.port}:\n{proc.stdout}{proc.stderr}"
                           f"\n--- {self.logfile} ---\n{tail(self.logfile)}")

    def stop(self, mode="fast", timeout=30):
        if not self.is_running():
            return
        self._as_user([f"{PG_BIN}/pg_ctl", "-D", self.datadir, "-w", "-t", str(timeout), "-m", mode,
                       "stop"], timeout=timeout + 10)
        wait_until(lambda: not self.is_running(), 10, "PostgreSQL to stop")

    def restart(self, timeout=30):
        """Stop (fast) and start again on the SAME port."""
        self.stop()
        self.start(timeout=timeout, keep_port=True)

    def destroy(self):
        self.stop(mode="immediate")
        shutil.rmtree(self.basedir, ignore_errors=True)
        if self.socket_dir != self.basedir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    # -- use --------------------------------------------------------------------------------------
    def url(self, dbname="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql, db="postgres", timeout=30, check=True):
        """Run SQL through psql over TCP; returns unaligned, tuples-only stdout ('|' between columns)."""
        proc = run([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                    "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                   timeout=timeout, check=check, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        return proc.stdout if check else proc

    def dump(self, db, *args, timeout=60):
        """pg_dump output for db (e.g. dump(db, "--schema-only")), comment lines left out."""
        out = run([f"{PG_BIN}/pg_dump", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                   "--no-owner", "--no-privileges", *args, db], timeout=timeout).stdout
        # Comments, and pg_dump's per-run random \restrict key (PostgreSQL 15.14+), are left out.
        return "\n".join(line for line in out.splitlines()
                         if not line.startswith(("--", "\\restrict", "\\unrestrict")))

    def create_database(self, name):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: use [A-Za-z0-9_]")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def database_exists(self, name):
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"
