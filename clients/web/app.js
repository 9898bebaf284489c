// The demo page: microphone → AudioWorklet → WebSocket → note events → piano roll, latency, playback, MIDI.
// `window.streamerDemo` exposes the page's state for tests and for the curious (open the console).

import { Capture, listMicrophones, microphoneError, openMicrophone } from "./capture.js";
import { StreamConnection, streamUrl } from "./connection.js";
import { LatencyMeter } from "./latency.js";
import { NoteStore, instrumentOf, noteName } from "./notes.js";
import { PianoRoll } from "./pianoroll.js";
import { CLOSE_GOING_AWAY } from "./resume.js";
import { LiveStream } from "./stream.js";
import { Synth } from "./synth.js";

const HEALTH_POLL_MS = 5000;
const STOP_TIMEOUT_MS = 15000; // the server's last window and `done` normally come well within this
const BACKLOG_WARN_S = 0.25;
const RECENT_NOTES = 16;
const METER_FLOOR_DB = -60;
const METER_FALL_DB_PER_S = 30;
const READOUT_INTERVAL_MS = 250;

// What a server error code means to the person at the microphone; the server's own message follows it.
const SERVER_ERRORS = {
  busy: "The server is busy: every session is in use. Try again in a few seconds.",
  unknown_model: "The server does not have that model.",
  invalid_option: "The server refused a setting.",
  unsupported_format: "The server cannot take this audio format.",
  unauthorized: "The server refused the connection (not authorized).",
  timeout: "The server ended the session: it received no audio for too long.",
  session_too_long: "The session reached the server's time limit.",
  shutting_down: "The server is shutting down.",
  rate_limited: "The page sent too many messages; the server slowed it down.",
  model_failed: "The model failed on part of the audio; some notes may be missing.",
};

function decibels(amplitude) {
  return amplitude > 0 ? Math.max(METER_FLOOR_DB, 20 * Math.log10(amplitude)) : METER_FLOOR_DB;
}

function milliseconds(seconds) {
  return `${Math.round(seconds * 1000)} ms`;
}

function base64Bytes(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

class DemoPage {
  constructor() {
    // Every element with an id, by its id in camel case: #meter-fill is this.el.meterFill.
    const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());
    this.el = Object.fromEntries([...document.querySelectorAll("[id]")].map((e) => [camel(e.id), e]));
    this.store = new NoteStore();
    this.roll = new PianoRoll(this.el.roll);
    this.synth = new Synth();
    this.models = [];
    this.starting = false; // between Start and a run (or its failure)
    this.serverSeen = false;
    this.active = null; // the run in progress: {capture, live, latency, stopRequested, stopTimer, from, part}
    // One per server session of the last run: {session, from, to, state: "live" | "file" | "none" | "gone",
    // midi (bytes), error, url}; "gone" when its server went away without sending `done`.
    this.midiParts = [];
    this.meterDb = METER_FLOOR_DB;
    this.lastFrameWall = 0;
    this.frameSeconds = 0;
    this.rollDirty = true;
    this.state = {
      status: "idle",
      statusText: "",
      notes: this.store.notes,
      interim: this.store.interim,
      interimStats: this.store.interimStats,
      interimDrawn: 0, // animation frames in which the roll drew interim notes
      errors: [],
      warnings: [],
      latencyMs: null,
      latencyMedianMs: null,
      level: 0,
      maxLevel: 0,
      sampleRate: null,
      samplesSent: 0, // timeline position of the audio sent to the server
      samplesCaptured: 0, // timeline position of the audio captured (ahead of samplesSent while reconnecting)
      backlogSeconds: 0,
      session: null, // the current session's `ready`
      sessions: [], // every session of the run: {session, model, resumeAt}
      resumes: [], // {attempt, resumeAt, lostSeconds, closeCode, session}
      done: null, // the last `done`
      midiFiles: [], // the server's MIDI files of the run: {session, from, to, bytes, error}
    };
    window.streamerDemo = this.state;
  }

  async init() {
    this.el.controls.addEventListener("submit", (e) => {
      e.preventDefault();
      if (this.active) this.stop();
      else if (!this.starting) this.start();
    });
    this.el.model.addEventListener("change", () => this.showModel());
    this.el.download.addEventListener("click", () => this.downloadMidi());
    this.el.playback.addEventListener("change", () =>
      this.el.playback.checked ? this.synth.enable() : this.synth.disable(),
    );
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.refreshDevices());
    await this.refreshDevices();
    await this.pollHealth();
    setInterval(() => this.pollHealth(), HEALTH_POLL_MS);
    requestAnimationFrame((t) => this.animate(t));
  }

  // ---- server discovery ----------------------------------------------------------------------------------------

  async pollHealth() {
    if (this.active || this.starting) return; // during a run the socket says whether the server is there
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      if (this.models.length === 0) await this.loadModels();
      if (this.active || this.starting) return;
      if (this.state.status === "disconnected" || !this.serverSeen) {
        this.setStatus("idle", "Ready: press Start and play");
      }
      this.serverSeen = true;
      this.el.start.disabled = false;
    } catch {
      if (!this.active && !this.starting && this.state.status !== "disconnected") {
        this.setStatus("disconnected", "Disconnected: the server is not answering");
      }
    }
  }

  async loadModels() {
    const response = await fetch("/v1/models", { cache: "no-store" });
    const info = await response.json();
    this.models = info.models;
    this.el.model.replaceChildren(
      ...info.models.map((m) => new Option(m.name, m.name, m.name === info.default, m.name === info.default)),
    );
    this.showModel();
  }

  selectedModel() {
    return this.models.find((m) => m.name === this.el.model.value);
  }

  /**
   * The chosen model's description and hop. A streaming model reads the audio in blocks of its own and takes no
   * hop (a `start` with one is refused), so the control is disabled, and empty: a disabled field is neither
   * submitted nor validated.
   */
  showModel() {
    const model = this.selectedModel();
    if (!model) return;
    const hop = this.el.hop;
    if (model.streaming) {
      hop.value = "";
      hop.placeholder = "–";
      this.el.hopHelp.textContent =
        `${model.name} streams: it reads the audio in blocks of ${milliseconds(model.window)} and commits each ` +
        `note once ${milliseconds(model.lookahead)} of audio after it has arrived (its look-ahead), so there is ` +
        "no hop to choose.";
      this.el.modelDescription.textContent = `${model.description}.`;
    } else {
      hop.min = model.min_hop;
      hop.max = Math.max(model.min_hop, model.max_hop); // the server rounds max_hop to 3 decimals
      hop.value = model.default_hop;
      hop.placeholder = "";
      this.el.hopHelp.textContent =
        `The hop is how often the model looks again (${model.min_hop}–${model.max_hop} s): shorter is faster ` +
        "and costs more.";
      this.el.modelDescription.textContent = `${model.description} (window ${model.window.toFixed(2)} s).`;
    }
    hop.disabled = model.streaming || this.active !== null;
  }

  async refreshDevices(selectedId) {
    const current = selectedId ?? this.el.device.value;
    let microphones = [];
    try {
      microphones = await listMicrophones();
    } catch {
      return; // the list stays as it was; the system default still works
    }
    this.el.device.replaceChildren(
      new Option("System default", ""),
      ...microphones.map((m) => new Option(m.label, m.id, false, m.id === current)),
    );
  }

  // ---- a run ---------------------------------------------------------------------------------------------------

  async start() {
    this.resetRun();
    this.setStatus("starting", "Opening the microphone…");
    this.updateControls(true);
    // Until there is a run to stop the button does nothing; it is not disabled, which would take the keyboard
    // focus away from it.
    this.el.start.setAttribute("aria-disabled", "true");
    this.starting = true;
    try {
      await this.open();
    } finally {
      this.starting = false;
    }
  }

  /** The steps of Start: the microphone, the audio graph, then the socket until the server is `ready`. */
  async open() {
    let media;
    try {
      media = await openMicrophone(this.el.device.value);
    } catch (error) {
      const { code, message } = microphoneError(error);
      this.report(code, message);
      this.setStatus("error", code === "microphone_denied" ? "Microphone denied" : "No microphone");
      this.updateControls(false);
      return;
    }
    const capture = new Capture(media, (frame) => this.onFrame(frame));
    try {
      await capture.start();
    } catch (error) {
      await capture.stop();
      this.report("audio_error", `Audio capture could not start: ${error.message}`);
      this.setStatus("error", "Audio capture failed");
      this.updateControls(false);
      return;
    }
    this.refreshDevices(capture.deviceId);
    this.frameSeconds = 0;
    this.state.sampleRate = capture.sampleRate;
    const url = streamUrl(window.location);
    const run = {
      capture,
      latency: new LatencyMeter(capture.sampleRate),
      stopRequested: false,
      stopTimer: null,
      from: 0, // where the current session begins on the timeline
      part: null, // the current session's entry in midiParts
    };
    run.live = new LiveStream({
      connect: (handlers) => new StreamConnection(url, handlers),
      wait: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      start: this.startMessage(capture.sampleRate),
      listener: this.listenerFor(run),
    });
    this.active = run;
    this.el.start.removeAttribute("aria-disabled");
    capture.onEnded(() => {
      if (this.active !== run) return;
      this.report("microphone_lost", "The microphone stopped (unplugged, or access was revoked).");
      this.stop();
    });
    this.setStatus("starting", "Connecting to the server…");
    await run.live.open();
  }

  startMessage(sampleRate) {
    const model = this.selectedModel();
    const start = {
      type: "start",
      sample_rate: sampleRate,
      encoding: "s16le",
      channels: 1,
      model: this.el.model.value || null,
      interim: true,
      midi_file: true,
    };
    const hop = Number.parseFloat(this.el.hop.value);
    if (model && !model.streaming && Number.isFinite(hop)) start.hop = hop;
    return start;
  }

  listenerFor(run) {
    const mine = (handler) => (...args) => {
      if (this.active === run) handler(...args);
    };
    return {
      ready: mine((ready, { resumed }) => this.onReady(run, ready, resumed)),
      events: mine((events, session) => this.onEvents(run, events, session)),
      interim: mine((message) => this.onInterim(message)),
      lagging: mine((message) => this.onLagging(message)),
      error: mine((message) => this.onServerError(message)),
      done: mine((message) => this.onDone(run, message)),
      reconnecting: mine((attempt) => this.onReconnecting(run, attempt)),
      resumed: mine((resume) => this.onResumed(run, resume)),
      ended: mine((end) => this.onEnded(run, end)),
    };
  }

  async stop() {
    const run = this.active;
    if (!run || run.stopRequested) return;
    run.stopRequested = true;
    this.setStatus("stopping", "Finishing: waiting for the last notes…");
    await run.capture.stop();
    run.live.stop();
    if (this.active === run) run.stopTimer = setTimeout(() => run.live.abort(), STOP_TIMEOUT_MS);
  }

  resetRun() {
    this.store.clear();
    this.synth.allOff();
    for (const part of this.midiParts) if (part.url) URL.revokeObjectURL(part.url);
    this.midiParts = [];
    Object.assign(this.state, {
      notes: this.store.notes,
      interim: this.store.interim,
      interimStats: this.store.interimStats,
      interimDrawn: 0,
      errors: [],
      warnings: [],
      latencyMs: null,
      latencyMedianMs: null,
      maxLevel: 0,
      samplesSent: 0,
      samplesCaptured: 0,
      backlogSeconds: 0,
      session: null,
      sessions: [],
      resumes: [],
      done: null,
      midiFiles: [],
    });
    this.el.error.hidden = true;
    this.el.warning.hidden = true;
    this.el.backlogBox.hidden = true;
    this.el.interimKey.hidden = true;
    this.el.latency.textContent = "–";
    this.el.recent.replaceChildren();
    this.el.legend.replaceChildren();
    this.showMidiParts();
    this.showCounts();
    this.rollDirty = true;
  }

  onFrame({ pcm, peak }) {
    this.state.level = peak;
    this.state.maxLevel = Math.max(this.state.maxLevel, peak);
    this.meterDb = Math.max(this.meterDb, decibels(peak));
    const run = this.active;
    if (!run || run.stopRequested) return;
    const first = run.live.push(pcm);
    if (first === null) return; // before the first session is ready: not part of the run
    this.lastFrameWall = performance.now();
    this.frameSeconds = pcm.length / this.state.sampleRate;
    this.state.samplesCaptured = first + pcm.length;
    this.state.samplesSent = run.live.samplesSent;
    run.latency.recordFrame(first, first + pcm.length, this.lastFrameWall);
    this.showBacklog(run.live.bufferedAmount / 2 / this.state.sampleRate);
  }

  onReady(run, ready, resumed) {
    this.state.session = ready;
    this.state.sessions.push({ session: ready.session, model: ready.model, resumeAt: run.from });
    run.part = { session: ready.session, from: run.from, to: null, state: "live", midi: null, error: null };
    this.midiParts.push(run.part);
    this.showMidiParts();
    if (!resumed && !run.stopRequested) this.setStatus("streaming", `Listening: ${this.describe(ready)}`);
  }

  /** The model as the status line names it: a streaming model by its look-ahead, a windowed one by its hop. */
  describe(ready) {
    const streaming = this.models.find((m) => m.name === ready.model)?.streaming ?? ready.lookahead > 0;
    if (streaming) return `${ready.model}, streaming with ${milliseconds(ready.lookahead)} look-ahead`;
    return `${ready.model}, hop ${ready.hop.toFixed(2)} s`;
  }

  onEvents(run, events, session) {
    const arrived = performance.now();
    const { started, ended } = this.store.apply(events, session);
    for (const note of started) {
      const latency = run.latency.noteArrived(note.onset, arrived);
      if (latency != null) {
        this.state.latencyMs = Math.round(latency);
        this.state.latencyMedianMs = Math.round(run.latency.median);
      }
      this.synth.noteOn(note);
    }
    for (const note of ended) this.synth.noteOff(note);
    if (started.length > 0) this.showNewNotes(started);
    this.state.interim = this.store.interim;
    this.showCounts();
    this.rollDirty = true;
  }

  onInterim(message) {
    this.store.setInterim(message);
    this.state.interim = this.store.interim;
    if (this.store.interim.length > 0) this.el.interimKey.hidden = false;
    this.rollDirty = true;
  }

  onLagging(message) {
    const text =
      `The server is falling behind (${message.behind.toFixed(1)} s): it skipped ` +
      `${message.skipped_windows} window(s). ${message.message}`;
    this.warn("lagging", text);
  }

  onServerError(message) {
    const meaning = SERVER_ERRORS[message.code] ?? `Server error (${message.code}).`;
    this.report(message.code, `${meaning} ${message.message}`, message.fatal);
  }

  onDone(run, message) {
    this.state.done = message;
    const part = run.part;
    Object.assign(part, { to: message.duration, state: message.midi ? "file" : "none", error: message.midi_error });
    if (message.midi) {
      part.midi = base64Bytes(message.midi);
      part.url = URL.createObjectURL(new Blob([part.midi], { type: "audio/midi" }));
    }
    this.showMidiParts();
    if (message.midi_error) {
      this.warn("midi_error", `The server had trouble with the session's MIDI file: ${message.midi_error}`);
    } else if (!message.midi) {
      this.warn("midi_missing", "The server sent no MIDI file for the session.");
    }
  }

  onReconnecting(run, { attempt, tries, code }) {
    if (attempt === 1) {
      // The session is gone: its interim notes with it; its sounding notes end where the next session begins.
      this.store.setInterim(null);
      this.state.interim = this.store.interim;
      this.synth.allOff();
      this.showBacklog(0);
      this.sessionGone(run);
    }
    const why = code === CLOSE_GOING_AWAY ? "the server shut down" : "the connection to the server was lost";
    this.setStatus("reconnecting", `Reconnecting: ${why} (try ${attempt} of ${tries})…`);
    this.rollDirty = true;
  }

  onResumed(run, { resumeAt, lostSeconds, ready, attempt }) {
    for (const note of this.store.closeOpen(resumeAt)) this.synth.noteOff(note);
    if (run.part.to === null) run.part.to = resumeAt;
    this.state.resumes.push({
      attempt,
      resumeAt,
      lostSeconds,
      closeCode: run.live.lastClose?.code ?? null,
      session: ready.session,
    });
    run.from = resumeAt;
    this.state.samplesSent = run.live.samplesSent;
    this.warn(
      "reconnected",
      `Reconnected after the server went away: resumed at ${resumeAt.toFixed(1)} s on a new session, ` +
        `lost ${lostSeconds.toFixed(1)} s of audio.`,
    );
    this.setStatus("streaming", `Listening again: reconnected, lost ${lostSeconds.toFixed(1)} s`);
    this.showCounts();
    this.rollDirty = true;
  }

  async onEnded(run, { reason, failure, close, tries, committed }) {
    clearTimeout(run.stopTimer);
    this.active = null;
    this.synth.allOff();
    this.showBacklog(0);
    await run.capture.stop();
    // Notes the server never closed (it went away) end at the last point known to be committed.
    this.store.closeOpen(committed);
    this.store.setInterim(null);
    this.state.interim = this.store.interim;
    const unfinished = run.part?.state === "live";
    this.sessionGone(run);
    if (run.part?.to === null) run.part.to = committed;
    if (reason === "finished") {
      const seconds = this.state.samplesSent / (this.state.sampleRate || 1);
      this.setStatus("idle", `Finished: ${this.store.notes.length} notes in ${seconds.toFixed(1)} s`);
      if (unfinished) this.warn("unfinished", "The server went away before it sent its last notes.");
    } else if (failure?.kind === "error") {
      const busy = failure.code === "busy";
      this.setStatus(busy ? "busy" : "error", busy ? "Server busy" : `Stopped: ${failure.code}`);
    } else {
      this.report("disconnected", `Disconnected: ${this.whyClosed(failure ?? close, tries)}.`);
      this.setStatus("disconnected", "Disconnected");
    }
    this.updateControls(false);
    this.showCounts();
    this.rollDirty = true;
  }

  whyClosed(closed, tries) {
    if (tries > 0) return `the server went away and no server answered ${tries} tries at reconnecting`;
    if (!closed?.opened) return "the server could not be reached";
    if (closed.code === CLOSE_GOING_AWAY) return "the server shut down";
    return `the connection closed (code ${closed.code}${closed.reason ? `: ${closed.reason}` : ""})`;
  }

  // ---- the server's MIDI files ---------------------------------------------------------------------------------

  /** The current session ended without `done`: its server went away, and its MIDI file with it. */
  sessionGone(run) {
    if (run.part?.state !== "live") return;
    run.part.state = "gone";
    this.showMidiParts();
  }

  fileName(part) {
    return `streamer-${part.session ?? "session"}.mid`;
  }

  /** The download: the latest server file. A run that resumed elsewhere lists every session's part. */
  downloadMidi() {
    const part = this.midiParts.findLast((p) => p.midi);
    if (!part) return;
    const link = document.createElement("a");
    link.href = part.url;
    link.download = this.fileName(part);
    document.body.append(link);
    link.click();
    link.remove();
  }

  showMidiParts() {
    const parts = this.midiParts;
    this.el.download.disabled = !parts.some((p) => p.midi);
    this.state.midiFiles = parts
      .filter((p) => p.midi)
      .map((p) => ({ session: p.session, from: p.from, to: p.to, bytes: p.midi.length, error: p.error }));
    const list = this.el.midiParts;
    list.hidden = parts.length < 2;
    list.replaceChildren(...(list.hidden ? [] : parts).map((part) => this.midiPartItem(part)));
  }

  midiPartItem(part) {
    const item = document.createElement("li");
    const span = `${part.from.toFixed(1)}–${part.to === null ? "…" : part.to.toFixed(1)} s`;
    if (part.midi) {
      const link = document.createElement("a");
      link.href = part.url;
      link.download = this.fileName(part);
      link.textContent = `MIDI file of ${span}`;
      item.append(link);
    } else {
      item.textContent = {
        live: `${span}: the MIDI file comes when the session ends`,
        none: `${span}: the server sent no MIDI file`,
        gone: `${span}: no MIDI file, that server went away without sending it`,
      }[part.state];
    }
    return item;
  }

  // ---- display -------------------------------------------------------------------------------------------------

  setStatus(status, text) {
    this.state.status = status;
    this.state.statusText = text;
    this.el.status.dataset.status = status;
    this.el.status.textContent = text;
  }

  /** An error for the person: shown in the alert area and kept in `streamerDemo.errors`. */
  report(code, message, fatal = true) {
    this.state.errors.push({ code, message, fatal });
    const target = fatal ? this.el.error : this.el.warning;
    target.textContent = message;
    target.hidden = false;
  }

  /** Something the person should know that is not an error: kept in `streamerDemo.warnings`. */
  warn(code, message) {
    this.state.warnings.push({ code, message });
    this.el.warning.textContent = message;
    this.el.warning.hidden = false;
  }

  updateControls(running) {
    this.el.start.textContent = running ? "Stop" : "Start";
    this.el.start.disabled = false;
    this.el.start.removeAttribute("aria-disabled");
    this.el.start.classList.toggle("running", running);
    for (const control of [this.el.device, this.el.model]) control.disabled = running;
    this.el.hop.disabled = running || (this.selectedModel()?.streaming ?? false);
    this.showMidiParts();
  }

  showNewNotes(notes) {
    for (const note of notes) {
      const [family, colour] = instrumentOf(note);
      const item = document.createElement("li");
      item.textContent = note.isDrum ? `drum ${note.pitch}` : noteName(note.pitch);
      item.dataset.pitch = note.pitch;
      item.style.setProperty("--colour", colour);
      item.title = `${family}, program ${note.program}, velocity ${note.velocity}, at ${note.onset.toFixed(2)} s`;
      this.el.recent.append(item);
      if (!this.el.legend.querySelector(`[data-family="${family}"]`)) {
        const entry = document.createElement("li");
        entry.dataset.family = family;
        entry.style.setProperty("--colour", colour);
        entry.textContent = family;
        this.el.legend.append(entry);
      }
    }
    while (this.el.recent.children.length > RECENT_NOTES) this.el.recent.firstElementChild.remove();
  }

  showCounts() {
    this.el.count.textContent = String(this.store.notes.length);
    if (this.state.latencyMs !== null) {
      this.el.latency.textContent = `${this.state.latencyMs} ms (median ${this.state.latencyMedianMs} ms)`;
    }
  }

  showBacklog(seconds) {
    this.state.backlogSeconds = seconds;
    const show = seconds > BACKLOG_WARN_S;
    if (show) this.el.backlog.textContent = `${seconds.toFixed(1)} s: the network is slower than the audio`;
    if (this.el.backlogBox.hidden === show) this.el.backlogBox.hidden = !show;
  }

  /** Audio time now, running on smoothly between frames so the roll scrolls evenly (on while reconnecting). */
  audioNow() {
    const captured = this.state.samplesCaptured / (this.state.sampleRate || 1);
    if (!this.active || this.active.stopRequested) return captured;
    return captured + Math.min(this.frameSeconds, (performance.now() - this.lastFrameWall) / 1000);
  }

  animate(time) {
    const elapsed = this.lastAnimation === undefined ? 0 : (time - this.lastAnimation) / 1000;
    this.lastAnimation = time;
    this.meterDb = Math.max(METER_FLOOR_DB, this.meterDb - METER_FALL_DB_PER_S * elapsed);
    const live = this.active !== null;
    const shown = live ? this.meterDb : METER_FLOOR_DB;
    const fraction = (shown - METER_FLOOR_DB) / -METER_FLOOR_DB;
    this.el.meterFill.style.transform = `scaleX(${fraction})`;
    if (Math.floor(time / READOUT_INTERVAL_MS) !== Math.floor((time - elapsed * 1000) / READOUT_INTERVAL_MS)) {
      const level = shown <= METER_FLOOR_DB ? "−∞ dB" : `${shown.toFixed(0)} dB`;
      this.el.meter.setAttribute("aria-valuenow", shown.toFixed(0));
      this.el.meter.setAttribute("aria-valuetext", level);
      this.el.levelText.textContent = level;
      this.el.sent.textContent = `${(this.state.samplesSent / (this.state.sampleRate || 1)).toFixed(1)} s`;
    }
    if (live || this.rollDirty) {
      if (this.roll.draw(this.store.notes, this.store.interim, this.audioNow()) > 0) this.state.interimDrawn += 1;
      this.rollDirty = false;
    }
    requestAnimationFrame((t) => this.animate(t));
  }
}

new DemoPage().init();
