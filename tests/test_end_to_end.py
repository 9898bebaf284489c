"""End to end with the embedded default model: synthesized music streamed over a real socket."""

from __future__ import annotations

import subprocess
import sys

import mido
import pytest
import soundfile as sf

from streamer.audio.test_signals import melody, render
from streamer.client.stream import stream_audio
from streamer.models.base import Model
from streamer.offline import transcribe_array
from streamer.stitch import events_to_notes
from tests.windowing import assert_event_invariants, match


@pytest.mark.parametrize("rate", [44100, 48000])
async def test_streamed_melody_and_chord_come_back(serve, basic_pitch_model: Model, rate: int) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    duration = truth[-1].offset + 0.5
    audio = render(truth, rate, duration)
    server = await serve({"basic-pitch": basic_pitch_model})
    result = await stream_audio(server.url, audio[:, None], rate, speed=0)
    assert result.done is not None and not result.errors
    assert_event_invariants(result.events)
    got = events_to_notes(result.events)
    missing = [n for n, hit in match(truth, got) if hit is None]
    assert not missing, f"notes not transcribed: {missing}; got {got}"
    assert len(got) == len(truth), f"extra notes: {got}"
    held = next(g for g in got if g.pitch == 72)
    assert held.offset - held.onset > 1.3, "the held note spanning several windows must come out as one note"
    assert result.done.duration == pytest.approx(duration)


async def test_transcribe_gives_the_same_notes_as_streaming(serve, basic_pitch_model: Model) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    rate = 44100
    audio = render(truth, rate, truth[-1].offset + 0.5)
    offline, _ = transcribe_array(basic_pitch_model, audio, rate)
    server = await serve({"basic-pitch": basic_pitch_model})
    streamed = await stream_audio(server.url, audio[:, None], rate, speed=0, encoding="f32le", frame_seconds=0.037)
    assert events_to_notes(streamed.events) == events_to_notes(offline)


def test_cli_transcribe_writes_a_midi_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    wav = tmp_path / "melody.wav"
    sf.write(wav, render(truth, 44100, truth[-1].offset + 0.5), 44100, subtype="PCM_16")
    out = tmp_path / "melody.mid"
    run = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "transcribe", str(wav), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    pitches = [m.note for m in mido.MidiFile(out) if m.type == "note_on" and m.velocity > 0]
    assert sorted(pitches) == sorted(n.pitch for n in truth)
    assert f"{len(truth)} notes" in run.stderr
