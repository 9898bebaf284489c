"""Checkpoints a user can fetch: the catalogue, the cache folder, `streamer models list|pull`.

Downloads resume from a `.part` file with an HTTP Range request, show a progress bar and are checked against
the catalogue's sha256 before they are moved into place. Where no hash is published (MR-MT3's Lightning
files) the catalogue says "unknown" and the file's structure is checked when the model loads it instead.
A file the user already has is registered with `pull NAME --from PATH` (copied, or linked with `--link`).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from streamer.errors import CheckpointError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
USER_AGENT = "streamer-model-fetch/1"
HASH_SUFFIX = ".sha256"  # written next to an installed file: its digest, computed once
PART_SUFFIX = ".part"

_HF_MR_MT3 = "https://huggingface.co/gudgud1014/MR-MT3/resolve/main/"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str
    model: str  # the model name this checkpoint is for
    filename: str
    urls: tuple[str, ...]  # tried in order
    size: int | None  # bytes; None: not published
    sha256: str | None  # None: not published ("unknown")
    description: str
    options: dict[str, object] = field(default_factory=dict)  # model options this file implies


MEMORY_IN_NAME = re.compile(r"prev_context=(\d+)")


def memory_length_in_name(filename: str) -> int | None:
    """The memory length an MR-MT3 file name states (`exp_segmemV2_prev_context=64.ckpt` → 64), if any."""
    found = MEMORY_IN_NAME.search(filename)
    return int(found.group(1)) if found else None


def _mr_mt3(name: str, filename: str, segmem_length: int, description: str) -> CatalogueEntry:
    stated = memory_length_in_name(filename)
    if stated is not None and stated != segmem_length:
        raise ValueError(f"catalogue entry {name}: {filename} says memory {stated}, the entry says {segmem_length}")
    return CatalogueEntry(
        name=name,
        model="mr-mt3",
        filename=filename,
        urls=(_HF_MR_MT3 + filename.replace("=", "%3D"),),
        size=None,
        sha256=None,
        description=description,
        options={"segmem_length": segmem_length},
    )


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            name="mt3-pytorch",
            model="mt3-pytorch",
            filename="mt3.pth",
            urls=(
                _HF_MR_MT3 + "mt3.pth",
                "https://media.githubusercontent.com/media/kunato/mt3-pytorch/master/pretrained/mt3.pth",
            ),
            size=183_672_643,
            sha256="b8a3807ed265059abd25ad7f68142c06c35e8f6144dcaa45bd55946a3745398f",
            description="official MT3 weights converted by kunato/mt3-pytorch (193 keys)",
        ),
        _mr_mt3("mr-mt3", "exp_segmemV2_prev_context=64.ckpt", 64, "MR-MT3, memory of 64 positions"),
        _mr_mt3("mr-mt3-ctx32", "exp_segmemV2_prev_context=32.ckpt", 32, "MR-MT3, memory of 32 positions"),
        _mr_mt3("mr-mt3-ctx0", "exp_segmemV2_prev_context=0.ckpt", 0, "MR-MT3 setup without memory"),
        _mr_mt3(
            "mr-mt3-ctx64-prevaug3",
            "exp_segmemV2_prev_context=64_prevaug_frame=3.ckpt",
            64,
            "MR-MT3, memory 64, trained with previous-segment augmentation up to 3 back",
        ),
        _mr_mt3(
            "mr-mt3-ctx64-prevaug8",
            "exp_segmemV2_prev_context=64_prevaug_frame=8.ckpt",
            64,
            "MR-MT3, memory 64, trained with previous-segment augmentation up to 8 back",
        ),
    )
}


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/streamer/models, ~/.cache/streamer/models by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer" / "models"


def installed_path(entry: CatalogueEntry, root: Path | None = None) -> Path:
    return (root or cache_dir()) / entry.name / entry.filename


def entry(name: str) -> CatalogueEntry:
    if name not in CATALOGUE:
        raise CheckpointError(f"no checkpoint named {name!r}; known: {', '.join(CATALOGUE)}")
    return CATALOGUE[name]


def how_to_get(item: CatalogueEntry) -> str:
    size = f"{item.size / 1e6:.0f} MB" if item.size else "size unknown"
    return (
        f"download it with `streamer models pull {item.name}` ({size}, from {item.urls[0]}), or register a "
        f"copy you already have with `streamer models pull {item.name} --from PATH`"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def pull(item: CatalogueEntry, root: Path | None = None, progress: bool = True) -> Path:
    """Download `item` into the cache (resuming a partial download) and verify it; return its path."""
    destination = installed_path(item, root)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + PART_SUFFIX)
    failures = []
    for url in item.urls:
        try:
            _download(url, part, progress, label=item.name)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            failures.append(f"{url}: {error}")
    else:
        raise CheckpointError(
            f"could not download {item.name}: " + "; ".join(failures) + f" (partial data kept in {part})"
        )
    _install(item, part, destination)
    return destination


def register(item: CatalogueEntry, source: Path, root: Path | None = None, link: bool = False) -> Path:
    """Install a file the user already has (`--from`): verified like a download, then copied or linked."""
    source = source.expanduser().resolve()
    if not source.is_file():
        raise CheckpointError(f"--from {source}: no such file")
    digest = sha256_of(source)
    _check_digest(item, digest, source)
    destination = installed_path(item, root)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.unlink(missing_ok=True)
    if link:
        destination.symlink_to(source)
    else:
        part = destination.with_name(destination.name + PART_SUFFIX)
        shutil.copyfile(source, part)
        part.replace(destination)
    _hash_record(destination).write_text(digest + "\n")
    return destination


def _download(url: str, part: Path, progress: bool, label: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: the part is complete (the hash will tell)
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if not resumed:
            offset = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            part.open("ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=not progress,
                file=sys.stderr,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes; pull again to resume")


def _install(item: CatalogueEntry, part: Path, destination: Path) -> None:
    digest = sha256_of(part)
    try:
        _check_digest(item, digest, part)
    except CheckpointError:
        part.unlink()  # a corrupt download must not be resumed
        raise
    part.replace(destination)
    _hash_record(destination).write_text(digest + "\n")


def _check_digest(item: CatalogueEntry, digest: str, path: Path) -> None:
    if item.sha256 is not None and digest != item.sha256:
        raise CheckpointError(f"{path}: sha256 {digest} does not match {item.name}'s published {item.sha256}")


def _hash_record(path: Path) -> Path:
    return path.with_name(path.name + HASH_SUFFIX)


# --- command line --------------------------------------------------------------------------------------------


def add_models_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add `list` and `pull` to the `streamer models` sub-command parsers.

    Each sets `func`: call `args.func(args)`, which returns the process exit code (0 ok, 1 error).
    """
    listing = subparsers.add_parser("list", help="checkpoints in the catalogue and whether they are installed")
    listing.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/streamer/models")
    listing.set_defaults(func=run_list)
    fetch = subparsers.add_parser("pull", help="download a checkpoint (resumable, sha256-checked)")
    fetch.add_argument("name", choices=sorted(CATALOGUE), help="catalogue name")
    fetch.add_argument("--from", dest="source", type=Path, default=None, help="register a file you already have")
    fetch.add_argument("--link", action="store_true", help="with --from: symlink instead of copying")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/streamer/models")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(func=run_pull)


def list_rows(root: Path | None = None) -> list[dict[str, str]]:
    rows = []
    for item in CATALOGUE.values():
        path = installed_path(item, root)
        record = _hash_record(path)
        local = record.read_text().strip() if record.is_file() else ""
        sha = item.sha256 or (f"unknown (installed file: {local})" if local else "unknown")
        rows.append(
            {
                "name": item.name,
                "model": item.model,
                "size": f"{item.size:,} B" if item.size else "unknown",
                "installed": str(path) if path.is_file() else "no",
                "sha256": sha,
                "source": item.urls[0],
            }
        )
    return rows


def run_list(args: argparse.Namespace) -> int:
    rows = list_rows(args.cache_dir)
    columns = ("name", "model", "size", "installed")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns))
        print(f"    sha256 {row['sha256']}\n    source {row['source']}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    try:
        item = entry(args.name)
        if args.source is not None:
            path = register(item, args.source, args.cache_dir, link=args.link)
        else:
            path = pull(item, args.cache_dir, progress=not args.quiet)
    except CheckpointError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    unverified = " (no published sha256: its structure is checked when loaded)" if item.sha256 is None else ""
    print(f"{item.name}: {path}{unverified}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamer.models.catalogue list|pull ...`, the same commands outside the main CLI."""
    parser = argparse.ArgumentParser(prog="streamer models")
    add_models_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
