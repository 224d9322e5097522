"""The crypto actor's key requests: same bodies as before, malformed ones are usage errors."""

from __future__ import annotations

import os

import msgpack
import pytest

from weavenet.crypto.protocol import ForgetKeys, Install
from weavenet.runtime import bus
from weavenet.runtime.request import UsageError

PEER = "bb:00:00:00:00:0b"
SEND, RECV = os.urandom(32), os.urandom(32)


def test_install_and_forget_bodies_are_unchanged_and_decode_back():
    body = {"peer": PEER, "epoch": 7, "udp_send": SEND, "udp_recv": RECV}
    assert msgpack.packb(Install(PEER, 7, SEND, RECV).to_body()) == msgpack.packb(body)
    assert Install.from_body(body) == Install(PEER, 7, SEND, RECV)
    assert ForgetKeys(PEER).to_body() == {"peer": PEER}
    assert ForgetKeys.from_body({"peer": PEER}) == ForgetKeys(PEER)
    assert (Install.TYPE, ForgetKeys.TYPE) == ("crypto.install", "crypto.forget")


def test_keys_never_show_in_the_repr():
    text = repr(Install(PEER, 7, SEND, RECV))
    assert SEND.hex() not in text and repr(SEND) not in text and "udp_send" not in text


@pytest.mark.parametrize("change", [
    {"udp_send": b"short"}, {"udp_recv": "x" * 32}, {"udp_recv": SEND},  # equal keys
    {"epoch": -1}, {"epoch": 2**64}, {"epoch": True}, {"epoch": None},
    {"peer": ""}, {"peer": 5}, {"peer": "p" * 256},
])
def test_malformed_installs_are_usage_errors(change):
    body = {"peer": PEER, "epoch": 7, "udp_send": SEND, "udp_recv": RECV, **change}
    with pytest.raises(UsageError) as ei:
        Install.from_body(body)
    assert ei.value.code == bus.USAGE


def test_a_forget_without_a_peer_is_a_usage_error():
    with pytest.raises(UsageError):
        ForgetKeys.from_body({})
