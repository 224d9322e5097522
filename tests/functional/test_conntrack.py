"""Clearing conntrack's flows of the router's UDP port, in a throwaway namespace."""

from __future__ import annotations

import sys

from tests.functional.conftest import Router

SCRIPT = """
import socket
from pyroute2 import Conntrack
from weavenet.host.conntrack import clear_udp_port

def send(sport, dport):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", sport))
    s.sendto(b"x", ("127.0.0.1", dport))
    s.close()

send(16784, 16783)  # to the port
send(16783, 7000)   # from the port
send(5001, 5000)    # someone else's
print(clear_udp_port(16783))
with Conntrack() as ct:
    print(sorted((e.tuple_orig.sport, e.tuple_orig.dport) for e in ct.dump_entries()))
print(clear_udp_port(16783))
"""


def test_clearing_a_port_deletes_its_udp_flows_and_only_those(router: Router):
    # conntrack only tracks a namespace whose netfilter asks for it
    router.sh("iptables -A OUTPUT -m conntrack --ctstate NEW -j ACCEPT")
    r = router.nsenter(sys.executable, "-c", SCRIPT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["2", "[(5001, 5000)]", "0"]
