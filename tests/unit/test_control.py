"""The control requests: the bodies they send are the ones the router has always received, and a
malformed body is a usage error, never a crash."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.runtime import bus
from weavenet.runtime.control import (
    CONTROL_REQUESTS,
    ROUTES,
    Attach,
    Connect,
    Detach,
    Expose,
    Forget,
    Hide,
    Ps,
    Status,
    Stop,
    Target,
    app_cidr,
    peer_address,
)
from weavenet.runtime.request import SUPERVISOR, UsageError

TARGET = Target(netns="/proc/42/ns/net", key="c0ffee", label="web", container_id="c0ffee", pid=42)
TARGET_BODY = {"netns": "/proc/42/ns/net", "key": "c0ffee", "label": "web",
               "container_id": "c0ffee", "pid": 42}


def packed(body: dict) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize(("request_", "body"), [
    # the dicts the CLI built by hand before the request classes, key order included
    (Attach(TARGET, ("10.0.1.1/24",)), {"target": TARGET_BODY, "cidrs": ["10.0.1.1/24"]}),
    (Attach(None, ("10.0.1.1/24", "10.0.2.1/24"), check_only=True),
     {"cidrs": ["10.0.1.1/24", "10.0.2.1/24"], "check_only": True}),
    (Detach(TARGET, ("10.0.1.1/24",)), {"target": TARGET_BODY, "cidrs": ["10.0.1.1/24"]}),
    (Expose("10.0.0.9/16"), {"cidr": "10.0.0.9/16"}),
    (Hide("10.0.0.9/16"), {"cidr": "10.0.0.9/16"}),
    (Connect(("10.1.0.2:6783", "[fd00::1]:7000")), {"peers": ["10.1.0.2:6783", "[fd00::1]:7000"]}),
    (Forget(("10.1.0.2:6783",)), {"peers": ["10.1.0.2:6783"]}),
    (Ps(), {}), (Status(), {}), (Stop(), {}),
])
def test_bodies_are_the_same_bytes_as_before_and_decode_back(request_, body):
    assert packed(request_.to_body()) == packed(body)
    assert type(request_).from_body(body) == request_
    # through a whole envelope too, as the supervisor relays it
    env = bus.decode(bus.encode(bus.request(request_.TYPE, request_.to_body())))
    assert type(request_).from_body(env.body) == request_


def test_every_request_has_a_unique_type_a_handler_and_a_spec():
    assert len({c.TYPE for c in CONTROL_REQUESTS}) == len(CONTROL_REQUESTS)
    for cls in CONTROL_REQUESTS:
        assert cls.HANDLER in (SUPERVISOR, "netconf", "gossip")
        assert "Body" in (cls.__doc__ or "") and "weave " in (cls.__doc__ or ""), cls


def test_routes_send_container_requests_to_netconf_and_peer_requests_to_gossip():
    assert ROUTES == {"attach": "netconf", "detach": "netconf", "expose": "netconf",
                      "hide": "netconf", "ps": "netconf", "connect": "gossip", "forget": "gossip"}
    assert "status" not in ROUTES and "stop" not in ROUTES


def test_unknown_keys_are_ignored():
    assert Expose.from_body({"cidr": "10.0.0.9/16", "later": 1}) == Expose("10.0.0.9/16")
    assert Status.from_body({"verbose": True}) == Status()


def test_cidrs_are_normalised_the_way_the_cli_does():
    assert Attach.from_body({"cidrs": [" 10.0.1.1/24"], "check_only": True}).cidrs == (
        "10.0.1.1/24",)


@pytest.mark.parametrize(("cls", "body"), [
    (Attach, {"cidrs": ["10.0.1.1/24"]}),  # no target and not a check
    (Attach, {"target": TARGET_BODY}),  # no cidrs
    (Attach, {"target": TARGET_BODY, "cidrs": []}),
    (Attach, {"target": TARGET_BODY, "cidrs": "10.0.1.1/24"}),
    (Attach, {"target": TARGET_BODY, "cidrs": [5]}),
    (Attach, {"target": TARGET_BODY, "cidrs": ["10.0.1.0/24"]}),  # the network's own address
    (Attach, {"target": TARGET_BODY, "cidrs": ["10.0.1.255/24"]}),  # its broadcast address
    (Attach, {"target": TARGET_BODY, "cidrs": ["fd00::1/64"]}),  # IPv6
    (Attach, {"target": TARGET_BODY, "cidrs": ["10.0.1.1"]}),  # no prefix
    (Attach, {"target": TARGET_BODY, "cidrs": ["10.0.1.1/24"] * 65}),
    (Attach, {"target": TARGET_BODY, "cidrs": ["10.0.1.1/24"], "check_only": "yes"}),
    (Attach, {"target": "c0ffee", "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "netns": ""}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "netns": "/" * 5000}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "key": None}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "pid": 0}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "pid": True}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "pid": "42"}, "cidrs": ["10.0.1.1/24"]}),
    (Attach, {"target": {**TARGET_BODY, "container_id": "x" * 200}, "cidrs": ["10.0.1.1/24"]}),
    (Detach, {"cidrs": ["10.0.1.1/24"]}),
    (Detach, {"target": TARGET_BODY, "cidrs": ["nope"]}),
    (Expose, {}),
    (Expose, {"cidr": 10}),
    (Hide, {"cidr": "10.0.0.0/16"}),
    (Connect, {}),
    (Connect, {"peers": "10.1.0.2"}),
    (Connect, {"peers": [1]}),
    (Connect, {"peers": ["host:0"]}),
    (Connect, {"peers": ["bad host"]}),
    (Connect, {"peers": ["a\nb"]}),
    (Connect, {"peers": ["h" * 400]}),
    (Connect, {"peers": ["10.1.0.2"] * 1025}),
    (Forget, {"peers": [""]}),
])
def test_malformed_bodies_are_usage_errors(cls, body):
    with pytest.raises(UsageError) as ei:
        cls.from_body(body)
    assert ei.value.code == bus.USAGE
    assert "\n" not in ei.value.reason  # one line, input escaped


def test_peer_addresses_keep_their_text_and_the_cli_fills_in_the_port():
    # gossip adds its own port where none is given; the CLI has always sent the default one
    assert Connect.from_body({"peers": ["10.1.0.2"]}).peers == ("10.1.0.2",)
    assert peer_address("10.1.0.2") == "10.1.0.2:6783"
    with pytest.raises(UsageError):
        peer_address("10.1.0.2:99999")


def test_app_cidr_is_ipv4_and_not_the_network_or_broadcast_address():
    assert str(app_cidr("10.0.1.1/24")) == "10.0.1.1/24"
    assert str(app_cidr("10.0.1.0/31")) == "10.0.1.0/31"  # point-to-point: both usable
    for bad in ("10.0.1.0/24", "10.0.1.255/24", "fd00::1/64", "10.0.1.1", None, "x" * 100):
        with pytest.raises(UsageError):
            app_cidr(bad)


@given(st.dictionaries(st.text(max_size=12),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                                 st.lists(st.text(max_size=20), max_size=3),
                                 st.dictionaries(st.text(max_size=8), st.text(max_size=8),
                                                 max_size=3)),
                       max_size=5))
def test_arbitrary_bodies_decode_or_are_refused_never_crash(body):
    for cls in CONTROL_REQUESTS:
        try:
            req = cls.from_body(body)
        except UsageError:
            continue
        assert cls.from_body(req.to_body()) == req


@pytest.mark.parametrize("field", ["netns", "key", "label", "container_id"])
def test_a_target_with_control_characters_is_refused_before_it_reaches_a_message(field) -> None:
    body = {**TARGET.to_body(), field: "web\nFAKE LOG LINE"}
    with pytest.raises(UsageError) as ei:
        Target.from_body(body)
    assert "\n" not in str(ei.value)
