"""The lab's container image: busybox from Debian's busybox-static, imported, never pulled.

No registry is reachable from the lab, so `busybox:latest` is made from a root filesystem
tarball built here: /bin/busybox with its applet symlinks, a minimal /etc/passwd and /etc/group,
/tmp, and, when available, OpenBSD netcat as /usr/bin/nc.openbsd with the shared libraries `ldd`
names (busybox's nc has no -u, which UDP tests need).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker
import docker.errors

from weavenet.lab.errors import LabError

IMAGE_REPO = "busybox"
IMAGE_TAG = "latest"
IMAGE = f"{IMAGE_REPO}:{IMAGE_TAG}"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
NC_OPENBSD = "/usr/bin/nc.openbsd"
NC_IN_IMAGE = "usr/bin/nc.openbsd"
_DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "tmp")
_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}


def _busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    raise LabError("busybox not found: install Debian's busybox-static")


def _check_static(busybox: str) -> None:
    out = subprocess.run(["ldd", busybox], capture_output=True, text=True).stdout
    if "=>" in out:
        raise LabError(f"{busybox} is dynamically linked: install busybox-static")


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    # Entries look like "usr/bin/wget"; "linuxrc" (no directory) is for initramfs, not for us.
    return [a for a in out.stdout.split() if "/" in a and not a.endswith("/")]


def _shared_libs(binary: str) -> list[str]:
    """Absolute paths of the libraries (and loader) a dynamic binary needs, per ldd."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _add_parents(tar: tarfile.TarFile, name: str, seen: set[str]) -> None:
    parts = name.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in seen:
            seen.add(d)
            _add_dir(tar, d)


def build_rootfs(dest: Path) -> Path:
    """Write the rootfs tarball to dest unless it is already there; return dest."""
    if dest.exists():
        return dest
    busybox = _busybox()
    _check_static(busybox)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    seen = set(_DIRS)
    with tarfile.open(tmp, "w") as tar:
        for d in _DIRS:
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        tar.add(busybox, "bin/busybox")
        for applet in _applets(busybox):
            if applet == "bin/busybox":
                continue
            _add_parents(tar, applet, seen)
            link = tarfile.TarInfo(applet)
            link.type = tarfile.SYMTYPE
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for name, text in _FILES.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        if shutil.which(NC_OPENBSD) and shutil.which("ldd"):
            tar.add(NC_OPENBSD, NC_IN_IMAGE)
            for lib in _shared_libs(NC_OPENBSD):
                name = lib.lstrip("/")
                _add_parents(tar, name, seen)
                # Dereference: the image needs the file under the name the loader looks for.
                tar.add(os.path.realpath(lib), name)
    tmp.rename(dest)
    return dest


def has_image(client: docker.DockerClient, tag: str = IMAGE) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def import_image(client: docker.DockerClient, rootfs: Path, tag: str = IMAGE,
                 changes: tuple[str, ...] = ('CMD ["sh"]',)) -> None:
    """`docker import` a rootfs tar as ``tag`` (default busybox:latest, running `sh`)."""
    repo, _, version = tag.rpartition(":")
    try:
        client.api.import_image(src=str(rootfs), repository=repo, tag=version,
                                changes=list(changes))
    except docker.errors.DockerException as e:
        raise LabError(f"cannot import {tag}: {e}") from e
    if not has_image(client, tag):
        raise LabError(f"import of {tag} reported success but the image is missing")
