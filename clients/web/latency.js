// Measured latency: the wall time a note appears minus the wall time the page had the audio at the note's onset.
//
// Event times are seconds on the run's timeline (samples ÷ rate, from the first sample of the first session; a
// resumed session continues it). Each captured frame is recorded with the wall time it left the audio thread, so
// the wall time of any sample is its frame's time less the samples after it in that frame. A note in audio sent
// again after a reconnection counts from when it was captured, the outage included. The microphone's own input
// latency (a few ms, not exposed by browsers) is not included. Pure (tests/web/unit/latency.test.mjs).

const KEEP_SECONDS = 120; // events never refer further back than a model window, far less than this
const RECENT = 20;

export class LatencyMeter {
  constructor(sampleRate) {
    this.sampleRate = sampleRate;
    this.frames = []; // [first sample, sample just past the frame, wall ms when the frame arrived], in order
    this.recent = [];
  }

  recordFrame(startSample, endSample, wallMs) {
    this.frames.push([startSample, endSample, wallMs]);
    const oldest = endSample - KEEP_SECONDS * this.sampleRate;
    if (this.frames[0][1] < oldest) this.frames.splice(0, Math.ceil(this.frames.length / 4));
  }

  /** Wall ms at which the page had the sample at `seconds` of session audio, or null if not recorded. */
  wallTimeAt(seconds) {
    const sample = seconds * this.sampleRate;
    const frames = this.frames;
    if (frames.length === 0 || sample < frames[0][0] || sample > frames[frames.length - 1][1]) return null;
    let lo = 0;
    let hi = frames.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (frames[mid][1] < sample) lo = mid + 1;
      else hi = mid;
    }
    const [, end, wall] = frames[lo];
    return wall - ((end - sample) / this.sampleRate) * 1000;
  }

  /** Record a note that arrived at `arrivalMs`; returns its latency in ms (null when its audio is unknown). */
  noteArrived(onsetSeconds, arrivalMs) {
    const captured = this.wallTimeAt(onsetSeconds);
    if (captured === null) return null;
    const latency = arrivalMs - captured;
    this.recent.push(latency);
    if (this.recent.length > RECENT) this.recent.shift();
    return latency;
  }

  get median() {
    if (this.recent.length === 0) return null;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }
}
