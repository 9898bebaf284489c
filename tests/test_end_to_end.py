"""End to end with the embedded default model (basic-pitch, streaming): a melody and a chord on a piano, streamed
over a real socket, come back as notes; offline transcription, the CLI and the windowed ONNX path agree."""

from __future__ import annotations

import subprocess
import sys

import pytest
import soundfile as sf

from streamer.audio.resample import resample
from streamer.audio.test_signals import melody
from streamer.client.stream import stream_audio
from streamer.models.base import Model
from streamer.offline import transcribe_array
from streamer.sinks.midi_file import read_notes
from streamer.stitch import events_to_notes
from tests.piano import PIANO_RATE, piano
from tests.windowing import assert_event_invariants, match

# basic-pitch hears a piano's harmonics as notes now and then (an octave or a twelfth below, mostly in the chord):
# every played note must come back, and at most this share of extra notes.
MAX_EXTRA_SHARE = 0.5


def check_melody(truth: list, got: list) -> None:  # type: ignore[type-arg]
    missing = [n for n, hit in match(truth, got) if hit is None]
    assert not missing, f"notes not transcribed: {missing}; got {got}"
    assert len(got) - len(truth) <= MAX_EXTRA_SHARE * len(truth), f"extra notes: {got}"
    held = [g for g in got if g.pitch == 72 and g.onset > 4.4]
    assert held and held[0].offset - held[0].onset > 1.3, "the held note must come out as one note"


@pytest.mark.parametrize("rate", [44100, 48000])
async def test_streamed_melody_and_chord_come_back(serve, basic_pitch_model: Model, rate: int) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    duration = truth[-1].offset + 1.0
    audio = resample(piano(truth, duration), PIANO_RATE, rate)
    server = await serve({"basic-pitch": basic_pitch_model})
    result = await stream_audio(server.url, audio[:, None], rate, speed=0)
    assert result.done is not None and not result.errors
    assert_event_invariants(result.events)
    check_melody(truth, events_to_notes(result.events))
    assert result.done.duration == pytest.approx(len(audio) / rate)


async def test_the_windowed_onnx_path_gives_the_melody_too(serve, basic_pitch_windowed: Model) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    audio = piano(truth, truth[-1].offset + 1.0)
    server = await serve({"basic-pitch": basic_pitch_windowed})
    result = await stream_audio(server.url, audio[:, None], PIANO_RATE, speed=0)
    assert result.done is not None and not result.errors
    assert_event_invariants(result.events)
    got = events_to_notes(result.events)
    found = sum(hit is not None for _, hit in match(truth, got))
    assert found >= len(truth) - 2, f"found {found} of {len(truth)}: {got}"  # no melodia: soft notes can be missed


async def test_transcribe_gives_the_same_notes_as_streaming(serve, basic_pitch_model: Model) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    rate = PIANO_RATE
    audio = piano(truth, truth[-1].offset + 1.0)
    offline, _ = transcribe_array(basic_pitch_model, audio, rate)
    server = await serve({"basic-pitch": basic_pitch_model})
    streamed = await stream_audio(server.url, audio[:, None], rate, speed=0, encoding="f32le", frame_seconds=0.037)
    assert events_to_notes(streamed.events) == events_to_notes(offline)


def test_cli_transcribe_writes_a_midi_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    truth = melody()
    wav = tmp_path / "melody.wav"
    sf.write(wav, piano(truth, truth[-1].offset + 1.0), PIANO_RATE, subtype="PCM_16")
    out = tmp_path / "melody.mid"
    run = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "transcribe", str(wav), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    check_melody(truth, read_notes(out))
    assert f"{len(read_notes(out))} notes" in run.stderr
