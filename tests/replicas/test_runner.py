"""A replica's batch without Ray: the model's own answers, one bad window failing alone, wrong windows refused."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio.test_signals import melody, render
from streamer.audio.windows import WindowCutter
from streamer.errors import ConfigError
from streamer.models.base import Model
from streamer.replicas.memory import encode_memory
from streamer.replicas.runner import WindowRunner
from streamer.replicas.wire import decode_reply, encode_window
from tests.fakes import SPEC, OracleModel, OracleStreamer


def windows_of(model: Model, seconds: float = 8.0) -> list:  # type: ignore[type-arg]
    spec = model.spec
    audio = render(melody(), spec.sample_rate, seconds)
    cutter = WindowCutter(spec.window_samples, spec.hop_samples(spec.default_hop_s))
    return cutter.push(audio) + cutter.tail_windows(spec.hop_samples(spec.commit_margin_s))


def bodies(model: Model, windows: list, memory: bytes = b"") -> list[bytes]:  # type: ignore[type-arg]
    return [encode_window(model.spec.name, model.spec.sample_rate, w, memory) for w in windows]


def test_a_batch_answers_what_the_model_answers(basic_pitch_windowed: Model) -> None:
    windows = windows_of(basic_pitch_windowed)
    expected = basic_pitch_windowed.transcribe_windows(windows, [None] * len(windows))
    replies = [decode_reply(r) for r in WindowRunner(basic_pitch_windowed).run(bodies(basic_pitch_windowed, windows))]
    assert [r.notes for r in replies] == expected and any(expected)
    assert all(r.error == "" and r.memory == b"" and r.batch == len(windows) for r in replies)


def test_one_bad_window_fails_alone() -> None:
    model = OracleModel(melody())
    windows = windows_of(model)
    model.fail_on = {windows[1].start}
    replies = [decode_reply(r) for r in WindowRunner(model).run(bodies(model, windows))]
    assert "simulated model failure" in replies[1].error
    assert all(not r.error for i, r in enumerate(replies) if i != 1)
    assert [len(b) for b in model.batches] == [len(windows)] + [1] * len(windows)


def test_windows_the_replica_cannot_take_fail_without_running() -> None:
    model = OracleModel(melody())
    windows = windows_of(model)[:3]
    good = bodies(model, windows)[0]
    other_spec = encode_window(SPEC.name, SPEC.sample_rate + 1, windows[1], b"")
    memory_for_stateless = encode_window(SPEC.name, SPEC.sample_rate, windows[2], encode_memory(_history()))
    replies = [decode_reply(r) for r in WindowRunner(model).run([good, other_spec, b"junk", memory_for_stateless])]
    assert not replies[0].error
    assert "the same?" in replies[1].error and "cannot take" in replies[2].error
    assert "keeps no token history" in replies[3].error
    assert model.batches == [[windows[0].start]]


def test_streaming_models_are_refused(basic_pitch_model: Model) -> None:
    for model in (basic_pitch_model, OracleStreamer([])):
        with pytest.raises(ConfigError, match="streaming-native"):
            WindowRunner(model)


def _history():  # type: ignore[no-untyped-def]
    from streamer.models.mt3.model import TokenHistory

    history = TokenHistory(2)
    history.remember(100, np.array([1, 2, 3]))
    return history
