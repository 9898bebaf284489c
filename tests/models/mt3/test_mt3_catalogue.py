"""Checkpoint download and registration against a loopback HTTP server that understands Range requests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streamer.errors import CheckpointError
from streamer.models import catalogue
from streamer.models.catalogue import CatalogueEntry, installed_path, pull, register

PAYLOAD = bytes(range(256)) * 12_000  # 3 MB, a few progress-bar chunks


@dataclass
class ServerBehaviour:
    ranges: bool = True  # honour Range headers
    cut_after: int | None = None  # close the connection after this many body bytes (once)
    seen_ranges: list[str | None] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerBehaviour]]:
    behaviour = ServerBehaviour()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested = self.headers.get("Range")
            behaviour.seen_ranges.append(requested)
            start = 0
            if requested and behaviour.ranges:
                start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(PAYLOAD):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if behaviour.cut_after is not None:
                body, behaviour.cut_after = body[: behaviour.cut_after], None
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/mt3.pth", behaviour
    httpd.shutdown()
    httpd.server_close()


def make_entry(url: str, sha256: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> CatalogueEntry:
    return CatalogueEntry("test-model", "mt3-pytorch", "mt3.pth", (url,), len(PAYLOAD), sha256, "test")


def test_download_verifies_and_installs_with_a_progress_bar(
    server: tuple[str, ServerBehaviour], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = server
    path = pull(make_entry(url), tmp_path)
    assert path == tmp_path / "test-model" / "mt3.pth" and path.read_bytes() == PAYLOAD
    assert (tmp_path / "test-model" / "mt3.pth.sha256").read_text().strip() == hashlib.sha256(PAYLOAD).hexdigest()
    assert not (tmp_path / "test-model" / "mt3.pth.part").exists()
    progress = capsys.readouterr().err
    assert "test-model" in progress and "100%" in progress


def test_interrupted_download_resumes_with_a_range_request(server: tuple[str, ServerBehaviour], tmp_path: Path) -> None:
    url, behaviour = server
    behaviour.cut_after = 1_000_000
    item = make_entry(url)
    with pytest.raises(CheckpointError, match="partial data kept"):
        pull(item, tmp_path, progress=False)
    part = tmp_path / "test-model" / "mt3.pth.part"
    assert part.stat().st_size == 1_000_000
    path = pull(item, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert behaviour.seen_ranges == [None, "bytes=1000000-"]


def test_server_without_range_support_restarts_cleanly(server: tuple[str, ServerBehaviour], tmp_path: Path) -> None:
    url, behaviour = server
    behaviour.ranges = False
    part = tmp_path / "test-model" / "mt3.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from elsewhere")
    assert pull(make_entry(url), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_a_complete_part_file_is_installed_after_a_416(server: tuple[str, ServerBehaviour], tmp_path: Path) -> None:
    url, _ = server
    part = tmp_path / "test-model" / "mt3.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert pull(make_entry(url), tmp_path, progress=False).read_bytes() == PAYLOAD


def test_hash_mismatch_is_refused_and_not_kept(server: tuple[str, ServerBehaviour], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(CheckpointError, match="sha256"):
        pull(make_entry(url, sha256="0" * 64), tmp_path, progress=False)
    assert not any((tmp_path / "test-model").iterdir())


def test_register_from_an_existing_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.pth"
    source.write_bytes(PAYLOAD)
    item = make_entry("http://127.0.0.1:9/unused")
    copied = register(item, source, tmp_path / "cache")
    assert copied.read_bytes() == PAYLOAD and not copied.is_symlink()
    linked = register(item, source, tmp_path / "cache2", link=True)
    assert linked.is_symlink() and linked.read_bytes() == PAYLOAD
    with pytest.raises(CheckpointError, match="does not match"):
        register(make_entry("http://127.0.0.1:9/unused", sha256="1" * 64), source, tmp_path / "cache3")


def test_cli_list_and_pull_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "model.ckpt"
    source.write_bytes(b"not really a checkpoint")
    cache = tmp_path / "cache"
    assert catalogue.main(["pull", "mr-mt3", "--from", str(source), "--cache-dir", str(cache)]) == 0
    assert "no published sha256" in capsys.readouterr().out
    assert catalogue.main(["pull", "mt3-pytorch", "--from", str(source), "--cache-dir", str(cache)]) == 1
    assert "does not match" in capsys.readouterr().err
    assert catalogue.main(["list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "mt3-pytorch" in listing and "b8a3807ed265059abd25ad7f68142c06c35e8f6144dcaa45bd55946a3745398f" in listing
    digest = hashlib.sha256(b"not really a checkpoint").hexdigest()
    assert f"unknown (installed file: {digest})" in listing
    assert str(installed_path(catalogue.CATALOGUE["mr-mt3"], cache)) in listing


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert catalogue.cache_dir() == tmp_path / "streamer" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert catalogue.cache_dir() == Path.home() / ".cache" / "streamer" / "models"


def test_memory_lengths_agree_with_the_file_names() -> None:
    for entry in catalogue.CATALOGUE.values():
        stated = catalogue.memory_length_in_name(entry.filename)
        if stated is not None:
            assert entry.options["segmem_length"] == stated, entry.name
    assert catalogue.memory_length_in_name("exp_segmemV2_prev_context=32.ckpt") == 32
    assert catalogue.memory_length_in_name("mt3.pth") is None


def test_kunato_fallback_is_on_the_master_branch() -> None:
    urls = catalogue.CATALOGUE["mt3-pytorch"].urls
    assert any("kunato/mt3-pytorch/master/" in url for url in urls)
    assert not any("/main/pretrained" in url for url in urls)
