# PostfixSandbox: a private Postfix instance (the recipe of shared/design/testing.md): its own config,
# queue, data and log directories under one base directory, chroot off, the port-25 service removed and
# one smtpd on 127.0.0.1 at a random free port (or, given an address, on that address, by default port 25:
# a remote MX of its own on 127.X.Y.Z:25 for the destination probe, which always connects to port 25).
# Every command gets `-c CONFIG_DIR`. main.cf starts with ADMIN_LINES (the administrator's own settings
# and comments): the daemon must keep them byte for byte.
# remote_mx() builds a second instance that plays a remote MX (with or without STARTTLS) and discards
# what it accepts, for outbound-policy tests.
import os
import pwd
import re
import shutil
import signal
import smtplib
import time

from .util import HarnessError, free_port, port_is_open, run, tail, wait_until

MASTER_CF_DIST = "/usr/share/postfix/master.cf.dist"

# What an administrator already had in main.cf: comments, a blank line, an indented continuation line.
ADMIN_LINES = """\
# main.cf of a smtptlsd test instance.
# The lines up to the sandbox block belong to "the administrator": smtptlsd must keep them byte for byte.
smtpd_banner = $myhostname ESMTP smtptlsd-sandbox

#   an indented comment, followed by a parameter continued on the next line
message_size_limit =
    20480000
biff = no
"""


class PostfixSandbox:
    def __init__(self, basedir, port=None, myhostname="mx.test.example", starttls=False, cert=None,
                 key=None, extra=None, admin_lines=ADMIN_LINES, address=None):
        """starttls: serve STARTTLS with cert/key (paths; key first in smtpd_tls_chain_files).
        extra: more main.cf parameters {name: value}.
        address: the smtpd's IPv4 address (its master.cf entry), default 127.0.0.1 at a random free
        port; with an address the port defaults to 25 (util.free_loopback_address() gives a free one)."""
        self.basedir = os.path.abspath(basedir)
        self.config_dir = os.path.join(self.basedir, "etc")
        self.queue_dir = os.path.join(self.basedir, "spool")
        self.data_dir = os.path.join(self.basedir, "data")
        self.log_dir = os.path.join(self.basedir, "log")
        self.maillog_file = os.path.join(self.log_dir, "maillog")
        self.main_cf = os.path.join(self.config_dir, "main.cf")
        self.master_cf = os.path.join(self.config_dir, "master.cf")
        self._port_file = os.path.join(self.basedir, "port")
        self.address = address or "127.0.0.1"
        self.port = port or self._saved_port() or (25 if address else None)
        self.myhostname = myhostname
        self.starttls = starttls
        self.cert, self.key = cert, key
        self.extra = dict(extra or {})
        self.admin_lines = admin_lines
        if starttls and not (cert and key):
            raise ValueError("starttls=True needs cert and key")

    @classmethod
    def remote_mx(cls, basedir, starttls=False, cert=None, key=None, myhostname="remote.test.example",
                  address=None, port=None):
        """A peer for outbound tests: accepts mail for any domain from 127.0.0.0/8 and discards it.
        address/port: as for the constructor (address="127.0.5.7": an MX on 127.0.5.7:25)."""
        extra = {"mynetworks": "127.0.0.0/8", "default_transport": "discard:sandbox remote MX",
                 "relay_transport": "discard:sandbox remote MX", "relay_domains": ""}
        return cls(basedir, myhostname=myhostname, starttls=starttls, cert=cert, key=key, extra=extra,
                   address=address, port=port)

    def _saved_port(self):
        try:
            with open(self._port_file) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    # -- commands ---------------------------------------------------------------------------------
    def postfix(self, *args, timeout=60, check=True):
        return run(["postfix", "-c", self.config_dir, *args], timeout=timeout, check=check)

    def postconf(self, *args, timeout=30, check=True):
        """`postconf -c DIR ARGS...`; returns stdout."""
        return run(["postconf", "-c", self.config_dir, *args], timeout=timeout, check=check).stdout

    def postmap(self, *args, timeout=60, check=True):
        return run(["postmap", "-c", self.config_dir, *args], timeout=timeout, check=check).stdout

    def param(self, name):
        """The value of one main.cf parameter as Postfix sees it (`postconf -h`)."""
        return self.postconf("-h", name).rstrip("\n")

    @property
    def argv_prefixes(self):
        """postfix_command / postconf_command / postmap_command values for smtptlsd.conf. The daemon
        adds `-c <postfix_config_directory>` (or a check directory) itself."""
        return {"postfix_command": "postfix", "postconf_command": "postconf",
                "postmap_command": "postmap"}

    # -- set-up -----------------------------------------------------------------------------------
    def configured(self):
        return os.path.exists(self.main_cf) and os.path.exists(self.master_cf) and self.port

    def setup(self):
        """Write main.cf and master.cf (once; a configured instance is reused as it is)."""
        if self.configured():
            return self
        pf = pwd.getpwnam("postfix")
        for d in (self.basedir, self.config_dir, self.queue_dir, self.log_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.data_dir, exist_ok=True)
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data_dir, 0o700)
        self.port = self.port or free_port()
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "myhostname": self.myhostname,
            "mydomain": "test.example",
            "myorigin": "$myhostname",
            # 127.X.Y.Z reaches lo but is no interface address: Postfix refuses it in inet_interfaces
            # ("no local interface found"); the master.cf entry below binds it all the same.
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "maillog_file": self.maillog_file,
            "maillog_file_prefixes": self.log_dir,
            "smtp_dns_support_level": "disabled",  # no DNS here: tests use [127.0.0.1]:PORT next hops
        }
        if self.starttls:
            params.update({"smtpd_tls_security_level": "may",
                           "smtpd_tls_chain_files": f"{self.key}, {self.cert}"})
        params.update(self.extra)
        with open(self.main_cf, "w") as f:
            f.write(self.admin_lines)
            f.write("\n# --- sandbox settings (tests/harness/postfix.py) ---\n")
            for name, value in params.items():
                f.write(f"{name} = {value}\n" if value != "" else f"{name} =\n")
        shutil.copyfile(MASTER_CF_DIST, self.master_cf)
        self.postconf("-F", "*/*/chroot = n")
        self.postconf("-MX", "smtp/inet")
        service = f"{self.address}:{self.port}"
        self.postconf("-M", f"{service}/inet = {service} inet n - n - - smtpd")
        with open(self._port_file, "w") as f:
            f.write(f"{self.port}\n")
        # Postfix commands wait ~2 s while main.cf looks freshly written: date the new files back.
        old = time.time() - 10
        for path in (self.main_cf, self.master_cf):
            os.utime(path, (old, old))
        return self

    # -- life cycle -------------------------------------------------------------------------------
    def is_running(self):
        if not os.path.exists(self.main_cf):
            return False
        return self.postfix("status", check=False, timeout=15).returncode == 0

    def start(self, timeout=30):
        self.setup()
        if self.is_running():
            return self
        proc = self.postfix("start", timeout=timeout, check=False)
        if proc.returncode != 0:
            raise HarnessError(f"postfix start failed (exit {proc.returncode}): {proc.stderr.strip()}\n"
                               f"--- maillog ---\n{tail(self.maillog_file)}")
        wait_until(lambda: port_is_open(self.port, self.address), timeout,
                   f"Postfix smtpd on {self.address}:{self.port}")
        return self

    def stop(self, timeout=30):
        try:
            running = self.is_running()
        except HarnessError as e:
            # `postfix status` itself hung (seen twice on loaded CI machines, in a teardown, after
            # the daemon had stopped): end the instance by its master's pid instead
            print(f"PostfixSandbox {self.basedir}: {e}; stopping its master by pid")
            self._kill_master(timeout)
            return
        if running:
            self.postfix("stop", timeout=timeout)
            wait_until(lambda: not self.is_running(), timeout, "Postfix to stop")

    def _kill_master(self, timeout):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            try:
                wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout / 2,
                           "the master to go")
                return
            except TimeoutError:
                continue

    def reload(self, timeout=30):
        self.postfix("reload", timeout=timeout)

    def destroy(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)

    # -- observation ------------------------------------------------------------------------------
    def maillog(self):
        try:
            with open(self.maillog_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_maillog(self, pattern, timeout=20, start=0):
        """Wait until the maillog (from byte offset start) matches regex pattern; return the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.maillog()[start:]), timeout,
                          f"maillog line matching {pattern!r}")

    def main_cf_text(self):
        with open(self.main_cf) as f:
            return f.read()

    def send_mail(self, rcpt, sender="sender@test.example", subject="smtptlsd test", timeout=20):
        """Submit a message over SMTP to this instance's smtpd (127.0.0.0/8 may relay)."""
        body = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nsent at {time.time()}\r\n"
        with smtplib.SMTP(self.address, self.port, timeout=timeout) as s:
            s.sendmail(sender, [rcpt], body)

    def served_certificate(self, servername=None, cafile=None, timeout=20):
        """`openssl s_client -starttls smtp` to this instance: the SHA-256 fingerprint it serves
        (AA:BB:..), verified against cafile when given."""
        argv = ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{self.address}:{self.port}",
                "-servername", servername or self.myhostname]
        if cafile:
            argv += ["-CAfile", cafile, "-verify_return_error"]
        proc = run(argv, timeout=timeout, check=False, input="")
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", proc.stdout, re.S)
        if proc.returncode != 0 or not m:
            raise HarnessError(f"no certificate from {self.address}:{self.port}: "
                               f"{proc.stderr.strip()[-500:]}")
        fp = run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=m.group(0)).stdout
        return fp.strip().split("=", 1)[1]
