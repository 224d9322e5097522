"""The one parser of peer addresses and IP/CIDR text (weavenet.runtime.address)."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.runtime.address import (
    AddressError,
    normalize,
    parse_cidr,
    parse_host_port,
    parse_ipv4_endpoint,
    shown,
)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("host1", "host1:6783"),
        ("Host1.example.", "host1.example:6783"),
        ("198.18.0.1:7000", "198.18.0.1:7000"),
        ("[fd00::1]:7000", "[fd00::1]:7000"),
        ("[fd00::1]", "[fd00::1]:6783"),
        ("fd00::1", "[fd00::1]:6783"),
        (" host1:06783 ", "host1:6783"),
        ("my_host-2", "my_host-2:6783"),
    ],
)
def test_addresses_get_the_default_port(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw", [
    "", ":6783", "host:0", "host:99999", "host:x", "[fd00::1", "[host]:1", "a b", "-host",
    "host..x", "foo\nbar", "x" * 254, "a:1:2:3", "host:１２", "\x1b[31m", "[fd00::1]x",
])
def test_bad_addresses_are_refused_with_one_printable_line(raw: str) -> None:
    with pytest.raises(AddressError) as err:
        normalize(raw)
    message = str(err.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 200


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_address_error(text: str) -> None:
    try:
        host, port = parse_host_port(text)
    except AddressError as exc:
        assert str(exc).isprintable()
        return
    assert 0 < port < 65536 and host.isprintable() and " " not in host
    assert parse_host_port(normalize(text)) == (host, port)  # canonical form is a fixed point


@pytest.mark.parametrize("raw,expected", [
    ("198.18.0.2:6783", ("198.18.0.2", 6783)),
    ("198.18.0.2", None), ("host1:6783", None), ("[fd00::1]:6783", None), (None, None),
    (b"198.18.0.2:6783", None), ("198.18.0.2:0", None),
])
def test_endpoints_from_peers_are_ipv4_with_a_port(raw: object, expected: object) -> None:
    assert parse_ipv4_endpoint(raw) == expected


def test_cidr_needs_a_prefix_and_a_valid_address() -> None:
    assert parse_cidr("10.0.1.1/24") == ipaddress.ip_interface("10.0.1.1/24")
    for bad in ("10.0.1.1", "10.0.1.300/24", "10.0.1.1/33", "x/24", 24, "1" * 100 + "/8"):
        with pytest.raises(AddressError):
            parse_cidr(bad)


def test_shown_escapes_and_cuts() -> None:
    assert shown("foo\nbar") == "'foo\\nbar'"
    assert shown("x" * 100, limit=4) == "'xxxx'..."
