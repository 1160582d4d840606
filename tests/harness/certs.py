# CertFactory: test certificates made with the openssl CLI (OpenSSL 3.0 on Debian 12) in one directory,
# each made once and reused (the directory is the cache: one per test session). OpenSSL 3.0's `x509 -req`
# has no -not_before, so leaves are signed with `openssl ca -startdate/-enddate`, which also gives the
# expired and not-yet-valid certificates without faketime.
import datetime
import os
import threading
from dataclasses import dataclass

from .util import run

PASSPHRASE = "smtptlsd-test"


@dataclass
class Cert:
    """Paths of one test certificate; chain is the intermediates (may be None); fullchain = leaf+chain."""
    name: str
    cert: str
    key: str
    chain: str = None
    fullchain: str = None

    def read(self, what="cert"):
        with open(getattr(self, what)) as f:
            return f.read()

    def fingerprint(self):
        out = run(["openssl", "x509", "-in", self.cert, "-noout", "-fingerprint", "-sha256"]).stdout
        return out.strip().split("=", 1)[1]


def _stamp(days):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%Y%m%d%H%M%SZ")


_CA_CONF = """\
[ ca ]
default_ca = testca
[ testca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
certificate = {cert}
private_key = {key}
rand_serial = yes
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
commonName = supplied
organizationName = optional
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
[ subca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""


class CertFactory:
    """Makes and caches test certificates under `directory`. Every method returns a Cert."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._lock = threading.Lock()

    def _p(self, *names):
        return os.path.join(self.dir, *names)

    def _key(self, path, kind="rsa", bits=2048):
        if os.path.exists(path):
            return path
        if kind == "rsa":
            argv = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"]
        elif kind == "ec":
            argv = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        else:
            raise ValueError(kind)
        run(argv + ["-out", path + ".tmp"])
        os.chmod(path + ".tmp", 0o600)
        os.rename(path + ".tmp", path)
        return path

    def _self_signed_ca(self, name, cn):
        cert, key = self._p(f"{name}.crt"), self._p(f"{name}.key")
        if not os.path.exists(cert):
            self._key(key)
            run(["openssl", "req", "-x509", "-new", "-key", key, "-sha256", "-days", "3650",
                 "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", "-out", cert + ".tmp"])
            os.rename(cert + ".tmp", cert)
        return Cert(name, cert, key)

    def _sign(self, issuer, name, cn, dns_names, key, start_days, end_days, ext="leaf"):
        """Sign a CSR for `key` by `issuer` with validity [now+start_days, now+end_days]."""
        cert = self._p(f"{name}.crt")
        if os.path.exists(cert):
            return cert
        cadir = self._p(f"ca-db-{issuer.name}")
        os.makedirs(os.path.join(cadir, "newcerts"), exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "a").close()
        san = ("subjectAltName = " + ",".join(f"DNS:{d}" for d in dns_names)) if dns_names else ""
        conf = self._p(f"{name}.cnf")
        with open(conf, "w") as f:
            f.write(_CA_CONF.format(dir=cadir, cert=issuer.cert, key=issuer.key, san=san))
        csr = self._p(f"{name}.csr")
        run(["openssl", "req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr])
        run(["openssl", "ca", "-batch", "-notext", "-config", conf, "-extensions", ext,
             "-startdate", _stamp(start_days), "-enddate", _stamp(end_days),
             "-in", csr, "-out", cert + ".tmp"])
        os.rename(cert + ".tmp", cert)
        return cert

    def _concat(self, out, *paths):
        if not os.path.exists(out):
            with open(out + ".tmp", "w") as f:
                for p in paths:
                    with open(p) as src:
                        f.write(src.read())
            os.rename(out + ".tmp", out)
        return out

    # -- the catalogue ----------------------------------------------------------------------------
    def ca(self):
        """The test root CA (CN=smtptlsd Test CA)."""
        with self._lock:
            return self._self_signed_ca("ca", "smtptlsd Test CA")

    def other_ca(self):
        """An unrelated root CA: its intermediates do not sign leaves of ca()."""
        with self._lock:
            return self._self_signed_ca("other-ca", "smtptlsd Other CA")

    def intermediate(self):
        """An intermediate CA signed by ca()."""
        ca = self.ca()
        with self._lock:
            key = self._key(self._p("intermediate.key"))
            cert = self._sign(ca, "intermediate", "smtptlsd Test Intermediate", None, key, -1, 3000,
                              ext="subca")
            return Cert("intermediate", cert, key)

    def leaf(self, name="mx", dns_names=("mx.test.example",), kind="rsa", bits=2048, start_days=-1,
             end_days=365, issuer=None):
        """A serverAuth leaf with SANs; issuer ca() unless given (then chain = issuer's cert)."""
        issuer = issuer or self.ca()
        with self._lock:
            key = self._key(self._p(f"{name}.key"), kind, bits)
            cert = self._sign(issuer, name, dns_names[0], dns_names, key, start_days, end_days)
            if issuer.name == "ca":
                return Cert(name, cert, key, None, cert)
            full = self._concat(self._p(f"{name}.fullchain.pem"), cert, issuer.cert)
            return Cert(name, cert, key, issuer.cert, full)

    def rsa_leaf(self):
        return self.leaf("mx-rsa", ("mx.test.example", "mail.test.example"))

    def ec_leaf(self):
        return self.leaf("mx-ec", ("mx.test.example",), kind="ec")

    def chained_leaf(self):
        """A leaf signed by intermediate(): chain = intermediate cert, fullchain = leaf + intermediate."""
        return self.leaf("mx-chained", ("mx.test.example",), issuer=self.intermediate())

    def expired(self):
        return self.leaf("expired", ("expired.test.example",), start_days=-400, end_days=-30)

    def not_yet_valid(self):
        return self.leaf("future", ("future.test.example",), start_days=30, end_days=400)

    def expiring(self, days=10):
        return self.leaf(f"expiring-{days}d", ("expiring.test.example",), end_days=days)

    def weak_rsa(self):
        """A leaf with a 1024-bit RSA key."""
        return self.leaf("weak-rsa1024", ("weak.test.example",), bits=1024)

    def encrypted_pkcs8(self):
        """rsa_leaf() with its key encrypted as PKCS#8 (BEGIN ENCRYPTED PRIVATE KEY), PASSPHRASE."""
        c = self.rsa_leaf()
        out = self._p("mx-rsa.enc-pkcs8.key")
        with self._lock:
            if not os.path.exists(out):
                run(["openssl", "pkey", "-in", c.key, "-aes256", "-passout", f"pass:{PASSPHRASE}",
                     "-out", out])
        return Cert("mx-rsa-enc-pkcs8", c.cert, out, None, c.cert)

    def encrypted_legacy(self):
        """rsa_leaf() with its key as legacy encrypted PEM (Proc-Type: 4,ENCRYPTED), PASSPHRASE."""
        c = self.rsa_leaf()
        out = self._p("mx-rsa.enc-legacy.key")
        with self._lock:
            if not os.path.exists(out):
                run(["openssl", "rsa", "-in", c.key, "-traditional", "-aes256",
                     "-passout", f"pass:{PASSPHRASE}", "-out", out])
        return Cert("mx-rsa-enc-legacy", c.cert, out, None, c.cert)

    def mismatched(self):
        """rsa_leaf()'s certificate with ec_leaf()'s key."""
        a, b = self.rsa_leaf(), self.ec_leaf()
        return Cert("mismatched", a.cert, b.key, None, a.cert)

    def ca_as_leaf(self):
        """A CA certificate (CA:TRUE, keyCertSign) that names mx.test.example, offered as a leaf."""
        ca = self.ca()
        with self._lock:
            key = self._key(self._p("ca-as-leaf.key"))
            cert = self._sign(ca, "ca-as-leaf", "mx.test.example", ("mx.test.example",), key, -1,
                              365, ext="subca")
            return Cert("ca-as-leaf", cert, key, None, cert)

    def wrong_chain(self):
        """chained_leaf() with a chain that did not sign it (other_ca's certificate)."""
        c, other = self.chained_leaf(), self.other_ca()
        full = self._concat(self._p("mx-chained.wrong-fullchain.pem"), c.cert, other.cert)
        return Cert("wrong-chain", c.cert, c.key, other.cert, full)
