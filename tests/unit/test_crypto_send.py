"""The forwarder's one-way ``send`` message to the crypto actor: what it carries, and the
malformed headers the actor drops (counted as bad_request) instead of sending anywhere."""

from __future__ import annotations

import msgpack
import pytest

from weavenet.crypto.protocol import SEND, CryptoProtoError, decode_request, encode_send

PEER = "bb:00:00:00:00:0b"


def test_a_send_message_decodes_to_where_and_how_the_sealed_datagrams_go():
    parts = encode_send(PEER, ("198.18.0.2", 6783), 1472, 0x020000000A01, [b"body1", b"body2"])
    req, payloads = decode_request(parts)
    assert (req.op, req.peer, req.addr, req.piece, req.sender) == \
        (SEND, PEER, ("198.18.0.2", 6783), 1472, 0x020000000A01)
    assert list(payloads) == [b"body1", b"body2"]


@pytest.mark.parametrize("change", [
    {"addr": None}, {"addr": ["198.18.0.2"]}, {"addr": ["198.18.0.2", 0]},
    {"addr": [5, 6783]}, {"piece": 10}, {"piece": 70000}, {"piece": True},
    {"sender": 0}, {"sender": 2**48}, {"sender": "me"},
])
def test_a_send_without_a_usable_destination_is_refused(change):
    header = {"op": SEND, "peer": PEER, "addr": ["198.18.0.2", 6783], "piece": 1472,
              "sender": 1} | change
    with pytest.raises(CryptoProtoError):
        decode_request([msgpack.packb(header), b"body"])
