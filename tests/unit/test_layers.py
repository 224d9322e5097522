"""The layout is the architecture: each layer of weavenet/ imports only the layers below it.

Bottom to top: what every process shares, encryption, the data plane (which seals through
it), the host's network, the mesh, the command line, the router's HTTP server, the lab. A new
import that points upwards fails here, so the README's picture of the layers cannot silently go
stale.
"""

from __future__ import annotations

import ast
from pathlib import Path

import weavenet

LAYERS = ["runtime", "crypto", "dataplane", "host", "mesh", "cli", "web", "lab"]
ROOT = Path(weavenet.__file__).parent


def imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "weavenet":  # `from weavenet import mesh`
                names = [f"weavenet.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("weavenet.")}
    return found


def test_every_module_lives_in_a_layer() -> None:
    loose = [p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()) == sorted(LAYERS)


def test_layers_import_only_downwards() -> None:
    upward = []
    for layer in LAYERS:
        allowed = set(LAYERS[: LAYERS.index(layer) + 1])
        for path in sorted((ROOT / layer).rglob("*.py")):
            for dep in imported_layers(path) - allowed:
                upward.append(f"{path.relative_to(ROOT)} imports weavenet.{dep}")
    assert upward == []


def test_the_checker_sees_upward_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from weavenet.mesh.peer import Peer\nimport weavenet.cli.main\n"
                      "from weavenet import lab\n")
    assert imported_layers(module) == {"mesh", "cli", "lab"}


def test_crypto_takes_a_whole_batch_in_one_request() -> None:
    from weavenet.crypto.protocol import MAX_ITEMS
    from weavenet.dataplane.batch import MAX_BATCH

    assert MAX_ITEMS == MAX_BATCH
