"""BLAKE2b and constant-time comparison, from the interpreter's own modules, not OpenSSL's.

``hashlib`` and ``hmac`` load OpenSSL's libcrypto when imported (about 3.7 MB resident per
process) even where all that is wanted is BLAKE2b, which CPython always builds itself
(``_blake2``, what ``hashlib.blake2b`` is), or ``compare_digest``, which ``hmac`` takes from
``_operator`` when OpenSSL is missing. The forwarder needs nothing else of either.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
    from _operator import _compare_digest as compare_digest
except ImportError:  # an interpreter built otherwise: the public modules, OpenSSL and all
    from hashlib import blake2b
    from hmac import compare_digest

__all__ = ["blake2b", "compare_digest"]
