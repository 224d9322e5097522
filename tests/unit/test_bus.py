import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.runtime import bus


def test_request_and_reply_roundtrip_keep_type_and_correlate():
    req = bus.request("attach", {"cidrs": ["10.0.1.1/24"]}, src="cli", inc=7)
    back = bus.decode(bus.encode(req))
    assert back == req
    rep = bus.reply(req, {"mac": "aa"}, src="netconf", inc=9)
    rback = bus.decode(bus.encode(rep))
    assert rback.type == "attach" and rback.in_reply_to == req.id
    assert rback.ok is True and rback.error is None and rback.body == {"mac": "aa"}


def test_error_reply_carries_code_and_reason_and_raises():
    req = bus.request("attach")
    rep = bus.decode(bus.encode(bus.reply(req, error=(bus.FAILED, "in use"))))
    assert rep.ok is False and rep.error == {"code": "failed", "reason": "in use"}
    with pytest.raises(bus.BusError) as ei:
        rep.raise_for_error()
    assert ei.value.code == "failed" and ei.value.reason == "in use"


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"v": 2, "type": "x"}),
    msgpack.packb({"v": 1}), msgpack.packb({"v": 1, "type": ""}),
    msgpack.packb({"v": 1, "type": "x", "body": [1]}),
    msgpack.packb({"v": 1, "type": "x", "error": {"code": 1}}),
    msgpack.packb({"v": "1", "type": "x"}),
    msgpack.packb({"v": True, "type": "x"}),
    msgpack.packb({"v": 1, "type": "x" * 65}),
    msgpack.packb({"v": 1, "type": "x", "id": "i" * 65}),
    msgpack.packb({"v": 1, "type": "x", "src": "s" * 65}),
    msgpack.packb({"v": 1, "type": "x", "in_reply_to": "r" * 65}),
    msgpack.packb({"v": 1, "type": "x", "inc": -1}),
    msgpack.packb({"v": 1, "type": "x", "inc": 2**64 - 1}),
    msgpack.packb({"v": 1, "type": "x", "inc": True}),
    msgpack.packb({"v": 1, "type": "x", "ts": float("nan")}),
    msgpack.packb({"v": 1, "type": "x", "ts": float("inf")}),
])
def test_malformed_envelopes_raise_envelope_error(data):
    with pytest.raises(bus.EnvelopeError):
        bus.decode(data)


def test_oversized_envelope_is_rejected_before_parsing():
    with pytest.raises(bus.EnvelopeError, match="exceeds"):
        bus.decode(b"\x00" * (bus.MAX_ENVELOPE + 1))


@given(st.binary(max_size=256))
def test_random_bytes_never_raise_anything_but_envelope_error(data):
    with contextlib.suppress(bus.EnvelopeError):
        bus.decode(data)


@given(st.dictionaries(st.sampled_from(["v", "type", "id", "src", "inc", "ts", "body", "ok",
                                          "in_reply_to", "error"]),
                       st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                       | st.floats() | st.text(max_size=80)
                       | st.dictionaries(st.text(), st.text())))
def test_envelopes_with_random_fields_decode_in_range_or_raise_envelope_error(fields):
    try:
        env = bus.decode(msgpack.packb(fields))
    except bus.EnvelopeError:
        return
    assert 0 <= env.inc <= bus.MAX_INC and len(env.type) <= bus.MAX_NAME_LEN
    assert bus.decode(bus.encode(env)) == env


def test_unknown_keys_are_ignored_for_forward_compatibility():
    data = msgpack.packb({"v": 1, "type": "status", "future": True})
    assert bus.decode(data).type == "status"


def test_ipc_paths_that_are_too_long_are_refused(tmp_path):
    ep = bus.Endpoints(tmp_path / ("x" * 120))
    with pytest.raises(ValueError, match="too long"):
        _ = ep.ctl


def test_run_dir_is_made_root_only(tmp_path):
    ep = bus.Endpoints(tmp_path / "run")
    ep.prepare()
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
