"""The supervisor stretches the password in a child process: the same secret as
``Password.derived_secret``, and libsodium never loaded in the long-lived supervisor."""

from __future__ import annotations

import subprocess
import sys


def test_the_password_is_derived_apart_to_the_same_secret_without_nacl_here() -> None:
    code = (
        "import sys, supervisor\n"
        "secret = supervisor.derive_apart(b'correct horse')\n"
        "assert not any(m == 'nacl' or m.startswith('nacl.') for m in sys.modules), 'nacl here'\n"
        "from weavenet.crypto.keys import Password\n"
        "assert secret == Password(b'correct horse').derived_secret()\n"
        "assert secret != supervisor.derive_apart(b'correct horse!')\n"
        "print('fine')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "fine", r.stderr
