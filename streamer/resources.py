"""Where the files that ship with the package are: configuration defaults and the browser demo.

In a source checkout they are the top-level `configs/` and `clients/web/`; a built wheel carries the same files as
the packages `streamer.configs` and `streamer.web` (see setup.py), so `pip install .` works without a checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent


def _first_dir(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]


def config_dir() -> Path:
    return _first_dir(PACKAGE / "configs", CHECKOUT / "configs")


def web_dir() -> Path:
    return _first_dir(PACKAGE / "web", CHECKOUT / "clients" / "web")
