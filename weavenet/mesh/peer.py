"""Peer identity: the stable peer name, the nickname, and the incarnation UID.

A router is the same *peer* across restarts (its name is persisted in WEAVE_STATE_DIR) but each
start is a new *incarnation* with a fresh random UID, so the rest of the mesh can tell a restarted
router from a stale record of its previous life and from a different host that claims the same name.
"""

from __future__ import annotations

import os
import random
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from weavenet.runtime.address import shown
from weavenet.runtime.statefile import write_atomic

# secrets' randomness without importing secrets (it loads hmac, hashlib and OpenSSL: ~4 MB in
# every process that names a peer)
_SYSTEM_RANDOM = random.SystemRandom()

PEER_NAME_FILE = "peer-name"
MAX_NICKNAME_LEN = 255
UID_BITS = 64

_NAME_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class PeerIdentityError(ValueError):
    """A peer name or the persisted identity file is invalid."""


class PeerName(str):
    """A MAC-like peer name, ``"aa:bb:cc:dd:ee:ff"`` in lower case.

    Lower-case fixed-width hex makes string order equal numeric order, which the duplicate
    connection rule and the route tie-breaks rely on: every peer sorts names the same way.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> PeerName:
        if isinstance(value, PeerName):
            return value
        if not isinstance(value, str):
            raise PeerIdentityError(f"peer name must be a string, not {type(value).__name__}")
        text = value.strip().lower()
        if not _NAME_RE.match(text):
            raise PeerIdentityError(f"invalid peer name {shown(value)} "
                                    "(want six hex octets aa:bb:..)")
        return super().__new__(cls, text)

    @classmethod
    def random(cls, rng: random.Random | None = None) -> PeerName:
        """A random locally administered unicast MAC-like name."""
        raw = bytearray(rng.randbytes(6) if rng is not None else os.urandom(6))
        # Locally administered (bit 1) and unicast (bit 0 clear): never collides with a real NIC.
        raw[0] = (raw[0] | 0x02) & 0xFE
        return cls(":".join(f"{b:02x}" for b in raw))

    @classmethod
    def load_or_create(
        cls, state_dir: str | os.PathLike[str], rng: random.Random | None = None
    ) -> PeerName:
        """The name persisted in ``state_dir``; a new random one is created and saved if none."""
        path = Path(state_dir) / PEER_NAME_FILE
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            name = cls.random(rng)
            cls.save(name, state_dir)
            return name
        except (OSError, UnicodeDecodeError) as exc:
            raise PeerIdentityError(f"cannot read peer name from {path}: {exc}") from exc
        try:
            return cls(text)
        except PeerIdentityError as exc:
            # Refuse rather than silently become a different peer: the operator must decide.
            raise PeerIdentityError(f"{path}: {exc}") from exc

    @staticmethod
    def save(name: PeerName, state_dir: str | os.PathLike[str]) -> None:
        """Persist ``name`` atomically (write a temp file, then rename over the old one)."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / PEER_NAME_FILE, f"{name}\n")


def default_nickname() -> str:
    """The host name, which is what users recognise in ``weave status``."""
    return socket.gethostname()[:MAX_NICKNAME_LEN] or "weave"


def new_uid(rng: random.Random | None = None) -> int:
    """A random non-zero 64-bit incarnation UID (zero is kept free to mean 'unknown')."""
    while True:
        uid = rng.getrandbits(UID_BITS) if rng is not None else _SYSTEM_RANDOM.getrandbits(UID_BITS)
        if uid:
            return uid


@dataclass(frozen=True, order=True)
class Peer:
    """One incarnation of a peer: who it is (name), what humans call it, and which start it is."""

    name: PeerName
    nickname: str
    uid: int

    @classmethod
    def create(
        cls,
        state_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        nickname: str | None = None,
        rng: random.Random | None = None,
    ) -> Peer:
        """This router's identity for this start.

        An explicit ``name`` (``weave launch --name``) overrides and replaces the persisted one.
        """
        if name is not None:
            peer_name = PeerName(name)
            PeerName.save(peer_name, state_dir)
        else:
            peer_name = PeerName.load_or_create(state_dir, rng)
        nick = nickname if nickname is not None else default_nickname()
        return cls(peer_name, nick[:MAX_NICKNAME_LEN], new_uid(rng))

    def __str__(self) -> str:
        return f"{self.name}({self.nickname})"
