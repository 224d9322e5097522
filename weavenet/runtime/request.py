"""What every request on the bus is: a frozen dataclass with a type name, a body and a decoder.

A request class names its envelope ``TYPE``, the process that answers it (``HANDLER``), turns
itself into the msgpack map that travels as the envelope's body (``to_body``) and back
(``from_body``). Decoding is where input is checked, once, for every sender: a body with a
missing field, a value of the wrong type, out of range or too long raises :class:`UsageError`,
which the actor's dispatcher turns into a "usage" error reply (exit status 2 on the CLI).
Unknown keys are ignored, so a field can be added without a new type name.

The readers below are the checks bodies share; a request's ``from_body`` is a few calls to them.
Nothing here does I/O and nothing registers itself: tables of request classes are written out
where they are used (``weavenet.runtime.control.CONTROL_REQUESTS``, an actor's ``@handles``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from weavenet.runtime.address import shown
from weavenet.runtime.bus import USAGE, BusError

SUPERVISOR = "supervisor"
"""``HANDLER`` of the requests the supervisor answers itself instead of relaying."""


class UsageError(BusError):
    """A request the sender got wrong; never retried, shown as is, exit status 2 on the CLI."""

    def __init__(self, reason: str) -> None:
        super().__init__(USAGE, reason)


class Request:
    """Base of the request dataclasses: a request without fields has an empty body."""

    TYPE: ClassVar[str]
    HANDLER: ClassVar[str]

    def to_body(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls()


# -- body readers ---------------------------------------------------------------------------------
def text(body: Mapping[str, Any], name: str, max_len: int, *, empty: bool = False,
         printable: bool = False) -> str:
    """A required string of at most ``max_len`` characters (non-empty unless ``empty``);
    ``printable``: no control characters (names that end up quoted in messages and logs)."""
    value = body.get(name)
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a string, not {shown(value)}")
    if len(value) > max_len or (not value and not empty):
        raise UsageError(f"{name} must be 1 to {max_len} characters long")
    if printable and not value.isprintable():
        raise UsageError(f"{name} {shown(value)} has control characters")
    return value


def optional_text(body: Mapping[str, Any], name: str, max_len: int,
                  *, empty: bool = False, printable: bool = False) -> str | None:
    return (None if body.get(name) is None
            else text(body, name, max_len, empty=empty, printable=printable))


def integer(body: Mapping[str, Any], name: str, low: int, high: int) -> int:
    """A required integer in ``low..high`` (a bool is not an integer here)."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, not {shown(value)}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be {low}-{high}, not {value}")
    return value


def optional_integer(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    return None if body.get(name) is None else integer(body, name, low, high)


def flag(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, not {shown(value)}")
    return value


def texts(body: Mapping[str, Any], name: str, max_items: int, max_len: int,
          *, min_items: int = 0) -> tuple[str, ...]:
    """A list of ``min_items..max_items`` non-empty strings of at most ``max_len`` characters."""
    value = body.get(name)
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
        raise UsageError(f"{name} must be a list of strings")
    if not min_items <= len(value) <= max_items:
        raise UsageError(f"{name} must hold {min_items} to {max_items} items, not {len(value)}")
    for x in value:
        if not 0 < len(x) <= max_len:
            raise UsageError(f"{name}: {shown(x)} must be 1 to {max_len} characters long")
    return tuple(value)


def mapping(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if not isinstance(value, Mapping):
        raise UsageError(f"{name} must be a map, not {shown(value)}")
    return value
