"""The HTTP server of the router: ``/metrics``, ``/status``, ``/report`` and the topology page.

It runs on a thread of the supervisor process and gets everything through one callable that
returns the router's status (the supervisor passes one that asks its own control socket, as
`weave status` does), so it can only read: it has no other handle on the router. The socket is
bound and listening from the start (a port in use is reported at launch); the HTTP machinery
(:mod:`weavenet.web.handler`) is imported when the first connection arrives, so a router that
nobody looks at does not hold it.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from weavenet.runtime.address import parse_host_port
from weavenet.runtime.defaults import STATUS_PORT

Fetch = Callable[[], dict[str, Any]]  # the router's status
BACKLOG = 5  # socketserver's request_queue_size, what the server had when it bound itself
IDLE_POLL = 0.5  # seconds between looks at the closing flag before the first connection


class StatusServer:
    """The server bound to ``addr`` (``host:port``, as ``--status-addr`` gives it, or a
    ``(host, port)`` pair, port 0 for any), serving on a daemon thread once started."""

    def __init__(self, addr: str | tuple[str, int], fetch_status: Fetch) -> None:
        host, port = parse_host_port(addr, STATUS_PORT) if isinstance(addr, str) else addr
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(BACKLOG)
        except OSError:
            self.sock.close()
            raise
        self.fetch_status = fetch_status
        self.httpd: Any = None
        self._closing = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="status-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._closing:
            try:
                readable, _, _ = select.select([self.sock], [], [], IDLE_POLL)
            except (OSError, ValueError):  # closed under us
                return
            if readable:
                break
        from weavenet.web.handler import Server

        with self._lock:
            if self._closing:
                return
            self.httpd = Server(self.sock, self.fetch_status)
        self.httpd.serve_forever()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            httpd = self.httpd
        if httpd is not None and self.thread.is_alive():
            httpd.shutdown()
        if httpd is not None:
            httpd.server_close()
        else:
            self.thread.join(2 * IDLE_POLL)
            self.sock.close()
