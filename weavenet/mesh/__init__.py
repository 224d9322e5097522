"""The mesh, sans-IO: what the gossip actor (actors/gossip.py) runs on.

``peer`` (identity), ``wire`` (the peer protocol's codecs), ``handshake``, ``connection`` (one
connection's protocol state), ``refusals``, ``topology`` (gossiped records and their merge),
``routes``, ``connmaker`` (what to dial, when), ``router`` (all of it for one router, with the
gossip rules), and ``simulation`` (an in-memory mesh for tests and the convergence bench).
"""
