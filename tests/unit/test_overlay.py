"""The per-connection overlay choice (weavenet.mesh.overlay) with a fake clock."""

from __future__ import annotations

from weavenet.mesh import overlay
from weavenet.mesh.overlay import Overlay, Path, Switch


class Clock:
    def __init__(self) -> None:
        self.t = 100.0


def run(ov: Overlay, clock: Clock, seconds: float, *, ack: bool, hear: bool,
        small: bool = False, step: float = 0.1) -> list[Switch]:
    """Drive ``ov`` like gossip does: heartbeats when due, the peer's answers when the path
    works (``small``: only the small heartbeats are acknowledged), a tick every ``step``."""
    switches = []
    end = clock.t + seconds
    while clock.t < end:
        seq = ov.due(clock.t)
        if seq is not None and ack:
            ov.acked(seq, clock.t + 0.001)
        if seq is not None and (ack or small):
            ov.acked(seq | overlay.SMALL, clock.t + 0.001)
        if hear and seq is not None:
            ov.heard(clock.t)
        s = ov.tick(clock.t)
        if s is not None:
            switches.append((round(clock.t - 100.0, 1), s))
        clock.t = round(clock.t + step, 6)
    return switches


def test_disabled_connections_never_probe_and_say_why() -> None:
    for why in (overlay.ENCRYPTED, overlay.LOCAL_DISABLED, overlay.REMOTE_DISABLED,
                overlay.NO_VXLAN):
        ov = Overlay(0.0, disabled=why)
        assert ov.due(0.0) is None and ov.due(100.0) is None
        assert ov.tick(100.0) is None
        assert ov.status() == {"path": "sleeve", "reason": why}


def test_starts_on_the_sleeve_and_moves_to_fastdp_once_both_directions_answer() -> None:
    c = Clock()
    ov = Overlay(c.t)
    assert ov.status() == {"path": "sleeve", "reason": overlay.PROBING}
    switches = run(ov, c, 1.0, ack=True, hear=True)
    assert [s for _, s in switches] == [Switch(Path.FASTDP, overlay.FASTDP_OK)]
    assert switches[0][0] <= 0.1
    assert ov.status()["path"] == "fastdp"


def test_acks_alone_or_heartbeats_alone_are_not_enough() -> None:
    for ack, hear in ((True, False), (False, True)):
        c = Clock()
        ov = Overlay(c.t)
        assert run(ov, c, 10.0, ack=ack, hear=hear) == []
        assert ov.status() == {"path": "sleeve",
                               "reason": overlay.NO_HEARTBEAT.format(port=6784)}


def test_heartbeats_are_fast_until_acknowledged_then_slower() -> None:
    c = Clock()
    ov = Overlay(c.t)
    sent = []
    for _ in range(40):  # 4 s without answers
        if ov.due(c.t) is not None:
            sent.append(c.t)
        ov.tick(c.t)
        c.t = round(c.t + 0.1, 6)
    gaps = {round(b - a, 1) for a, b in zip(sent, sent[1:], strict=False)}
    assert gaps == {overlay.FAST_INTERVAL}
    run(ov, c, 2.0, ack=True, hear=True)
    sent = []
    for _ in range(40):
        seq = ov.due(c.t)
        if seq is not None:
            sent.append(c.t)
            ov.acked(seq, c.t)
            ov.heard(c.t)
        ov.tick(c.t)
        c.t = round(c.t + 0.1, 6)
    gaps = {round(b - a, 1) for a, b in zip(sent, sent[1:], strict=False)}
    assert gaps == {overlay.SLOW_INTERVAL}


def test_missed_heartbeats_fall_back_within_3s_and_come_back_within_15s() -> None:
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 5.0, ack=True, hear=True)
    assert ov.path is Path.FASTDP
    start = c.t
    switches = run(ov, c, 20.0, ack=False, hear=False)
    assert len(switches) == 1
    (when, s), = switches
    assert s == Switch(Path.SLEEVE, overlay.NO_HEARTBEAT.format(port=6784))
    assert when + 100.0 - start <= 3.0
    # keeps probing fast while on the sleeve
    sent = []
    for _ in range(20):
        if ov.due(c.t) is not None:
            sent.append(c.t)
        c.t = round(c.t + 0.1, 6)
    assert {round(b - a, 1) for a, b in zip(sent, sent[1:], strict=False)} == {
        overlay.FAST_INTERVAL}
    back = c.t
    switches = run(ov, c, 20.0, ack=True, hear=True)
    assert [s.path for _, s in switches] == [Path.FASTDP]
    assert switches[0][0] + 100.0 - back <= 15.0


def test_a_flapping_path_is_held_on_the_sleeve_for_a_while() -> None:
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 2.0, ack=True, hear=True)
    run(ov, c, 3.0, ack=False, hear=False)
    assert ov.path is Path.SLEEVE
    fell = ov.sleeve_since
    switches = run(ov, c, 10.0, ack=True, hear=True)
    assert switches and switches[0][0] + 100.0 - fell >= overlay.HOLD_DOWN


def test_an_ack_for_an_unknown_or_old_heartbeat_counts_for_nothing() -> None:
    c = Clock()
    ov = Overlay(c.t)
    ov.heard(c.t)
    ov.acked(12345, c.t)
    assert ov.tick(c.t) is None and ov.path is Path.SLEEVE


def test_a_heartbeat_too_big_to_leave_says_path_mtu() -> None:
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 2.0, ack=True, hear=True)
    ov.send_failed(c.t, too_big=True)
    switches = run(ov, c, 4.0, ack=False, hear=True)
    assert [s for _, s in switches] == [Switch(Path.SLEEVE, overlay.MTU_TOO_SMALL)]


def test_a_lost_sleeve_path_moves_a_fastdp_link_to_the_sleeve_at_the_next_tick() -> None:
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 1.0, ack=True, hear=True)
    assert ov.status()["path"] == "fastdp"
    ov.path_lost()  # UDP 6783 stopped answering: the link is probably cut
    switch = ov.tick(c.t)
    assert switch is not None and switch.path is Path.SLEEVE
    # and it comes back once heartbeats are acknowledged again, after the hold-down
    later = run(ov, c, overlay.HOLD_DOWN + 1.0, ack=True, hear=True)
    assert [s.path for _, s in later] == [Path.FASTDP]


def test_small_heartbeats_through_and_full_size_ones_lost_say_path_mtu() -> None:
    """Something on the way drops big packets: the reason is the MTU, not a blocked port,
    both when a fastdp link falls back and for a link that never got there."""
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 2.0, ack=True, hear=True)
    switches = run(ov, c, 4.0, ack=False, hear=False, small=True)
    assert [s for _, s in switches] == [Switch(Path.SLEEVE, overlay.MTU_TOO_SMALL)]
    fresh = Overlay(c.t)
    assert run(fresh, c, 10.0, ack=False, hear=False, small=True) == []
    assert fresh.status() == {"path": "sleeve", "reason": overlay.MTU_TOO_SMALL}
    # the small ones stop too: now nothing gets through at all
    run(fresh, c, 4.0, ack=False, hear=False)
    assert fresh.status()["reason"] == overlay.NO_HEARTBEAT.format(port=6784)


def test_a_small_heartbeat_never_proves_the_path() -> None:
    c = Clock()
    ov = Overlay(c.t)
    assert run(ov, c, 5.0, ack=False, hear=True, small=True) == []
    assert ov.path is Path.SLEEVE


def test_overlays_count_only_full_size_heartbeats_as_heard() -> None:
    from weavenet.mesh.overlays import Overlays

    c = Clock()
    links = Overlays()
    links.add("p", 7, "198.18.0.2", 6784, c.t, None)
    ov = links.links["p"].overlay
    assert links.heard("p", 7, 1 | overlay.SMALL, c.t) is links.links["p"]  # still acknowledged
    assert ov.last_heard is None
    assert links.heard("p", 7, 1, c.t) is links.links["p"]
    assert ov.last_heard == c.t
    assert links.heard("p", 8, 2, c.t) is None  # another incarnation


def test_a_cut_says_no_heartbeat_then_small_heartbeats_say_path_mtu() -> None:
    """path_lost (the sleeve path stopped answering: probably a cut) falls back at once
    saying no heartbeat, even though small heartbeats were answered until then; when small
    ones go on getting through and full-size ones do not, the reason becomes the MTU, reported
    as a new switch to the sleeve."""
    c = Clock()
    ov = Overlay(c.t)
    run(ov, c, 2.0, ack=True, hear=True)
    assert ov.last_small_ack is not None  # counted although each round's full ack came first
    ov.path_lost()
    assert ov.tick(c.t) == Switch(Path.SLEEVE, overlay.NO_HEARTBEAT.format(port=6784))
    switches = run(ov, c, 4.0, ack=False, hear=False, small=True)
    assert [s for _, s in switches] == [Switch(Path.SLEEVE, overlay.MTU_TOO_SMALL)]
