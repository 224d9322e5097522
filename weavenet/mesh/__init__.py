"""The mesh, sans-IO: peers, topology gossip, routes, the connection maker, the peer protocol and
handshake.
"""
