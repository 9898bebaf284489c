"""MT3-PyTorch and MR-MT3 (reference: ../shared/reference/mt3-family.md).

Stages, one file each: spec (constants) → frontend (log-mel) → t5 (network) → decoding (batched greedy with a
KV cache) → codec/vocab (tokens ↔ notes); checkpoints loads weights; model puts them behind `Model`.
"""

from streamer.models.mt3.model import MT3Model, MT3Options, build_model, build_model_from_state_dict

__all__ = ["MT3Model", "MT3Options", "build_model", "build_model_from_state_dict"]
