"""The top-level name `supervisor` is also supervisord's package: make sure ours is imported."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import supervisor

REPO = Path(__file__).resolve().parents[2]


def test_the_imported_supervisor_module_is_this_repositorys() -> None:
    assert Path(supervisor.__file__).resolve() == REPO / "supervisor.py"
    assert callable(supervisor.main)


def test_supervisord_is_not_installed_beside_it() -> None:
    # Both would claim the import name `supervisor`; whichever wins, one of them breaks.
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("supervisor")
