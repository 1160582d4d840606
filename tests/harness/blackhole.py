# blackhole.py - a network that loses packets to and from one loopback TCP port (nftables: an
# output-hook chain dropping both directions), not a refused connection: connects time out,
# data sent on an open connection is never acknowledged. A table of its own per port, removed
# on exit. Needs root and nftables (scripts/deps).
from .util import run


class Blackhole:
    def __init__(self, port):
        self.port = port
        self.table = f"stls_blackhole_{port}"

    def __enter__(self):
        run(["nft", "-f", "-"], input=(
            f"table inet {self.table} {{\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    tcp dport {self.port} drop\n"
            f"    tcp sport {self.port} drop\n"
            "  }\n"
            "}\n"), timeout=30)
        return self

    def __exit__(self, *exc):
        run(["nft", "delete", "table", "inet", self.table], timeout=30)
