"""The gossip actor: the router's control plane on TCP 6783.

For now it owns the listening port (so a port clash is a visible failure) and reports it; the
mesh issue gives it peers, handshakes, topology gossip and routes.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from weavenet.actor import Actor, main


class Gossip(Actor):
    NAME = "gossip"

    def setup(self) -> None:
        self.port = int(self.config.get("port", 6783))
        self.listener = socket.create_server(("0.0.0.0", self.port), reuse_port=False)
        self.listener.setblocking(False)
        self.add_reader(self.listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, addr = self.listener.accept()
        except BlockingIOError:
            return
        self.log.info("connection_refused", remote=f"{addr[0]}:{addr[1]}",
                      reason="the mesh is not implemented yet")
        conn.close()

    def status(self) -> dict[str, Any]:
        return {"port": self.port}

    def teardown(self) -> None:
        self.listener.close()


if __name__ == "__main__":
    sys.exit(main(Gossip))
