"""pyroute2 without its package ``__init__``: the few classes the router uses, each imported
from its own module when first asked for.

``import pyroute2`` runs an ``__init__`` that imports every part of the library (NDB with
sqlite3, IPDB, WireGuard, nl80211, 9P...): about 22 MB resident, where the modules behind
``IPRoute``, ``NetNS``, ``Conntrack`` and ``NetlinkError`` take about 14. :func:`install` puts
a stand-in for the package in ``sys.modules`` (same ``__path__``, so every submodule imports
as usual) whose attributes are looked up lazily: submodules are imported, the names in
``LEAN`` come from their modules, and any other name runs the real ``__init__`` once, so
code that wants the rest of the library still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "pyroute2"
LEAN = {
    "IPRoute": "pyroute2.iproute.linux",
    "NetNS": "pyroute2.iproute.linux",
    "Conntrack": "pyroute2.conntrack",
    "NetlinkError": "pyroute2.netlink.exceptions",
}


def install() -> None:
    """Put the lazy stand-in in place, unless pyroute2 is imported already (or missing)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # the real import reports what is wrong
    module = importlib.util.module_from_spec(spec)  # created, not executed
    loaded_all = False

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562's name)
        nonlocal loaded_all
        if name.startswith("__"):
            raise AttributeError(name)
        if name in LEAN:
            value = getattr(importlib.import_module(LEAN[name]), name)
        elif importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            value = importlib.import_module(f"{PACKAGE}.{name}")  # a submodule
        else:
            if not loaded_all:  # anything else: the whole library, as `import pyroute2` gives
                loaded_all = True
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            if name not in module.__dict__:
                raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
            value = module.__dict__[name]
        setattr(module, name, value)
        return value

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[PACKAGE] = module


def is_lean(module: ModuleType | None = None) -> bool:
    """Whether pyroute2 is the stand-in (for tests)."""
    module = module or sys.modules.get(PACKAGE)
    return module is not None and "__getattr__" in vars(module)
