"""A built wheel, installed without the checkout, serves the demo page and reads its defaults.

The wheel is built from this checkout and installed (without its dependencies) into a fresh virtual environment;
the dependencies are borrowed from the test environment through a path entry, which keeps the test offline and
fast. What is under test is the package itself: code, configuration defaults and the browser demo, found inside the
installed package rather than next to a checkout. The server runs from a directory outside the checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from pathlib import Path

from streamer.server.process import start_server

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installed_elsewhere_serves_the_demo_and_reads_its_defaults(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("streamer-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The test environment's packages (aiohttp, numpy, ...) after the fresh environment's own: the wheel's
    # `streamer` comes first, and the checkout's editable install is not activated (its .pth is not read from here).
    (Path(site) / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    probe = "import streamer, streamer.resources as r; print(streamer.__file__); print(r.config_dir(), r.web_dir())"
    where = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    assert all(path.startswith(str(env_dir)) for path in where), where

    log = tmp_path / "server.log"
    with start_server([str(python), "-m", "streamer.cli"], cwd=tmp_path, log=log) as server:
        with urllib.request.urlopen(server.url, timeout=10) as page:
            assert b"<title>" in page.read()
        with urllib.request.urlopen(f"{server.url}static/app.js", timeout=10) as script:
            assert script.status == 200
        with urllib.request.urlopen(f"{server.url}v1/models", timeout=10) as models:
            assert json.loads(models.read())["default"] == "basic-pitch"
