"""A small MR-MT3 from random weights (memory and all, built fast), as a file the replicas and the local engine both
load: MR-MT3 checkpoints cannot be downloaded here, and the tests need a model that keeps per-stream memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MR_MT3_SIZES = {"d_model": 128, "num_heads": 2, "d_ff": 256, "encoder_layers": 2, "decoder_layers": 2}
MEMORY_POSITIONS = 8


@pytest.fixture(scope="session")
def mr_mt3_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`[models.mr-mt3]` options naming a random-weight checkpoint file."""
    from safetensors.torch import save_file

    from streamer.models.mt3.checkpoints import random_state_dict
    from streamer.models.mt3.t5 import T5Config

    config = T5Config(positional="ports", segmem_length=MEMORY_POSITIONS, **MR_MT3_SIZES)
    path = Path(tmp_path_factory.mktemp("mr-mt3")) / "random-mr-mt3.safetensors"
    save_file(random_state_dict(config, seed=3), str(path))
    return {"checkpoint": str(path), "segmem_length": MEMORY_POSITIONS, "max_new_tokens": 24, "max_batch": 8}


@pytest.fixture(scope="session")
def mr_mt3_model(mr_mt3_options: dict[str, Any]):  # type: ignore[no-untyped-def]
    from streamer.models.registry import load_model

    return load_model("mr-mt3", mr_mt3_options)
