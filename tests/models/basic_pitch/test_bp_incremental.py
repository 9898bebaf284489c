"""The streaming basic-pitch network: streamed blocks (batched, joining late, finishing with any tail) give exactly
the one-pass definition; look-ahead is what it claims; state is bounded; full look-ahead reproduces the exact
network away from the file edges."""

from __future__ import annotations

import numpy as np
import pytest
from bp_signals import piano, synth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.audio.test_signals import render
from streamer.models.basic_pitch.incremental import FrameBlock, StreamingConfig, StreamingNetwork, StreamState
from streamer.models.basic_pitch.network import WindowNetwork
from streamer.models.basic_pitch.weights import Weights, load_weights
from streamer.notes import Note

TOLERANCE = 1e-5
FRAME = 256


@pytest.fixture(scope="module")
def weights() -> Weights:
    return load_weights()


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Ten seconds of notes and noise to cut streams from."""
    return synth(10.0, seed=7)


def frames_of(n_samples: int) -> int:
    return -(-n_samples // FRAME)


class Stream:
    """One stream under test: its audio, state, and everything the network returned."""

    def __init__(self, net: StreamingNetwork, audio: np.ndarray) -> None:
        self.audio = audio
        self.state = net.new_state()
        self.sent = 0
        self.blocks: list[FrameBlock] = []

    def collected(self) -> tuple[np.ndarray, np.ndarray]:
        expected = 0
        for block in self.blocks:
            assert block.start_frame == expected, "blocks must be contiguous"
            expected += len(block.note)
            assert block.note.shape == block.onset.shape == (len(block.note), 88)
        return np.concatenate([b.note for b in self.blocks]), np.concatenate([b.onset for b in self.blocks])


def assert_close(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        if g.size:
            assert np.abs(g - w).max() <= TOLERANCE


CONFIGS = st.builds(
    StreamingConfig,
    lookahead_frames=st.integers(1, 16),
    conv_future=st.integers(0, 3),
    filter_future=st.sampled_from([0, 3, 8, 40]),
    compensate=st.booleans(),
    norm_frames=st.sampled_from([1, 9, 50, 172]),
    block_frames=st.integers(1, 6),
)


@st.composite
def valid_config(draw: st.DrawFn) -> StreamingConfig:
    try:
        return draw(CONFIGS)
    except ValueError:
        # Look-ahead shorter than the convs' own (or too short for the CQT's cut kernels): not a streaming network.
        from hypothesis import reject

        reject()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    config=valid_config(),
    lengths=st.lists(st.integers(0, 30000), min_size=1, max_size=3),
    joins=st.lists(st.integers(0, 6), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_streamed_blocks_equal_the_one_pass_definition(
    weights: Weights, music: np.ndarray, config: StreamingConfig, lengths: list[int], joins: list[int], seed: int
) -> None:
    try:
        net = StreamingNetwork(weights, config)
    except ValueError:
        return  # the CQT's cut kernels would lose whole kernels at this look-ahead: refused, as it should be
    rng = np.random.default_rng(seed)
    streams = [
        Stream(net, music[o : o + n]) for o, n in zip(rng.integers(0, 60000, len(lengths)), lengths, strict=True)
    ]
    pending = list(range(len(streams)))
    tick = 0
    while pending:
        joined = [i for i in pending if joins[i] <= tick]
        # A random subset of the joined streams goes this step, batched together.
        chosen = [i for i in joined if rng.random() < 0.7]
        batch = []
        for i in chosen:
            s = streams[i]
            if len(s.audio) - s.sent >= net.block_samples:
                batch.append(i)
            else:
                s.blocks.append(net.finish(s.state, s.audio[s.sent :]))
                pending.remove(i)
        if batch:
            blocks = np.stack([streams[i].audio[streams[i].sent : streams[i].sent + net.block_samples] for i in batch])
            for i, block in zip(batch, net.step([streams[i].state for i in batch], blocks), strict=True):
                streams[i].blocks.append(block)
                streams[i].sent += net.block_samples
        tick += 1
    for s in streams:
        note, onset = s.collected()
        assert len(note) == frames_of(len(s.audio))
        assert_close((note, onset), net.one_pass(s.audio))


@pytest.mark.parametrize("n_samples", [0, 1, 255, 256, 257, 1024 * 3, 1024 * 3 + 700, 30000])
def test_finish_returns_every_frame(weights: Weights, music: np.ndarray, n_samples: int) -> None:
    net = StreamingNetwork(weights, StreamingConfig(lookahead_frames=14, conv_future=2, block_frames=4))
    stream = Stream(net, music[:n_samples])
    whole = len(stream.audio) // net.block_samples * net.block_samples
    if whole:
        blocks = stream.audio[:whole].reshape(-1, net.block_samples)
        stream.blocks += [net.step([stream.state], b[None])[0] for b in blocks]
    stream.blocks.append(net.finish(stream.state, stream.audio[whole:]))
    note, onset = stream.collected()
    assert len(note) == frames_of(n_samples)
    assert_close((note, onset), net.one_pass(stream.audio))
    with pytest.raises(ValueError):
        net.finish(stream.state)


def test_provisional_frames_are_the_definition_of_the_audio_so_far(weights: Weights, music: np.ndarray) -> None:
    net = StreamingNetwork(weights, StreamingConfig(lookahead_frames=12, conv_future=2, block_frames=3))
    a, b = net.new_state(), net.new_state()
    audio = music[: net.block_samples * 40]
    for k in range(40):
        blocks = np.stack([audio[k * net.block_samples : (k + 1) * net.block_samples]] * 2)
        with_tail, without = net.step([a, b], blocks, provisional=[True, False])
        assert without.provisional_note is None and without.provisional_onset is None
        assert_close((with_tail.note, with_tail.onset), (without.note, without.onset))
        if k in (0, 2, 25, 39):
            sent = (k + 1) * net.block_samples
            note, onset = net.one_pass(audio[:sent])  # the audio so far, then silence
            first = with_tail.start_frame + len(with_tail.note)
            assert first + len(with_tail.provisional_note) == frames_of(sent)
            assert_close((with_tail.provisional_note, with_tail.provisional_onset), (note[first:], onset[first:]))
    assert a.frames == b.frames == 40 * 3, "a provisional tail must not move the stream on"


def test_a_frame_is_final_exactly_lookahead_after_its_start(weights: Weights, music: np.ndarray) -> None:
    config = StreamingConfig(lookahead_frames=13, conv_future=2, block_frames=1)
    net = StreamingNetwork(weights, config)
    assert net.lookahead_s == pytest.approx(13 * FRAME / 22050)
    state = net.new_state()
    for k in range(30):
        block = net.step([state], music[None, k * FRAME : (k + 1) * FRAME])[0]
        # After 256·(k + 1) samples, frames t with 256·(t + 13) ≤ 256·(k + 1) are final.
        assert block.start_frame + len(block.note) == max(0, k + 1 - 13 + 1)
    # And only that audio matters: frames up to t depend on samples before 256·(t + 13) and on nothing later.
    audio = music[:20000].copy()
    cut = 256 * 40
    changed = audio.copy()
    changed[cut:] = np.random.default_rng(0).standard_normal(len(audio) - cut).astype(np.float32)
    final = cut // FRAME - 13 + 1  # frames 0 … final − 1 are final at the cut
    for same, other in zip(net.one_pass(audio), net.one_pass(changed), strict=True):
        assert np.abs(same[:final] - other[:final]).max() <= 1e-6
        assert np.abs(same[final:] - other[final:]).max() > 1e-3  # the look-ahead is not longer than it says


def test_state_memory_is_bounded(weights: Weights, music: np.ndarray) -> None:
    net = StreamingNetwork(weights, StreamingConfig(block_frames=2))
    state = net.new_state()

    def size(s: StreamState) -> int:
        arrays = [*s.cqt, s.low, s.high, *s.carry.values()]
        assert all(a.base is None for a in arrays), "a view would keep a whole batch's buffer alive"
        return sum(a.nbytes for a in arrays)

    sizes = []
    for k in range(len(music) // net.block_samples):
        net.step([state], music[None, k * net.block_samples : (k + 1) * net.block_samples])
        sizes.append(size(state))
    assert len(set(sizes)) == 1 and sizes[0] < 400_000


def test_bad_calls_are_refused(weights: Weights) -> None:
    net = StreamingNetwork(weights, StreamingConfig())
    state = net.new_state()
    with pytest.raises(ValueError, match="blocks must be"):
        net.step([state], np.zeros((1, net.block_samples + 1), np.float32))
    with pytest.raises(ValueError, match="at most once"):
        net.step([state, state], np.zeros((2, net.block_samples), np.float32))
    with pytest.raises(ValueError, match="no look-ahead"):
        StreamingConfig(lookahead_frames=8, conv_future=2)  # the convs alone look 8 frames ahead


def test_full_lookahead_reproduces_the_exact_network_inside_a_file(weights: Weights) -> None:
    """With nothing cut (2.5 s of look-ahead) and a normalisation span covering the file, the streaming network is
    the exact network wherever the windowed model's edges do not reach. The audio starts with silence (the
    minimum, −100 dB) and then its loudest sound, so the trailing min/max equal the whole file's from there on;
    the window's reflected CQT edges reach 1.25 s in (the lowest octave's kernels), its "same" convs 10 frames."""
    rate, seconds = 22050, 8.0
    loud = render([Note(0.35, 0.55, p, 127) for p in (57, 64, 69)], rate, seconds, gain=1.0)
    audio = (loud + synth(seconds, seed=11, noise_db=-50) * (np.arange(int(rate * seconds)) > 0.3 * rate)).astype(
        np.float32
    )
    full = StreamingConfig(lookahead_frames=218, conv_future=3, filter_future=128, compensate=False, norm_frames=10**4)
    note, onset = StreamingNetwork(weights, full).one_pass(audio)
    n = len(note)
    padded = np.zeros(n * FRAME, np.float32)
    padded[: len(audio)] = audio
    _, ref_note, ref_onset = WindowNetwork(weights).posteriors(padded[None])
    inside = slice(int(1.4 * rate / FRAME), n - int(1.4 * rate / FRAME))
    assert inside.stop - inside.start > 200
    assert np.abs(note[inside] - ref_note[0, inside]).max() <= 1e-4
    assert np.abs(onset[inside] - ref_onset[0, inside]).max() <= 1e-4
    assert ref_note[0, inside].max() > 0.5  # the comparison is about real notes, not silence


def test_the_piano_streams_like_its_definition(weights: Weights) -> None:
    """A FluidSynth piano, two streams batched with a one-block offset, default configuration."""
    audio = piano(6.0)
    net = StreamingNetwork(weights, StreamingConfig())
    first, second = Stream(net, audio), Stream(net, audio[5000:])
    k = 0
    while True:
        batch = [s for s in (first, second) if len(s.audio) - s.sent >= net.block_samples and (s is first or k)]
        if not batch:
            break
        blocks = np.stack([s.audio[s.sent : s.sent + net.block_samples] for s in batch])
        for s, block in zip(batch, net.step([s.state for s in batch], blocks), strict=True):
            s.blocks.append(block)
            s.sent += net.block_samples
        k += 1
    for s in (first, second):
        s.blocks.append(net.finish(s.state, s.audio[s.sent :]))
        assert_close(s.collected(), net.one_pass(s.audio))
    assert first.collected()[0].max() > 0.5
