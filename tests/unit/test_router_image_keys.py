"""The pure parts of the offline router image build: reading `apt-cache depends`, choosing a
closure, and the cache keys that decide when the rootfs, wheels and image are rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

from weavenet.lab import debroot, router_image
from weavenet.lab.errors import LabError

DEPENDS = """\
iproute2
  Depends: libbpf1
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Depends: libc6
  Recommends: libatm1
libpython3.11-stdlib
 |Depends: media-types
  Depends: mime-support
  PreDepends: libc6
"""


def test_parse_depends_groups_alternatives_and_virtual_providers() -> None:
    deps = debroot.parse_depends(DEPENDS)
    assert deps == {
        "iproute2": [["libbpf1"], ["debconf", "debconf-2.0", "cdebconf", "debconf"], ["libc6"]],
        "libpython3.11-stdlib": [["media-types", "mime-support"], ["libc6"]],
    }


def test_choose_skips_satisfied_and_excluded_groups_and_takes_first_usable() -> None:
    deps = debroot.parse_depends(DEPENDS)
    known = {"libbpf1", "debconf", "cdebconf", "libc6", "media-types", "mime-support"}
    exclude = frozenset({"debconf", "debconf-2.0", "cdebconf", "mime-support"})
    chosen = {"iproute2", "libpython3.11-stdlib", "libc6"}
    assert debroot.choose(deps["iproute2"], chosen, exclude, known) == ["libbpf1"]
    assert debroot.choose(deps["libpython3.11-stdlib"], chosen, exclude, known) == ["media-types"]
    assert debroot.choose(deps["iproute2"], chosen, exclude, known) == []  # now all satisfied


def test_choose_takes_a_non_excluded_alternative_over_an_excluded_first_one() -> None:
    chosen: set[str] = set()
    got = debroot.choose([["mailcap", "media-types"]], chosen, frozenset({"mailcap"}),
                         {"mailcap", "media-types"})
    assert got == ["media-types"] and chosen == {"media-types"}


def test_choose_fails_on_a_dependency_nothing_provides() -> None:
    with pytest.raises(LabError, match="cannot satisfy"):
        debroot.choose([["libgone1"]], set(), frozenset(), {"libc6"})


def test_rootfs_key_follows_package_versions_not_their_order() -> None:
    a = [debroot.Package("libc6", "2.36-9"), debroot.Package("dash", "0.5.12-2")]
    assert debroot.cache_key(a) == debroot.cache_key(list(reversed(a)))
    b = [debroot.Package("libc6", "2.36-10"), debroot.Package("dash", "0.5.12-2")]
    assert debroot.cache_key(a) != debroot.cache_key(b)


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_context_leaves_out_what_dockerignore_names_and_wheels(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "Dockerfile": "FROM x\n", ".dockerignore": "# comment\n.venv\ntests\n**/__pycache__\n",
        "pyproject.toml": "", "weavenet/__init__.py": "", "weavenet/__pycache__/a.pyc": "",
        ".venv/bin/python": "", "tests/test_a.py": "", "wheels/old.whl": "",
    })
    files = router_image.context_files(tmp_path)
    assert files == [".dockerignore", "Dockerfile", "pyproject.toml", "weavenet/__init__.py"]


def test_source_key_changes_with_content_only(tmp_path: Path) -> None:
    _tree(tmp_path, {"Dockerfile": "FROM x\n", "pyproject.toml": "", "a.py": "x = 1\n"})
    files = router_image.context_files(tmp_path)
    key = router_image.source_key(tmp_path, files)
    assert router_image.source_key(tmp_path, files) == key
    (tmp_path / "a.py").write_text("x = 2\n")
    changed = router_image.source_key(tmp_path, files)
    assert changed != key
    assert router_image.image_key("r1", changed) != router_image.image_key("r2", changed)


def test_the_image_is_tagged_with_the_version() -> None:
    import weavenet

    assert router_image.image_tag() == f"weavenet/weave:{weavenet.__version__}"
