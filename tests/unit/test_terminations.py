"""Why connections end, in the few kinds the metrics count."""

from __future__ import annotations

from weavenet.mesh.connection import OUT_BUFFER_FULL, SILENCE_REASON
from weavenet.mesh.handshake import DUPLICATE_CONNECTION
from weavenet.mesh.terminations import KINDS, termination_kind


def test_close_reasons_map_to_a_fixed_set_of_kinds() -> None:
    cases = {
        SILENCE_REASON: "silence",
        "remote said goodbye: peer shutting down": "goodbye",
        "connection closed by remote": "closed_by_remote",
        "handshake timed out": "timeout",
        "connect timed out": "timeout",
        "protocol error: bad length": "protocol_error",
        "unexpected ProtocolHeader after the handshake": "protocol_error",
        OUT_BUFFER_FULL: "send_buffer_full",
        DUPLICATE_CONNECTION: "replaced",
        "Connection reset by peer": "error",
    }
    assert {reason: termination_kind(reason) for reason in cases} == cases
    assert termination_kind("password mismatch", refused=True) == "refused"
    assert termination_kind("remote restarted", replaced=True) == "replaced"
    assert set(cases.values()) <= set(KINDS)
