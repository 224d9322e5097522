"""The lab's NAT host: it dials out through its own masquerading router, nobody dials in, and
`weave-lab down` removes the router namespace with the rest."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import wait_listening
from weavenet.lab import Lab, underlay

pytestmark = [pytest.mark.root]


def connects(src, ip: str, port: int) -> bool:
    probe = ["nc.openbsd", "-z", "-w", "2", ip, str(port)]
    return src.run(probe, check=False, timeout=10).returncode == 0


def test_a_host_behind_nat_dials_out_as_its_router_and_cannot_be_dialled(lab_factory) -> None:
    lab: Lab = lab_factory(2, docker=False, nat=[2])
    h1, h2 = lab.hosts
    assert (h2.ip, h2.lan_ip, h2.router_ns) == ("198.19.2.2", "198.18.0.2", f"{lab.prefix}-r2")
    assert h1.lan_ip == h1.ip == "198.18.0.1"
    # host1 sees host2's connection come from the router's LAN address (masqueraded).
    with h1.popen(["nc.openbsd", "-l", "-v", "-n", "5555"], stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True) as listener:
        try:
            wait_listening(h1, 5555)
            assert connects(h2, h1.ip, 5555), "host2 could not dial host1 through its NAT"
            _, err = listener.communicate(timeout=10)
        finally:
            listener.kill()
    assert "198.18.0.2" in err and "198.19.2.2" not in err
    # Nothing reaches host2 from outside: its private address has no route from the LAN, and
    # its router forwards no inbound port.
    with h2.popen(["nc.openbsd", "-lk", "5556"], stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL) as inside:
        try:
            wait_listening(h2, 5556)
            assert not connects(h1, h2.lan_ip, 5556)
            assert not connects(h1, h2.ip, 5556)
        finally:
            inside.kill()


def test_cut_applies_to_the_address_a_nat_host_is_seen_from(lab_factory) -> None:
    lab: Lab = lab_factory(2, docker=False, nat=[1])
    h1, h2 = lab.hosts
    ping = ["ping", "-c1", "-W1", h2.ip]
    assert h1.run(ping, check=False).returncode == 0
    lab.cut(h1, h2)
    assert h1.run(ping, check=False).returncode != 0
    lab.heal(h1, h2)
    assert h1.run(ping, check=False).returncode == 0
    router = h1.router_ns
    lab.down()
    assert not underlay.exists(router) and not underlay.exists(h1.ns)
