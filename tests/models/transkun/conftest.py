"""Fixtures for the Transkun tests: the network with the wheel's weights, the wheel's own model, the test phrase."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from tk_audio import phrase_audio, placed

from streamer.models.base import WindowRequest
from streamer.models.transkun import TranskunModel
from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import SAMPLE_RATE, WINDOW_SAMPLES
from streamer.notes import WindowNote


def _require(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs the {module} package ({why})")


@pytest.fixture(scope="session")
def network() -> TranskunNetwork:
    _require("transkun", "Transkun's weights: pip install --no-deps transkun==2.0.1")
    from streamer.models.transkun import load_network

    return load_network()


@pytest.fixture(scope="session")
def reference() -> Any:
    """The transkun wheel's own model (tools/transkun_reference.py), for parity."""
    _require("transkun", "Transkun's own code: pip install --no-deps transkun==2.0.1")
    _require("pretty_midi", "imported by Transkun's own modules: pip install pretty_midi")
    from tools.transkun_reference import reference_model

    return reference_model()


@pytest.fixture(scope="session")
def phrase() -> np.ndarray:
    return phrase_audio()


@pytest.fixture(scope="session")
def phrase_window(phrase: np.ndarray) -> np.ndarray:
    """A 16 s window entering the phrase 1.1 s in: notes and the sustain pedal already sounding at its start."""
    return placed(phrase[round(1.1 * SAMPLE_RATE) :], WINDOW_SAMPLES, 0)


@pytest.fixture(scope="session")
def phrase_window_notes(network: TranskunNetwork, phrase_window: np.ndarray) -> list[WindowNote]:
    """Our float32 notes for `phrase_window`."""
    return TranskunModel(network).transcribe_windows([WindowRequest(phrase_window, 0, WINDOW_SAMPLES)], [None])[0]
