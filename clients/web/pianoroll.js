// A scrolling piano roll on a canvas: time runs left to right with "now" at the right edge, pitch bottom to top,
// and drums in a lane of their own below the keys. Interim notes (not committed yet) are drawn faintly, outlined.

import { instrumentOf, isBlackKey, noteName } from "./notes.js";

const SPAN_SECONDS = 10;
const KEYS_WIDTH = 44; // CSS px of the keyboard column
const DRUM_LANE = 34; // CSS px
const TIME_AXIS = 18; // CSS px
const MIN_PITCH_SPAN = 24;
const PITCH_MARGIN = 3;
const EMPTY_RANGE = [48, 84];

const COLOURS = {
  background: "#11151c",
  whiteRow: "#171c25",
  blackRow: "#11151c",
  octaveLine: "#2a3342",
  secondLine: "#222a36",
  keyWhite: "#d9dee7",
  keyBlack: "#2b3240",
  keyEdge: "#9aa3b2",
  keyLabel: "#4a5568",
  label: "#8a96a8",
  now: "#e53e3e",
};
const INTERIM_ALPHA = 0.3;

/** The pitch rows shown: every melodic note of the session with a margin, at least two octaves. */
function pitchRange(notes) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const note of notes) {
    if (note.isDrum) continue;
    lo = Math.min(lo, note.pitch);
    hi = Math.max(hi, note.pitch);
  }
  if (lo > hi) return EMPTY_RANGE;
  lo -= PITCH_MARGIN;
  hi += PITCH_MARGIN;
  const missing = MIN_PITCH_SPAN - (hi - lo);
  if (missing > 0) {
    lo -= Math.floor(missing / 2);
    hi += Math.ceil(missing / 2);
  }
  return [Math.max(0, lo), Math.min(127, hi)];
}

export class PianoRoll {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.notes = [];
    this.interim = [];
    this.now = 0;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { width, height } = this.canvas.getBoundingClientRect();
    this.width = width;
    this.height = height;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw(this.notes, this.interim, this.now);
  }

  /**
   * Draw committed `notes` and `interim` notes as they stand when `now` seconds of audio have been sent; returns
   * how many interim notes are in view.
   */
  draw(notes, interim, now) {
    this.notes = notes;
    this.interim = interim;
    this.now = now;
    const { ctx, width, height } = this;
    if (!width || !height) return 0;
    const [lo, hi] = pitchRange([...notes, ...interim]);
    const rollTop = 0;
    const rollBottom = height - TIME_AXIS - DRUM_LANE;
    const row = (rollBottom - rollTop) / (hi - lo + 1);
    const rollWidth = width - KEYS_WIDTH;
    const start = now - SPAN_SECONDS;
    const x = (t) => KEYS_WIDTH + ((t - start) / SPAN_SECONDS) * rollWidth;
    const y = (pitch) => rollBottom - (pitch - lo + 1) * row;

    ctx.fillStyle = COLOURS.background;
    ctx.fillRect(0, 0, width, height);

    ctx.fillStyle = COLOURS.keyWhite;
    ctx.fillRect(0, rollTop, KEYS_WIDTH - 2, rollBottom - rollTop);
    ctx.font = `${Math.min(10, Math.max(8, row))}px system-ui, sans-serif`;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let p = lo; p <= hi; p++) {
      const black = isBlackKey(p);
      ctx.fillStyle = black ? COLOURS.blackRow : COLOURS.whiteRow;
      ctx.fillRect(KEYS_WIDTH, y(p), rollWidth, row);
      if (black) {
        ctx.fillStyle = COLOURS.keyBlack;
        ctx.fillRect(0, y(p), KEYS_WIDTH * 0.6, row);
      }
      if (p % 12 === 0 || p % 12 === 5) {
        // The two places where white keys meet without a black key between them: B|C and E|F.
        ctx.fillStyle = COLOURS.keyEdge;
        ctx.fillRect(0, y(p) + row - 1, KEYS_WIDTH - 2, 1);
      }
      if (p % 12 === 0) {
        ctx.fillStyle = COLOURS.octaveLine;
        ctx.fillRect(KEYS_WIDTH, y(p) + row - 1, rollWidth, 1);
        if (row >= 6) {
          ctx.fillStyle = COLOURS.keyLabel;
          ctx.fillText(noteName(p), KEYS_WIDTH - 5, y(p) + row / 2);
        }
      }
    }
    ctx.textAlign = "left";

    ctx.fillStyle = COLOURS.label;
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillText("Drums", 4, rollBottom + DRUM_LANE / 2);
    ctx.textBaseline = "top";
    for (let s = Math.ceil(Math.max(0, start)); s <= now; s++) {
      ctx.fillStyle = COLOURS.secondLine;
      ctx.fillRect(x(s), rollTop, 1, rollBottom + DRUM_LANE);
      ctx.fillStyle = COLOURS.label;
      if (x(s) + 24 < width) ctx.fillText(`${s}s`, x(s) + 2, rollBottom + DRUM_LANE + 4);
    }
    ctx.fillStyle = COLOURS.octaveLine;
    ctx.fillRect(KEYS_WIDTH, rollBottom, rollWidth, 1);

    ctx.save();
    ctx.beginPath();
    ctx.rect(KEYS_WIDTH, 0, rollWidth, height);
    ctx.clip();
    for (const note of notes) {
      const end = note.offset ?? now;
      if (end < start) continue;
      const [, colour] = instrumentOf(note);
      ctx.globalAlpha = 0.55 + 0.45 * (note.velocity / 127);
      ctx.fillStyle = colour;
      if (note.isDrum) {
        // Drums have no length: a diamond at the onset, raised by its drum key so the kit's pieces separate.
        const cx = x(note.onset);
        const cy = rollBottom + DRUM_LANE - 6 - ((note.pitch - 35) / 47) * (DRUM_LANE - 12);
        ctx.beginPath();
        ctx.moveTo(cx, cy - 5);
        ctx.lineTo(cx + 5, cy);
        ctx.lineTo(cx, cy + 5);
        ctx.lineTo(cx - 5, cy);
        ctx.fill();
        continue;
      }
      if (note.pitch < lo || note.pitch > hi) continue;
      const left = x(note.onset);
      const w = Math.max(2, x(end) - left);
      ctx.fillRect(left, y(note.pitch) + 1, w, Math.max(1, row - 2));
      if (note.offset === null) {
        // Still sounding: a bright edge at "now".
        ctx.globalAlpha = 1;
        ctx.fillStyle = "#ffffff";
        ctx.fillRect(left + w - 2, y(note.pitch) + 1, 2, Math.max(1, row - 2));
      }
    }
    const interimShown = this.drawInterim(interim, start, now, x, y, row, lo, hi);
    ctx.restore();
    ctx.globalAlpha = 1;
    ctx.fillStyle = COLOURS.now;
    ctx.fillRect(width - 2, 0, 2, rollBottom + DRUM_LANE);
    return interimShown;
  }

  /** Interim notes: sounding from their onset to now, faint and outlined, for they may still move or vanish. */
  drawInterim(interim, start, now, x, y, row, lo, hi) {
    const ctx = this.ctx;
    let shown = 0;
    for (const note of interim) {
      if (note.isDrum || note.pitch < lo || note.pitch > hi || now < start) continue;
      const [, colour] = instrumentOf(note);
      const left = x(Math.max(note.onset, start));
      const w = Math.max(3, x(now) - left);
      const h = Math.max(1, row - 2);
      ctx.globalAlpha = INTERIM_ALPHA;
      ctx.fillStyle = colour;
      ctx.fillRect(left, y(note.pitch) + 1, w, h);
      ctx.globalAlpha = 0.9;
      ctx.strokeStyle = colour;
      ctx.setLineDash([3, 2]);
      ctx.strokeRect(left + 0.5, y(note.pitch) + 1.5, w - 1, Math.max(0, h - 1));
      ctx.setLineDash([]);
      shown += 1;
    }
    return shown;
  }
}
