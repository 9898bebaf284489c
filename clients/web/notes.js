// The run's notes, built from committed `note_on` / `note_off` events, the interim notes of the latest `interim`
// message, and how a note is named and coloured. Pure: no DOM, no clocks (tests/web/unit/notes.test.mjs).

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

/** Interim and committed notes are the same sound when they share an instrument and a pitch. */
function sameSound(a, b) {
  return a.pitch === b.pitch && a.isDrum === b.isDrum && a.program === b.program;
}

/**
 * Committed notes of a run that may span several server sessions (a resumed stream): note ids restart at 1 in
 * every session, so a note is keyed by its session and id. Interim notes are kept apart and never become notes:
 * each `interim` message replaces the previous set; a committed `note_on` of the same sound confirms one.
 */
export class NoteStore {
  constructor() {
    this.clear();
  }

  clear() {
    this.notes = [];
    this.open = new Map(); // key → note still sounding
    this.interim = [];
    this.interimStats = { messages: 0, shown: 0, confirmed: 0, dropped: 0 };
  }

  /** Apply one `events` message of `session`; returns the notes it started and ended, for playback. */
  apply(events, session) {
    const started = [];
    const ended = [];
    for (const event of events) {
      if (event.type === "note_on") {
        const note = {
          session,
          id: event.id,
          key: `${session}#${event.id}`,
          pitch: event.pitch,
          velocity: event.velocity,
          program: event.program,
          isDrum: event.is_drum,
          onset: event.time,
          offset: null,
        };
        this.notes.push(note);
        this.open.set(note.key, note);
        started.push(note);
        this.confirm(note);
      } else if (event.type === "note_off") {
        const note = this.open.get(`${session}#${event.id}`);
        if (note === undefined) continue;
        note.offset = event.time;
        this.open.delete(note.key);
        ended.push(note);
      }
    }
    return { started, ended };
  }

  /** End every note still sounding at `time` (its session went away without closing it); returns them. */
  closeOpen(time) {
    const ended = [...this.open.values()];
    for (const note of ended) note.offset = Math.max(time, note.onset);
    this.open.clear();
    return ended;
  }

  /**
   * An `interim` message (or null: forget the interim notes, their session is gone). It replaces the set: an
   * interim note that was there before and is not now was dropped; one that is new is shown.
   */
  setInterim(message) {
    const next = (message?.notes ?? []).map((n) => ({
      pitch: n.pitch,
      onset: n.onset,
      velocity: n.velocity,
      program: n.program ?? 0,
      isDrum: n.is_drum ?? false,
    }));
    if (message) this.interimStats.messages += 1;
    const unmatched = [...this.interim];
    for (const note of next) {
      const before = unmatched.findIndex((old) => sameSound(old, note));
      if (before >= 0) unmatched.splice(before, 1);
      else this.interimStats.shown += 1;
    }
    this.interimStats.dropped += unmatched.length;
    this.interim = next;
  }

  /** A committed note confirms the interim note of the same sound (the earliest, if there are several). */
  confirm(note) {
    const index = this.interim.findIndex((candidate) => sameSound(candidate, note));
    if (index < 0) return;
    this.interim.splice(index, 1);
    this.interimStats.confirmed += 1;
  }
}
