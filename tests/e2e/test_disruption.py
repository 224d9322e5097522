"""What a restart costs the containers' traffic: a 50 ms ping between containers on two hosts
while each actor of host1's router is killed (kill -9) in turn, and while host1's router is
stopped and launched again, in clear and with a password.

Each restart is cheap by design: the supervisor restarts a crashed actor at once; a new
forwarder asks gossip for the routes; a restarted gossip keeps the forwarder's routes until its
neighbours are back, and they keep routing to it while its UDP path works; a restarted crypto
actor gets fresh keys by a re-key, not by remaking connections. The issue's target is 1 s per
kill and 2 s for a relaunch; bench/disruption.py measures them (0.1-0.9 s per kill on this
machine, under load). On a loaded two-core CI machine a Python process takes up to a second to
start, so the bounds asserted here are 2 s per kill and 5 s for stop + launch: loose enough
not to flake, tight enough to fail the way it did before (a gossip or crypto restart cost
2-3 s, a relaunch up to 5 s, when a restart meant remade connections and empty routes).
"""

from __future__ import annotations

import pytest

from tests.support import disruption_gap, eventually_pings, kill_actor, weave
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]

ACTORS = ("capture", "forwarder", "crypto", "gossip", "netconf")
KILL_BOUND = 2.0  # seconds of lost traffic per actor kill (see the module docstring)
RELAUNCH_BOUND = 5.0


@pytest.fixture(scope="module")
def containers(lab2: Lab) -> dict[str, str]:
    """Filled by the first test that launches: the containers outlive `weave stop`."""
    return {}


@pytest.mark.parametrize("password", [None, "disruption"], ids=["clear", "encrypted"])
def test_each_actor_kill_and_a_relaunch_cost_little_traffic(
        lab2: Lab, containers: dict[str, str], password: str | None) -> None:
    h1, h2 = lab2.hosts
    pw = ["--password", password] if password else []
    for host in lab2.hosts:
        host.run(["weave", "stop"], check=False)  # the clear run's router, if any
    weave(h1, "launch", "10.0.0.1/16", *pw)
    weave(h2, "launch", "10.0.0.2/16", *pw, h1.ip)
    if not containers:
        containers["c1"] = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
        containers["c2"] = weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
    c1 = containers["c1"]
    eventually_pings(h1, c1, "10.0.1.2", timeout=60)
    gaps = {name: disruption_gap(h1, c1, "10.0.1.2", lambda n=name: kill_actor(h1, n))
            for name in ACTORS}

    def relaunch() -> None:
        weave(h1, "stop")
        weave(h1, "launch", "10.0.0.1/16", *pw)

    relaunched = disruption_gap(h1, c1, "10.0.1.2", relaunch)
    shown = ", ".join(f"{k} {v:.2f}s" for k, v in gaps.items()) + f", relaunch {relaunched:.2f}s"
    assert max(gaps.values()) <= KILL_BOUND and relaunched <= RELAUNCH_BOUND, shown
