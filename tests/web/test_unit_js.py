"""The demo's pure modules (notes, latency, resume bookkeeping, the live run across sessions) under `node --test`:
tests/web/unit/*.test.mjs import clients/web/*.js as they are served, with no build step and no npm packages."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent / "unit"
NODE_TIMEOUT_S = 120


def _detects_es_modules(version: tuple[int, int]) -> bool:
    """Whether this node reads ES module syntax in a `.js` file that no package.json marks as a module (on by
    default from 20.19 in the 20 line and from 22.7)."""
    return version >= (22, 7) or (version[0] == 20 and version[1] >= 19)


def _version(node: str) -> tuple[int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    assert match, f"unexpected `node --version`: {out!r}"
    return int(match[1]), int(match[2])


def test_pure_modules_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript unit tests in tests/web/unit need Node 20.19 or later")
    version = _version(node)
    assert _detects_es_modules(version), f"node {version} cannot import the page's modules: Node 20.19+ or 22.7+"
    files = sorted(str(p) for p in UNIT.glob("*.test.mjs"))
    assert files, f"no *.test.mjs in {UNIT}"
    result = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=NODE_TIMEOUT_S, cwd=UNIT)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
    assert re.search(r"^# fail 0$", result.stdout, re.M), summary
