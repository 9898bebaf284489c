"""The MT3 models behind `Model`: building, checkpoint errors, windows → notes, MR-MT3 memory selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.errors import CheckpointError, ConfigError
from streamer.models.base import WindowRequest
from streamer.models.mt3 import build_model, build_model_from_state_dict
from streamer.models.mt3 import model as model_module
from streamer.models.mt3.checkpoints import random_state_dict, to_port_layout
from streamer.models.mt3.codec import StepNote, encode_segment, segment_start_step, window_end_step
from streamer.models.mt3.model import MEMORY_TOKENS, MT3Model, TokenHistory, memory_row
from streamer.models.mt3.spec import SAMPLE_RATE, WINDOW_SAMPLES
from streamer.models.mt3.t5 import T5Config
from streamer.models.mt3.vocab import EOS_ID, MT3, PAD_ID
from streamer.notes import WindowNote

HOP = 8192  # 0.512 s


@pytest.fixture(scope="module")
def mt3_weights() -> dict[str, torch.Tensor]:
    return random_state_dict(T5Config(), seed=0)


@pytest.fixture(scope="module")
def mt3_model(mt3_weights: dict[str, torch.Tensor]) -> MT3Model:
    return build_model_from_state_dict("mt3-pytorch", mt3_weights, {"max_new_tokens": 6})


@pytest.fixture(scope="module")
def mr_mt3_model() -> MT3Model:
    weights = random_state_dict(T5Config(positional="ports", segmem_length=8), seed=1)
    return build_model_from_state_dict("mr-mt3", weights, {"segmem_length": 8, "max_new_tokens": 4})


def window(start: int, valid: int = WINDOW_SAMPLES, seed: int = 0) -> WindowRequest:
    audio = np.random.default_rng(seed).standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.1
    audio[valid:] = 0.0
    return WindowRequest(audio=audio, start=start, valid=valid)


def run(model: MT3Model, windows: list[WindowRequest], state: object = None) -> list[list[WindowNote]]:
    """The model's windows as the engine gives them: each beside its stream's state."""
    return model.transcribe_windows(windows, [state] * len(windows))


def test_missing_checkpoint_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as caught:
        build_model("mt3-pytorch", {})
    message = str(caught.value)
    assert "streamer models pull mt3-pytorch" in message and "--from PATH" in message
    with pytest.raises(CheckpointError, match="streamer models pull"):
        build_model("mr-mt3", {"checkpoint": str(tmp_path / "nope.ckpt")})


def test_unknown_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        build_model("mt3-pytorch", {"bogus": 1})
    with pytest.raises(ConfigError, match="frontend"):
        build_model("mt3-pytorch", {"frontend": "librosa"})
    with pytest.raises(ConfigError):
        build_model("basic-pitch", {})


def test_build_from_a_ports_file_and_from_a_lightning_file(
    tmp_path: Path, mt3_weights: dict[str, torch.Tensor], mt3_model: MT3Model
) -> None:
    config = T5Config()
    port_file = tmp_path / "mt3.pth"
    torch.save(to_port_layout(mt3_weights, config), port_file)
    from_file = build_model("mt3-pytorch", {"checkpoint": str(port_file), "max_new_tokens": 6})
    assert from_file.spec.window_samples == WINDOW_SAMPLES and from_file.spec.sample_rate == SAMPLE_RATE
    assert from_file.dtype == torch.float32 and from_file.device.type == "cpu"
    assert torch.equal(from_file.network.lm_head.weight, mt3_model.network.lm_head.weight)

    lightning = tmp_path / "exp.ckpt"
    state = {f"model.{k}": v for k, v in to_port_layout(mt3_weights, config).items()}
    torch.save({"state_dict": state, "epoch": 3, "optimizer_states": [{"lr": 2e-4}]}, lightning)
    built = build_model("mt3-pytorch", {"checkpoint": str(lightning), "max_new_tokens": 6})
    assert torch.equal(built.network.proj.weight, mt3_model.network.proj.weight)


def test_windows_give_window_relative_notes(monkeypatch: pytest.MonkeyPatch, mt3_model: MT3Model) -> None:
    """The network's tokens (here: a perfect model's) become notes relative to each window's own start."""
    notes = [StepNote(60, 40, 260, 127, 0, False), StepNote(38, 100, 101, 127, 0, True)]
    starts = [0, HOP, 2 * HOP]

    def perfect(_network: object, encoded: torch.Tensor, _options: object) -> list[list[int]]:
        assert encoded.shape[0] == len(starts)
        return [
            encode_segment(
                notes,
                segment_start_step(s, SAMPLE_RATE),
                window_end_step(s, WINDOW_SAMPLES, SAMPLE_RATE),
                MT3,
            )
            for s in starts
        ]

    monkeypatch.setattr(model_module, "greedy_decode", perfect)
    results = run(mt3_model, [window(s) for s in starts])
    assert results[0] == [WindowNote(38, 1.0, 1.01, 127, 0, True), WindowNote(60, 0.4, None, 127, 0, False)]
    # Window at 0.512 s (rounded start 0.51 s): the drum at 1.0 s is 0.488 s in; the note began before the
    # window (a tie: onset None, velocity unknown so the decoder's 100) and outlasts it.
    assert results[1] == [
        WindowNote(38, pytest.approx(0.488), pytest.approx(0.498), 127, 0, True),
        WindowNote(60, None, None, 100, 0, False),
    ]
    # Window at 1.024 s: the note began before it (tie, onset None) and ends at 2.6 - 1.024 s.
    assert results[2] == [WindowNote(60, None, pytest.approx(1.576), 100, 0, False)]


def test_batched_windows_equal_single_windows(mt3_model: MT3Model) -> None:
    requests = [window(0, seed=1), window(HOP, valid=20_000, seed=2), window(2 * HOP, seed=3)]
    together = run(mt3_model, requests)
    alone = [run(mt3_model, [r])[0] for r in requests]
    assert together == alone


def test_padding_frames_reach_the_encoder_as_zeros(monkeypatch: pytest.MonkeyPatch, mt3_model: MT3Model) -> None:
    seen: list[torch.Tensor] = []
    encode = mt3_model.network.encode
    monkeypatch.setattr(mt3_model.network, "encode", lambda f: seen.append(f) or encode(f))
    run(mt3_model, [window(0, valid=5000)])
    (features,) = seen
    assert features[0, :40].abs().sum(-1).min() > 0 and not features[0, 40:].any()


def test_memory_is_the_row_of_the_window_ending_at_this_start(
    monkeypatch: pytest.MonkeyPatch, mr_mt3_model: MT3Model
) -> None:
    rows_by_start: dict[int, list[int]] = {}
    memories: list[list[int]] = []
    encode_memory = mr_mt3_model.network.encode_memory

    def spy(tokens: torch.Tensor) -> torch.Tensor:
        memories.extend(tokens.tolist())
        return encode_memory(tokens)

    def fake_decode(_network: object, encoded: torch.Tensor, _options: object) -> list[list[int]]:
        assert encoded.shape[1] == 256 + 8  # encoder frames + memory positions
        return [rows_by_start[s] for s in batch_starts]

    monkeypatch.setattr(mr_mt3_model.network, "encode_memory", spy)
    monkeypatch.setattr(model_module, "greedy_decode", fake_decode)
    first, second = mr_mt3_model.new_stream(), mr_mt3_model.new_stream()
    assert isinstance(first, TokenHistory)
    placeholder = memory_row(None, start_token=False)
    assert placeholder[:3] == [1134, EOS_ID, PAD_ID] and len(placeholder) == MEMORY_TOKENS
    for index in range(6):  # windows hop by a quarter window: 0, 0.512 s, ...
        start = index * HOP
        rows_by_start[start] = [1003 - index, 1134, EOS_ID]
        batch_starts = [start]
        memories.clear()
        run(mr_mt3_model, [window(start)], first)
        if start >= WINDOW_SAMPLES:
            previous = rows_by_start[start - WINDOW_SAMPLES]
            # The mr-mt3 default, as MR-MT3's own inference: the row starts with the decoder-start token 0.
            assert memories[0][:5] == [PAD_ID, *previous, PAD_ID]
        else:
            assert memories[0] == placeholder
    # Another stream has its own history, and a window with no contiguous predecessor gets the placeholder.
    batch_starts = [4 * HOP]
    memories.clear()
    run(mr_mt3_model, [window(4 * HOP)], second)
    assert memories[0] == placeholder
    assert len(first) <= first.capacity


def test_history_is_bounded() -> None:
    history = TokenHistory(capacity=3)
    for end in range(10):
        history.remember(end, [end, EOS_ID])
    assert len(history) == 3 and history.ending_at(6) is None and history.ending_at(9).tolist() == [9, EOS_ID]
    assert memory_row(np.array([5, EOS_ID]), start_token=True)[:4] == [PAD_ID, 5, EOS_ID, PAD_ID]


def test_compiled_encoder_gives_the_same_notes(mt3_weights: dict[str, torch.Tensor], mt3_model: MT3Model) -> None:
    compiled = build_model_from_state_dict("mt3-pytorch", mt3_weights, {"max_new_tokens": 6, "compile": True})
    requests = [window(0), window(8192, seed=1)]
    assert run(compiled, requests) == run(mt3_model, requests)


def test_mr_mt3_defaults_follow_its_own_inference_and_float32_everywhere() -> None:
    options = model_module.MT3Options.parse("mr-mt3", {})
    assert options.frontend == "torch-v2" and options.memory_start_token and options.mel_norm
    assert model_module.MT3Options.parse("mt3-pytorch", {}).frontend == "official"
    assert model_module._dtype("auto", torch.device("cuda")) is torch.float32
    assert model_module._dtype("bfloat16", torch.device("cuda")) is torch.bfloat16


def test_a_file_name_stating_another_memory_length_is_refused(tmp_path, mt3_weights) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "exp_segmemV2_prev_context=32.ckpt"
    torch.save(random_state_dict(T5Config(positional="ports", segmem_length=8), seed=1), path)
    with pytest.raises(ConfigError, match="set segmem_length = 32"):
        build_model("mr-mt3", {"checkpoint": str(path), "segmem_length": 8})
