# Small helpers shared by the harness: bounded waiting, bounded subprocess runs, free ports, short
# private directories. Nothing here waits without a time limit.
import os
import socket
import subprocess
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def proc_status_kib(pid, key):
    """A "<key>: N kB" line of /proc/<pid>/status (VmRSS, VmHWM...) -> N."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class HarnessError(RuntimeError):
    """A sandbox part (PostgreSQL, Postfix, openssl, the daemon) did not do what the harness asked."""


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns a true value (returned) or timeout seconds pass (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def run(argv, timeout=60, check=True, cwd=None, env=None, input=None):
    """Run argv (never through a shell) with a time bound; return the CompletedProcess (text mode)."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(argv)}: still running after {timeout}s") from e
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)}: exit {proc.returncode}\n"
                           f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}")
    return proc


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller must still expect a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def short_tempdir(prefix="stls-"):
    """A fresh 0755 directory under /tmp with a short path (unix socket paths must stay < 108 bytes)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def tail(path, lines=40):
    """The last lines of a text file, for failure messages ('' if it does not exist)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return ""
