# HttpsServer: a private nginx (Debian's, in the foreground: `daemon off`) serving static files over TLS
# with a given certificate, for the MTA-STS policy fetch of the destination probe
# (https://mta-sts.<domain>/.well-known/mta-sts.txt). Its own config, pid file, logs, temp paths and
# document root under one base directory; it listens on one loopback address only, by default on port 443
# of an address of its own (util.free_loopback_address()), since the probe always connects to port 443.
import os
import shutil
import signal
import subprocess

from .util import (HarnessError, free_loopback_address, port_is_open, run, stop_group, tail,
                   wait_until)


class HttpsServer:
    def __init__(self, basedir, cert, key, address=None, port=443):
        """cert: PEM path (leaf, optionally followed by its chain); key: its key (PEM path).
        address: a 127.X.Y.Z (default: a free one of its own)."""
        self.basedir = os.path.abspath(basedir)
        self.cert, self.key = cert, key
        self.address = address or free_loopback_address(ports=(port,))
        self.port = port
        self.root = os.path.join(self.basedir, "www")
        self.conf_path = os.path.join(self.basedir, "nginx.conf")
        self.pid_path = os.path.join(self.basedir, "nginx.pid")
        self.error_log = os.path.join(self.basedir, "error.log")
        self.access_log = os.path.join(self.basedir, "access.log")
        self._types = {}  # URL path -> Content-Type given to put()
        self._redirects = {}  # URL path -> (status, location) given to redirect()
        self.proc = None

    @property
    def url(self):
        """https://ADDRESS[:PORT] (curl callers: --resolve NAME:PORT:ADDRESS to use a host name)."""
        return f"https://{self.address}" + (f":{self.port}" if self.port != 443 else "")

    def put(self, path, data, content_type="text/plain"):
        """Serve `data` (bytes or str) at URL path `path` (e.g. "/.well-known/mta-sts.txt") with
        `content_type` (MTA-STS wants text/plain), instead of a redirect there. A running server picks
        a new file up at once; a new content type takes a reload (done here, bounded)."""
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"bad URL path {path!r}")
        if isinstance(data, str):
            data = data.encode()
        target = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(target + ".tmp", 0o644)
        os.rename(target + ".tmp", target)
        changed = self._types.get(path, "text/plain") != content_type or path in self._redirects
        self._types[path] = content_type
        self._redirects.pop(path, None)
        if changed and self.proc:
            self.reload()
        return self

    def redirect(self, path, location, status=301):
        """Answer `path` with a redirect to `location` (MTA-STS fetchers must not follow it); reloads a
        running server."""
        if not path.startswith("/") or '"' in location:
            raise ValueError(f"bad redirect {path!r} -> {location!r}")
        self._redirects[path] = (status, location)
        if self.proc:
            self.reload()
        return self

    def remove(self, path):
        """Stop serving `path` (a request for it then gets 404)."""
        try:
            os.unlink(os.path.join(self.root, path.lstrip("/")))
        except FileNotFoundError:
            pass

    def _write_config(self):
        temp = os.path.join(self.basedir, "temp")
        os.makedirs(temp, exist_ok=True)
        locations = "".join(
            f'        location = "{p}" {{\n            types {{ }}\n            default_type "{t}";\n'
            f"        }}\n" for p, t in self._types.items() if p not in self._redirects)
        locations += "".join(f'        location = "{p}" {{\n            return {status} "{url}";\n'
                             f"        }}\n" for p, (status, url) in self._redirects.items())
        conf = f"""\
# nginx of a smtptlsd test (tests/harness/https.py)
daemon off;
master_process on;
worker_processes 1;
user root root;
pid {self.pid_path};
error_log {self.error_log} info;
events {{
    worker_connections 64;
}}
http {{
    access_log {self.access_log};
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ }}
    default_type text/plain;
    server_tokens off;
    server {{
        listen {self.address}:{self.port} ssl default_server;
        server_name _;
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        root {self.root};
{locations}    }}
}}
"""
        with open(self.conf_path + ".tmp", "w") as f:
            f.write(conf)
        os.rename(self.conf_path + ".tmp", self.conf_path)

    def _nginx(self, *args):
        return ["nginx", "-p", self.basedir, "-c", self.conf_path, "-e", self.error_log, *args]

    def start(self, timeout=20):
        """Start nginx and wait (bounded) until it accepts connections on ADDRESS:PORT."""
        if self.proc:
            return self
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.basedir, 0o755)
        self._write_config()
        run(self._nginx("-t"), timeout=30)
        self._log = open(os.path.join(self.basedir, "nginx.out"), "ab")
        self.proc = subprocess.Popen(self._nginx(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: self.proc.poll() is not None or port_is_open(self.port, self.address),
                       timeout, f"nginx on {self.address}:{self.port}")
            if self.proc.poll() is not None:
                raise HarnessError(f"nginx exited with {self.proc.returncode}:\n{tail(self.error_log)}")
        except BaseException:
            self.stop()
            raise
        return self

    def reload(self, timeout=20):
        """Rewrite the config and have nginx reload it; wait (bounded) until the old worker is gone."""
        self._write_config()
        run(self._nginx("-t"), timeout=30)
        before = self._workers()
        os.kill(self.proc.pid, signal.SIGHUP)
        wait_until(lambda: (w := self._workers()) and not (w & before), timeout,
                   "nginx's workers after the reload")

    def _workers(self):
        """The pids of the master's worker processes (children of the nginx process)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return {int(p) for p in f.read().split()}
        except FileNotFoundError:
            return set()

    def stop(self, timeout=15):
        """SIGTERM (nginx: fast shutdown) to the process group (master and workers), SIGKILL to the
        group after `timeout` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, timeout)  # the master exits after its workers
            self._log.close()

    def destroy(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)
