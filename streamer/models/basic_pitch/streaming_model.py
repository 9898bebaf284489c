"""basic-pitch as a streaming model: our numpy network evaluated incrementally, and notes settled as they happen.

Per stream, the engine hands over one block of audio at a time; the network (incremental.py) turns the blocks of all
streams in a batch into the frames that became final, and each stream's note tracker (note_tracker.py) turns its
frames into note starts and ends as soon as they are determined. Frame t is at t·256/22050 s of the stream; when
the engine skipped blocks of a lagging stream, the stream starts afresh after the gap (its notes end where the last
frames were) and its frames are counted from the new start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import threadpoolctl

from streamer.jobs import Failed
from streamer.models.base import Block, ModelSpec, NoteDecision, StepResult, StreamingModel
from streamer.models.basic_pitch.incremental import FrameBlock, StreamingConfig, StreamingNetwork, StreamState
from streamer.models.basic_pitch.note_tracker import Decisions, NoteStart, NoteTracker, TrackerConfig
from streamer.models.basic_pitch.weights import load_weights

SAMPLE_RATE = 22050
FRAME_SAMPLES = 256
# Blocks from up to this many streams go through the network in one call (one matrix product per layer).
DEFAULT_MAX_BATCH = 16


def streaming_spec(config: StreamingConfig) -> ModelSpec:
    block = config.block_frames * FRAME_SAMPLES
    return ModelSpec(
        name="basic-pitch",
        sample_rate=SAMPLE_RATE,
        window_samples=block,
        hop_quantum=block,
        default_hop_s=block / SAMPLE_RATE,
        min_hop_s=block / SAMPLE_RATE,
        commit_margin_s=0.0,
        description=(
            "Spotify basic-pitch (ICASSP 2022), polyphonic, one instrument; streaming, our numpy network, "
            f"{config.lookahead_s * 1000:.0f} ms look-ahead"
        ),
        streaming=True,
        lookahead_s=config.lookahead_s,
    )


@dataclass(slots=True)
class _Stream:
    net: StreamState
    tracker: NoteTracker
    first_frame: int = 0  # stream frame of the tracker's frame 0 (moves on after a gap)


class StreamingBasicPitch(StreamingModel):
    def __init__(self, network: StreamingNetwork, tracker: TrackerConfig, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.network = network
        self.tracker_config = tracker
        self.spec = streaming_spec(network.config)
        self.max_batch = max_batch

    @property
    def block_samples(self) -> int:
        return self.network.block_samples

    def new_stream(self) -> _Stream:
        return _Stream(self.network.new_state(), NoteTracker(self.tracker_config))

    def run_batch(self, payloads: Sequence[Block], states: Sequence[_Stream]) -> list[StepResult | Failed]:
        results: list[StepResult | Failed | None] = [None] * len(payloads)
        prefix: dict[int, list[NoteDecision]] = {}
        steps = []
        for i, (block, stream) in enumerate(zip(payloads, states, strict=True)):
            if block.gap:
                prefix[i] = self._restart(stream, block.start)
            if block.final:
                results[i] = self._guarded(lambda b=block, s=stream: self._finish(b, s))
            else:
                steps.append(i)
        if steps:
            blocks = np.stack([payloads[i].audio for i in steps]).astype(np.float32, copy=False)
            frames = self.network.step([states[i].net for i in steps], blocks, [payloads[i].provisional for i in steps])
            for i, frame_block in zip(steps, frames, strict=True):
                results[i] = self._guarded(lambda s=states[i], f=frame_block: self._track(s, f))
        out: list[StepResult | Failed] = []
        for i, result in enumerate(results):
            assert result is not None
            if i in prefix and isinstance(result, StepResult):
                result = StepResult([*prefix[i], *result.decisions], result.horizon, result.interim)
            out.append(result)
        return out

    def _guarded(self, step) -> StepResult | Failed:  # type: ignore[no-untyped-def]
        """One stream's note decisions; a failure there fails only that stream's block."""
        try:
            result: StepResult = step()
            return result
        except Exception as e:  # isolate: the others in the batch go on
            return Failed(f"{type(e).__name__}: {e}")

    def _track(self, stream: _Stream, frames: FrameBlock) -> StepResult:
        decisions = stream.tracker.push(
            frames.start_frame, frames.note, frames.onset, frames.provisional_note, frames.provisional_onset
        )
        return self._result(stream, decisions, interim=frames.provisional_note is not None)

    def _finish(self, block: Block, stream: _Stream) -> StepResult:
        tail = np.asarray(block.audio, dtype=np.float32)
        if len(tail) >= self.block_samples:  # a whole block that is also the last: step it, then finish
            frames = self.network.step([stream.net], tail[None, : self.block_samples])[0]
            early = stream.tracker.push(frames.start_frame, frames.note, frames.onset)
            tail = tail[self.block_samples :]
        else:
            early = Decisions([], 0, 0)
        last = self.network.finish(stream.net, tail if len(tail) else None)
        settled = stream.tracker.push(last.start_frame, last.note, last.onset)
        finished = stream.tracker.finish()
        decisions = Decisions([*early.events, *settled.events, *finished.events], finished.onset_horizon,
                              finished.offset_horizon)  # fmt: skip
        return self._result(stream, decisions, interim=False)

    def _restart(self, stream: _Stream, start_sample: int) -> list[NoteDecision]:
        """Skipped audio before `start_sample`: end what sounded, and go on as a new stream from there."""
        ended = self._result(stream, stream.tracker.finish(), interim=False).decisions
        stream.net = self.network.new_state()
        stream.tracker = NoteTracker(self.tracker_config)
        stream.first_frame = start_sample // FRAME_SAMPLES
        return ended

    def _result(self, stream: _Stream, decisions: Decisions, interim: bool) -> StepResult:
        def at(frame: int) -> float:
            return (stream.first_frame + frame) * FRAME_SAMPLES / SAMPLE_RATE

        settled = [
            NoteDecision(at(d.frame), d.pitch, True, d.velocity)
            if isinstance(d, NoteStart)
            else NoteDecision(at(d.frame), d.pitch, False)
            for d in decisions.events
        ]
        believed = None
        if interim:
            believed = [NoteDecision(at(d.frame), d.pitch, True, d.velocity) for d in decisions.interim]
        return StepResult(settled, at(decisions.onset_horizon), believed)


def build_streaming(
    network_config: StreamingConfig, tracker_config: TrackerConfig, max_batch: int = 0
) -> StreamingBasicPitch:
    # One BLAS thread: the network's products are small, and OpenBLAS's own threads cost 5-6x the CPU for the same
    # work here (benchmarks/bp_network_bench.py); the engine batches streams instead. Process-wide, for numpy only.
    threadpoolctl.threadpool_limits(1, user_api="blas")
    network = StreamingNetwork(load_weights(), network_config)
    return StreamingBasicPitch(network, tracker_config, max_batch or DEFAULT_MAX_BATCH)
