// AudioWorklet processor: cuts the microphone signal into fixed-size frames of 16-bit PCM for the socket.
// Runs on the audio thread; the node is created with channelCount 1 ("explicit"), so the input is already mono.

class PcmFrameProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frameSamples = options.processorOptions.frameSamples;
    this.startFrame();
  }

  startFrame() {
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channel = inputs[0][0];
    if (channel === undefined) return true; // the source is not connected yet (or went away): nothing to send
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      const magnitude = Math.abs(s);
      if (magnitude > this.peak) this.peak = magnitude;
      this.frame[this.filled++] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
      if (this.filled === this.frameSamples) {
        // The buffer is transferred, not copied: a new one is allocated for the next frame.
        this.port.postMessage({ pcm: this.frame.buffer, peak: this.peak }, [this.frame.buffer]);
        this.startFrame();
      }
    }
    return true;
  }
}

registerProcessor("pcm-frames", PcmFrameProcessor);
