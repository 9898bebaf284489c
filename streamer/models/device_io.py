"""Host ↔ device copies for torch models, written once for CPU and CUDA.

On CUDA, inputs go through pinned (page-locked) host memory with non-blocking copies on the engine's current
stream, and results come back into pinned memory followed by a wait on an event recorded on that stream: only the
engine's own stream is waited for, never the whole device. On the CPU the same calls are plain copies, so the tests
run these exact functions.
"""

from __future__ import annotations

import numpy as np
import torch


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.device.type != "cuda":
        return tensor.cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(tensor.device))
    done.synchronize()
    return host
