// Optional playback of detected notes: a small WebAudio synth, one voice per sounding note.
// It plays notes as they arrive (a latency behind the microphone), so use headphones or the microphone hears it.
// Voices are keyed by the note's `key` (session and id: ids restart in every session of a resumed run).

const ATTACK_S = 0.005;
const DECAY_S = 0.6;
const SUSTAIN = 0.35;
const RELEASE_S = 0.15;
const MAX_NOTE_S = 8; // a note whose note_off never comes (connection lost) still stops
const MASTER_GAIN = 0.25;

// One waveform per General MIDI family (program ÷ 8): enough to hear instruments apart.
const WAVEFORMS = [
  "triangle", "sine", "square", "triangle", "sawtooth", "sawtooth", "sawtooth", "sawtooth",
  "square", "sine", "sawtooth", "triangle", "triangle", "triangle", "sine", "sine",
];

function frequency(pitch) {
  return 440 * 2 ** ((pitch - 69) / 12);
}

export class Synth {
  constructor() {
    this.context = null;
    this.voices = new Map();
  }

  /** Must be called from a user gesture (the checkbox), or browsers keep the context suspended. */
  async enable() {
    if (this.context === null) {
      this.context = new AudioContext();
      this.master = this.context.createGain();
      this.master.gain.value = MASTER_GAIN;
      this.master.connect(this.context.destination);
    }
    await this.context.resume();
  }

  async disable() {
    this.allOff();
    if (this.context) await this.context.suspend();
  }

  get enabled() {
    return this.context?.state === "running";
  }

  noteOn(note) {
    if (!this.enabled) return;
    const ctx = this.context;
    const t = ctx.currentTime;
    const amp = (note.velocity / 127) * 0.6;
    const gain = ctx.createGain();
    gain.connect(this.master);
    if (note.isDrum) {
      this.drum(note, gain, amp, t);
      return;
    }
    const osc = ctx.createOscillator();
    osc.type = WAVEFORMS[Math.floor(note.program / 8)];
    osc.frequency.value = frequency(note.pitch);
    const filter = ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = Math.min(8000, frequency(note.pitch) * 6);
    osc.connect(filter).connect(gain);
    gain.gain.setValueAtTime(0, t);
    gain.gain.linearRampToValueAtTime(amp, t + ATTACK_S);
    gain.gain.setTargetAtTime(amp * SUSTAIN, t + ATTACK_S, DECAY_S / 3);
    osc.start(t);
    osc.stop(t + MAX_NOTE_S);
    this.voices.set(note.key, { osc, gain });
    osc.onended = () => this.voices.delete(note.key);
  }

  /** Drums: a filtered noise burst, lower and longer for low drum keys (kicks, toms) than for cymbals. */
  drum(note, gain, amp, t) {
    const ctx = this.context;
    const length = note.pitch < 48 ? 0.25 : 0.12;
    const buffer = ctx.createBuffer(1, Math.ceil(ctx.sampleRate * length), ctx.sampleRate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    const filter = ctx.createBiquadFilter();
    filter.type = note.pitch < 48 ? "lowpass" : "highpass";
    filter.frequency.value = note.pitch < 48 ? 200 : 5000;
    source.connect(filter).connect(gain);
    gain.gain.setValueAtTime(amp, t);
    gain.gain.exponentialRampToValueAtTime(0.001, t + length);
    source.start(t);
  }

  noteOff(note) {
    const voice = this.voices.get(note.key);
    if (voice === undefined) return;
    const t = this.context.currentTime;
    if (voice.gain.gain.cancelAndHoldAtTime) voice.gain.gain.cancelAndHoldAtTime(t);
    else voice.gain.gain.cancelScheduledValues(t);
    voice.gain.gain.setTargetAtTime(0, t, RELEASE_S / 3);
    voice.osc.stop(t + RELEASE_S * 2);
    this.voices.delete(note.key);
  }

  allOff() {
    for (const key of [...this.voices.keys()]) this.noteOff({ key });
  }
}
