"""The JSON log lines (structlog) and the deferred asyncio import behind them."""

from __future__ import annotations

import json
import subprocess
import sys

from weavenet.runtime.log import configure


def test_a_line_is_json_with_the_bound_context_event_level_and_utc_time(tmp_path) -> None:
    log = configure(actor="gossip", inc=7, state_dir=tmp_path, peer="p1")
    log.info("connection_added", remote="p2")
    log.debug("not_shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(x) for x in (tmp_path / "weave.log").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["connection_added", "failed"]
    first = lines[0]
    assert first["actor"] == "gossip" and first["inc"] == 7 and first["peer"] == "p1"
    assert first["remote"] == "p2" and first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert "ValueError: boom" in lines[1]["exception"]


def test_structlog_is_imported_without_asyncio_until_something_uses_it() -> None:
    code = (
        "import sys, weavenet.runtime.log, structlog\n"
        "assert 'asyncio.events' not in sys.modules, 'asyncio loaded with the logger'\n"
        "import asyncio\n"
        "assert asyncio.run(asyncio.sleep(0, 'ok')) == 'ok'\n"  # the real one, on first use
        "assert 'asyncio.events' in sys.modules\n"
        "import asyncio.subprocess\n"
        "print('fine')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "fine", r.stderr
