"""The reference T5 of the mt3-infer 0.2.0 wheel (kunato's port), built like MT3 for parity tests and benchmarks.

Needs a Python where `pip install torch==2.13.0 einops numpy "transformers<5"` and
`pip install --no-deps mt3-infer==0.2.0` were run (docs/models.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from streamer.models.mt3.t5 import T5Config


def reference_module() -> ModuleType:
    # Located without importing the package: its __init__ pulls in mido, librosa and more.
    package = importlib.util.find_spec("mt3_infer")
    assert package and package.submodule_search_locations
    path = Path(next(iter(package.submodule_search_locations))) / "models" / "mt3_pytorch" / "t5.py"
    spec = importlib.util.spec_from_file_location("reference_t5", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_model(config: T5Config) -> torch.nn.Module:
    t5 = reference_module()
    hf_config = t5.T5Config(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.encoder_layers,
        num_decoder_layers=config.decoder_layers,
        num_heads=config.num_heads,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        dropout_rate=0.1,
        layer_norm_epsilon=config.layer_norm_eps,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = t5.T5ForConditionalGeneration(hf_config)
    return model.eval()
