# Small helpers shared by the harness: bounded waiting, bounded subprocess runs, free ports, short
# private directories. Nothing here waits without a time limit.
import os
import random
import signal
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


def stop_group(proc, timeout=15):
    """Stop a process started in a session of its own (start_new_session) and whatever it
    started: SIGTERM to its process group, SIGKILL to the group after `timeout` seconds, reaped."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group: the leader is not reaped yet
        except ProcessLookupError:
            pass
        proc.wait(10)


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


def free_udp_tcp_port(address="127.0.0.1"):
    """A port on `address` that was free a moment ago for both TCP and UDP (a DNS server needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((address, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((address, port))
                except OSError:
                    continue
                return port
    raise HarnessError(f"no port free for both TCP and UDP on {address}")


def free_loopback_address(ports=(25, 443)):
    """A random 127.a.b.c (a in 100..250) where nothing listens on `ports` a moment ago: a peer of its
    own can then take the well-known ports (SMTP on 25, HTTPS on 443) that the probe connects to. Linux
    routes all of 127.0.0.0/8 to lo, so no address has to be configured. The address space is large
    enough that parallel workers (pytest-xdist) do not meet; the bind check rules out one in use."""
    rng = random.SystemRandom()
    for _ in range(100):
        address = f"127.{rng.randint(100, 250)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        try:
            for port in ports:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((address, port))
        except OSError:
            continue
        return address
    raise HarnessError(f"no free loopback address for ports {ports}")


def listening_sockets(pid):
    """What process `pid` listens on: a set of (proto, address, port), proto tcp/udp/tcp6/udp6 (TCP
    sockets in LISTEN, bound UDP sockets), read from /proc (no ss/netstat needed)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for proto, wanted_state in (("tcp", "0A"), ("udp", "07"), ("tcp6", "0A"), ("udp6", "07")):
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] not in inodes or fields[3] != wanted_state:
                    continue
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                if len(raw) == 4:
                    address = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:  # four host-order 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    address = socket.inet_ntop(socket.AF_INET6, words)
                found.add((proto, address, int(hex_port, 16)))
    return found


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
