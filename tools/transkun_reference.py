"""The `transkun` wheel's own model (2.0.1), built for parity tests and benchmarks, without torchaudio.

Needs `pip install --no-deps transkun==2.0.1` and `pip install pretty_midi` (its data module imports it). Its front
end calls `torchaudio.functional.melscale_fbanks` once, while being built; a stand-in `torchaudio` module answering
that one call with our own filterbank is put in `sys.modules` for the duration of the build only (the checkpoint's
stored filterbank then replaces it anyway when the weights load).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch

from streamer.models.transkun.checkpoints import conf_path, package_checkpoint, read_state_dict
from streamer.models.transkun.frontend import mel_filterbank


def _melscale_fbanks(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    norm: str | None = None,
    mel_scale: str = "htk",
) -> torch.Tensor:
    assert norm is None and mel_scale == "htk", "only what Transkun asks for"
    return torch.from_numpy(mel_filterbank(n_freqs, n_mels, f_min, f_max, sample_rate))


@contextmanager
def torchaudio_stand_in() -> Iterator[None]:
    """A minimal `torchaudio` in sys.modules (functional.melscale_fbanks only), removed afterwards."""
    if "torchaudio" in sys.modules:
        yield
        return
    module = ModuleType("torchaudio")
    module.functional = SimpleNamespace(melscale_fbanks=_melscale_fbanks)  # type: ignore[attr-defined]
    sys.modules["torchaudio"] = module
    try:
        yield
    finally:
        del sys.modules["torchaudio"]


@contextmanager
def its_warnings_silenced() -> Iterator[None]:
    """Its code scripts functions with torch.jit (deprecated) and calls torch.utils.checkpoint in eval mode: the
    warnings are about its code, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def reference_model(checkpoint: Path | None = None) -> Any:
    """transkun.ModelTransformer.TransKun with the wheel's weights, in eval mode on the CPU."""
    with its_warnings_silenced():
        from transkun import ModelTransformer

    path = checkpoint or package_checkpoint()
    conf = ModelTransformer.Config()
    conf.__dict__.update(json.loads(conf_path(path).read_text())["Model"]["config"])
    with torchaudio_stand_in():
        model = ModelTransformer.TransKun(conf=conf)
    model.load_state_dict(read_state_dict(path), strict=True)
    return model.eval()


def reference_window(model: Any, audio: np.ndarray) -> list[Any]:
    """Its notes for one window, decoded as its own segmenting decodes each segment (from frame 0, hamming
    velocity), times relative to the window's first sample. Each note has start, end, pitch (negative: pedal
    −64 sustain, −67 soft), velocity, hasOnset, hasOffset."""
    from transkun.Util import makeFrame

    with torch.inference_mode(), its_warnings_silenced():
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, None, :]  # (batch, channel, samples)
        frames = makeFrame(x, model.hopSize, model.windowSize)
        notes, _ = model.transcribeFrames(frames, forcedStartPos=[0] * len(model.targetMIDIPitch))
    return notes[0]


def reference_context(model: Any, audio: np.ndarray) -> torch.Tensor:
    """Its context vectors (batch 1, tracks, frames, size) for one window."""
    from transkun.Util import makeFrame

    with torch.inference_mode(), its_warnings_silenced():
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[None, None, :]
        _, context = model.processFramesBatch(makeFrame(x, model.hopSize, model.windowSize))
    return context


def reference_transcribe(model: Any, audio: np.ndarray) -> list[Any]:
    """Its whole-file transcription (its own 16 s segments with an 8 s step), audio mono at 44.1 kHz."""
    with torch.inference_mode(), its_warnings_silenced():
        return model.transcribe(torch.from_numpy(np.asarray(audio, dtype=np.float32))[:, None])
