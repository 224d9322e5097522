"""pyroute2 through the lean stand-in: the router's classes without the package's __init__, and
the whole library still there for anything else. In a fresh interpreter (sys.modules)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import weavenet.host
from weavenet.host import netlink
import pyroute2
assert netlink.is_lean(pyroute2)
from pyroute2 import IPRoute, NetNS, Conntrack, NetlinkError, netns
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF
assert issubclass(NetNS, IPRoute) and issubclass(NetlinkError, Exception)
assert "pyroute2.ndb.main" not in sys.modules and "sqlite3" not in sys.modules
lean = len(sys.modules)
from pyroute2 import NDB  # not in the lean set: the real __init__ runs, once
assert "pyroute2.ndb.main" in sys.modules and pyroute2.IPRoute is IPRoute
try:
    pyroute2.NoSuchThing
except AttributeError:
    print("ok", lean, len(sys.modules))
"""


def test_the_router_s_classes_come_without_the_rest_and_the_rest_on_demand():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    _, lean, full = r.stdout.split()
    assert int(lean) < int(full)
