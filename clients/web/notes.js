// The session's notes, built from `note_on` / `note_off` events, and how a note is named and coloured.

const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/** MIDI 60 is C4, as in the command-line client. */
export function noteName(pitch) {
  return `${NOTE_NAMES[pitch % 12]}${Math.floor(pitch / 12) - 1}`;
}

export function isBlackKey(pitch) {
  return [1, 3, 6, 8, 10].includes(pitch % 12);
}

// General MIDI groups its 128 programs in 16 families of 8; each family gets one hue.
export const FAMILIES = [
  ["Piano", "#5aa9ff"],
  ["Chromatic percussion", "#4fd1c5"],
  ["Organ", "#b794f4"],
  ["Guitar", "#f6ad55"],
  ["Bass", "#fc8181"],
  ["Strings", "#68d391"],
  ["Ensemble", "#9ae6b4"],
  ["Brass", "#f6e05e"],
  ["Reed", "#ed64a6"],
  ["Pipe", "#90cdf4"],
  ["Synth lead", "#f687b3"],
  ["Synth pad", "#a3bffa"],
  ["Synth effects", "#d6bcfa"],
  ["Ethnic", "#fbd38d"],
  ["Percussive", "#feb2b2"],
  ["Sound effects", "#cbd5e0"],
];
export const DRUMS = ["Drums", "#e2e8f0"];

/** [name, colour] of the note's instrument family, or of the drum kit. */
export function instrumentOf(note) {
  return note.isDrum ? DRUMS : FAMILIES[Math.floor(note.program / 8)];
}

export class NoteStore {
  constructor() {
    this.clear();
  }

  clear() {
    this.notes = [];
    this.open = new Map();
  }

  /** Apply one `events` message; returns the notes it started and ended, for playback. */
  apply(events) {
    const started = [];
    const ended = [];
    for (const event of events) {
      if (event.type === "note_on") {
        const note = {
          id: event.id,
          pitch: event.pitch,
          velocity: event.velocity,
          program: event.program,
          isDrum: event.is_drum,
          onset: event.time,
          offset: null,
        };
        this.notes.push(note);
        this.open.set(event.id, note);
        started.push(note);
      } else if (event.type === "note_off") {
        const note = this.open.get(event.id);
        if (note === undefined) continue;
        note.offset = event.time;
        this.open.delete(event.id);
        ended.push(note);
      }
    }
    return { started, ended };
  }
}
