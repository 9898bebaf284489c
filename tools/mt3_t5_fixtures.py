"""Write T5 parity fixtures from the reference implementation in the mt3-infer 0.2.0 wheel, once.

The reference is the wheel's vendored `mt3_infer/models/mt3_pytorch/t5.py` (kunato's port on HF transformers),
built with MT3's configuration (reference §4.1) and loaded with our seeded random weights in the ports' key
layout. Only its outputs are stored; the test regenerates the same weights and inputs from the seeds.

Needs a Python with torch==2.13.0 (same as the project, so the seeded weights are identical), einops,
"transformers<5" and `pip install --no-deps mt3-infer==0.2.0`, e.g.:
    /work/refvenv/bin/python tools/mt3_t5_fixtures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamer.models.mt3.checkpoints import random_state_dict, to_port_layout  # noqa: E402
from streamer.models.mt3.t5 import T5Config  # noqa: E402
from tools.reference_t5 import reference_model  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "mt3" / "t5_reference.npz"
WEIGHT_SEED = 3
INPUT_SEED = 4
BATCH, FRAMES, TOKENS = 2, 256, 24
ENCODER_ROWS = np.arange(0, FRAMES, 8)  # a subset keeps the file small
GREEDY_STEPS = 24


def fixture_inputs(config: T5Config) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(INPUT_SEED)
    features = 3.0 * torch.randn(BATCH, FRAMES, config.input_dim, generator=generator)
    tokens = torch.randint(3, 1391, (BATCH, TOKENS), generator=generator)
    tokens[:, 0] = 0  # decoder start
    return features, tokens


def main() -> None:
    torch.set_num_threads(1)
    config = T5Config(positional="ports")
    state = to_port_layout(random_state_dict(config, WEIGHT_SEED), config)
    model = reference_model(config)
    model.load_state_dict(state, strict=True)
    features, tokens = fixture_inputs(config)
    with torch.no_grad():
        encoded = model.encoder(inputs_embeds=model.proj(features), return_dict=True).last_hidden_state
        logits = model(inputs=features, decoder_input_ids=tokens, return_dict=True).logits
        greedy = model.generate(features[:1], max_length=GREEDY_STEPS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        weight_seed=np.array(WEIGHT_SEED),
        input_seed=np.array(INPUT_SEED),
        state_keys=np.array(sorted(state)),
        encoder_rows=ENCODER_ROWS,
        encoded=encoded[:, ENCODER_ROWS].numpy(),
        tokens=tokens.numpy(),
        logits=logits.numpy(),
        greedy=greedy[0].numpy(),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); {len(state)} keys; greedy {greedy[0].tolist()}")


if __name__ == "__main__":
    main()
