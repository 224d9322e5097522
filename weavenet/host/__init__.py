"""The host's network: the weave bridge, veths, namespaces, the TAP, ARP, conntrack (pyroute2 and
sockets), and netconf's record of attached containers.

pyroute2 is imported through :mod:`weavenet.host.netlink` (its classes one by one, not its
whole package): installed here, before any module of this package imports it.
"""

from weavenet.host import netlink as _netlink

_netlink.install()
