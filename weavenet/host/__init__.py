"""The host's network: the weave bridge, veths, namespaces, the TAP, ARP, conntrack (pyroute2 and
sockets), and netconf's record of attached containers.
"""
