"""The capture actor: its loop, heartbeat and status.

Its domain work comes with the sleeve and encryption issues.
"""

from __future__ import annotations

import sys

from weavenet.actor import Actor, main


class Capture(Actor):
    NAME = "capture"


if __name__ == "__main__":
    sys.exit(main(Capture))
