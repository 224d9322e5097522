"""The router's container image, weavenet/weave:<version>, built offline in a lab host's dockerd.

The repository's Dockerfile is built as it is online, with two differences that keep it off the
network: its base is a rootfs made from Debian packages (`debroot`) and `docker import`ed as
weavenet/base:<key>, and the build context carries wheels/ (the project and its dependencies,
built here on the host by pip), so the build needs no registry and no index. The build itself
runs with `--network none` in a lab host's dockerd: none runs in the machine's own namespace.

What is slow is cached under CACHE (default /var/cache/weavenet-lab, or $WEAVENET_LAB_CACHE):
the .debs and the rootfs (keyed by the package versions), the wheels (keyed by the context's
content) and the `docker save` archive itself (keyed by both), which `Lab(router_image=...)`
loads into every host's dockerd.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.utils.build

import weavenet
from weavenet.lab import debroot, dockerd, image
from weavenet.lab.errors import LabError

IMAGE_REPO = "weavenet/weave"
BASE_REPO = "weavenet/base"
CACHE = Path(os.environ.get("WEAVENET_LAB_CACHE", "/var/cache/weavenet-lab"))
WHEELS = "wheels"  # in the build context; the Dockerfile uses it when present
KEEP = 3  # wheel sets and archives kept in the cache (other sources, older mirrors)
BUILD_TIMEOUT = 900  # seconds one API call (a build, a save, a load) may take
PYTHON = (3, 11)  # the offline base's interpreter: wheels must be built for it
# Debian's (and python:3.11-slim's) default; an imported image has no environment at all.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Log = Callable[[str], None]


def image_tag(version: str = weavenet.__version__) -> str:
    return f"{IMAGE_REPO}:{version}"


@dataclass(frozen=True)
class Built:
    """A saved router image: the archive, its tag, and its size as `docker images` shows it."""

    archive: Path
    tag: str
    size: int
    seconds: float
    cached: bool

    def summary(self) -> str:
        how = "cached" if self.cached else f"built in {self.seconds:.0f}s"
        return f"{self.tag}: {self.size / 1e6:.1f} MB ({how}), saved to {self.archive}"


# --- the build context --------------------------------------------------------------------


def source_root() -> Path:
    """The checkout weavenet is imported from: the Dockerfile is built from there."""
    root = Path(weavenet.__file__).resolve().parents[1]
    if not (root / "Dockerfile").is_file() or not (root / "pyproject.toml").is_file():
        raise LabError(f"no Dockerfile and pyproject.toml in {root}: "
                       "the router image is built from a source checkout")
    return root


def context_files(root: Path) -> list[str]:
    """The files `docker build` would send from root, per .dockerignore, minus wheels/ (the
    offline build brings its own)."""
    ignore = root / ".dockerignore"
    patterns = []
    if ignore.is_file():
        lines = (line.strip() for line in ignore.read_text().splitlines())
        patterns = [line for line in lines if line and not line.startswith("#")]
    files = [
        rel for rel in docker.utils.build.exclude_paths(str(root), patterns, "Dockerfile")
        if (root / rel).is_file() and rel.split(os.sep)[0] != WHEELS
    ]
    return sorted(files)


def source_key(root: Path, files: list[str]) -> str:
    """Names the wheels (and, with the rootfs key, the image) built from these files."""
    h = hashlib.sha256(f"python{PYTHON}".encode())
    for rel in files:
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def image_key(rootfs_key: str, src_key: str) -> str:
    return hashlib.sha256(f"{rootfs_key}/{src_key}".encode()).hexdigest()[:16]


def build_wheels(root: Path, key: str, cache: Path = CACHE) -> Path:
    """A directory of wheels for the project and all it depends on, pip's own included (the
    Dockerfile runs pip from its wheel); built by this interpreter's pip unless cached."""
    dest = cache / "wheels" / key
    if dest.is_dir():
        return dest
    if sys.version_info[:2] != PYTHON:
        raise LabError(f"wheels for the image need python {'.'.join(map(str, PYTHON))}, "
                       f"not {sys.version.split()[0]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{key}."))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--wheel-dir", str(part), str(root), "pip"],
        capture_output=True, text=True, timeout=900,
    )
    if out.returncode != 0:
        shutil.rmtree(part, ignore_errors=True)
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise LabError(f"pip wheel failed: {tail}")
    try:
        part.rename(dest)
    except OSError:  # another build of the same source got there first
        shutil.rmtree(part, ignore_errors=True)
    _prune(dest.parent)
    return dest


def _prune(directory: Path, keep: int = KEEP) -> None:
    """Remove all but the newest `keep` entries (wheel sets or archives with their .json)."""
    entries = sorted((e for e in directory.iterdir() if not e.name.startswith(".")
                      and e.suffix != ".json"), key=lambda e: e.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)


def context_tar(root: Path, files: list[str], wheels: Path) -> io.BytesIO:
    """The build context as `docker build` wants it: a tar of the source and wheels/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in files:
            tar.add(root / rel, rel, recursive=False)
        for wheel in sorted(wheels.glob("*.whl")):
            tar.add(wheel, f"{WHEELS}/{wheel.name}")
    buf.seek(0)
    return buf


# --- building in a dockerd ----------------------------------------------------------------


def import_base(client: docker.DockerClient, rootfs: Path, tag: str) -> None:
    if not image.has_image(client, tag):
        image.import_image(client, rootfs, tag, changes=(f"ENV PATH={BASE_PATH}",))


def build(client: docker.DockerClient, context: io.BytesIO, base: str, tag: str,
          log: Log) -> None:
    """`docker build --network none --build-arg BASE=base -t tag` of context."""
    try:
        stream = client.api.build(
            fileobj=context, custom_context=True, tag=tag, buildargs={"BASE": base},
            network_mode="none", rm=True, forcerm=True, pull=False, decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                raise LabError(f"docker build failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text:
                log(text)
    except docker.errors.DockerException as e:
        raise LabError(f"docker build failed: {e}") from e


def save(client: docker.DockerClient, tag: str, out: Path) -> int:
    """`docker save` tag to out (atomically); return the image's size."""
    try:
        img = client.images.get(tag)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.{os.getpid()}")
        with open(part, "wb") as f:
            for chunk in img.save(named=True):
                f.write(chunk)
        part.rename(out)
    except docker.errors.DockerException as e:
        raise LabError(f"cannot save {tag}: {e}") from e
    return int(img.attrs["Size"])


def load(client: docker.DockerClient, archive: Path) -> None:
    """`docker load -i archive`."""
    try:
        with open(archive, "rb") as f:
            client.images.load(f)
    except (OSError, docker.errors.DockerException) as e:
        raise LabError(f"cannot load {archive}: {e}") from e


# --- the offline build, end to end --------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What an offline build would use, and where its archive is cached."""

    root: Path
    files: list[str]
    rootfs: Path
    rootfs_key: str
    src_key: str
    cache: Path

    @property
    def archive(self) -> Path:
        key = image_key(self.rootfs_key, self.src_key)
        return self.cache / "images" / f"weave-{weavenet.__version__}-{key}.tar"

    @property
    def meta(self) -> Path:
        return self.archive.with_suffix(".json")

    @property
    def base_tag(self) -> str:
        return f"{BASE_REPO}:{self.rootfs_key}"


def plan(cache: Path = CACHE) -> Plan:
    """Resolve (and build, if needed) the base rootfs; key the source."""
    root = source_root()
    files = context_files(root)
    rootfs, packages = debroot.build(cache)
    return Plan(root, files, rootfs, debroot.cache_key(packages), source_key(root, files), cache)


def cached(p: Plan) -> Built | None:
    """The archive built earlier from exactly this rootfs and source, if any."""
    try:
        meta = json.loads(p.meta.read_text())
    except (OSError, ValueError):
        return None
    if not p.archive.is_file():
        return None
    return Built(p.archive, meta["tag"], int(meta["size"]), float(meta["seconds"]), True)


def build_in(client: docker.DockerClient, p: Plan, log: Log = lambda _: None) -> Built:
    """Build the image in this dockerd, save it to the plan's archive and record its size."""
    start = time.monotonic()
    import_base(client, p.rootfs, p.base_tag)
    wheels = build_wheels(p.root, p.src_key, p.cache)
    tag = image_tag()
    build(client, context_tar(p.root, p.files, wheels), p.base_tag, tag, log)
    size = save(client, tag, p.archive)
    seconds = time.monotonic() - start
    p.meta.write_text(json.dumps({"tag": tag, "size": size, "seconds": seconds}) + "\n")
    _prune(p.archive.parent)
    return Built(p.archive, tag, size, seconds, False)


@contextlib.contextmanager
def _dockerd(prefix: str | None) -> Iterator[docker.DockerClient]:
    """host1's dockerd of lab `prefix` if it is up, else of a temporary one-host lab."""
    from weavenet.lab.lab import Lab, unique_prefix  # the lab loads images: import it late

    if prefix is not None:
        lab = Lab.load(prefix)
        with contextlib.closing(dockerd.connect(lab.hosts[0].docker_paths,
                                                BUILD_TIMEOUT)) as client:
            yield client
        return
    with Lab(1, prefix=unique_prefix("wi"), docker=True) as lab, \
            contextlib.closing(dockerd.connect(lab.hosts[0].docker_paths,
                                               BUILD_TIMEOUT)) as client:
        yield client


def build_offline(prefix: str | None = None, cache: Path = CACHE, rebuild: bool = False,
                  log: Log = lambda _: None) -> Built:
    """The router image's archive for the current source and mirror: the cached one, or one
    built now in lab `prefix`'s host1 (a temporary lab's when prefix is None)."""
    p = plan(cache)
    if not rebuild:
        hit = cached(p)
        if hit is not None:
            return hit
    with _dockerd(prefix) as client:
        return build_in(client, p, log)
