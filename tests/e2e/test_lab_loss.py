"""The lab's random loss: a share of the underlay packets a host receives is dropped, at random,
until it is set back to 0 (the fault issue 11's loss tests are built on)."""

from __future__ import annotations

import pytest

from tests.support import replies
from weavenet.lab import Lab

pytestmark = [pytest.mark.root]


def received(src, dst_ip: str, count: int) -> int:
    out = src.run(["ping", "-q", "-n", "-c", str(count), "-i", "0.005", "-W", "1", dst_ip],
                  check=False, timeout=60).stdout
    return replies(out)


def test_loss_drops_about_its_share_at_random_until_removed(lab_factory) -> None:
    lab: Lab = lab_factory(3, docker=False)
    h1, h2, h3 = lab.hosts
    lab.lose(h2, 30)
    assert lab.faults == [("loss", "host2", 30.0)]
    # 400 echo requests, each dropped on arrival with p = 0.3: 280 replies expected, standard
    # deviation 9; 200..360 is wider than 8 sigma, so only a missing or wrong rule fails it.
    got = received(h1, h2.ip, 400)
    assert 200 <= got <= 360, f"{got} of 400 replies with 30% loss"
    assert received(h1, h3.ip, 100) == 100  # only what host2 receives is lossy
    lab.lose("host2", 0)
    assert lab.faults == []
    assert received(h1, h2.ip, 100) == 100


def test_clear_faults_removes_loss_with_the_other_faults(lab_factory) -> None:
    lab: Lab = lab_factory(2, docker=False)
    h1, h2 = lab.hosts
    lab.lose(h1, 100)
    lab.cut(h1, h2)
    assert received(h2, h1.ip, 5) == 0
    lab.clear_faults()
    assert lab.faults == []
    assert received(h2, h1.ip, 20) == 20
