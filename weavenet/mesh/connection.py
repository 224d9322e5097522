"""One TCP connection to another router, as protocol state without the socket (sans-IO).

A ``PeerConnection`` goes CONNECTING (outbound only, while the TCP connect is in progress), then
HANDSHAKE, then ESTABLISHED, and is closed from any phase. It holds what the gossip actor needs
between two socket events: the incremental ``Decoder`` for what the remote sends, the ``Handshake``
it drives, the out-buffer of bytes the socket has not taken yet, the deadlines, and, once the
handshake is accepted, who the remote is, the sealer that seals everything after the proofs,
and the control keys that bind the sleeve's heartbeats and probes to this connection
(:mod:`weavenet.dataplane.control_auth`; the forwarder gets them in the routes event).

The actor owns the socket: it feeds received bytes to ``received``, writes ``out`` and reports
what the socket took with ``sent``, and closes the connection when a method says so (an
overflowing out-buffer, a deadline passed, silence). Time comes in as ``now`` arguments.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from weavenet.crypto.keys import (
    REKEY_SALT_SIZE,
    KeyExchange,
    Password,
    combine_salts,
    rekeyed_udp_keys,
)
from weavenet.crypto.seal import StreamSealer
from weavenet.dataplane.control_auth import ControlKeys, connection_keys
from weavenet.mesh.handshake import (
    DUPLICATE_CONNECTION,
    Accepted,
    ConnectionSide,
    Handshake,
    HandshakeConfig,
    prefer,
)
from weavenet.mesh.peer import Peer
from weavenet.mesh.wire import (
    MAX_HANDSHAKE_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE,
    Decoder,
    Goodbye,
    Heartbeat,
    Message,
    Proof,
    ProtocolHeader,
    encode_body,
    frame,
)
from weavenet.runtime.address import parse_host_port

CONNECT_TIMEOUT = 5.0
PATH_OK, PATH_DOWN = "ok", "unreachable"  # the forwarder's verdicts on a UDP path
PATH_DOWN_REASON = "UDP path down: heartbeats not answered (UDP port blocked or link cut?)"
HANDSHAKE_TIMEOUT = 5.0
SILENCE_TIMEOUT = 10.0  # five missed heartbeats: the connection (or the path) is gone
SILENCE_REASON = f"no data for {SILENCE_TIMEOUT:.0f}s"
# A peer that stops reading is dropped rather than buffered for: two messages of the largest size.
MAX_OUT_BUFFER = 2 * MAX_MESSAGE_SIZE
OUT_BUFFER_FULL = "remote is not reading (send buffer full)"
REMOTE_RESTARTED = "remote restarted"
# A peer whose TCP connection broke without a goodbye while its UDP path still answers
# heartbeats keeps its routes this long: its gossip actor is most likely restarting (a new
# incarnation redials within a second or two) and its forwarder still carries the frames.
LINGER = 5.0
LINGER_PATH_DOWN = "UDP path down while waiting for the peer to reconnect"
LINGER_TIMEOUT = f"not reconnected within {LINGER:.0f}s"
# An inbound connection's peer is dialled back once (a bare TCP connect to the port it listens
# on, closed at once): a peer behind NAT cannot be, and status says the link is inbound-only.
DIALBACK_TIMEOUT = 3.0


class Phase(enum.Enum):
    CONNECTING = "connecting"  # outbound TCP connect in progress
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"


def new_handshake(config: HandshakeConfig, password: Password | None, *, outbound: bool,
                  conn_id: int) -> tuple[Handshake, Decoder]:
    """The handshake and decoder for a new connection; with a password, a fresh key pair."""
    if password is None:
        return (Handshake(config, outbound=outbound, conn_id=conn_id),
                Decoder(handshake_limit=MAX_HANDSHAKE_MESSAGE_SIZE))
    exchange = KeyExchange(password)  # a fresh key pair per connection: keys never repeat
    handshake = Handshake(dataclasses.replace(config, public_key=exchange.public_key),
                          outbound=outbound, conn_id=conn_id, exchange=exchange)
    # The stream is sealed after the proofs: the decoder must stop there until it can open it.
    return handshake, Decoder(pause_after=(Proof,), handshake_limit=MAX_HANDSHAKE_MESSAGE_SIZE)


@dataclass(eq=False)
class PeerConnection:
    """One connection's protocol state, from connect to close."""

    outbound: bool
    address: str  # outbound: the dialled target; inbound: the remote's ip:port
    target: str | None  # the ConnectionMaker target to report to (outbound only)
    handshake: Handshake
    deadline: float  # for the connect, then for the handshake
    phase: Phase = Phase.HANDSHAKE
    decoder: Decoder = field(default_factory=Decoder)
    out: bytearray = field(default_factory=bytearray)  # what the socket has not taken yet
    last_rx: float = 0.0
    remote: Peer | None = None
    connection_id: int = 0
    udp: str | None = None  # the remote's sleeve address: its IP and advertised UDP port
    heartbeats: int = 0
    closed: bool = False
    sealer: StreamSealer | None = None  # set once the password proofs checked
    control_keys: ControlKeys | None = None  # bind the UDP path's control datagrams to us
    epoch: int | None = None  # the crypto actor holds UDP keys for this connection under it
    data_path: bool = False  # its UDP path answers heartbeats: it may carry traffic
    path_state: str | None = None  # the forwarder's last word on that path
    linger_until: float | None = None  # TCP gone, routes kept until then (see ``linger``)
    dialback: bool | None = None  # inbound: whether we could dial the peer back (None: unknown)
    # the handshake's UDP keys (send, receive) and the combined salt of the re-keys since
    udp_keys: tuple[bytes, bytes] | None = field(default=None, repr=False)
    rekey_salt: bytes = field(default=bytes(REKEY_SALT_SIZE), repr=False)

    # -- phases -------------------------------------------------------------------------------
    def connecting(self, now: float) -> None:
        """An outbound TCP connect is in progress; nothing may be written until it completes."""
        self.phase = Phase.CONNECTING
        self.deadline = now + CONNECT_TIMEOUT

    def start_handshake(self, now: float) -> bytes:
        """The TCP connection is up: the handshake's clock starts; returns our protocol header."""
        self.phase = Phase.HANDSHAKE
        self.deadline = now + HANDSHAKE_TIMEOUT
        return self.handshake.start()

    def accept(self, accepted: Accepted) -> None:
        """The handshake accepted the remote: from here on, both ways, the stream is sealed if
        the handshake made keys (a duplicate's goodbye included)."""
        self.remote, self.connection_id = accepted.remote, accepted.connection_id
        self.control_keys = connection_keys(accepted.connection_id, accepted.keys)
        self.decoder.end_handshake()
        if accepted.keys is not None:
            self.sealer = accepted.keys.stream_sealer()
            self.decoder.open_with(accepted.keys.stream_opener().open)
            self.udp_keys = (accepted.keys.udp_send, accepted.keys.udp_recv)

    def establish(self, now: float, epoch: int | None) -> None:
        self.phase = Phase.ESTABLISHED
        self.last_rx = now
        self.epoch = epoch

    def close(self) -> bool:
        """Mark the connection closed; False if it already was."""
        if self.closed:
            return False
        self.closed = True
        return True

    @property
    def established(self) -> bool:
        return self.phase is Phase.ESTABLISHED

    @property
    def host(self) -> str:
        """The remote's host, without the port (an inbound one's port changes every time)."""
        return parse_host_port(self.address)[0]

    # -- time -----------------------------------------------------------------------------------
    def expired(self, now: float) -> str | None:
        """Why the connect or handshake ran out of time, or None while there is time left."""
        if self.established or now <= self.deadline:
            return None
        return "connect timed out" if self.phase is Phase.CONNECTING else "handshake timed out"

    def silent(self, now: float) -> bool:
        return now - self.last_rx > SILENCE_TIMEOUT

    # -- bytes out ------------------------------------------------------------------------------
    def queue(self, data: bytes) -> bool:
        """Append to the out-buffer; False when that overflows it (then close the connection)."""
        self.out += data
        return len(self.out) <= MAX_OUT_BUFFER

    def framed(self, body: bytes) -> bytes:
        """One message body (``encode_body``) as it goes on the stream: sealed once there are
        keys, otherwise in clear with its length prefix. Sealing advances the sealer's nonce, so
        call it only for bytes that will be queued."""
        return self.sealer.seal(body) if self.sealer is not None else frame(body)

    def heartbeat(self) -> bytes:
        self.heartbeats += 1
        return encode_body(Heartbeat(self.heartbeats))

    def goodbye(self, reason: str) -> bytes:
        """What is still buffered, then a ``Goodbye``: written once, best effort, on closing."""
        return bytes(self.out) + self.framed(encode_body(Goodbye(reason)))

    def sent(self, count: int) -> None:
        del self.out[:count]

    # -- bytes in -------------------------------------------------------------------------------
    def received(self, data: bytes, now: float) -> Iterator[ProtocolHeader | Message]:
        """What ``data`` completes, one item at a time, so that the caller's handling of each
        (the handshake switching the decoder to the sealed stream, or closing) takes effect
        before the next is decoded. Raises ``WireError`` for input the remote cannot repair."""
        self.last_rx = now
        items = self.decoder.feed(data)
        while items:
            for item in items:
                yield item
                if self.closed:
                    return
            # the handshake may just have switched the decoder to the sealed stream: what arrived
            # behind the proof is decoded now
            items = self.decoder.feed(b"") if self.decoder.buffered else []

    # -- duplicates -----------------------------------------------------------------------------
    def loses_to(self, old: PeerConnection | None, local: Peer) -> bool:
        """Whether this newly accepted connection is the one to drop, ``old`` being the
        established connection to the same remote incarnation. Both ends apply the same rule to
        the same two connections, so the remote drops it too without being told."""
        remote = self.remote
        if old is None or old.remote is None or remote is None or old.remote.uid != remote.uid:
            return False
        return prefer(local, remote, ConnectionSide(old.outbound, old.connection_id),
                      ConnectionSide(self.outbound, self.connection_id)) == 0

    def replaces_reason(self, old: PeerConnection) -> str:
        """Why ``old`` is closed for this connection: a losing duplicate, or a link left over
        from the remote's previous incarnation."""
        return DUPLICATE_CONNECTION if old.remote == self.remote else REMOTE_RESTARTED

    # -- the data path ---------------------------------------------------------------------------
    def path_seen(self, state: str | None) -> bool | None:
        """The forwarder says the UDP path is ``state`` ("ok", "probing", "unreachable", None
        when it has no path yet): the new value of ``data_path`` if it changed, else None.
        Only a verdict changes anything: "probing" (a restarted forwarder, a new path) keeps
        what we had, so a forwarder restart does not flap the routes."""
        self.path_state = state
        up = True if state == PATH_OK else False if state == PATH_DOWN else self.data_path
        if up == self.data_path:
            return None
        self.data_path = up
        return up

    @property
    def dialback_address(self) -> str | None:
        """Where to dial an inbound connection's peer back: the address it came from with the
        port it listens on (its UDP port is its TCP port); None for an outbound one."""
        return None if self.outbound else self.udp

    # -- re-keying the UDP path ------------------------------------------------------------------
    def rekey(self, salt: bytes) -> tuple[bytes, bytes]:
        """Fold a re-key salt (ours, sent in a ``Rekey``, or the remote's) into the connection's
        UDP keys; the new (send, receive) keys, for the crypto actor. Both ends fold in the same
        salts in whatever order, so they end with mirrored keys."""
        if self.udp_keys is None:
            raise ValueError("a connection without encryption has no keys to re-key")
        self.rekey_salt = combine_salts(self.rekey_salt, salt)
        return rekeyed_udp_keys(*self.udp_keys, self.rekey_salt)

    # -- a broken TCP connection whose UDP path works ----------------------------------------------
    def linger(self, now: float) -> bool:
        """The TCP connection broke without a goodbye. If this was the peer's established link
        and its UDP path works, it keeps its place (topology, routes, keys) for ``LINGER``
        seconds, for the peer to reconnect: True. Otherwise it is lost at once: False."""
        if not (self.established and self.data_path):
            return False
        self.linger_until = now + LINGER
        return True

    @property
    def lingering(self) -> bool:
        return self.linger_until is not None

    def linger_over(self, now: float) -> str | None:
        """Why a lingering connection is now lost (its path went down, or the peer did not
        reconnect in time), or None while it may still be replaced by a new one."""
        if self.linger_until is None:
            return None
        if not self.data_path:
            return LINGER_PATH_DOWN
        return LINGER_TIMEOUT if now >= self.linger_until else None

    # -- status ---------------------------------------------------------------------------------
    def status_row(self) -> dict[str, Any]:
        established = self.established
        row = {
            "address": self.address,
            "peer": str(self.remote.name) if self.remote else None,
            "nickname": self.remote.nickname if self.remote else None,
            "state": "established" if established else "connecting",
            "info": ("outbound" if self.outbound
                     else "inbound-only" if self.dialback is False else "inbound")
                    if established else self.phase.value,
            "encrypted": self.sealer is not None,
            "direction": "outbound" if self.outbound else "inbound",
        }
        if self.lingering:
            row["state"] = "connected"  # UDP only, for a few seconds: traffic still flows
            row["info"] += "; TCP connection lost, UDP path up: waiting for the peer to reconnect"
        elif established and not self.data_path:
            row["state"] = "connected"  # TCP only: no traffic goes this way
            row["reason"] = (PATH_DOWN_REASON if self.path_state == PATH_DOWN
                             else "waiting for UDP heartbeats to be answered")
            row["info"] += "; " + row["reason"]
        return row
