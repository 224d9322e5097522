import msgpack
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from weavenet.dataplane.batch import (
    MAX_BATCH,
    MAX_FRAME_LEN,
    BatchError,
    decode_batch,
    encode_batch,
)


def test_batch_roundtrip_keeps_header_and_frames_separate():
    frames = [b"\x00" * 10 + b"frame-one-bytes", memoryview(b"frame two")]
    parts = encode_batch({"src": "02:00:00:00:00:0a", "via": "tap"}, frames)
    assert len(parts) == 3 and parts[1] is frames[0] and parts[2] is frames[1]
    header, got = decode_batch(parts)
    assert header["src"] == "02:00:00:00:00:0a" and header["n"] == 2 and header["v"] == 1
    assert [bytes(f) for f in got] == [bytes(f) for f in frames]


def test_batches_cross_a_real_zmq_pair_without_copies():
    ctx = zmq.Context()
    try:
        push, pull = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        push.bind("inproc://batch")
        pull.connect("inproc://batch")
        frames = [bytes([i]) * (100 + i) for i in range(5)]
        push.send_multipart(encode_batch({"dst": 7}, frames), copy=False)
        assert pull.poll(5000)
        header, got = decode_batch(pull.recv_multipart(copy=False))
        assert header["dst"] == 7 and [bytes(f) for f in got] == frames
    finally:
        ctx.destroy(linger=0)


def test_encoding_rejects_empty_and_oversized_batches():
    with pytest.raises(BatchError):
        encode_batch({}, [])
    with pytest.raises(BatchError):
        encode_batch({}, [b"x"] * (MAX_BATCH + 1))


HEAD = msgpack.packb({"v": 1, "n": 1})


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [HEAD],
        [HEAD, b"a", b"b"],
        [msgpack.packb({"v": 1, "n": 2}), b"a"],
        [msgpack.packb({"v": 2, "n": 1}), b"a"],
        [msgpack.packb({"v": 1, "n": "1"}), b"a"],
        [msgpack.packb({"v": 1, "n": True}), b"a"],
        [msgpack.packb([1, 1]), b"a"],
        [b"\xc1garbage", b"a"],
        [HEAD[:-1], b"a"],
        [HEAD + b"\x00", b"a"],
        [HEAD, b""],
        [HEAD, b"x" * (MAX_FRAME_LEN + 1)],
        [b"\x81" + b"\xa1v\x01" * 2000, b"a"],
        [msgpack.packb({1: 1}), b"a"],
        [HEAD, 42],
    ],
)
def test_malformed_batches_raise_batch_error(parts):
    with pytest.raises(BatchError):
        decode_batch(parts)


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_arbitrary_parts_only_ever_raise_batch_error(parts):
    try:
        header, frames = decode_batch(parts)
    except BatchError:
        return
    assert header["n"] == len(frames) == len(parts) - 1
