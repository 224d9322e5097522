"""The peer wire format: header, framing, message codecs, and a decoder that never crashes."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.mesh import wire
from weavenet.mesh.peer import PeerName
from weavenet.mesh.topology import MAX_VERSION, Connection, PeerRecord, encode_record
from weavenet.mesh.wire import (
    BadMagic,
    Decoder,
    Goodbye,
    Heartbeat,
    Hello,
    MalformedHeader,
    MalformedMessage,
    OversizedMessage,
    ProtocolHeader,
    Rekey,
    TopologyUpdate,
    TruncatedInput,
    UnknownMessageType,
    WireError,
    encode,
    encode_header,
)

A = PeerName("02:00:00:00:00:0a")
B = PeerName("02:00:00:00:00:0b")
HELLO = Hello(A, "host1", 2**64 - 1, 77, True, b"k" * 32, 6783)
RECORD = PeerRecord(A, "host1", 5, 9, (Connection(B, "198.18.0.2:6783", True, True),))
MESSAGES = [
    HELLO,
    Hello(B, "", 1, 0, False, None, 1),
    TopologyUpdate((RECORD, RECORD)),
    TopologyUpdate(()),
    Heartbeat(3),
    Rekey(b"s" * 32),
    Goodbye("remote peer requires encryption"),
]


def frame(obj: object) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def test_every_message_roundtrips_even_fed_one_byte_at_a_time() -> None:
    stream = encode_header() + b"".join(encode(m) for m in MESSAGES)
    decoder = Decoder()
    out = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    decoder.close()
    assert out == [ProtocolHeader(1, 1), *MESSAGES]


def test_the_header_carries_the_version_range() -> None:
    assert Decoder().feed(encode_header(2, 5)) == [ProtocolHeader(2, 5)]


def test_garbage_is_refused_at_the_first_wrong_byte() -> None:
    with pytest.raises(BadMagic):
        Decoder().feed(b"GET")


@pytest.mark.parametrize("lo,hi", [(0, 1), (3, 2)])
def test_an_impossible_version_range_is_refused(lo: int, hi: int) -> None:
    with pytest.raises(MalformedHeader):
        Decoder().feed(encode_header(lo, hi))


def test_an_oversized_message_is_refused_before_its_body_arrives() -> None:
    decoder = Decoder(max_message_size=1024)
    with pytest.raises(OversizedMessage):
        decoder.feed(encode_header() + struct.pack(">I", 1025))


def test_encoding_refuses_to_build_an_oversized_message() -> None:
    with pytest.raises(OversizedMessage):
        encode(Goodbye("x" * 100), max_size=50)


def test_a_stream_that_stops_mid_message_is_truncated() -> None:
    decoder = Decoder()
    decoder.feed(encode_header() + encode(HELLO)[:-3])
    with pytest.raises(TruncatedInput):
        decoder.close()


def test_a_clean_end_of_stream_is_fine() -> None:
    decoder = Decoder()
    decoder.feed(encode_header() + encode(Heartbeat()))
    decoder.close()


def test_after_an_error_the_decoder_stays_failed() -> None:
    decoder = Decoder()
    with pytest.raises(BadMagic):
        decoder.feed(b"x")
    with pytest.raises(BadMagic):
        decoder.feed(encode_header())


def test_unknown_message_types_are_refused_but_unknown_keys_ignored() -> None:
    decoder = Decoder()
    decoder.feed(encode_header())
    assert decoder.feed(frame({"type": "heartbeat", "seq": 1, "later": [1, 2]})) == [Heartbeat(1)]
    with pytest.raises(UnknownMessageType):
        decoder.feed(frame({"type": "teleport"}))


def test_a_retired_message_type_from_an_old_peer_is_skipped() -> None:
    decoder = Decoder()
    decoder.feed(encode_header())
    stream = frame({"type": "established"}) + frame({"type": "heartbeat", "seq": 2})
    assert decoder.feed(stream) == [Heartbeat(2)]
    assert "established" in wire.RETIRED_TYPES


def _hello(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": "hello",
        "name": A,
        "nickname": "h",
        "uid": 1,
        "conn_id": 2,
        "encrypt": False,
        "public_key": None,
        "udp_port": 6783,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb([1, 2]),
        msgpack.packb({"type": 5}),
        msgpack.packb({1: 2}),
        msgpack.packb({"type": "hello"}) + b"\x00",  # trailing bytes
        msgpack.packb({"type": "goodbye", "reason": 1}),
        msgpack.packb({"type": "goodbye", "reason": "x" * 2000}),
        msgpack.packb({"type": "heartbeat", "seq": -1}),
        msgpack.packb({"type": "heartbeat", "seq": True}),
        msgpack.packb({"type": "topology", "records": {}}),
        msgpack.packb({"type": "topology", "records": [{}] * 65537}),
        msgpack.packb(_hello(name="bob")),
        msgpack.packb(_hello(uid=-1)),
        msgpack.packb(_hello(udp_port=0)),
        msgpack.packb(_hello(udp_port=70000)),
        msgpack.packb(_hello(encrypt=True)),  # no key
        msgpack.packb(_hello(encrypt=True, public_key=b"short")),
        msgpack.packb(_hello(public_key=b"k" * 32)),  # key without encryption
        msgpack.packb(_hello(nickname="n" * 300)),
        b"\xa3\xff\xfe\xfd",  # invalid UTF-8 string
        b"\xdc\x00",  # truncated array header
    ],
)
def test_malformed_messages_raise_a_typed_error(body: bytes) -> None:
    decoder = Decoder()
    decoder.feed(encode_header())
    with pytest.raises(MalformedMessage):
        decoder.feed(struct.pack(">I", len(body)) + body)


def test_a_forged_record_is_refused_and_counted_and_the_stream_goes_on() -> None:
    forged = {**encode_record(RECORD), "ver": 2**64 - 1}
    decoder = Decoder()
    decoder.feed(encode_header())
    body = {"type": "topology", "records": [forged, {"name": "x"}, encode_record(RECORD)]}
    [update] = decoder.feed(frame(body))
    assert update == TopologyUpdate((RECORD,))
    assert update.refused == 2
    assert decoder.feed(encode(Heartbeat(1))) == [Heartbeat(1)]


def test_a_handshake_limited_decoder_takes_one_small_message_at_a_time() -> None:
    decoder = Decoder(handshake_limit=100)
    big = Goodbye("x" * 200)
    stream = encode_header() + encode(Heartbeat(1)) + encode(big) + encode(Heartbeat(2))
    assert decoder.feed(stream) == [ProtocolHeader(1, 1), Heartbeat(1)]
    decoder.end_handshake()  # before the big message's length is checked
    assert decoder.feed(b"") == [big, Heartbeat(2)]
    limited = Decoder(handshake_limit=100)
    with pytest.raises(OversizedMessage):
        limited.feed(encode_header() + encode(big))


def test_an_empty_message_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        Decoder().feed(encode_header() + b"\x00\x00\x00\x00")


# -- properties ------------------------------------------------------------------------------------

names = st.builds(
    lambda b: PeerName(":".join(f"{x:02x}" for x in b)), st.binary(min_size=6, max_size=6)
)
uint64 = st.integers(0, 2**64 - 1)
hellos = st.builds(
    lambda name, nick, uid, cid, key, port: Hello(name, nick, uid, cid, key is not None, key, port),
    names,
    st.text(max_size=40),
    uint64,
    uint64,
    st.none() | st.binary(min_size=32, max_size=32),
    st.integers(1, 65535),
)
records = st.builds(
    lambda name, nick, uid, ver, conns: PeerRecord(
        name, nick, uid, ver, tuple(sorted({c.peer: c for c in conns if c.peer != name}.values()))
    ),
    names,
    st.text(max_size=20),
    uint64,
    st.integers(0, MAX_VERSION),
    st.lists(
        st.builds(Connection, names, st.text(max_size=30), st.booleans(), st.booleans()), max_size=5
    ),
)
messages = st.one_of(
    hellos,
    st.builds(TopologyUpdate, st.lists(records, max_size=5).map(tuple)),
    st.builds(Heartbeat, uint64),
    st.builds(Goodbye, st.text(max_size=100)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=5), st.integers(1, 64))
def test_any_message_sequence_roundtrips_in_any_chunking(msgs, chunk) -> None:  # type: ignore[no-untyped-def]
    stream = encode_header() + b"".join(encode(m) for m in msgs)
    decoder = Decoder()
    out = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i : i + chunk])
    assert out == [ProtocolHeader(1, 1), *msgs]


def _decode_all(data: bytes, prefix: bytes = b"") -> None:
    decoder = Decoder(max_message_size=4096)
    try:
        decoder.feed(prefix + data)
        decoder.close()
    except WireError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_wire_error(data: bytes) -> None:
    _decode_all(data)
    _decode_all(data, prefix=encode_header())


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["hello", "topology", "heartbeat", "goodbye", "established", "x"]),
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "nickname",
                "uid",
                "conn_id",
                "encrypt",
                "public_key",
                "udp_port",
                "records",
                "seq",
                "reason",
            ]
        ),
        json_like,
    ),
)
def test_structurally_valid_msgpack_with_random_fields_never_crashes(kind, fields) -> None:  # type: ignore[no-untyped-def]
    _decode_all(frame({"type": kind, **fields}), prefix=encode_header())


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_mutated_valid_messages_never_crash(msg, data) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    _decode_all(bytes(raw), prefix=encode_header())


def test_module_exports_one_error_root() -> None:
    for name in (
        "BadMagic",
        "MalformedHeader",
        "OversizedMessage",
        "MalformedMessage",
        "UnknownMessageType",
        "TruncatedInput",
    ):
        assert issubclass(getattr(wire, name), WireError)


@pytest.mark.parametrize("salt", [b"short", b"s" * 33, "s" * 32, None])
def test_a_rekey_without_a_32_byte_salt_is_malformed(salt: object) -> None:
    with pytest.raises(MalformedMessage):
        Decoder().feed(encode_header() + frame({"type": "rekey", "salt": salt}))
