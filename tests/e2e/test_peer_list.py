"""`weave connect` and `weave forget` outlive restarts: of the gossip actor (kill -9) and of
the router (`weave stop` + `weave launch`). Two lab hosts launched without naming each other:
only host1's run-time `weave connect` joins them, so a connection host1 dials after a restart
can only come from the recorded list."""

from __future__ import annotations

import pytest

from tests.support import actor_status, holds_for, kill_actor, wait_for, weave
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]


def dialled(host, address: str) -> bool:
    """host has an established connection it dialled to address."""
    rows = actor_status(host, "gossip").get("connections", [])
    return any(r.get("address") == address and r.get("state") == "established"
               and r.get("info") == "outbound" for r in rows)


def test_connect_and_forget_survive_restarts_of_gossip_and_of_the_router(lab2: Lab) -> None:
    h1, h2 = lab2.hosts
    target = f"{h2.ip}:6783"
    weave(h1, "launch", "10.0.0.1/16")
    weave(h2, "launch", "10.0.0.2/16")
    weave(h1, "connect", h2.ip)
    wait_for(lambda: dialled(h1, target), 30, "host1 to dial host2 after weave connect")

    kill_actor(h1, "gossip")
    wait_for(lambda: dialled(h1, target), 30, "host1's new gossip to dial host2 again")

    weave(h1, "stop")
    weave(h1, "launch", "10.0.0.1/16")
    wait_for(lambda: dialled(h1, target), 30, "the relaunched router to dial host2 again")

    weave(h1, "forget", h2.ip)
    kill_actor(h1, "gossip")
    # Forgotten is forgotten after a restart too: host1 never dials host2 again.
    holds_for(lambda: not dialled(h1, target) and target not in str(actor_status(h1, "gossip")),
              8, "host1 to leave the forgotten host2 alone", interval=1.0)

    # A launch that names the forgotten peer wants it back.
    weave(h1, "stop")
    weave(h1, "launch", "10.0.0.1/16", h2.ip)
    wait_for(lambda: dialled(h1, target), 30, "host1 to dial host2, named at launch again")
