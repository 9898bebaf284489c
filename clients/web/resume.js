// Resuming a live stream on another server after the first one went away (docs/protocol.md, "Resuming on another
// server"): which closes call for it, the point of the timeline to resume from, and the recent audio kept to send
// again. Pure: no sockets, no clocks (tests/web/unit/resume.test.mjs).
//
// The timeline is the run's own clock: sample 0 is the first sample of the first session, and every session's
// event times are seconds on it (a resumed session is told where it begins with `resume_at`).

export const RING_SECONDS = 10; // recent audio kept to send again: a reconnection rarely takes more than a second
export const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000]; // before each try; then the run ends, disconnected
export const CLOSE_GOING_AWAY = 1001; // a draining server
export const CLOSE_ABNORMAL = 1006; // the browser's code for a connection that ended without a close frame

/**
 * Whether a close of a session that was streaming calls for resuming elsewhere: the server drained (1001) or
 * vanished (1006), and it was not our own `stop`, nor a fatal error that a new session would meet again.
 */
export function shouldResume(closeCode, { stopRequested = false, fatalCode = null } = {}) {
  if (stopRequested) return false;
  if (fatalCode !== null && fatalCode !== "shutting_down") return false;
  return closeCode === CLOSE_GOING_AWAY || closeCode === CLOSE_ABNORMAL;
}

/** Whether a failed try at resuming may be followed by another: another server may be there, or free. */
export function retryable(failure) {
  if (failure.kind === "close") return failure.code !== 1000 && failure.code !== 1008;
  return failure.code === "busy" || failure.code === "shutting_down";
}

/**
 * The latest point of the timeline known to be committed, in seconds: the time of the last committed event, an
 * `interim` message's `time` (everything before it is committed), or a `done` message's `duration` (a draining
 * server commits all it heard before it closes).
 */
export class CommitPoint {
  constructor() {
    this.seconds = 0;
  }

  events(events) {
    for (const event of events) this.advance(event.time);
  }

  interim(message) {
    this.advance(message.time);
  }

  done(message) {
    this.advance(message.duration);
  }

  /** Once resumed at `seconds`, what came before is settled: committed, or lost for good. */
  advance(seconds) {
    if (seconds > this.seconds) this.seconds = seconds;
  }
}

/**
 * The most recent `capacity` samples of the timeline, as the frames they arrived in (the oldest one trimmed). A
 * floor set with `hold` keeps samples from there on while a resumed session waits to be sent them.
 */
export class PcmRing {
  constructor(capacity) {
    this.capacity = capacity;
    this.frames = []; // [first sample on the timeline, Int16Array], in order, contiguous
    this.end = 0; // the timeline sample just past the newest frame
    this.floor = null;
  }

  get start() {
    return this.frames.length === 0 ? this.end : this.frames[0][0];
  }

  /** Append the next frame of the timeline; returns its first sample. */
  push(pcm) {
    const first = this.end;
    this.frames.push([first, pcm]);
    this.end += pcm.length;
    this.trim();
    return first;
  }

  /** The frames from timeline sample `sample` on (from the oldest one held, if that is later). */
  from(sample) {
    const out = [];
    for (const [first, pcm] of this.frames) {
      const last = first + pcm.length;
      if (last <= sample) continue;
      out.push(sample > first ? pcm.subarray(sample - first) : pcm);
    }
    return out;
  }

  hold(sample) {
    this.floor = sample;
  }

  release() {
    this.floor = null;
    this.trim();
  }

  trim() {
    const keepFrom = Math.min(this.end - this.capacity, this.floor ?? Infinity);
    while (this.frames.length > 0) {
      const [first, pcm] = this.frames[0];
      if (first >= keepFrom) break;
      if (first + pcm.length <= keepFrom) this.frames.shift();
      else this.frames[0] = [keepFrom, pcm.subarray(keepFrom - first)];
    }
  }
}

/**
 * Where a resumed session begins: the committed point, or the oldest audio still held if that is later (the audio
 * in between is lost). `resumeAt` is exactly `fromSample` on the timeline, so the new session's clock matches.
 */
export function planResume(committedSeconds, ring, sampleRate) {
  const wanted = Math.ceil(committedSeconds * sampleRate - 1e-6);
  const fromSample = Math.min(ring.end, Math.max(ring.start, wanted));
  return {
    fromSample,
    resumeAt: fromSample / sampleRate,
    lostSeconds: Math.max(0, fromSample - wanted) / sampleRate,
  };
}
