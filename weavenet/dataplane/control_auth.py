"""Sleeve control datagrams bound to the TCP connection: their keys and the verdict. Sans-IO.

A heartbeat, PMTU probe or frag test (and their acks) moves a neighbour's UDP address, starts
path-MTU discovery towards it and is answered, so it must come from the peer at the other end of
our TCP connection, not from anyone who knows that peer's name. Each TCP connection therefore
gives its two ends a pair of control keys (:func:`connection_keys`), one per direction, mirrored
(A's ``send`` is B's ``recv``):

* without a password, derived from the connection id, the XOR of the two random 64-bit ids the
  hellos exchanged over TCP: an attacker who cannot read that TCP stream cannot guess it;
* with a password, derived from the connection's UDP session keys (``weavenet.crypto.keys``),
  which only the two ends know: the datagram is authenticated with the connection's keys.

Gossip hands the keys to the forwarder in its "routes" event (``peers[name]["control"]``, hex,
direct neighbours only; :func:`encode_keys` / :func:`decode_keys`). Every control datagram
carries a tag under the sender's key (:func:`weavenet.dataplane.sleeve.control_tag`) and the
sender's control counter as ``seq``; :class:`ControlAuth` accepts a datagram only if the tag
checks and ``seq`` passes a replay window, so a heartbeat captured on the wire and replayed from
another address is refused too. The counter starts at the clock (``time.monotonic_ns``, which
never goes back within a boot): a restarted forwarder keeps being fresh to its neighbours.

A datagram that fails is dropped with one of the reasons below (counted in the forwarder's
status); it is not answered and changes no path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from weavenet.crypto.primitives import blake2b, compare_digest
from weavenet.crypto.replay import ReplayWindow
from weavenet.dataplane.sleeve import Control, control_tag

if TYPE_CHECKING:  # not at run time: it would load libsodium into the forwarder for a type
    from weavenet.crypto.keys import SessionKeys

KEY_SIZE = 32

# drop reasons
CONTROL_NO_KEY = "control_no_key"  # from a peer that is not a neighbour, or before its keys came
CONTROL_FORGED = "control_forged"  # the tag does not check: not from the connection's peer
CONTROL_REPLAYED = "control_replayed"  # a sequence number seen already (or far too old)


class ControlKeys(NamedTuple):
    send: bytes  # tags what we send
    recv: bytes  # checks what the neighbour sends

    def __repr__(self) -> str:
        return "ControlKeys(<redacted>)"


def _derive(secret: bytes, label: bytes) -> bytes:
    # keyed BLAKE2b, the same bytes as libsodium's (and PyNaCl's) with this personalisation
    return blake2b(label, digest_size=KEY_SIZE, key=secret, person=b"weavenet-ctlkey").digest()


def connection_keys(connection_id: int, session: SessionKeys | None) -> ControlKeys:
    """The control keys of one TCP connection: from its session keys with a password, else
    from its connection id (the same in both directions then: only the TCP stream told it)."""
    if session is None:
        key = _derive(connection_id.to_bytes(8, "big"), b"clear")
        return ControlKeys(key, key)
    return ControlKeys(_derive(session.udp_send, b"sealed"), _derive(session.udp_recv, b"sealed"))


def encode_keys(keys: ControlKeys) -> list[str]:
    return [keys.send.hex(), keys.recv.hex()]


def decode_keys(value: Any) -> ControlKeys | None:
    """The keys of a routes event's ``control`` entry; None when absent or malformed."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    try:
        send, recv = (bytes.fromhex(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(send) != KEY_SIZE or len(recv) != KEY_SIZE:
        return None
    return ControlKeys(send, recv)


class ControlAuth:
    """One neighbour's control keys and the replay window of what it sent under them."""

    __slots__ = ("keys", "window")

    def __init__(self, keys: ControlKeys) -> None:
        self.keys = keys
        self.window = ReplayWindow()

    def verify(self, msg: Control) -> str | None:
        """None if ``msg`` comes from the neighbour under these keys and is fresh (then it is
        remembered as seen), else the drop reason."""
        expected = control_tag(self.keys.recv, msg.kind, msg.flags, msg.sender, msg.seq,
                               msg.token, msg.value)
        if not compare_digest(expected, msg.tag):
            return CONTROL_FORGED
        # only an authentic datagram moves the window (see weavenet.crypto.replay)
        return None if self.window.check_and_update(msg.seq) else CONTROL_REPLAYED
