"""Host/device copies: the same functions serve CPU and CUDA; on the CPU they are exact plain copies."""

from __future__ import annotations

import numpy as np
import torch

from streamer.models.device_io import to_device, to_host


def test_round_trip_is_exact() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    tensor = to_device(array, torch.device("cpu"))
    assert tensor.tolist() == [[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]]
    back = to_host(tensor * 2)
    assert back.device.type == "cpu" and back.tolist() == [[0.0, 4.0], [8.0, 12.0], [16.0, 20.0]]
