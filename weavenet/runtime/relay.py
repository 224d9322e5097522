"""Asking another actor something through the supervisor, and matching the replies.

The supervisor relays a "request" envelope ({to, type, body}) to the actor named ``to`` and its
reply back, or answers UNAVAILABLE itself when that actor is not running. The asker keeps, per
request id, what it needs to act on the answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from weavenet.runtime import bus
from weavenet.runtime.bus import Envelope
from weavenet.runtime.request import Request

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor

T = TypeVar("T")


class Relay(Generic[T]):
    """Requests from ``actor`` to the actor ``to``, each sent with a context for its reply."""

    def __init__(self, actor: Actor, to: str) -> None:
        self.actor = actor
        self.to = to
        self._pending: dict[str, T] = {}

    def send(self, req: Request, context: T) -> None:
        actor = self.actor
        env = bus.request("request", {"to": self.to, "type": req.TYPE, "body": req.to_body()},
                          src=actor.NAME, inc=actor.inc)
        self._pending[env.id] = context
        actor.send_sup(env)

    def answer(self, env: Envelope) -> tuple[T, str | None] | None:
        """The context of the request that ``env`` replies to, and why that request failed
        (None if it did not); None if ``env`` is no reply to a request of this relay. The
        reply's body, when it matters, is ``env.body``."""
        if env.in_reply_to not in self._pending:
            return None
        context = self._pending.pop(env.in_reply_to)
        if env.ok:
            return context, None
        return context, (env.error or {}).get("reason", "unknown error")
