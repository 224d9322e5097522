"""What a restarted actor asks for at once, instead of waiting for the next periodic push.

Events reach a new subscriber only once its subscription has reached the publisher (ZeroMQ's
"slow joiner"), so the first routes or paths published after a restart may be lost to the actor
that needed them. A request through the supervisor (``weavenet.runtime.relay``) is never lost
that way: a restarted forwarder asks gossip for the routes, a restarted gossip asks the
forwarder for its paths. No CLI command sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.runtime.request import Request


@dataclass(frozen=True)
class RoutesQuery(Request):
    """The current routes.

    Body ``{}``; reply the data of the "routes" event (``weavenet.mesh.router.Router
    .routes_event``), or ``{}`` while gossip holds its routes back after its own restart (the
    forwarder keeps what it has). Handled by gossip; sent by the forwarder at start.
    """

    TYPE = "routes.get"
    HANDLER = "gossip"


@dataclass(frozen=True)
class PathsQuery(Request):
    """Each neighbour's UDP path as the forwarder sees it.

    Body ``{}``; reply ``{"paths": {name: {"state", "pmtu", "frag_ok", "addr"}}}``
    (``weavenet.dataplane.path.describe_paths`` with addresses). Handled by the forwarder; sent
    by gossip at start: the neighbours whose path works are the ones it reconnects to before it
    publishes routes.
    """

    TYPE = "paths.get"
    HANDLER = "forwarder"
