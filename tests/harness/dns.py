# DnsServer: a private authoritative DNS server (Knot DNS, knotd in the foreground) for the destination
# probe's tests: its own config, rundir, zone storage, journal and KASP database under one base directory,
# listening on 127.0.0.1 (UDP and TCP) at a random free port, zones signed by knot itself (automatic DNSSEC,
# one ECDSA P-256 CSK per zone) or unsigned. The resolver side (libunbound in the daemon, unbound-host in the
# harness tests) reaches the zones as stub zones (stub_zones()) and validates them with the DNSKEYs in
# trust_anchor_file(): a signed zone is "secure", an unsigned sibling zone "insecure" (no anchor covers it:
# the zones are siblings under no signed parent), a zone added with bogus_anchor=True "bogus" (the anchor
# file holds a key that did not sign it), and break_signatures() makes one RRset bogus, the rest secure.
# resolver_options() are the libunbound settings a resolver needs to reach it (the daemon sets the same),
# unbound_conf() writes them with the stub zones for unbound-host, and resolve() asks unbound-host
# (libunbound, as the daemon) what a name comes out as.
import base64
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from .util import HarnessError, free_udp_tcp_port, run, stop_group, tail, wait_until


def tlsa_311(cert_pem_path):
    """The data of a TLSA 3 1 1 record for a certificate: hex SHA-256 of its SubjectPublicKeyInfo."""
    spki = subprocess.run(["openssl", "x509", "-in", cert_pem_path, "-noout", "-pubkey"],
                          capture_output=True, timeout=30, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki,
                         capture_output=True, timeout=30, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-hex", "-r"], input=der,
                            capture_output=True, timeout=30, check=True).stdout
    return digest.split()[0].decode()


def _fqdn(name):
    return name.rstrip(".").lower() + "."


@dataclass
class Zone:
    name: str  # absolute, lower case: "secure.test."
    records: list
    signed: bool = True
    bogus_anchor: bool = False
    serial: int = 1
    dnskeys: list = field(default_factory=list)  # the served DNSKEY records (signed zones), zone-file lines
    presigned: bool = False  # break_signatures(): served as signed before, some RRSIGs altered, not re-signed


@dataclass
class Resolution:
    """What unbound-host (libunbound) made of a lookup: security is "secure", "insecure" or "bogus";
    records are the answer's data fields as printed (e.g. "10 mx1.secure.test."); text is the output."""
    security: str
    records: list
    text: str


class DnsServer:
    def __init__(self, basedir, address="127.0.0.1", port=None):
        self.basedir = os.path.abspath(basedir)
        self.address = address
        self.port = port
        self.zones = {}
        self.proc = None
        self.conf_path = os.path.join(self.basedir, "knot.conf")
        self.rundir = os.path.join(self.basedir, "run")
        self.control_socket = os.path.join(self.rundir, "knot.sock")
        self.zone_dir = os.path.join(self.basedir, "zones")
        self.storage_dir = os.path.join(self.basedir, "storage")
        self.log_path = os.path.join(self.basedir, "knotd.log")
        self._anchor_path = os.path.join(self.basedir, "anchors.zone")
        self._unbound_conf_path = os.path.join(self.basedir, "unbound.conf")
        self._log = None

    # -- zones ------------------------------------------------------------------------------------
    def add_zone(self, name, records, signed=True, bogus_anchor=False, timeout=30):
        """Add zone `name` with `records` (zone-file lines, owner names relative to the zone or absolute,
        e.g. "@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.7"). The harness writes the SOA (negative
        answers may be cached for 1 s only) and NS (ns.invalid.: the resolver reaches the zone through
        its stub address only). signed: knot signs it
        (its DNSKEYs go into the anchor file). bogus_anchor (signed zones): the anchor file gets a key
        for this zone that did not sign it, so a validating resolver finds the zone bogus. On a running
        server the zone is loaded at once (and, if signed, waited for until signed)."""
        zone = Zone(_fqdn(name), list(records), signed, bogus_anchor)
        if zone.name in self.zones:
            raise ValueError(f"zone {zone.name} exists (use set_records)")
        if bogus_anchor and not signed:
            raise ValueError("bogus_anchor needs a signed zone")
        self.zones[zone.name] = zone
        self._write_zone_file(zone)
        if self.proc:
            self._write_config()
            log_start = self._log_size()
            self.knotc("reload")
            self._wait_served(zone, timeout, log_start)
        return self

    def set_records(self, name, records, timeout=30):
        """Replace the records of a zone (the harness's SOA and NS stay), reload it and wait until the new
        serial is served (signed zones: with its RRSIG, i.e. re-signed)."""
        zone = self.zones[_fqdn(name)]
        zone.records = list(records)
        if self.proc:
            zone.serial = max(zone.serial, self._served_serial(zone) or 0) + 1
        else:
            zone.serial += 1
        self._write_zone_file(zone)
        resign, zone.presigned = zone.presigned, False  # knot signs it again (with the same key)
        if resign:
            self._write_config()
        if self.proc:
            log_start = self._log_size()
            self.knotc(*(("reload",) if resign else ("zone-reload", zone.name)))
            self._wait_served(zone, timeout, log_start)
        return self

    def break_signatures(self, zone_name, owner, rtype, timeout=30):
        """Make one RRset of a signed zone bogus, the rest staying secure: the zone as knot signed it is
        served from then on unsigned by knot (until set_records) with the RRSIGs over `owner`'s `rtype`
        altered (e.g. break_signatures("secure.test", "_25._tcp.mx1", "TLSA"): a bogus TLSA record,
        MX/A/AAAA still secure). owner: relative to the zone, "@" or absolute. Needs a running server."""
        zone = self.zones[_fqdn(zone_name)]
        if not (self.proc and zone.signed):
            raise HarnessError("break_signatures needs a running server and a signed zone")
        owner = zone.name if owner == "@" else owner.lower() if owner.endswith(".") else \
            f"{owner.lower()}.{zone.name}"
        lines, broken = [], []
        for line in self.knotc("zone-read", zone.name).splitlines():
            f = line.split()[1:]  # "[zone.] owner TTL TYPE DATA..."
            if f and f[2] == "RRSIG" and f[0].lower() == owner and f[3] == rtype.upper():
                raw = bytearray(base64.b64decode("".join(f[11:])))  # after: ... keytag signer
                raw[len(raw) // 2] ^= 0xff
                f = f[:11] + [base64.b64encode(bytes(raw)).decode()]
                broken.append(f[-1])
            if f:
                lines.append(" ".join(f))
        if not broken:
            raise HarnessError(f"no RRSIG over {owner} {rtype} in {zone.name}")
        zone.presigned = True
        path = os.path.join(self.zone_dir, zone.name.rstrip(".") + ".zone")
        with open(path + ".tmp", "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.rename(path + ".tmp", path)
        self._write_config()
        self.knotc("reload")  # the zone's config changed: knot loads the file (same serial) as it is

        def served():
            sigs = [rr.split()[-1] for rr in self.query(owner, rtype, dnssec=True, check=False)
                    if rr.split()[3] == "RRSIG"]
            return sigs and all(sig in broken for sig in sigs)

        try:
            wait_until(served, timeout, f"the altered RRSIG over {owner} {rtype} served")
        except TimeoutError as e:
            raise HarnessError(f"{e}\n--- {self.log_path} ---\n{tail(self.log_path)}") from e
        return self

    def _write_zone_file(self, zone):
        os.makedirs(self.zone_dir, exist_ok=True)
        lines = [f"$ORIGIN {zone.name}", "$TTL 300",
                 f"@ 300 IN SOA ns.invalid. hostmaster.invalid. {zone.serial} 3600 600 86400 1",
                 "@ 300 IN NS ns.invalid."]
        lines += [r.strip() for r in zone.records]
        path = os.path.join(self.zone_dir, zone.name.rstrip(".") + ".zone")
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(path + ".tmp", path)

    # -- knotd ------------------------------------------------------------------------------------
    def _write_config(self):
        zones = []
        for z in self.zones.values():
            zones.append(f"  - domain: {z.name}\n"
                         + ("    dnssec-signing: on\n    dnssec-policy: p256\n"
                            if z.signed and not z.presigned else ""))
        conf = f"""\
# knotd of a smtptlsd test (tests/harness/dns.py)
server:
    rundir: "{self.rundir}"
    listen: {self.address}@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    identity: ""
    version: ""
    nsid: ""
control:
    listen: "{self.control_socket}"
    timeout: 20
database:
    storage: "{self.storage_dir}"
log:
  - target: stderr
    any: info
policy:
  - id: p256
    algorithm: ecdsap256sha256
    single-type-signing: on
    dnskey-ttl: 300
    zone-max-ttl: 86400
    propagation-delay: 0
    nsec3: off
    cds-cdnskey-publish: none
template:
  - id: default
    storage: "{self.zone_dir}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
    serial-policy: increment
    semantic-checks: on
zone:
""" + "".join(zones)
        with open(self.conf_path + ".tmp", "w") as f:
            f.write(conf)
        os.rename(self.conf_path + ".tmp", self.conf_path)

    def knotc(self, *args, timeout=30, check=True):
        """`knotc -c CONF -s SOCKET ARGS...` (the running server's control socket); returns stdout."""
        return run(["knotc", "-c", self.conf_path, "-s", self.control_socket, "-t", "20", *args],
                   timeout=timeout, check=check).stdout

    def start(self, timeout=30):
        """Start knotd and wait (bounded) until every zone is served, signed zones with a signed DNSKEY
        RRset. A port taken meanwhile by someone else: up to 3 tries with fresh ports."""
        if self.proc:
            return self
        for d in (self.basedir, self.rundir, self.zone_dir, self.storage_dir):
            os.makedirs(d, exist_ok=True)
        fixed_port = self.port is not None
        for attempt in range(3):
            if not fixed_port:
                self.port = free_udp_tcp_port(self.address)
            self._write_config()
            self._log = open(self.log_path, "ab")
            log_start = self._log.tell()
            self.proc = subprocess.Popen(["knotd", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            try:
                wait_until(lambda: self.proc.poll() is not None or self._listening(), timeout,
                           f"knotd on {self.address}@{self.port} (log {self.log_path})")
                if self.proc.poll() is not None:
                    raise HarnessError(f"knotd exited with {self.proc.returncode}:\n"
                                       f"{tail(self.log_path)}")
                for zone in self.zones.values():
                    self._wait_served(zone, timeout, log_start)
                return self
            except (HarnessError, TimeoutError):
                with open(self.log_path, "rb") as f:
                    f.seek(log_start)
                    bind_failed = b"cannot bind" in f.read()
                self.stop()
                if fixed_port or not bind_failed or attempt == 2:
                    raise
        return self

    def _listening(self):
        """knotd answers on both transports (a REFUSED answer counts: it is listening). TCP first: a
        connection is refused at once while nothing listens, a UDP query would wait for its timeout."""
        return all(self._kdig(".", "SOA", tcp=tcp, check=False).returncode == 0 for tcp in (True, False))

    def stop(self, timeout=15):
        """Stop knotd: SIGTERM to its process group, SIGKILL after `timeout` seconds."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc, timeout)
        if self._log:
            self._log.close()
            self._log = None

    def destroy(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.basedir, ignore_errors=True)

    # -- queries straight to knotd ------------------------------------------------------------------
    def _kdig(self, name, rtype, dnssec=False, tcp=False, check=True):
        argv = ["kdig", f"@{self.address}", "-p", str(self.port), "+norecurse", "+noall", "+answer",
                "+time=2", "+retry=0", "+tcp" if tcp else "+notcp"]
        if dnssec:
            argv.append("+dnssec")
        return run(argv + [name, rtype], timeout=15, check=check)

    def query(self, name, rtype, dnssec=False, tcp=False, check=True):
        """The answer section knotd gives (no validation): a list of zone-file lines
        "owner TTL IN TYPE DATA" (whitespace squeezed); dnssec: with the RRSIGs. check=False: [] when
        kdig fails (no answer in time) instead of HarnessError."""
        proc = self._kdig(name, rtype, dnssec=dnssec, tcp=tcp, check=check)
        if proc.returncode != 0:
            return []
        return [" ".join(line.split()) for line in proc.stdout.splitlines()
                if line and not line.startswith(";")]

    def _served_serial(self, zone):
        return next((int(f[6]) for f in map(str.split, self.query(zone.name, "SOA")) if f[3] == "SOA"),
                    None)

    def _signed_soa_serial(self, zone):
        """The served SOA serial if its RRSIG is there too (or the zone is unsigned), else None."""
        rrs = [line.split() for line in self.query(zone.name, "SOA", dnssec=True, check=False)]
        if zone.signed and not any(f[3] == "RRSIG" and f[4] == "SOA" for f in rrs):
            return None
        return next((int(f[6]) for f in rrs if f[3] == "SOA"), None)

    def _signed_dnskeys(self, zone):
        """The served DNSKEY records if the RRset comes with its RRSIG, else None."""
        rrs = self.query(zone.name, "DNSKEY", dnssec=True, check=False)
        if any(f[3] == "RRSIG" and f[4] == "DNSKEY" for f in map(str.split, rrs)):
            return [rr for rr in rrs if rr.split()[3] == "DNSKEY"]
        return None

    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def _wait_served(self, zone, timeout, log_start):
        """Wait until the zone's serial (or a later one: knot's signing increments it) is served, signed
        zones with the SOA and the DNSKEY RRset signed; then note the DNSKEYs for the anchor file.
        log_start: where knotd's log stood before the (re)load: an error about the zone after it fails
        the wait at once."""
        def served():
            with open(self.log_path, "rb") as f:  # a zone knot refused: fail now, not at the timeout
                f.seek(log_start)
                if f"error: [{zone.name}] ".encode() in f.read():
                    raise HarnessError(f"knotd did not load {zone.name}:\n{tail(self.log_path)}")
            return (self._signed_soa_serial(zone) or 0) >= zone.serial

        try:
            wait_until(served, timeout,
                       f"{zone.name} serial {zone.serial} served" + (" and signed" if zone.signed else ""))
            if zone.signed:
                zone.dnskeys = wait_until(lambda: self._signed_dnskeys(zone), timeout,
                                          f"{zone.name} DNSKEY with RRSIG")
        except TimeoutError as e:
            raise HarnessError(f"{e}\n--- {self.log_path} ---\n{tail(self.log_path)}") from e

    # -- what the resolver side is given ----------------------------------------------------------
    def stub_zones(self):
        """The daemon's setting: "zone=ADDRESS@PORT ..." for every zone (names without the final dot)."""
        return " ".join(f"{z.rstrip('.')}={self.address}@{self.port}" for z in self.zones)

    def trust_anchor_file(self):
        """(Re)write and return the anchor file: the DNSKEYs (SEP, flags 257) of every signed zone in
        zone-file format, for ub_ctx_add_ta_file / unbound-host -f. A bogus_anchor zone gets a key it
        was not signed with (the served key with its public key altered: another key tag)."""
        lines = ["; trust anchors of the test zones (tests/harness/dns.py)"]
        for zone in self.zones.values():
            if not zone.signed:
                continue
            if not zone.dnskeys:
                raise HarnessError(f"{zone.name}: no DNSKEY known yet (start the server first)")
            for key in zone.dnskeys:
                f = key.split()
                if f[4] != "257":
                    continue
                if zone.bogus_anchor:
                    raw = bytearray(base64.b64decode("".join(f[7:])))
                    raw[-1] ^= 0x01
                    f = f[:7] + [base64.b64encode(bytes(raw)).decode()]
                lines.append(" ".join(f[:1] + f[2:]))  # owner IN DNSKEY ... (no TTL)
        with open(self._anchor_path + ".tmp", "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.rename(self._anchor_path + ".tmp", self._anchor_path)
        return self._anchor_path

    def resolver_options(self):
        """What a libunbound context needs to use this server, as (name, value) pairs for
        ub_ctx_set_option(ctx, name, value): queries to loopback allowed (unbound refuses them by
        default) and, per zone, a transparent local zone: unbound answers the RFC 6761 name test. itself
        (NXDOMAIN for all below it) and a more specific transparent local zone lets the stub through.
        ("test. nodefault" does that in an unbound.conf, not through ub_ctx_set_option.) Then
        ub_ctx_set_stub(ctx, zone, "ADDRESS@PORT", 0) per stub_zones() entry and ub_ctx_add_ta_file()."""
        return [("do-not-query-localhost:", "no")] + \
            [("local-zone:", f"{z} transparent") for z in self.zones]

    def unbound_conf(self):
        """(Re)write and return an unbound.conf for unbound-host -C: the zones as stub zones at this
        server, and resolver_options() (which the daemon's libunbound needs as well)."""
        text = ["server:", "    verbosity: 0", '    module-config: "validator iterator"']
        text += [f"    {name} {value}" for name, value in self.resolver_options()]
        for z in self.zones:
            text += ["stub-zone:", f'    name: "{z}"', f"    stub-addr: {self.address}@{self.port}"]
        with open(self._unbound_conf_path + ".tmp", "w") as fh:
            fh.write("\n".join(text) + "\n")
        os.rename(self._unbound_conf_path + ".tmp", self._unbound_conf_path)
        return self._unbound_conf_path

    def resolve(self, name, rtype="A", timeout=30):
        """Look `name` up with unbound-host (libunbound, validating with trust_anchor_file() through the
        stub zones): a Resolution (security secure/insecure/bogus, the records)."""
        proc = run(["unbound-host", "-C", self.unbound_conf(), "-f", self.trust_anchor_file(), "-v",
                    "-t", rtype, name], timeout=timeout, check=False)
        text = proc.stdout + proc.stderr
        if "(secure)" in text:
            security = "secure"
        elif "(insecure)" in text:
            security = "insecure"
        elif "BOGUS" in text:
            security = "bogus"
        else:
            raise HarnessError(f"unbound-host {name} {rtype}: no security state in:\n{text}")
        records = []
        for line in proc.stdout.splitlines():
            m = re.match(r"^\S+ (?:has address|has IPv6 address|mail is handled by|has \S+ record) "
                         r"(.*?)(?: \((?:secure|insecure|BOGUS.*)\))?$", line)
            if m:
                records.append(m.group(1))
        return Resolution(security, records, text)
