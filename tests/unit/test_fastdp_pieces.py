"""The small pieces of the fast datapath: the netconf request, the heartbeat frame, the wire
offer and acknowledgement, the status text, WEAVE_NO_FASTDP, the Overlays table."""

from __future__ import annotations

import pytest

from weavenet.cli.statusview import overlay_text
from weavenet.mesh import fdpwire, overlay
from weavenet.mesh.overlays import Overlays
from weavenet.mesh.peer import PeerName
from weavenet.mesh.wire import FastdpAck, Hello, decode_message, encode_body
from weavenet.runtime.fastdp import FastdpPeers, env_disables
from weavenet.runtime.request import UsageError


def test_fastdp_peers_round_trip_sorted_and_checked() -> None:
    req = FastdpPeers.from_body({"ips": ["198.18.0.3", "198.18.0.2", "198.18.0.3"]})
    assert req.ips == ("198.18.0.2", "198.18.0.3")
    assert FastdpPeers.from_body(req.to_body()) == req
    for bad in ({"ips": ["host1"]}, {"ips": "198.18.0.2"}, {"ips": ["::1"]}, {}):
        with pytest.raises(UsageError):
            FastdpPeers.from_body(bad)


def test_heartbeat_is_exactly_a_full_frame_and_decodes() -> None:
    hb = fdpwire.FdpHeartbeat("0a:00:00:00:00:01", 2**63, 7)
    data = fdpwire.encode_datagram(hb, 0x574E, 1450)
    assert len(data) + 20 + 8 == 1450 + fdpwire.OUTER_OVERHEAD
    assert data[:8] == bytes([8, 0, 0, 0]) + (0x574E << 8).to_bytes(4, "big")
    assert fdpwire.decode_frame(data[8:]) == hb
    small = fdpwire.encode_datagram(hb, 0x574E, None)  # the small heartbeat: minimum Ethernet
    assert len(small) == 8 + 14 + fdpwire.MIN_PAYLOAD
    assert fdpwire.decode_frame(small[8:]) == hb
    for junk in (b"", data[8:30], data[8:20] + b"\x08\x00" + data[22:]):
        with pytest.raises(fdpwire.FdpWireError):
            fdpwire.decode_frame(junk)


def test_hello_offers_fastdp_and_an_older_hello_does_not() -> None:
    hello = Hello(PeerName("0a:00:00:00:00:01"), "n", 1, 2, False, fastdp=True)
    assert decode_message(encode_body(hello)) == hello
    body = encode_body(Hello(PeerName("0a:00:00:00:00:01"), "n", 1, 2, False))
    assert decode_message(body).fastdp is False  # type: ignore[union-attr]
    assert decode_message(encode_body(FastdpAck(9))) == FastdpAck(9)


def test_status_text() -> None:
    assert overlay_text({}) is None
    assert overlay_text({"overlay": "fastdp"}) == "fastdp"
    assert overlay_text({"overlay": "sleeve", "overlay_reason": "encrypted"}) == \
        "sleeve (encrypted)"


def test_weave_no_fastdp_environment() -> None:
    assert not env_disables({})
    assert not env_disables({"WEAVE_NO_FASTDP": "0"})
    assert env_disables({"WEAVE_NO_FASTDP": "1"})
    assert env_disables({"WEAVE_NO_FASTDP": "yes"})


def test_overlays_table_reasons_and_the_fastdp_set() -> None:
    ovs = Overlays()
    assert ovs.disabled_reason(remote_offers=True, encrypted=True) == overlay.ENCRYPTED
    assert ovs.disabled_reason(remote_offers=False, encrypted=False) == overlay.REMOTE_DISABLED
    assert Overlays(local_disabled=overlay.LOCAL_DISABLED).disabled_reason(
        remote_offers=True, encrypted=False) == overlay.LOCAL_DISABLED
    ovs.add("p", 5, "198.18.0.2", 6784, 0.0, None)
    ovs.add("q", 6, "198.18.0.3", 6784, 0.0, overlay.REMOTE_DISABLED)
    sent = ovs.heartbeats(0.0)
    assert [(link.peer, seq) for link, seq in sent] == [("p", 1)]
    assert ovs.heard("p", 999, 1, 0.1) is None  # another incarnation's heartbeat
    assert ovs.heard("q", 6, 1, 0.1) is None  # never probing: nothing to acknowledge
    assert ovs.heard("p", 5, 1, 0.1) is not None
    ovs.acked("p", 1, 0.1)
    [(link, switch)] = ovs.tick(0.2)
    assert link.peer == "p" and switch.path is overlay.Path.FASTDP
    assert ovs.fastdp() == {"p": "198.18.0.2"}
    assert ovs.status("q") == {"path": "sleeve", "reason": overlay.REMOTE_DISABLED}
    assert ovs.remove("p") is True and ovs.fastdp() == {}


def test_a_replacing_connection_to_the_same_incarnation_keeps_its_path() -> None:
    ovs = Overlays()
    ovs.add("p", 5, "198.18.0.2", 6784, 0.0, None)
    assert ovs.keep("p", 5, "198.18.0.2", None)
    assert not ovs.keep("p", 6, "198.18.0.2", None)  # restarted: prove it again
    assert not ovs.keep("p", 5, "198.18.0.9", None)
    assert not ovs.keep("q", 5, "198.18.0.2", None)
