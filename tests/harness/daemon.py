# Daemon: one smtptlsd process under test. Writes its config file, starts the binary with NOTIFY_SOCKET and
# the sanitizer options, waits (bounded) for READY=1, learns its URL from STATUS or the log, and offers
# HTTP requests, CLI runs, log inspection (error lines, sanitizer reports), open-fd accounting and stop.
import collections
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

from . import contract
from .notify import NotifyListener
from .util import REPO_ROOT, HarnessError, run, tail

LSAN_SUPPRESSIONS = os.path.join(REPO_ROOT, "tests", "lsan.supp")
ERROR_LINE = re.compile(r"^<[0-3]>")
SANITIZER = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                       r"WARNING: ThreadSanitizer|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")
LISTENING = re.compile(r"listening on (http://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+))")
_DEFAULT = object()


def default_binary():
    """$SMTPTLSD_BIN, else build-asan/smtptlsd if it exists, else build/smtptlsd (repo-relative)."""
    if os.environ.get("SMTPTLSD_BIN"):
        return os.path.abspath(os.environ["SMTPTLSD_BIN"])
    asan = os.path.join(REPO_ROOT, "build-asan", "smtptlsd")
    return asan if os.path.exists(asan) else os.path.join(REPO_ROOT, "build", "smtptlsd")


def sanitizer_env():
    return {
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        "LSAN_OPTIONS": f"suppressions={LSAN_SUPPRESSIONS}:print_suppressions=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


class Response(collections.namedtuple("Response", "status headers body raw")):
    """status (int), headers (http.client.HTTPMessage: case-insensitive .get), body (parsed JSON for
    JSON media types, else text), raw (bytes). Unpacks as (status, headers, body, raw)."""

    def __repr__(self):
        return f"<Response {self.status} {self.headers.get('Content-Type')} {self.raw[:300]!r}>"


class RawRequest:
    """A request to daemon d written by hand on its own connection (Content-Length: length), so
    that the caller decides when (and whether) the body is sent: send(), response()."""

    def __init__(self, d, method, path, length, token=None):
        self.method, self.path = method, path
        self.sock = socket.create_connection((d.host, d.port), timeout=30)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {d.host}\r\n"
                f"Authorization: Bearer {token or d.token}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {length}\r\n\r\n")
        self.sock.sendall(head.encode())

    def send(self, data):
        self.sock.sendall(data)

    def response(self, timeout=60):
        """(status, {header: value}, body bytes) of the reply."""
        self.sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed before a reply: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed inside the reply body"
            body += chunk
        contract.check(self.method, self.path, status, headers, body[:length])
        return status, headers, body[:length]

    def close(self):
        self.sock.close()


class DaemonError(HarnessError):
    pass


class Daemon:
    def __init__(self, workdir, config, binary=None, env=None, db_port=None):
        """config: {key: value} written to workdir/smtptlsd.conf (None values are left out).
        env: extra environment for the daemon and its CLI. db_port: PostgreSQL's TCP port (its
        connections are accounted apart in the fd check, since a pool may open them lazily)."""
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.config = dict(config)
        self.binary = binary or default_binary()
        self.extra_env = dict(env or {})
        self.db_port = db_port
        self.conf_path = os.path.join(self.workdir, "smtptlsd.conf")
        self.log_path = os.path.join(self.workdir, "daemon.log")
        self.notify_path = os.path.join(self.workdir, "notify.sock")
        self.proc = None
        self.notify = None
        self.url = None
        self.port = None
        self.token = None           # default bearer token for http()
        self.expected_errors = []   # regexes of <0>..<3> lines the test expects
        self.fd_baseline = None
        self.stopped = False        # stop()/kill9() was called: an exit is not a crash
        self.cli_reports = []       # sanitizer reports seen in CLI runs
        self._log_offset = 0
        self.write_config()

    # -- configuration ----------------------------------------------------------------------------
    def write_config(self, text=None):
        """Write self.config (or the given raw text) to the config file."""
        if text is None:
            lines = ["# written by tests/harness/daemon.py"]
            lines += [f"{k} = {v}" for k, v in self.config.items() if v is not None]
            text = "\n".join(lines) + "\n"
        with open(self.conf_path, "w") as f:
            f.write(text)

    def env(self, notify=False):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SMTPTLSD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                                "WATCHDOG_PID", "LISTEN_FDS")}
        env.update(sanitizer_env())
        if notify:
            env["NOTIFY_SOCKET"] = self.notify_path
        env.update(self.extra_env)
        return env

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, wait_ready=True, timeout=30, args=("serve",), env=None):
        if not os.path.exists(self.binary):
            raise DaemonError(f"no daemon binary at {self.binary} (build it: scripts/build)")
        if self.notify:
            self.notify.close()
        self.notify = NotifyListener(self.notify_path)
        full_env = self.env(notify=True)
        full_env.update(env or {})
        self._log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf_path, *args], env=full_env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.workdir)
        self.stopped = False
        self.url = self.port = None
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=30):
        """Wait for READY=1 (failing at once if the process exits), then learn the URL."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.notify.wait_for("READY=1", timeout=0.1)
                break
            except TimeoutError:
                pass
            if not self.alive():
                raise DaemonError(f"daemon exited with {self.proc.returncode} before READY=1\n"
                                  f"--- log ---\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise DaemonError(f"no READY=1 within {timeout}s; notify: {self.notify.messages()}\n"
                                  f"--- where it waits ---\n{self.diagnose()}\n"
                                  f"--- log ---\n{self.log_tail()}")
        self.find_url()
        return self

    def diagnose(self):
        """What the daemon and the processes it started wait on (a start that does not come):
        each thread's state, kernel wait channel and system call, then each descendant's."""
        lines = []

        def read(path):
            try:
                with open(path) as f:
                    return f.read().strip()
            except OSError:
                return "?"

        try:
            for tid in sorted(os.listdir(f"/proc/{self.pid}/task"), key=int):
                t = f"/proc/{self.pid}/task/{tid}"
                state = read(f"{t}/stat").rpartition(")")[2].split()[:1]
                lines.append(f"thread {tid} {read(f'{t}/comm')}: state {''.join(state)} "
                             f"wchan {read(f'{t}/wchan')} syscall {read(f'{t}/syscall').split(' ')[0]}")
        except OSError as e:
            lines.append(f"no threads: {e}")
        ps = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,stat=,etimes=,wchan:28=,args="],
                            capture_output=True, text=True).stdout.splitlines()
        parent = {}
        for row in ps:
            f = row.split(None, 2)
            if len(f) >= 2:
                parent[f[0]] = f[1]

        def descends(pid):
            seen = set()
            while pid in parent and pid not in seen:
                if pid == str(self.pid):
                    return True
                seen.add(pid)
                pid = parent[pid]
            return False

        lines += [f"child {row.strip()}" for row in ps if descends(row.split(None, 1)[0])
                  and row.split(None, 1)[0] != str(self.pid)]
        return "\n".join(lines)

    def find_url(self):
        """Learn the URL from a STATUS= line or the log ('listening on http://ADDR:PORT')."""
        for text in self.notify.values("STATUS") + [self.log_text()]:
            m = LISTENING.search(text)
            if m:
                self.url, self.port = m.group(1), int(m.group(3))
                self.host = m.group(2).strip("[]")
                return
        raise DaemonError("READY=1 came but neither STATUS nor the log says 'listening on http://...'\n"
                          f"notify: {self.notify.messages()}\n--- log ---\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send sig and wait (bounded) for exit; returns the exit code (negative: killed by signal)."""
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise DaemonError(f"daemon did not exit within {timeout}s of signal {sig}; killed\n"
                                  f"--- log ---\n{self.log_tail()}")
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.stopped = True
            self.proc.kill()
            self.proc.wait(10)

    def close(self):
        self.kill9()
        if self.notify:
            self.notify.close()
            self.notify = None

    # -- HTTP -------------------------------------------------------------------------------------
    def http(self, method, path, body=None, headers=None, token=_DEFAULT, timeout=15,
             content_type=_DEFAULT, unchecked=None):
        """One request on a fresh connection. body: dict/list -> JSON; str/bytes -> sent as is.
        token: default self.token; None sends no Authorization header. The reply is checked
        against api/openapi.yaml (contract.check: a mismatch raises ContractError) unless
        `unchecked` gives the reason it is not a reply of the API (e.g. a hand-made request
        line the spec cannot describe)."""
        if self.url is None:
            raise DaemonError("daemon URL unknown (not started or not ready)")
        hdrs = {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            ctype = "application/json" if content_type is _DEFAULT else content_type
            if ctype is not None:
                hdrs["Content-Type"] = ctype
        tok = self.token if token is _DEFAULT else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            if unchecked is None:
                contract.check(method, path, resp.status, resp.headers, raw)
            return Response(resp.status, resp.headers, _decode(resp.headers, raw), raw)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.http("GET", path, **kw)

    # -- CLI --------------------------------------------------------------------------------------
    def run_cli(self, args, timeout=60, env=None, config=_DEFAULT):
        """Run `smtptlsd -c CONF ARGS...` (config=None: no -c); returns the CompletedProcess."""
        full_env = self.env()
        full_env.update(env or {})
        conf = self.conf_path if config is _DEFAULT else config
        argv = [self.binary] + (["-c", conf] if conf else []) + list(args)
        proc = run(argv, timeout=timeout, check=False, env=full_env, cwd=self.workdir)
        for stream in (proc.stdout, proc.stderr):
            if SANITIZER.search(stream):
                self.cli_reports.append(f"$ {' '.join(argv)}\n{stream}")
        return proc

    def add_token(self, name, scope="admin"):
        """`token add NAME --scope SCOPE`: returns the token printed on stdout."""
        proc = self.run_cli(["token", "add", name, "--scope", scope])
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or len(lines) != 1:
            raise DaemonError(f"token add {name} --scope {scope}: exit {proc.returncode}, "
                              f"stdout {proc.stdout!r}, stderr {proc.stderr!r}")
        return lines[0].strip()

    # -- logs -------------------------------------------------------------------------------------
    def log_text(self, since_start=False):
        try:
            with open(self.log_path, errors="replace") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read()
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log_text().splitlines()

    def log_tail(self, lines=60):
        return tail(self.log_path, lines)

    def expect_error(self, regex):
        """Declare that a <0>..<3> log line matching regex is expected in this test."""
        self.expected_errors.append(re.compile(regex))

    def unexpected_errors(self):
        return [line for line in self.log_lines() if ERROR_LINE.match(line)
                and not any(rx.search(line) for rx in self.expected_errors)]

    def sanitizer_reports(self):
        return [line for line in self.log_lines() if SANITIZER.search(line)] + self.cli_reports

    def wait_log(self, pattern, timeout=10):
        """Wait until a log line matches regex pattern; return the match."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line matching {pattern!r} within {timeout}s\n"
                                   f"--- log ---\n{self.log_tail()}")
            time.sleep(0.05)

    # -- file descriptors -------------------------------------------------------------------------
    def open_fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_targets(self):
        """{fd: description}; TCP sockets described as 'tcp LOCALPORT->REMOTEPORT'."""
        tcp = _tcp_sockets(self.pid)
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # closed meanwhile
            m = re.match(r"socket:\[(\d+)\]", target)
            if m and m.group(1) in tcp:
                lport, rport = tcp[m.group(1)]
                target = f"tcp {lport}->{rport}" if rport else f"tcp listen {lport}"
            out[int(fd)] = target
        return out

    def fds_except_db(self):
        """fd -> description, leaving out connections to PostgreSQL (a pool may open them lazily)."""
        db = f"->{self.db_port}"
        return {fd: t for fd, t in self.fd_targets().items()
                if not (self.db_port and t.startswith("tcp") and t.endswith(db))}

    def mark_fd_baseline(self):
        self.fd_baseline = self.fds_except_db()

    def fd_leaks(self, settle=10.0):
        """If the count of non-database fds has not come back to the baseline's within `settle`
        seconds, the fds that are new since mark_fd_baseline() ({fd: description}); else {}."""
        if self.fd_baseline is None:
            return {}
        deadline = time.monotonic() + settle
        while True:
            now = self.fds_except_db()
            if len(now) <= len(self.fd_baseline):
                return {}
            if time.monotonic() > deadline:
                return {fd: t for fd, t in now.items() if self.fd_baseline.get(fd) != t}
            time.sleep(0.1)


def _decode(headers, raw):
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode(errors="replace")


def _tcp_sockets(pid):
    """inode -> (local port, remote port or 0) for the TCP sockets in pid's network namespace."""
    out = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, remote, inode = cols[1], cols[2], cols[9]
                    out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return out
