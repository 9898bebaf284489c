// The demo page: microphone → AudioWorklet → WebSocket → note events → piano roll, latency, playback, MIDI.
// `window.streamerDemo` exposes the page's state for tests and for the curious (open the console).

import { Capture, listMicrophones, microphoneError, openMicrophone } from "./capture.js";
import { CLOSE_GOING_AWAY, StreamConnection, streamUrl } from "./connection.js";
import { LatencyMeter } from "./latency.js";
import { encodeMidi } from "./midi.js";
import { NoteStore, instrumentOf, noteName } from "./notes.js";
import { PianoRoll } from "./pianoroll.js";
import { Synth } from "./synth.js";

const HEALTH_POLL_MS = 5000;
const STOP_TIMEOUT_MS = 15000; // the server's last window and `done` normally come well within this
const BACKLOG_WARN_S = 0.25;
const RECENT_NOTES = 16;
const METER_FLOOR_DB = -60;
const METER_FALL_DB_PER_S = 30;

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

class DemoPage {
  constructor() {
    this.el = Object.fromEntries(
      [...document.querySelectorAll("[id]")].map((element) => [element.id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), element]),
    );
    this.store = new NoteStore();
    this.roll = new PianoRoll(this.el.roll);
    this.synth = new Synth();
    this.models = [];
    this.starting = false; // between Start and a session (or its failure)
    this.serverSeen = false;
    this.active = null; // the session in progress: {capture, conn, latency, ready, stopRequested, fatal, done}
    this.meterDb = METER_FLOOR_DB;
    this.lastFrameWall = 0;
    this.frameSeconds = 0;
    this.rollDirty = true;
    this.state = {
      status: "idle",
      statusText: "",
      notes: this.store.notes,
      errors: [],
      warnings: [],
      latencyMs: null,
      latencyMedianMs: null,
      level: 0,
      maxLevel: 0,
      sampleRate: null,
      samplesSent: 0,
      backlogSeconds: 0,
      session: null,
      done: null,
    };
    window.streamerDemo = this.state;
  }

  async init() {
    this.el.controls.addEventListener("submit", (e) => {
      e.preventDefault();
      if (this.active) this.stop();
      else this.start();
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
    if (this.active || this.starting) return; // during a session the socket says whether the server is there
    try {
      const response = await fetch("/healthz", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      if (this.models.length === 0) await this.loadModels();
      if (this.active || this.starting) return;
      if (this.state.status === "disconnected" || !this.serverSeen) this.setStatus("idle", "Ready: press Start and play");
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

  showModel() {
    const model = this.models.find((m) => m.name === this.el.model.value);
    if (!model) return;
    const hop = this.el.hop;
    hop.min = model.min_hop;
    hop.max = model.max_hop;
    hop.value = model.default_hop;
    this.el.modelDescription.textContent = `${model.description} (window ${model.window.toFixed(2)} s).`;
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

  // ---- a session -----------------------------------------------------------------------------------------------

  async start() {
    this.resetSession();
    this.setStatus("starting", "Opening the microphone…");
    this.updateControls(true);
    this.el.start.disabled = true; // until there is a session to stop
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
    const session = {
      capture,
      latency: new LatencyMeter(capture.sampleRate),
      ready: false,
      stopRequested: false,
      fatal: null,
      done: null,
    };
    const conn = new StreamConnection(streamUrl(window.location), {
      onEvents: (events) => this.onEvents(events),
      onLagging: (message) => this.onLagging(message),
      onError: (message) => this.onServerError(message),
      onDone: (message) => this.onDone(message),
      onClose: (closed) => this.onClose(session, closed),
    });
    session.conn = conn;
    this.active = session;
    this.el.start.disabled = false;
    capture.onEnded(() => {
      if (this.active !== session) return;
      this.report("microphone_lost", "The microphone stopped (unplugged, or access was revoked).");
      this.stop();
    });
    this.setStatus("starting", "Connecting to the server…");
    const hop = Number.parseFloat(this.el.hop.value);
    let ready;
    try {
      ready = await conn.open({
        type: "start",
        sample_rate: capture.sampleRate,
        encoding: "s16le",
        channels: 1,
        model: this.el.model.value || null,
        hop: Number.isFinite(hop) ? hop : null,
      });
    } catch {
      return; // onServerError / onClose have said why
    }
    if (this.active !== session || session.stopRequested) return;
    session.ready = true;
    this.state.session = ready;
    this.setStatus("streaming", `Listening: ${ready.model}, hop ${ready.hop.toFixed(2)} s`);
  }

  async stop() {
    const session = this.active;
    if (!session || session.stopRequested) return;
    session.stopRequested = true;
    this.setStatus("stopping", "Finishing: waiting for the last notes…");
    await session.capture.stop();
    if (session.ready) {
      session.conn.stop();
      session.stopTimer = setTimeout(() => session.conn.close(), STOP_TIMEOUT_MS);
    } else {
      session.conn.close();
    }
  }

  resetSession() {
    this.store.clear();
    this.synth.allOff();
    Object.assign(this.state, {
      notes: this.store.notes,
      errors: [],
      warnings: [],
      latencyMs: null,
      latencyMedianMs: null,
      maxLevel: 0,
      samplesSent: 0,
      backlogSeconds: 0,
      session: null,
      done: null,
    });
    this.el.error.hidden = true;
    this.el.warning.hidden = true;
    this.el.backlogBox.hidden = true;
    this.el.latency.textContent = "–";
    this.el.recent.replaceChildren();
    this.el.legend.replaceChildren();
    this.showCounts();
    this.rollDirty = true;
  }

  onFrame({ pcm, peak }) {
    this.state.level = peak;
    this.state.maxLevel = Math.max(this.state.maxLevel, peak);
    this.meterDb = Math.max(this.meterDb, decibels(peak));
    const session = this.active;
    if (!session?.ready || session.stopRequested || !session.conn.isOpen) return;
    // Session time starts at the first frame sent: audio heard while connecting is not part of it.
    const first = this.state.samplesSent;
    session.conn.sendPcm(pcm);
    this.state.samplesSent += pcm.length;
    this.lastFrameWall = performance.now();
    this.frameSeconds = pcm.length / this.state.sampleRate;
    session.latency.recordFrame(first, this.state.samplesSent, this.lastFrameWall);
    this.showBacklog(session.conn.bufferedAmount / 2 / this.state.sampleRate);
  }

  onEvents(events) {
    const arrived = performance.now();
    const session = this.active;
    const { started, ended } = this.store.apply(events);
    for (const note of started) {
      const latency = session?.latency.noteArrived(note.onset, arrived);
      if (latency != null) {
        this.state.latencyMs = Math.round(latency);
        this.state.latencyMedianMs = Math.round(session.latency.median);
      }
      this.synth.noteOn(note);
    }
    for (const note of ended) this.synth.noteOff(note);
    if (started.length > 0) this.showNewNotes(started);
    this.showCounts();
    this.rollDirty = true;
  }

  onLagging(message) {
    const text =
      `The server is falling behind (${message.behind.toFixed(1)} s): it skipped ` +
      `${message.skipped_windows} window(s). ${message.message}`;
    this.state.warnings.push({ code: "lagging", message: text });
    this.el.warning.textContent = text;
    this.el.warning.hidden = false;
  }

  onServerError(message) {
    const meaning = SERVER_ERRORS[message.code] ?? `Server error (${message.code}).`;
    this.report(message.code, `${meaning} ${message.message}`, message.fatal);
    if (message.fatal && this.active) this.active.fatal = message;
  }

  onDone(message) {
    this.state.done = message;
    if (this.active) this.active.done = message;
  }

  async onClose(session, closed) {
    if (this.active !== session) return;
    clearTimeout(session.stopTimer);
    this.active = null;
    this.synth.allOff();
    this.showBacklog(0);
    await session.capture.stop();
    if (session.fatal) {
      const busy = session.fatal.code === "busy";
      this.setStatus(busy ? "busy" : "error", busy ? "Server busy" : `Stopped: ${session.fatal.code}`);
    } else if (session.stopRequested) {
      const seconds = this.state.samplesSent / (this.state.sampleRate || 1);
      this.setStatus("idle", `Finished: ${this.store.notes.length} notes in ${seconds.toFixed(1)} s`);
    } else {
      let why = `the connection closed (code ${closed.code}${closed.reason ? `: ${closed.reason}` : ""})`;
      if (!closed.opened) why = "the server could not be reached";
      else if (closed.code === CLOSE_GOING_AWAY) why = "the server shut down";
      this.report("disconnected", `Disconnected: ${why}.`);
      this.setStatus("disconnected", "Disconnected");
    }
    this.updateControls(false);
    this.rollDirty = true;
  }

  // ---- output --------------------------------------------------------------------------------------------------

  downloadMidi() {
    const end = this.state.samplesSent / (this.state.sampleRate || 1);
    const bytes = encodeMidi(this.store.notes, end);
    const url = URL.createObjectURL(new Blob([bytes], { type: "audio/midi" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `streamer-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.mid`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
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

  updateControls(running) {
    this.el.start.textContent = running ? "Stop" : "Start";
    this.el.start.disabled = false;
    this.el.start.classList.toggle("running", running);
    for (const control of [this.el.device, this.el.model, this.el.hop]) control.disabled = running;
    this.el.download.disabled = this.store.notes.length === 0;
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
    this.el.download.disabled = false;
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

  /** Audio time now, running on smoothly between frames so the roll scrolls evenly. */
  audioNow() {
    const sent = this.state.samplesSent / (this.state.sampleRate || 1);
    if (!this.active?.ready || this.active.stopRequested) return sent;
    return sent + Math.min(this.frameSeconds, (performance.now() - this.lastFrameWall) / 1000);
  }

  animate(time) {
    const elapsed = this.lastAnimation === undefined ? 0 : (time - this.lastAnimation) / 1000;
    this.lastAnimation = time;
    this.meterDb = Math.max(METER_FLOOR_DB, this.meterDb - METER_FALL_DB_PER_S * elapsed);
    const live = this.active !== null;
    const shown = live ? this.meterDb : METER_FLOOR_DB;
    const fraction = (shown - METER_FLOOR_DB) / -METER_FLOOR_DB;
    this.el.meterFill.style.transform = `scaleX(${fraction})`;
    if (Math.floor(time / 250) !== Math.floor((time - elapsed * 1000) / 250)) {
      this.el.meter.setAttribute("aria-valuenow", shown.toFixed(0));
      this.el.levelText.textContent = shown <= METER_FLOOR_DB ? "−∞ dB" : `${shown.toFixed(0)} dB`;
      this.el.sent.textContent = `${(this.state.samplesSent / (this.state.sampleRate || 1)).toFixed(1)} s`;
    }
    if (live || this.rollDirty) {
      this.roll.draw(this.store.notes, this.audioNow());
      this.rollDirty = false;
    }
    requestAnimationFrame((t) => this.animate(t));
  }
}

new DemoPage().init();
