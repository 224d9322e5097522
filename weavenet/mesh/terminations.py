"""Why connections end, as a small fixed set of kinds: what metrics can count.

A close reason is free text (it may quote a socket error or a remote's goodbye), so counting by
it would make one time series per distinct message. These kinds are the few an operator acts
on; the full reason stays in the logs and in ``weave status connections``.
"""

from __future__ import annotations

from weavenet.mesh.connection import OUT_BUFFER_FULL, SILENCE_REASON
from weavenet.mesh.handshake import DUPLICATE_CONNECTION

KINDS = ("refused", "replaced", "silence", "goodbye", "closed_by_remote", "timeout",
         "protocol_error", "send_buffer_full", "forgotten", "rekeyed", "dial_failed", "error")


def termination_kind(reason: str, *, refused: bool = False, replaced: bool = False) -> str:
    """The kind of a close ``reason`` (``refused``: the handshake refused it; ``replaced``: a
    newer connection to the same peer took over)."""
    if refused:
        return "refused"
    if replaced or reason == DUPLICATE_CONNECTION:
        return "replaced"
    if reason == SILENCE_REASON:
        return "silence"
    if reason.startswith("remote said goodbye"):
        return "goodbye"
    if reason == "connection closed by remote":
        return "closed_by_remote"
    if reason.endswith("timed out"):
        return "timeout"
    if reason.startswith(("protocol error", "unexpected ")):
        return "protocol_error"
    if reason == OUT_BUFFER_FULL:
        return "send_buffer_full"
    return "error"
