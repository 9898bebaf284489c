"""Transkun behind the Model interface: options, spec, batching, padding, and the optional dtype and int8 paths."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.errors import ConfigError
from streamer.models.base import WindowRequest
from streamer.models.transkun import TranskunModel, TranskunOptions
from streamer.models.transkun.frontend import frame_count
from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import FRAME_HOP, SAMPLE_RATE, WINDOW_SAMPLES, transkun_spec
from streamer.notes import WindowNote

SHORT = 4.0  # seconds: a cheap window for tests that do not depend on accuracy


def test_spec_is_the_training_segment_on_the_frame_grid() -> None:
    spec = transkun_spec()
    assert spec.window_samples == WINDOW_SAMPLES == 705_600 and frame_count(WINDOW_SAMPLES) == 691
    assert spec.hop_quantum == FRAME_HOP and spec.sample_rate == SAMPLE_RATE
    assert spec.min_hop_s <= spec.default_hop_s <= spec.max_hop_s
    assert spec.hop_samples(spec.default_hop_s) % FRAME_HOP == 0
    assert 0 < spec.continuation_tolerance_s < spec.commit_margin_s


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "unknown"),
        ({"dtype": "float64"}, "dtype"),
        ({"threads": -1}, "negative"),
        ({"device": "cuda:7"}, "CUDA"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    if "device" in options:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is present here")
    with pytest.raises(ConfigError, match=message):
        TranskunModel(None, TranskunOptions.parse(options))  # type: ignore[arg-type]


def test_a_window_too_short_for_a_commit_region_is_refused(network: TranskunNetwork) -> None:
    with pytest.raises(ConfigError, match="no room"):
        TranskunModel(network, TranskunOptions(window=0.3))  # < margin + minimum hop


def assert_same_notes(a: list[WindowNote], b: list[WindowNote]) -> None:
    """Equal but for float rounding of the times (batched matrix products round differently)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.pitch, x.control, x.velocity, x.onset is None, x.offset is None) == (
            y.pitch,
            y.control,
            y.velocity,
            y.onset is None,
            y.offset is None,
        )
        for s, t in ((x.onset, y.onset), (x.offset, y.offset)):
            assert s is None or t is None or abs(s - t) < 1e-6


def test_batches_equal_single_windows_and_short_windows_are_zero_padded(
    network: TranskunNetwork, phrase: np.ndarray
) -> None:
    model = TranskunModel(network, TranskunOptions(window=SHORT, max_batch=2))
    size = model.spec.window_samples
    first = phrase[:size]
    tail = phrase[size // 2 : size // 2 + size // 3]  # a last window: fewer samples than a window
    requests = [WindowRequest(first, 0, size), WindowRequest(tail, size // 2, len(tail))]
    together = model.transcribe_windows(requests, [None, None])
    padded = np.pad(tail, (0, size - len(tail)))
    alone = [model.transcribe_windows([WindowRequest(w, 0, size)], [None])[0] for w in (first, padded)]
    assert together[0] and together[1]
    for batched, single in zip(together, alone, strict=True):
        assert_same_notes(batched, single)
    with pytest.raises(ValueError, match="samples"):
        model.transcribe_windows([WindowRequest(np.zeros(size + 1, np.float32), 0, size)], [None])


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch's int8 API is deprecated
@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")
@pytest.mark.parametrize("options", [{"dtype": "bfloat16"}, {"quantize": True}], ids=["bfloat16", "int8"])
def test_reduced_precision_options_run_and_stay_close(
    phrase_window: np.ndarray, phrase_window_notes: list[WindowNote], options: dict[str, object]
) -> None:
    """Off by default: they change some notes (docs/models.md); here they must still find nearly all of them."""
    from streamer.models.transkun import load_network

    model = TranskunModel(load_network(), TranskunOptions(**options))  # type: ignore[arg-type]
    got = model.transcribe_windows([WindowRequest(phrase_window, 0, WINDOW_SAMPLES)], [None])[0]
    exact = {(n.pitch, n.control, None if n.onset is None else round(n.onset, 1)) for n in phrase_window_notes}
    near = {(n.pitch, n.control, None if n.onset is None else round(n.onset, 1)) for n in got}
    assert len(exact & near) >= 0.8 * len(exact)
