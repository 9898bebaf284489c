"""MT3 decoding throughput: our batched cached greedy decoder vs the mt3-infer 0.2.0 generate loop.

Same random weights (seeded), same input windows, same forced number of new tokens per window (EOS is
suppressed in both, so both do exactly the same amount of decoding), side by side in one run. Each
(implementation, batch) runs in its own process so peak memory (max RSS) is its own.

The reference needs a Python with torch==2.13.0, einops, "transformers<5" and
`pip install --no-deps mt3-infer==0.2.0` (reference §11), e.g. a venv outside the repo:
    python benchmarks/mt3_bench.py --reference-python /work/refvenv/bin/python
Without --reference-python the current interpreter is used for both if it can find mt3_infer; otherwise
only our decoder is measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the package are imported inside the worker processes only
    from torch import Tensor

    from streamer.models.mt3.t5 import T5Config

ROOT = Path(__file__).resolve().parent.parent
WEIGHT_SEED = 7
INPUT_SEED = 8
FRAMES, MEL_BANDS = 256, 512


def worker(implementation: str, batch: int, tokens: int, threads: int, repeats: int, device: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from streamer.models.mt3.checkpoints import random_state_dict, to_port_layout
    from streamer.models.mt3.t5 import T5Config

    torch.set_num_threads(threads)
    config = T5Config(positional="ports")  # the ports' formula, so both compute the same function
    state = random_state_dict(config, WEIGHT_SEED)
    features = 3.0 * torch.randn(batch, FRAMES, MEL_BANDS, generator=torch.Generator().manual_seed(INPUT_SEED))
    features = features.to(device)
    if implementation == "ours":
        run = _ours(config, state, device)
    else:
        run = _reference(config, to_port_layout(state, config), device)
    run(features[:1], 2)  # warm-up: allocator, kernels
    loaded_rss = _rss_mb()
    timings = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        produced = run(features, tokens)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - began)
        assert produced == batch * tokens, produced
    seconds = min(timings)
    return {
        "implementation": implementation,
        "batch": batch,
        "tokens": tokens,
        "seconds": seconds,
        "windows_per_s": batch / seconds,
        "rss_after_load_mb": loaded_rss,
        "peak_rss_mb": _rss_mb(),
    }


def _ours(config: T5Config, state: dict[str, Tensor], device: str) -> Callable[[Tensor, int], int]:
    import torch

    from streamer.models.mt3.checkpoints import load_weights
    from streamer.models.mt3.decoding import DecodeOptions, greedy_decode
    from streamer.models.mt3.t5 import MT3Transformer

    model = MT3Transformer(config)
    load_weights(model, state)
    model = model.to(device).eval()

    def run(features: torch.Tensor, tokens: int) -> int:
        with torch.inference_mode():
            encoded = model.encode(features)
            rows = greedy_decode(model, encoded, DecodeOptions(max_new_tokens=tokens, stop_at_eos=False))
        return sum(len(r) for r in rows)

    return run


def _reference(config: T5Config, state: dict[str, Tensor], device: str) -> Callable[[Tensor, int], int]:
    import torch

    from tools.reference_t5 import reference_model

    model = reference_model(config)
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()

    def no_eos(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        output[..., model.config.eos_token_id] = float("-inf")
        return output

    model.lm_head.register_forward_hook(no_eos)

    def run(features: torch.Tensor, tokens: int) -> int:
        with torch.no_grad():
            out = model.generate(features, max_length=tokens)
        return (out.shape[1] - 1) * out.shape[0]

    return run


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _has_reference(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('mt3_infer') is None)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def _spawn(python: str, implementation: str, batch: int, args: argparse.Namespace, repeats: int) -> dict:
    command = [
        python,
        __file__,
        "--worker",
        implementation,
        "--batch",
        str(batch),
        "--tokens",
        str(args.tokens),
        "--threads",
        str(args.threads),
        "--repeats",
        str(repeats),
        "--device",
        args.device,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{implementation} batch {batch} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", default=None, help="interpreter with mt3-infer installed")
    parser.add_argument("--tokens", type=int, default=128, help="forced new tokens per window")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (best is kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.tokens, args.threads, args.repeats, args.device)))
        return

    reference_python = args.reference_python or sys.executable
    with_reference = _has_reference(reference_python)
    if not with_reference:
        print(f"mt3_infer not found by {reference_python}: measuring ours only (see --reference-python)")
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        results.append(_spawn(sys.executable, "ours", batch, args, args.repeats))
        if with_reference:
            results.append(_spawn(reference_python, "reference", batch, args, 1))
    print(f"\n{args.tokens} forced tokens per window, {args.threads} threads, device {args.device}\n")
    header = "| implementation | batch | windows/s | s per batch | RSS after load (MB) | peak RSS (MB) | speed-up |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    by_batch = {(r["implementation"], r["batch"]): r for r in results}
    for r in results:
        theirs = by_batch.get(("reference", r["batch"]))
        speedup = f"{r['windows_per_s'] / theirs['windows_per_s']:.1f}×" if theirs and r is not theirs else ""
        name = "streamer (cached, batched)" if r["implementation"] == "ours" else "mt3-infer 0.2.0 generate"
        print(
            f"| {name} | {r['batch']} | {r['windows_per_s']:.3f} | {r['seconds']:.2f} | "
            f"{r['rss_after_load_mb']:.0f} | {r['peak_rss_mb']:.0f} | {speedup} |"
        )


if __name__ == "__main__":
    main()
