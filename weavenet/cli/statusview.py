"""Human-readable renderings: the `weave status` summary of the router's status, the focused views
of its report (`weave status peers | connections | routes`), and `weave ps`."""

from __future__ import annotations

from typing import Any

ROUTER_MODES = {"container": "container (docker logs weave)", "process": "process (on the host)"}


def _actor(st: dict[str, Any], name: str) -> dict[str, Any]:
    for a in st.get("actors", []):
        if a["name"] == name:
            return a.get("status") or {}
    return {}


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def format_status(st: dict[str, Any]) -> str:
    gossip = _actor(st, "gossip")
    netconf = _actor(st, "netconf")
    forwarder = _actor(st, "forwarder")
    peer = gossip.get("peer") or st.get("peer") or {}
    lines = [f"weave router {st.get('version')}"]
    if peer:
        lines.append(f"        Peer: {peer.get('name')} ({peer.get('nickname')})")
    rng = st.get("range")
    lines.append(f"       Range: {rng or 'not set'}" + (f" (router {st['ip']})" if rng else ""))
    lines.append(f"  Encryption: {'on' if st.get('encryption') else 'off'}")
    lines.append(f"        Port: {st.get('port')} (TCP and UDP)")
    lines.append(f"  Supervisor: pid {st.get('pid')}, up {st.get('uptime')}s")
    lines.append(f"      Router: {ROUTER_MODES.get(st.get('router'), 'process')}")
    lines += ["", "Actors:"]
    rows = [["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"]]
    for a in st.get("actors", []):
        rows.append([a["name"], a["state"], str(a["pid"] or "-"), f"{a['uptime']}s",
                     str(a["restarts"]), a.get("last_exit") or "-"])
    lines += _table(rows)
    peers = gossip.get("peers")
    if peers is not None:
        lines += ["", f"Peers: {len(peers)}"]
        lines += _table([["NAME", "NICKNAME", "CONNECTIONS"]] + [
            [p["name"], p.get("nickname", ""), str(p.get("connections", 0))] for p in peers])
    conns = gossip.get("connections")
    if conns is not None:
        lines += ["", f"Connections: {len(conns)}"]
        lines += _table([["ADDRESS", "PEER", "STATE", "INFO"]] + [
            [c.get("address", ""), c.get("peer") or "-", c.get("state", ""),
             ", ".join(x for x in (c.get("info"), "encrypted" if c.get("encrypted") else None,
                                   overlay_text(c))
                       if x)] for c in conns])
    routes = gossip.get("routes")
    if routes:
        lines += ["", "Routes (destination via next hop):"]
        lines += _table([[dst, "via", hop] for dst, hop in sorted(routes.items())])
    paths = forwarder.get("paths")
    if paths:
        lines += ["", "Sleeve paths (UDP):"]
        lines += _table([["PEER", "STATE", "PMTU", "FRAG TEST", "ADDRESS"]] + [
            [peer, p.get("state", ""), str(p.get("pmtu", "-")),
             "passed" if p.get("frag_ok") else "no", str(p.get("addr") or "-")]
            for peer, p in sorted(paths.items())])
    if forwarder:
        lines += ["", f"Forwarder: {forwarder.get('macs', 0)} MACs learned; "
                  + (_counters(forwarder.get("counters", {})) or "no traffic yet")]
    crypto = _actor(st, "crypto").get("counters")
    if st.get("encryption") and crypto:  # it sends the sealed datagrams: its drops are here
        lines += ["", "Crypto: " + _counters(crypto)]
    atts = netconf.get("attachments")
    if atts is not None:
        lines += ["", f"Containers: {len(atts)}"]
        lines += _table([["CONTAINER", "MAC", "ADDRESSES"]] + [
            [short(x), x.get("mac") or "-", " ".join(x.get("cidrs", []))] for x in atts])
    if netconf.get("exposed"):
        lines += ["", "Exposed: " + " ".join(netconf["exposed"])]
    return "\n".join(lines)


def _counters(c: dict[str, Any]) -> str:
    """`rx 5, tx 7, dropped 2 (no_peers 2)`: nested counters (drop reasons) in parentheses."""
    parts = []
    for k, v in sorted(c.items()):
        if isinstance(v, dict):
            if v:
                parts.append(f"{k}: " + ", ".join(f"{r} {n}" for r, n in sorted(v.items())))
        else:
            parts.append(f"{k} {v}")
    return ", ".join(parts)


def short(att: dict[str, Any]) -> str:
    cid = att.get("container_id")
    return cid[:12] if cid else str(att.get("label") or att.get("key"))


def format_ps(ps: dict[str, Any]) -> str:
    lines = []
    if ps.get("exposed"):
        lines.append(f"weave:expose {ps.get('bridge_mac') or '-'} " + " ".join(ps["exposed"]))
    for x in ps.get("attachments", []):
        lines.append(f"{short(x)} {x.get('mac') or '-'} " + " ".join(x.get("cidrs", [])))
    return "".join(line + "\n" for line in lines)


def overlay_text(conn: dict[str, Any]) -> str | None:
    """ "fastdp", or "sleeve (why)", for an established connection (weavenet.mesh.overlay)."""
    path = conn.get("overlay")
    if path is None:
        return None
    if path == "fastdp":
        return "fastdp"
    return f"sleeve ({conn.get('overlay_reason') or 'unknown'})"


# -- the focused views of `weave status peers | connections | routes`, made from the report ------
def format_peers(report: dict[str, Any]) -> str:
    rows = [["NAME", "NICKNAME", "CONNECTIONS", ""]]
    rows += [[p["name"], p.get("nickname") or "", str(len(p.get("links", []))),
              "(us)" if p.get("us") else ""] for p in report.get("peers", [])]
    return "\n".join(_table(rows, indent=""))


def format_connections(report: dict[str, Any]) -> str:
    rows = [["DIRECTION", "ADDRESS", "PEER", "STATE", "PATH", "ENCRYPTED", "MTU", "REASON"]]
    for c in report.get("connections", []):
        peer = c.get("peer") or "-"
        if c.get("nickname"):
            peer += f"({c['nickname']})"
        rows.append([c.get("direction") or "-", c.get("address", ""), peer, c.get("state", ""),
                     c.get("path") or "-", "yes" if c.get("encrypted") else "no",
                     str(c.get("mtu") or "-"), c.get("reason") or ""])
    return "\n".join(_table(rows, indent=""))


def format_routes(report: dict[str, Any]) -> str:
    nick = {p["name"]: p.get("nickname") or "" for p in report.get("peers", [])}
    rows = [["DESTINATION", "NICKNAME", "VIA", "VIA NICKNAME"]]
    rows += [[dst, nick.get(dst, ""), hop, "direct" if hop == dst else nick.get(hop, "")]
             for dst, hop in sorted(report.get("routes", {}).items())]
    return "\n".join(_table(rows, indent=""))


VIEWS = {"peers": format_peers, "connections": format_connections, "routes": format_routes}
"""`weave status VIEW`: one table each."""
