"""The HTTP handler behind :class:`weavenet.web.server.StatusServer`: ``/metrics``,
``/status``, ``/report`` and the topology page at ``/``.

Everything comes through one callable that returns the router's status, so it can only read.
Only GET and HEAD are served; POST, PUT, DELETE, PATCH and OPTIONS get 405, any other method
501. Imported at the first connection (http.server, with the http.client, email and ssl
modules it imports, costs the supervisor ~7 MB).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from weavenet.cli.report import build_report
from weavenet.runtime.bus import BusError
from weavenet.web.page import PAGE

Fetch = Callable[[], dict[str, Any]]
ALLOW = "GET, HEAD"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sock: socket.socket, fetch_status: Fetch) -> None:
        """Serve on ``sock``, bound and listening already."""
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.fetch_status = fetch_status
        self._registry: Any = None
        self._registry_lock = threading.Lock()

    def metrics(self) -> tuple[str, bytes]:
        """The content type and text of one scrape. prometheus_client (about 12 MB resident
        with what it imports) is imported at the first scrape: a router nobody scrapes never
        holds it."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from weavenet.web.metrics import ReportCollector

        with self._registry_lock:  # handlers run on threads of their own
            if self._registry is None:
                self._registry = CollectorRegistry(auto_describe=False)
                self._registry.register(
                    ReportCollector(lambda: build_report(self.fetch_status())))
        return CONTENT_TYPE_LATEST, generate_latest(self._registry)


class _Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "weave"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/":
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/metrics":
                self._send(HTTPStatus.OK, *self.server.metrics())
            elif path == "/status":
                self._json(self.server.fetch_status())
            elif path == "/report":
                self._json(build_report(self.server.fetch_status()))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        except BusError as exc:  # the router is stopping, or too busy to answer in time
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, exc.reason)

    def do_HEAD(self) -> None:  # noqa: N802
        self._head_only = True
        self.do_GET()

    def _refuse(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: only GET and HEAD",
                    {"Allow": ALLOW})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def _json(self, body: dict[str, Any]) -> None:
        self._send(HTTPStatus.OK, "application/json",
                   json.dumps(body, indent=2, sort_keys=True).encode())

    def _error(self, status: HTTPStatus, reason: str,
               headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json", json.dumps({"error": reason}).encode(), headers)

    def _send(self, status: HTTPStatus, ctype: str, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a scrape every few seconds is not worth a log line


