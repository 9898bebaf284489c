"""Our T5 against the reference port (fixtures from tools/mt3_t5_fixtures.py) and cached vs uncached decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.models.mt3.checkpoints import load_weights, random_state_dict, to_port_layout
from streamer.models.mt3.decoding import DecodeOptions, greedy_decode
from streamer.models.mt3.t5 import MT3Transformer, T5Config, sinusoid_table
from streamer.models.mt3.vocab import DECODER_START_ID, EOS_ID, PAD_ID

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "mt3" / "t5_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def ports_model(reference: dict[str, np.ndarray]) -> MT3Transformer:
    config = T5Config(positional="ports")
    model = MT3Transformer(config).eval()
    state = to_port_layout(random_state_dict(config, int(reference["weight_seed"])), config)
    assert sorted(state) == reference["state_keys"].tolist()  # the reference's 193 keys, strictly loaded
    load_weights(model, state)
    return model


def fixture_inputs(reference: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The same draws as tools/mt3_t5_fixtures.py."""
    generator = torch.Generator().manual_seed(int(reference["input_seed"]))
    batch, tokens = reference["tokens"].shape
    features = 3.0 * torch.randn(batch, 256, 512, generator=generator)
    ids = torch.randint(3, 1391, (batch, tokens), generator=generator)
    ids[:, 0] = 0
    assert (ids.numpy() == reference["tokens"]).all()
    return features, ids


def test_encoder_and_logits_match_the_reference(reference: dict[str, np.ndarray], ports_model: MT3Transformer) -> None:
    features, tokens = fixture_inputs(reference)
    with torch.no_grad():
        encoded = ports_model.encode(features)
        logits = ports_model.decode(tokens, encoded)
    encoder_error = np.abs(encoded[:, reference["encoder_rows"]].numpy() - reference["encoded"]).max()
    logit_error = np.abs(logits.numpy() - reference["logits"]).max()
    assert encoder_error < TOLERANCE, encoder_error
    assert logit_error < TOLERANCE, logit_error


def test_cached_greedy_matches_the_reference_generate(
    reference: dict[str, np.ndarray], ports_model: MT3Transformer
) -> None:
    features, _ = fixture_inputs(reference)
    expected = reference["greedy"].tolist()
    assert expected[0] == DECODER_START_ID
    encoded = ports_model.encode(features[:1])
    (ours,) = greedy_decode(ports_model, encoded, DecodeOptions(max_new_tokens=len(expected) - 1))
    assert ours == expected[1 : 1 + len(ours)]


def test_official_and_ports_sinusoids() -> None:
    official, ports = sinusoid_table(2048, 512, "official"), sinusoid_table(2048, 512, "ports")
    # Frequency i: 10000^(-i/255) vs 10000^(-i/256); the lowest frequency of "official" is exactly 1e-4.
    assert torch.allclose(official[1, 255], torch.tensor(np.sin(1e-4), dtype=torch.float32))
    assert torch.allclose(official[:, 0], ports[:, 0]) and torch.allclose(official[:, 256], ports[:, 256])
    difference = (official[:256] - ports[:256]).abs().max().item()
    assert 0.3 < difference < 0.4  # reference §4.3: max 0.36 within 256 positions


def uncached_greedy(model: MT3Transformer, encoded: torch.Tensor, steps: int) -> list[list[int]]:
    """The definition: re-run the whole prefix every step (what the ports do)."""
    rows = encoded.shape[0]
    sequence = torch.full((rows, 1), DECODER_START_ID)
    done = torch.zeros(rows, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(steps):
            following = model.decode(sequence, encoded)[:, -1].argmax(-1)
            following[done] = PAD_ID
            done |= following == EOS_ID
            sequence = torch.cat([sequence, following[:, None]], dim=1)
            if done.all():
                break
    result = []
    for row in sequence[:, 1:].tolist():
        result.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else row)
    return result


def test_cached_decoding_equals_uncached_with_rows_ending_at_different_steps() -> None:
    config = T5Config()
    model = MT3Transformer(config).eval()
    load_weights(model, random_state_dict(config, seed=11))
    features = 3.0 * torch.randn(4, 256, 512, generator=torch.Generator().manual_seed(5))
    steps = 40
    with torch.no_grad():
        encoded = model.encode(features)
    free_run = uncached_greedy(model, encoded, steps)
    # Make the model say EOS wherever it said some token that rows produce at different steps, by swapping
    # that token's output row with EOS's: rows then finish at different steps and the batch shrinks.
    first = [{t: row.index(t) for t in set(row)} for row in free_run]
    token = max(set().union(*first), key=lambda t: (len({f.get(t, -1) for f in first}), -t))
    with torch.no_grad():
        head = model.lm_head.weight
        head[[token, EOS_ID]] = head[[EOS_ID, token]]
    expected = uncached_greedy(model, encoded, steps)
    assert len({len(row) for row in expected}) > 1, "rows should end at different steps"
    assert greedy_decode(model, encoded, DecodeOptions(max_new_tokens=steps)) == expected
    forced = greedy_decode(model, encoded, DecodeOptions(max_new_tokens=7, stop_at_eos=False))
    assert [len(row) for row in forced] == [7] * 4
