"""A headless Chromium driven by Selenium, answering one JSON line per command on stdin.

Run inside a lab host's network namespace (``host.popen``), so the browser, its chromedriver
(a child of this process) and the page's fetches all use that host's loopback, where the
router's HTTP server is. The test process stays in its own namespace and asks:

- ``{"cmd": "state"}``: what the page shows, ``{"nodes": [{name, nickname, us}], "edges":
  [{a, b, state, path}], "refreshes": n, "same_page": bool}``; ``same_page`` stays true until
  the page is reloaded (a mark set on ``window`` at load would be gone);
- ``{"cmd": "overlaps"}``: ``{"labels": n, "overlapping": [[text, text], ...], "min_height":
  px}``: the labels (of peers and edges) whose boxes on the screen overlap, and the smallest
  label's height;
- ``{"cmd": "screenshot", "path": P}``: a PNG of the window;
- ``{"cmd": "quit"}``.

Usage: ``python -m tests.e2e.browser URL PROFILE_DIR``. Prints ``{"ready": true}`` once the
page is open, or ``{"error": ...}`` and exits 1.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900")

STATE_JS = """
const nodes = [...document.querySelectorAll("g.node")].map(n => ({
  name: n.dataset.name, nickname: n.dataset.nickname, us: n.dataset.us === "1"}));
const edges = [...document.querySelectorAll("line.edge")].map(e => ({
  a: e.dataset.a, b: e.dataset.b, state: e.dataset.state, path: e.dataset.path}));
return {nodes, edges, refreshes: Number(document.body.dataset.refreshes || 0),
        same_page: window.__weaveTestMark === 1};
"""

OVERLAPS_JS = """
// each label's box as drawn (rotated ones too): its corners through the screen transform
const quads = [...document.querySelectorAll("g.node text, text.elabel")].map(t => {
  const b = t.getBBox(), m = t.getScreenCTM();
  const pt = (x, y) => ({x: m.a * x + m.c * y + m.e, y: m.b * x + m.d * y + m.f});
  return [t.textContent, [pt(b.x, b.y), pt(b.x + b.width, b.y),
                          pt(b.x + b.width, b.y + b.height), pt(b.x, b.y + b.height)],
          b.height * Math.hypot(m.c, m.d)];
});
// separating axis test of two convex quadrilaterals
function apart(p, q) {
  for (const poly of [p, q]) for (let i = 0; i < 4; i++) {
    const a = poly[i], b = poly[(i + 1) % 4], nx = b.y - a.y, ny = a.x - b.x;
    const proj = s => s.map(v => v.x * nx + v.y * ny);
    const pp = proj(p), qq = proj(q);
    if (Math.max(...pp) <= Math.min(...qq) || Math.max(...qq) <= Math.min(...pp)) return true;
  }
  return false;
}
const out = [];
for (let i = 0; i < quads.length; i++)
  for (let j = i + 1; j < quads.length; j++)
    if (!apart(quads[i][1], quads[j][1])) out.push([quads[i][0], quads[j][0]]);
return {labels: quads.length, overlapping: out,
        min_height: Math.min(...quads.map(q => q[2]))};
"""


def start(url: str, profile: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.get(url)
    driver.execute_script("window.__weaveTestMark = 1;")
    return driver


def answer(driver: webdriver.Chrome, line: str) -> dict[str, Any] | None:
    req = json.loads(line)
    if req["cmd"] == "state":
        return driver.execute_script(STATE_JS)
    if req["cmd"] == "overlaps":
        return driver.execute_script(OVERLAPS_JS)
    if req["cmd"] == "screenshot":
        return {"saved": driver.save_screenshot(req["path"])}
    return None


def main() -> int:
    url, profile = sys.argv[1], sys.argv[2]
    try:
        driver = start(url, profile)
    except Exception as exc:  # noqa: BLE001 - reported to the test as one line
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    try:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            reply = answer(driver, line)
            if reply is None:
                break
            print(json.dumps(reply), flush=True)
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
