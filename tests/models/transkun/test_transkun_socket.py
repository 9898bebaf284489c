"""The piano model served: a rendered piano phrase streamed over a real socket comes back as its notes, with the
model's velocities, and its pedals (if it hears any) as well-formed control events.

FluidSynth holds notes for the sustain pedal but does not render a piano's damper resonance, so whether the model
hears the pedal in this audio is not a property of our code (its parity with Transkun's own code is tested on
windows in test_transkun_parity.py); the pedal's path to MIDI ports and files is tested with a model that reports
pedals (tests/sinks/test_server_midi.py)."""

from __future__ import annotations

import numpy as np
import pytest
from tk_audio import NOTES

from streamer import protocol as p
from streamer.client.stream import stream_audio
from streamer.models.transkun import TranskunModel
from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import SAMPLE_RATE
from streamer.stitch import events_to_notes
from tests.windowing import assert_event_invariants, match

# A CPU runs a 16 s window in about 3.4 s: a hop of 4 s keeps the test to a few windows (live use needs a GPU).
HOP_S = 4.0


async def test_a_piano_phrase_streamed_over_a_socket(serve, network: TranskunNetwork, phrase: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    server = await serve({"transkun": TranskunModel(network)})
    result = await stream_audio(server.url, phrase[:, None], SAMPLE_RATE, speed=0, hop=HOP_S, encoding="f32le")
    assert result.done is not None and not result.errors, result.errors
    assert result.ready is not None and result.ready.model == "transkun"
    assert_event_invariants(result.events)
    got = events_to_notes(result.events)
    pairs = match(NOTES, got)
    missing = [n for n, hit in pairs if hit is None]
    assert not missing, f"notes not transcribed: {missing}; got {got}"
    # The velocities are the model's own (the rendering is normalised, so not the score's): the falling phrase was
    # played louder and louder (40, 60, 80, 100), and its velocities rise with it.
    rising = [hit.velocity for truth, hit in pairs if 3.3 < truth.onset < 5.0 and hit is not None]
    assert len(rising) == 4 and rising == sorted(rising) and rising[-1] - rising[0] >= 10, rising
    assert len({hit.velocity for _, hit in pairs if hit is not None}) > 3, "velocities vary with the playing"
    for control in [e for e in result.events if isinstance(e, p.Control)]:
        assert control.control in (64, 67) and control.value in (0, 127)


@pytest.mark.parametrize("hop", [0.1])
async def test_a_hop_below_the_models_minimum_is_refused(serve, network: TranskunNetwork, hop: float) -> None:  # type: ignore[no-untyped-def]
    server = await serve({"transkun": TranskunModel(network)})
    result = await stream_audio(server.url, np.zeros((4410, 1), np.float32), SAMPLE_RATE, speed=0, hop=hop)
    assert [e.code for e in result.errors] == ["invalid_option"]
