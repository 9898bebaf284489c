"""The numpy network against the shipped ONNX graph on whole 2 s windows: the three posteriors agree."""

from __future__ import annotations

import numpy as np
import pytest
from bp_signals import piano, synth

from streamer.models.basic_pitch.model import BasicPitch
from streamer.models.basic_pitch.network import WINDOW_SAMPLES, WindowNetwork
from streamer.models.basic_pitch.weights import load_weights

TOLERANCE = 1e-4
CONTOUR, NOTE, ONSET = "StatefulPartitionedCall:0", "StatefulPartitionedCall:1", "StatefulPartitionedCall:2"


@pytest.fixture(scope="module")
def network() -> WindowNetwork:
    return WindowNetwork(load_weights())


@pytest.fixture(scope="module")
def onnx() -> BasicPitch:
    return BasicPitch(threads=1)


def windows(audio: np.ndarray, starts: list[int]) -> np.ndarray:
    return np.stack([audio[s : s + WINDOW_SAMPLES] for s in starts])


def assert_same_as_onnx(network: WindowNetwork, onnx: BasicPitch, batch: np.ndarray) -> None:
    contour, note, onset = network.posteriors(batch)
    session = onnx._session
    outputs = session.run(None, {session.get_inputs()[0].name: batch[:, :, None]})
    ref = {o.name: value for o, value in zip(session.get_outputs(), outputs, strict=True)}
    for ours, name in ((contour, CONTOUR), (note, NOTE), (onset, ONSET)):
        assert ours.shape == ref[name].shape
        assert np.abs(ours - ref[name]).max() <= TOLERANCE, name


def test_synthesized_notes_with_noise(network: WindowNetwork, onnx: BasicPitch) -> None:
    audio = synth(6.0, seed=3)
    assert_same_as_onnx(network, onnx, windows(audio, [0, 12345, len(audio) - WINDOW_SAMPLES]))


def test_fluidsynth_piano(network: WindowNetwork, onnx: BasicPitch) -> None:
    audio = piano(7.0)
    assert_same_as_onnx(network, onnx, windows(audio, [0, 40000, len(audio) - WINDOW_SAMPLES]))


def test_edge_cases_silence_noise_and_a_loud_click(network: WindowNetwork, onnx: BasicPitch) -> None:
    rng = np.random.default_rng(0)
    click = np.zeros(WINDOW_SAMPLES, np.float32)
    click[20000] = 1.0
    batch = np.stack([np.zeros(WINDOW_SAMPLES, np.float32), 0.3 * rng.standard_normal(WINDOW_SAMPLES), click])
    assert_same_as_onnx(network, onnx, batch.astype(np.float32))


def test_the_posteriors_are_not_trivial(network: WindowNetwork) -> None:
    """Guards the comparisons above against both sides being, say, all zeros."""
    _, note, onset = network.posteriors(windows(synth(3.0, seed=5), [0]))
    assert note.max() > 0.5 and onset.max() > 0.5 and note.min() < 0.1
