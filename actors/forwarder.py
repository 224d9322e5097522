"""The forwarder actor: its loop, heartbeat and status.

Its domain work comes with the sleeve and encryption issues.
"""

from __future__ import annotations

import sys

from weavenet.actor import Actor, main


class Forwarder(Actor):
    NAME = "forwarder"


if __name__ == "__main__":
    sys.exit(main(Forwarder))
