// A Standard MIDI File (format 0) of the session's notes, written in the browser for "Download MIDI".
//
// Times stay exact: each event's absolute tick is rounded from its absolute time in seconds, and only then are
// deltas taken, so rounding never accumulates however long the session.

export const TICKS_PER_QUARTER = 480;
const MICROSECONDS_PER_QUARTER = 500_000; // 120 bpm, the MIDI default
export const TICKS_PER_SECOND = (TICKS_PER_QUARTER * 1_000_000) / MICROSECONDS_PER_QUARTER;
const DRUM_CHANNEL = 9; // General MIDI channel 10, zero-based
const MELODIC_CHANNELS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15];

// Events at the same tick: a note ends before the next one on that key starts; a program change comes before notes.
const ORDER_NOTE_OFF = 0;
const ORDER_PROGRAM = 1;
const ORDER_NOTE_ON = 2;

export function secondsToTicks(seconds) {
  return Math.max(0, Math.round(seconds * TICKS_PER_SECOND));
}

function variableLength(value) {
  const bytes = [value & 0x7f];
  for (let v = value >>> 7; v > 0; v >>>= 7) bytes.unshift((v & 0x7f) | 0x80);
  return bytes;
}

function ascii(text) {
  return Array.from(text, (c) => c.charCodeAt(0) & 0x7f);
}

function uint32(value) {
  return [(value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
}

/**
 * Notes are {pitch, velocity, program, isDrum, onset, offset} in seconds; a note still sounding (offset null)
 * ends at `endSeconds`. Melodic programs get their own channel in order of first use (sharing one, with a
 * program change per note, only past 15 programs); drums go to channel 10.
 */
export function encodeMidi(notes, endSeconds, name = "streamer session") {
  const timed = []; // [tick, order, bytes]
  const channelOf = new Map();
  const channelProgram = new Map();
  const sorted = [...notes].sort((a, b) => a.onset - b.onset);
  for (const note of sorted) {
    let channel = DRUM_CHANNEL;
    if (!note.isDrum) {
      if (!channelOf.has(note.program)) {
        channelOf.set(note.program, MELODIC_CHANNELS[channelOf.size % MELODIC_CHANNELS.length]);
      }
      channel = channelOf.get(note.program);
    }
    const on = secondsToTicks(note.onset);
    // A note shorter than a tick still lasts one, so its note-off cannot sort before its note-on.
    const off = Math.max(on + 1, secondsToTicks(note.offset ?? endSeconds));
    if (!note.isDrum && channelProgram.get(channel) !== note.program) {
      timed.push([on, ORDER_PROGRAM, [0xc0 | channel, note.program]]);
      channelProgram.set(channel, note.program);
    }
    const velocity = Math.min(127, Math.max(1, note.velocity));
    timed.push([on, ORDER_NOTE_ON, [0x90 | channel, note.pitch, velocity]]);
    timed.push([off, ORDER_NOTE_OFF, [0x80 | channel, note.pitch, 0]]);
  }
  timed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);

  const nameBytes = ascii(name);
  const track = [
    ...[0x00, 0xff, 0x03, ...variableLength(nameBytes.length), ...nameBytes],
    ...[0x00, 0xff, 0x51, 0x03, ...uint32(MICROSECONDS_PER_QUARTER).slice(1)],
  ];
  let previous = 0;
  for (const [tick, , bytes] of timed) {
    track.push(...variableLength(tick - previous), ...bytes);
    previous = tick;
  }
  const end = Math.max(previous, secondsToTicks(endSeconds));
  track.push(...variableLength(end - previous), 0xff, 0x2f, 0x00);

  const header = [...ascii("MThd"), ...uint32(6), 0, 0, 0, 1, TICKS_PER_QUARTER >> 8, TICKS_PER_QUARTER & 0xff];
  return new Uint8Array([...header, ...ascii("MTrk"), ...uint32(track.length), ...track]);
}
