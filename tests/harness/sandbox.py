# A persistent sandbox for trying smtptlsd by hand (scripts/quickstart): a private PostgreSQL and a
# private Postfix under STATE_DIR (e.g. .state/ in the checkout), kept between runs.
#
#   /usr/bin/python3 -m tests.harness.sandbox up STATE_DIR [--no-pg] [--no-postfix]
#       start what is not running (reusing what exists, on the same ports), create the database
#       `smtptlsd`, write STATE_DIR/smtptlsd.conf and print its path
#   /usr/bin/python3 -m tests.harness.sandbox env STATE_DIR     print SMTPTLSD_* export lines
#   /usr/bin/python3 -m tests.harness.sandbox status STATE_DIR  say what runs (exit 1 if something is down)
#   /usr/bin/python3 -m tests.harness.sandbox down STATE_DIR    stop both (the files stay)
import argparse
import os
import shlex
import sys

from .certs import CertFactory
from .pg import PostgresSandbox
from .postfix import PostfixSandbox
from .util import HarnessError

DATABASE = "smtptlsd"


def parts(state):
    return (PostgresSandbox(os.path.join(state, "pg")),
            PostfixSandbox(os.path.join(state, "postfix"), myhostname="mx.sandbox.test"))


def daemon_config(state, pg, postfix):
    """The daemon settings that point at the sandbox ({} parts for what is not used)."""
    cfg = {}
    if pg:
        cfg["database_url"] = pg.url(DATABASE)
    if postfix:
        cfg.update({"postfix_config_directory": postfix.config_dir, **postfix.argv_prefixes,
                    "smtp_probe_address": f"127.0.0.1:{postfix.port}"})
    system = CertFactory(os.path.join(state, "tls")).leaf("system", ("localhost",))
    cfg.update({"certificate_directory": os.path.join(state, "certs"),
                "acme_live_directory": os.path.join(state, "letsencrypt", "live"),
                "system_certificate_file": system.cert,
                "system_key_file": system.key})
    return cfg


def up(state, use_pg, use_postfix):
    os.makedirs(state, exist_ok=True)
    os.chmod(state, 0o755)  # the postgres user must reach STATE/pg
    pg, postfix = parts(state)
    if use_pg:
        pg.start()
        if not pg.database_exists(DATABASE):
            pg.create_database(DATABASE)
    if use_postfix:
        postfix.start()
    cfg = daemon_config(state, pg if use_pg else None, postfix if use_postfix else None)
    path = os.path.join(state, "smtptlsd.conf")
    with open(path + ".tmp", "w") as f:
        f.write("# smtptlsd configuration for the sandbox under this directory\n"
                "# (rewritten by `python3 -m tests.harness.sandbox up`)\n")
        for key, value in cfg.items():
            f.write(f"{key} = {value}\n")
    os.rename(path + ".tmp", path)
    if use_pg:
        print(f"PostgreSQL: {pg.url(DATABASE)} (data {pg.datadir})", file=sys.stderr)
    if use_postfix:
        print(f"Postfix: smtpd on 127.0.0.1:{postfix.port}, config {postfix.config_dir}, "
              f"log {postfix.maillog_file}", file=sys.stderr)
    print(path)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.harness.sandbox")
    ap.add_argument("action", choices=["up", "down", "status", "env"])
    ap.add_argument("state_dir")
    ap.add_argument("--no-pg", action="store_true", help="do not start PostgreSQL")
    ap.add_argument("--no-postfix", action="store_true", help="do not start Postfix")
    args = ap.parse_args(argv)
    state = os.path.abspath(args.state_dir)
    pg, postfix = parts(state)
    try:
        if args.action == "up":
            up(state, not args.no_pg, not args.no_postfix)
        elif args.action == "down":
            postfix.stop()
            pg.stop()
        elif args.action == "status":
            pg_up, pf_up = pg.is_running(), postfix.is_running()
            print(f"postgresql {'running on 127.0.0.1:%s' % pg.port if pg_up else 'stopped'}")
            print(f"postfix {'running on 127.0.0.1:%s' % postfix.port if pf_up else 'stopped'}")
            return 0 if pg_up and pf_up else 1
        elif args.action == "env":
            cfg = daemon_config(state, pg if pg.port else None, postfix if postfix.port else None)
            for key, value in cfg.items():
                print(f"export SMTPTLSD_{key.upper()}={shlex.quote(str(value))}")
    except HarnessError as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
