"""The host's network: the weave bridge, veths, namespaces, the TAP, ARP (pyroute2 and sockets)."""
