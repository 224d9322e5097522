"""The gossip actor's routes event, decoded to wire ids for the forwarder."""

from __future__ import annotations

import pytest

from weavenet.dataplane.control_auth import connection_keys, encode_keys
from weavenet.dataplane.forwarding import RouteTable
from weavenet.dataplane.route_update import decode_route_update
from weavenet.dataplane.sleeve import peer_to_wire

A, B, C, D = (f"aa:00:00:00:00:0{i}" for i in range(1, 5))
WA, WB, WC, WD = (peer_to_wire(p) for p in (A, B, C, D))


def event(**over: object) -> dict:
    """A's view of the line A - B - C, as forwarder_snapshot publishes it."""
    data = {
        "local": A,
        "peers": {A: {"nickname": "a", "udp": None}, B: {"nickname": "b", "udp": "192.0.2.2:6783"},
                  C: {"nickname": "c", "udp": None}},
        "unicast": {B: B, C: B},
        "broadcast": {A: [B], B: [], C: []},
    }
    data.update(over)
    return data


def test_names_become_wire_ids_in_the_peers_and_the_route_table() -> None:
    update = decode_route_update(event(), WA)
    assert update.peers == {WA: A, WB: B, WC: C}
    assert update.table == RouteTable({WB: WB, WC: WB}, {WA: [WB], WB: [], WC: []})
    assert update.bad_names == ()


def test_neighbours_are_next_hops_and_peers_with_an_address_never_ourselves() -> None:
    data = event(peers={A: {"udp": "192.0.2.1:6783"}, B: {"udp": None},
                        D: {"udp": "192.0.2.4:6783"}}, unicast={B: B}, broadcast={A: [B]})
    update = decode_route_update(data, WA)
    assert update.neighbours == {WB: (B, None), WD: (D, ("192.0.2.4", 6783))}


def test_a_next_hop_missing_from_peers_is_named_from_its_wire_id() -> None:
    update = decode_route_update(event(peers={}, unicast={C: C}, broadcast={}), WA)
    assert update.neighbours == {WC: (C, None)}


def test_names_that_are_not_peer_names_are_left_out_and_listed() -> None:
    data = event(peers={"nonsense": {"udp": "192.0.2.9:6783"}, B: {"udp": "192.0.2.2:6783"}},
                 unicast={B: "nonsense", 7: B}, broadcast={A: [B, None]})
    update = decode_route_update(data, WA)
    assert update.peers == {WB: B}
    assert update.table == RouteTable({}, {WA: [WB]})
    assert update.bad_names == ("'nonsense'", "'nonsense'", "7", "None")


def test_an_address_that_is_not_ipv4_host_port_counts_as_none() -> None:
    data = event(peers={B: {"udp": "somewhere"}, C: "not a map"}, unicast={}, broadcast={})
    update = decode_route_update(data, WA)
    assert update.peers == {WB: B, WC: C}
    assert update.neighbours == {}


def test_missing_sections_are_empty() -> None:
    update = decode_route_update({"local": A}, WA)
    assert (update.peers, update.table, update.neighbours) == ({}, RouteTable({}, {}), {})


def test_a_section_of_the_wrong_shape_raises_for_the_actor_to_log() -> None:
    with pytest.raises((AttributeError, TypeError)):
        decode_route_update(event(unicast=[B]), WA)
    with pytest.raises((AttributeError, TypeError)):
        decode_route_update(event(broadcast={A: 5}), WA)


def test_control_keys_are_decoded_for_neighbours_only() -> None:
    keys = connection_keys(5, None)
    data = event(peers={B: {"udp": "192.0.2.2:6783", "control": encode_keys(keys)},
                        C: {"udp": None, "control": encode_keys(keys)},
                        D: {"udp": "192.0.2.4:6783", "control": "garbage"}},
                 unicast={B: B, C: B}, broadcast={})
    update = decode_route_update(data, WA)
    assert update.keys == {WB: keys}  # C is reached through B; D's entry is malformed
