"""Sealing the TCP control stream and UDP sleeve datagrams with session keys."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.crypto.seal import (
    DATAGRAM_OVERHEAD,
    SEQ_LIMIT,
    STREAM_OVERHEAD,
    CryptoError,
    DatagramOpener,
    DatagramSealer,
    ForgedMessage,
    MalformedBox,
    NonceExhausted,
    ReplayedDatagram,
    StreamBroken,
    StreamOpener,
    StreamSealer,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- datagrams -------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(payloads=st.lists(st.binary(max_size=2000), min_size=1, max_size=10))
def test_datagram_roundtrip(payloads: list[bytes]) -> None:
    sealer, opener = DatagramSealer(KEY), DatagramOpener(KEY)
    for payload in payloads:
        datagram = sealer.seal(payload)
        assert len(datagram) == len(payload) + DATAGRAM_OVERHEAD
        assert opener.open(datagram) == payload
    assert opener.opened == len(payloads)


def test_datagram_hides_payload_and_carries_sequence_in_clear() -> None:
    sealer = DatagramSealer(KEY)
    first, second = sealer.seal(b"secret frame" * 4), sealer.seal(b"secret frame" * 4)
    assert b"secret" not in first
    assert first[:8] == (0).to_bytes(8, "big") and second[:8] == (1).to_bytes(8, "big")
    assert first[8:] != second[8:]  # same payload, different nonce


def test_tampered_datagram_body_is_rejected_and_counted() -> None:
    datagram = DatagramSealer(KEY).seal(b"hello world")
    opener = DatagramOpener(KEY)
    for index in range(8, len(datagram)):
        with pytest.raises(ForgedMessage):
            opener.open(flip(datagram, index))
    assert opener.forged == len(datagram) - 8
    assert opener.open(datagram) == b"hello world"  # forgeries did not poison the window


def test_tampered_sequence_number_is_rejected() -> None:
    datagram = DatagramSealer(KEY).seal(b"hello world")
    opener = DatagramOpener(KEY)
    for index in range(8):
        with pytest.raises(ForgedMessage):
            opener.open(flip(datagram, index))


def test_forged_high_sequence_number_does_not_push_genuine_traffic_out_of_the_window() -> None:
    sealer, opener = DatagramSealer(KEY), DatagramOpener(KEY, window=64)
    forged = (2**40).to_bytes(8, "big") + os.urandom(40)
    with pytest.raises(ForgedMessage):
        opener.open(forged)
    assert opener.open(sealer.seal(b"genuine")) == b"genuine"


def test_datagram_from_another_key_is_rejected() -> None:
    with pytest.raises(ForgedMessage):
        DatagramOpener(OTHER_KEY).open(DatagramSealer(KEY).seal(b"x"))


def test_replayed_datagram_is_dropped_and_counted() -> None:
    sealer, opener = DatagramSealer(KEY), DatagramOpener(KEY)
    datagram = sealer.seal(b"frame")
    assert opener.open(datagram) == b"frame"
    with pytest.raises(ReplayedDatagram):
        opener.open(datagram)
    assert opener.stats() == {"opened": 1, "replayed": 1, "forged": 0, "malformed": 0}


def test_reordered_datagrams_within_window_are_accepted_too_old_ones_dropped() -> None:
    sealer, opener = DatagramSealer(KEY), DatagramOpener(KEY, window=64)
    datagrams = [sealer.seal(bytes([i])) for i in range(100)]
    assert opener.open(datagrams[99]) == bytes([99])
    assert opener.open(datagrams[36]) == bytes([36])  # 63 behind: inside
    with pytest.raises(ReplayedDatagram):
        opener.open(datagrams[35])  # 64 behind: too old
    assert opener.open(datagrams[50]) == bytes([50])


@pytest.mark.parametrize("size", [0, 1, DATAGRAM_OVERHEAD - 1])
def test_truncated_datagram_is_malformed(size: int) -> None:
    opener = DatagramOpener(KEY)
    with pytest.raises(MalformedBox):
        opener.open(b"\x00" * size)
    assert opener.malformed == 1


def test_datagram_sealer_refuses_to_pass_its_limit() -> None:
    sealer = DatagramSealer(KEY, limit=3)
    for _ in range(3):
        sealer.seal(b"x")
    with pytest.raises(NonceExhausted):
        sealer.seal(b"x")
    with pytest.raises(NonceExhausted):  # and keeps refusing
        sealer.seal(b"x")
    assert sealer.sealed == 3


def test_sealer_limit_cannot_exceed_what_the_counter_can_hold() -> None:
    assert SEQ_LIMIT == 2**64 - 1
    with pytest.raises(ValueError):
        DatagramSealer(KEY, limit=SEQ_LIMIT + 1)
    with pytest.raises(ValueError):
        StreamSealer(KEY, limit=2**64)


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_wrong_key_size_is_refused(key: bytes) -> None:
    for cls in (DatagramSealer, DatagramOpener, StreamSealer, StreamOpener):
        with pytest.raises(ValueError):
            cls(key)


# --- stream ----------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=500), min_size=1, max_size=10),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_stream_roundtrip_across_arbitrary_socket_chunks(messages: list[bytes], chunk: int) -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    wire = b"".join(sealer.seal(m) for m in messages)
    assert len(wire) == sum(len(m) + STREAM_OVERHEAD for m in messages)
    received: list[bytes] = []
    for start in range(0, len(wire), chunk):
        received += opener.feed(wire[start : start + chunk])
    assert received == messages


def test_stream_open_takes_deframed_boxes() -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    for message in (b"hello", b"", b"topology"):
        assert opener.open(sealer.seal(message)[4:]) == message


def test_stream_rejects_reordered_messages() -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    first, second = sealer.seal(b"one"), sealer.seal(b"two")
    with pytest.raises(ForgedMessage):
        opener.feed(second + first)


def test_stream_rejects_replayed_message() -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    first = sealer.seal(b"one")
    assert opener.feed(first) == [b"one"]
    with pytest.raises(ForgedMessage):
        opener.feed(first)


def test_stream_rejects_dropped_message() -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    sealer.seal(b"lost")
    with pytest.raises(ForgedMessage):
        opener.feed(sealer.seal(b"next"))


def test_stream_rejects_tampering_anywhere_in_the_box() -> None:
    frame = StreamSealer(KEY).seal(b"a control message")
    for index in range(4, len(frame)):
        with pytest.raises(ForgedMessage):
            StreamOpener(KEY).feed(flip(frame, index))


def test_stream_tampered_length_never_yields_a_message() -> None:
    frame = StreamSealer(KEY).seal(b"a control message") + StreamSealer(KEY).seal(b"pad" * 20)
    for index in range(4):
        opener = StreamOpener(KEY)
        try:
            outcome: object = opener.feed(flip(frame, index))
        except CryptoError as error:
            outcome = error
        # either refused outright or still waiting for bytes that never come; never a message
        assert outcome == [] or isinstance(outcome, CryptoError), (index, outcome)


@pytest.mark.parametrize("length", [0, 15, 1000 + 16 + 1, 2**32 - 1])
def test_stream_length_out_of_range_is_malformed_before_buffering(length: int) -> None:
    opener = StreamOpener(KEY, max_message=1000)
    with pytest.raises(MalformedBox):
        opener.feed(length.to_bytes(4, "big"))


def test_stream_opener_stays_broken_after_a_failure() -> None:
    sealer, opener = StreamSealer(KEY), StreamOpener(KEY)
    good = sealer.seal(b"good")
    with pytest.raises(ForgedMessage):
        opener.feed(flip(good, 10))
    with pytest.raises(StreamBroken):
        opener.feed(good)
    with pytest.raises(StreamBroken):
        opener.open(good[4:])


def test_stream_sealer_refuses_oversized_message_and_exhausted_counter() -> None:
    with pytest.raises(ValueError):
        StreamSealer(KEY, max_message=10).seal(b"x" * 11)
    sealer = StreamSealer(KEY, limit=1)
    sealer.seal(b"x")
    with pytest.raises(NonceExhausted):
        sealer.seal(b"x")


def test_stream_and_datagram_errors_share_one_base() -> None:
    for error in (ForgedMessage, MalformedBox, ReplayedDatagram, NonceExhausted, StreamBroken):
        assert issubclass(error, CryptoError)
