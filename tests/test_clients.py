"""The end-user Python client and `streamer stream`, run as a user runs them, against a live server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import mido
import soundfile as sf

from streamer.audio.test_signals import render
from streamer.notes import Note
from tests.fakes import SPEC, OracleModel

ROOT = Path(__file__).resolve().parents[1]
TRUTH = [Note(0.25, 0.75, 60, 90), Note(1.0, 2.5, 64, 80)]


async def run(*cmd: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_live_client_streams_a_file_and_prints_the_notes(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    wav = tmp_path / "take.wav"
    sf.write(wav, render(TRUTH, 16000, 3.0), 16000, subtype="PCM_16")
    code, out, err = await run(sys.executable, "clients/live_client.py", "--file", str(wav), "--url", server.url)
    assert code == 0, err
    lines = [line for line in out.splitlines() if "note_on" in line]
    assert [line.split()[3] for line in lines] == ["C4", "E4"]
    assert '"type":"done"' in out


async def test_stream_command_prints_events_and_writes_midi(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    wav = tmp_path / "take.flac"
    sf.write(wav, render(TRUTH, 48000, 3.0), 48000)
    mid = tmp_path / "take.mid"
    code, out, err = await run(
        sys.executable, "-m", "streamer.cli", "stream", str(wav), "--url", server.url, "--speed", "0", "-o", str(mid)
    )
    assert code == 0, err
    assert "ready: session" in out and "done: 2 notes in 3.00s" in out
    notes = [(m.note, m.velocity) for m in mido.MidiFile(mid) if m.type == "note_on" and m.velocity]
    assert notes == [(60, 90), (64, 80)]


async def test_stream_command_reports_a_server_error(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    wav = tmp_path / "take.wav"
    sf.write(wav, render(TRUTH, 16000, 1.0), 16000)
    code, _, err = await run(
        sys.executable, "-m", "streamer.cli", "stream", str(wav), "--url", server.url, "--model", "nope"
    )
    assert code == 1 and "error [unknown_model]" in err
