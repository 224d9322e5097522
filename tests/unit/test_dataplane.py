import msgpack
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from weavenet.dataplane.batch import (
    MAX_BATCH,
    MAX_FRAME_LEN,
    PACK_BELOW,
    BatchError,
    decode_batch,
    encode_batch,
)


def test_batch_roundtrip_keeps_header_and_frames_separate():
    frames = [b"\x00" * 10 + b"frame-one-bytes", memoryview(b"frame two")]
    parts = encode_batch({"src": "02:00:00:00:00:0a", "via": "tap"}, frames)
    header, got = decode_batch(parts)
    assert header["src"] == "02:00:00:00:00:0a" and header["n"] == 2 and header["v"] == 2
    assert [bytes(f) for f in got] == [bytes(f) for f in frames]


def test_small_frames_travel_packed_in_runs_and_big_ones_alone_uncopied():
    small = [bytes([i]) * (60 + i) for i in range(5)]
    big = b"B" * PACK_BELOW
    frames = [*small[:3], big, small[3], big, *small[4:]]
    parts = encode_batch({}, frames)
    # header, a run of three, the big one (the same object), a run of one, big, a run of one
    assert len(parts) == 6 and parts[2] is big and parts[4] is big
    assert parts[3] is small[3] and parts[5] is small[4]  # a run of one is the frame itself
    header, got = decode_batch(parts)
    assert header["p"] == [3, 1, 1, 1, 1]
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


HEAD = msgpack.packb({"v": 2, "n": 1, "p": [1]})
PACKED2 = msgpack.packb({"v": 2, "n": 2, "p": [2]})


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [HEAD],
        [HEAD, b"a", b"b"],
        [msgpack.packb({"v": 2, "n": 2, "p": [1]}), b"a"],
        [msgpack.packb({"v": 1, "n": 1}), b"a"],
        [msgpack.packb({"v": 2, "n": "1", "p": [1]}), b"a"],
        [msgpack.packb({"v": 2, "n": True, "p": [1]}), b"a"],
        [msgpack.packb({"v": 2, "n": 1}), b"a"],
        [msgpack.packb({"v": 2, "n": 1, "p": [0]}), b"a"],
        [msgpack.packb({"v": 2, "n": 1, "p": 1}), b"a"],
        [PACKED2, b"\x00\x00\x00\x01a"],  # one frame where two are said
        [PACKED2, b"\x00\x00\x00\x01a\x00\x00\x00"],  # ends inside a length
        [PACKED2, b"\x00\x00\x00\x01a\x00\x00\x00\x05b"],  # overruns the part
        [PACKED2, b"\x00\x00\x00\x01a\x00\x00\x00\x00"],  # an empty frame
        [PACKED2, b"\x00\x00\x00\x01a\x00\x00\x00\x01bZ"],  # bytes after the frames
        [PACKED2, b"\x00\x01\x00\x00" + b"a" * 65536 + b"\x00\x00\x00\x01b"],  # too big
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
    assert header["n"] == len(frames) == sum(header["p"])


@given(st.lists(st.sampled_from([1, 60, PACK_BELOW - 1, PACK_BELOW, 9000]), min_size=1,
                max_size=40))
def test_any_mix_of_sizes_round_trips_in_order(sizes):
    frames = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    header, got = decode_batch(encode_batch({}, frames))
    assert [bytes(f) for f in got] == frames and header["n"] == len(frames)
