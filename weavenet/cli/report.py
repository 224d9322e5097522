"""`weave report`: everything the router knows as one JSON document, built from its status.

The supervisor's status answer nests each actor's own view under that actor; the report
regroups it by what an operator asks about (peers, connections, routes, paths, MACs,
attachments, actors, counters), with the same keys every time so scripts can use ``jq`` on it.
Connections gain what is spread over two actors: the path a connection's traffic takes and its
MTU come from the forwarder, the rest from gossip. The status views of ``weave status peers |
connections | routes``, the HTTP server's ``/report`` and its metrics are all made from this.
Nothing secret is in the status, so nothing secret is here.
"""

from __future__ import annotations

from typing import Any

SLEEVE = "sleeve"  # the other data path is "fastdp" (weavenet.mesh.overlay)


def actor_status(st: dict[str, Any], name: str) -> dict[str, Any]:
    """What actor ``name`` said about itself in its last heartbeat ({} if nothing yet)."""
    for a in st.get("actors", []):
        if a.get("name") == name:
            return a.get("status") or {}
    return {}


def connection(row: dict[str, Any], paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One gossip status row, with its data path and MTU: frames use a connection only while
    it is ``established`` (TCP up and its UDP path answering)."""
    state = row.get("state", "")
    path = paths.get(row.get("peer") or "")
    carries = state == "established"
    return {
        "address": row.get("address", ""),
        "peer": row.get("peer"),
        "nickname": row.get("nickname"),
        "direction": row.get("direction"),
        "state": state,
        # fastdp or sleeve (weavenet.mesh.overlay); a router without it says nothing: sleeve
        "path": (row.get("overlay") or SLEEVE) if carries else None,
        "encrypted": bool(row.get("encrypted")),
        "mtu": path.get("pmtu") if carries and path else None,
        "reason": row.get("reason") or (row.get("info") if state in ("failed", "retrying")
                                        else None) or (
            row.get("overlay_reason") if carries and row.get("overlay") == SLEEVE else None),
        "info": row.get("info"),
    }


def build_report(st: dict[str, Any]) -> dict[str, Any]:
    gossip = actor_status(st, "gossip")
    forwarder = actor_status(st, "forwarder")
    netconf = actor_status(st, "netconf")
    me = gossip.get("peer") or st.get("peer") or {}
    paths = forwarder.get("paths") or {}
    return {
        "version": st.get("version"),
        "router": {
            "pid": st.get("pid"), "uptime": st.get("uptime"), "range": st.get("range"),
            "ip": st.get("ip"), "port": st.get("port"),
            "encryption": bool(st.get("encryption")),
            "peer": {"name": me.get("name"), "nickname": me.get("nickname"),
                     "uid": me.get("uid")},
        },
        "peers": [{"name": p.get("name"), "nickname": p.get("nickname"), "uid": p.get("uid"),
                   "us": p.get("name") == me.get("name"), "links": p.get("links", [])}
                  for p in gossip.get("peers", [])],
        "connections": [connection(c, paths) for c in gossip.get("connections", [])],
        "routes": dict(gossip.get("routes") or {}),
        "paths": paths,
        "macs": forwarder.get("macs", 0),
        "attachments": netconf.get("attachments", []),
        "exposed": netconf.get("exposed", []),
        "actors": [{k: a.get(k) for k in ("name", "state", "pid", "uptime", "restarts",
                                           "last_exit")} for a in st.get("actors", [])],
        "counters": {name: actor_status(st, name).get("counters", {})
                     for name in ("capture", "forwarder", "crypto")},
        "gossip": {"messages": gossip.get("messages", {"rx": {}, "tx": {}}),
                   "terminations": gossip.get("terminations", {}),
                   "refused_records": gossip.get("refused_records", 0),
                   "suppressed_refusals": gossip.get("suppressed_refusals", 0)},
    }
