# NotifyListener: the receiving end of sd_notify(3). An AF_UNIX SOCK_DGRAM socket bound to a short path;
# a thread collects every datagram as a dict of KEY=VALUE lines (in arrival order) so tests can wait for
# READY=1, read STATUS= lines, and see STOPPING=1 or WATCHDOG=1.
import os
import socket
import threading
import time


def parse(datagram):
    """'READY=1\\nSTATUS=x' -> {'READY': '1', 'STATUS': 'x'}."""
    fields = {}
    for line in datagram.decode(errors="replace").split("\n"):
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key] = value
    return fields


class NotifyListener:
    def __init__(self, path):
        if len(path.encode()) >= 108:
            raise ValueError(f"NOTIFY_SOCKET path too long for sun_path: {path}")
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)
        self._messages = []  # (monotonic time, dict)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="notify-listener", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                self._messages.append((time.monotonic(), parse(data)))
                self._cond.notify_all()

    def messages(self):
        """Every message received so far, as dicts, oldest first."""
        with self._cond:
            return [m for _, m in self._messages]

    def timed_messages(self):
        """Every message so far as (time.monotonic() at arrival, dict), oldest first."""
        with self._cond:
            return list(self._messages)

    def values(self, key):
        """Every value sent for key (e.g. all STATUS= lines), oldest first."""
        return [m[key] for m in self.messages() if key in m]

    def count(self):
        with self._cond:
            return len(self._messages)

    def wait_for(self, match, timeout=10, start=0):
        """Wait for a message (index >= start) that matches and return it; TimeoutError otherwise.

        match: a callable(dict) -> bool, a key ('READY' means any READY=...), or 'KEY=VALUE'.
        """
        if callable(match):
            pred = match
        elif "=" in match:
            key, value = match.split("=", 1)
            pred = lambda m: m.get(key) == value  # noqa: E731
        else:
            pred = lambda m: match in m  # noqa: E731
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, m in self._messages[start:]:
                    if pred(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [m for _, m in self._messages]
                    raise TimeoutError(f"no sd_notify message matching {match!r} within {timeout:g}s; "
                                       f"received: {got}")
                self._cond.wait(min(remaining, 0.2))

    def close(self):
        self._closed = True
        self._thread.join(timeout=2)
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
