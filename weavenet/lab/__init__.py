"""The lab: simulated hosts (network namespaces, each with its own dockerd) on one machine.

    with Lab(2) as lab:
        lab.host(1).run(["ping", "-c1", lab.host(2).ip])
"""

from weavenet.lab.errors import LabError
from weavenet.lab.host import CommandFailed, Host
from weavenet.lab.image import IMAGE
from weavenet.lab.lab import Lab

__all__ = ["IMAGE", "CommandFailed", "Host", "Lab", "LabError"]
