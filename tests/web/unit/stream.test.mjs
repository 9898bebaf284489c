// A live run across server sessions (clients/web/stream.js), against fake connections: the first session, a server
// that vanishes or drains, resuming on another one with `resume_at` and the audio held since the committed point.

import assert from "node:assert/strict";
import { test } from "node:test";

import { LiveStream } from "../../../clients/web/stream.js";

const RATE = 1000; // 1 sample per ms keeps the arithmetic readable
const FRAME = 40;
const START = {
  type: "start",
  sample_rate: RATE,
  encoding: "s16le",
  channels: 1,
  model: null,
  interim: true,
  midi_file: true,
};

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A connection whose server does what the test's `plan` says for each new connection, in order. */
class FakeConnection {
  constructor(handlers, behaviour, index) {
    this.handlers = handlers;
    this.behaviour = behaviour;
    this.index = index;
    this.isOpen = false;
    this.bufferedAmount = 0;
    this.start = null;
    this.audio = [];
    this.stopped = false;
  }

  open(start) {
    this.start = start;
    return new Promise((resolve, reject) => {
      queueMicrotask(() => {
        if (this.behaviour === "accept") {
          this.isOpen = true;
          resolve({ type: "ready", session: `s${this.index}`, model: "basic-pitch", hop: 0.046, lookahead: 0.2 });
        } else if (this.behaviour === "unreachable") {
          const closed = { kind: "close", code: 1006, reason: "", opened: false };
          reject(closed);
          this.handlers.onClose(closed);
        } else {
          const error = { type: "error", code: this.behaviour, message: "refused", fatal: true };
          reject({ kind: "error", ...error });
          this.handlers.onError(error);
          this.handlers.onClose({ kind: "close", code: 1013, reason: "", opened: true });
        }
      });
    });
  }

  sendPcm(pcm) {
    this.audio.push(...pcm);
  }

  stop() {
    this.stopped = true;
  }

  close() {
    this.vanish(1000);
  }

  /** The server goes away: 1006 when killed, 1001 after draining. */
  vanish(code = 1006) {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.handlers.onClose({ kind: "close", code, reason: "", opened: true });
  }
}

/** A run with a recording listener; `plan` lists each connection's behaviour (default: accept). */
function makeRun(plan = [], options = {}) {
  const connections = [];
  const heard = [];
  const listener = new Proxy({}, { get: (_, name) => (...args) => heard.push([name, ...args]) });
  const live = new LiveStream({
    connect: (handlers) => {
      const conn = new FakeConnection(handlers, plan[connections.length] ?? "accept", connections.length + 1);
      connections.push(conn);
      return conn;
    },
    wait: () => settle(),
    start: START,
    listener,
    ringSeconds: 10,
    retryDelaysMs: [1, 1, 1],
    ...options,
  });
  let sample = 0;
  const capture = (seconds) => {
    for (let i = 0; i < (seconds * RATE) / FRAME; i++) {
      live.push(Int16Array.from({ length: FRAME }, (_, j) => (sample + j) % 30000));
      sample += FRAME;
    }
  };
  const named = (name) => heard.filter(([n]) => n === name).map(([, ...args]) => args);
  return { live, connections, heard, capture, named };
}

const samples = (first, count) => Array.from({ length: count }, (_, i) => (first + i) % 30000);

test("the first session: `start` as given, then every captured frame goes to the server", async () => {
  const { live, connections, capture, named } = makeRun();
  capture(0.2); // heard before the session is ready: not part of the run
  const ready = await live.open();
  assert.equal(ready.session, "s1");
  assert.deepEqual(connections[0].start, START);
  capture(1);
  assert.deepEqual(connections[0].audio, samples(200, 1000)); // the capture's sample 200 is the timeline's 0
  assert.equal(live.samplesSent, 1000);
  assert.deepEqual(named("ready"), [[ready, { resumed: false }]]);
});

test("a vanished server: reconnect, resume at the committed point, send the audio from there again", async () => {
  const { live, connections, capture, named } = makeRun();
  await live.open();
  capture(2);
  const first = connections[0];
  first.handlers.onEvents([{ type: "note_on", id: 1, time: 0.5, pitch: 60, velocity: 80, program: 0, is_drum: false }]);
  first.handlers.onInterim({ type: "interim", time: 1.2, notes: [] });
  first.vanish(1006);
  capture(0.4); // the microphone goes on while reconnecting
  await settle();
  await settle();
  assert.equal(connections.length, 2);
  const second = connections[1];
  assert.deepEqual(second.start, { ...START, model: "basic-pitch", resume_at: 1.2 });
  assert.deepEqual(second.audio, samples(1200, 1200)); // from 1.2 s to the end of what was captured
  capture(0.2);
  assert.deepEqual(second.audio, samples(1200, 1400));
  assert.equal(live.samplesSent, 2600);
  const [[resumed]] = named("resumed");
  assert.deepEqual([resumed.resumeAt, resumed.lostSeconds, resumed.attempt], [1.2, 0, 1]);
  assert.deepEqual(named("reconnecting").map(([r]) => [r.attempt, r.code]), [[1, 1006]]);
  // Events of the new session carry its id; the old connection is no longer heard.
  second.handlers.onEvents([
    { type: "note_on", id: 1, time: 1.3, pitch: 62, velocity: 80, program: 0, is_drum: false },
  ]);
  first.handlers.onEvents([{ type: "note_off", id: 1, time: 1.9 }]);
  assert.deepEqual(named("events").map(([events, session]) => [events[0].time, session]), [[0.5, "s1"], [1.3, "s2"]]);
  assert.equal(live.state, "live");
});

test("a drained server (done, then 1001): resume where its `done` says everything was committed", async () => {
  const { live, connections, capture } = makeRun();
  await live.open();
  capture(3);
  connections[0].handlers.onInterim({ type: "interim", time: 2.5, notes: [] });
  connections[0].handlers.onDone({ type: "done", notes: 0, duration: 3.0, windows: 0, skipped_windows: 0 });
  connections[0].vanish(1001);
  await settle();
  await settle();
  assert.equal(connections[1].start.resume_at, 3.0);
  assert.deepEqual(connections[1].audio, []); // nothing left to send again
  capture(0.08);
  assert.deepEqual(connections[1].audio, samples(3000, 80));
});

test("tries that fail (nobody there, then busy) are retried; the ring keeps the audio meanwhile", async () => {
  const { live, connections, capture, named } = makeRun(["accept", "unreachable", "busy", "accept"]);
  await live.open();
  capture(1);
  connections[0].vanish();
  for (let i = 0; i < 10; i++) await settle();
  assert.equal(connections.length, 4);
  assert.deepEqual(connections.slice(1).map((c) => c.start.resume_at), [0, 0, 0]);
  assert.deepEqual(connections[3].audio, samples(0, 1000));
  assert.deepEqual(named("reconnecting").map(([r]) => r.attempt), [1, 2, 3]);
  assert.equal(live.state, "live");
});

test("when no try succeeds the run ends, disconnected, at the committed point", async () => {
  const { live, connections, capture, named } = makeRun(["accept", "unreachable", "unreachable", "unreachable"]);
  await live.open();
  capture(1);
  connections[0].handlers.onInterim({ type: "interim", time: 0.7, notes: [] });
  connections[0].vanish();
  for (let i = 0; i < 10; i++) await settle();
  assert.equal(connections.length, 4);
  const [[ended]] = named("ended");
  assert.deepEqual([ended.reason, ended.tries, ended.committed, ended.close.code], ["disconnected", 3, 0.7, 1006]);
  assert.equal(live.push(new Int16Array(FRAME)), null);
});

test("a refusal that would come again (unauthorized) ends the tries at once", async () => {
  const { live, connections, capture, named } = makeRun(["accept", "unauthorized"]);
  await live.open();
  capture(1);
  connections[0].vanish();
  for (let i = 0; i < 10; i++) await settle();
  assert.equal(connections.length, 2);
  const [[ended]] = named("ended");
  assert.deepEqual([ended.reason, ended.failure.code], ["fatal", "unauthorized"]);
});

test("audio older than the ring is lost, and the resumed session says how much", async () => {
  const { live, connections, capture, named } = makeRun([], { ringSeconds: 1 });
  await live.open();
  capture(3);
  connections[0].handlers.onInterim({ type: "interim", time: 1.5, notes: [] });
  connections[0].vanish();
  await settle();
  await settle();
  assert.equal(connections[1].start.resume_at, 2);
  assert.deepEqual(connections[1].audio, samples(2000, 1000));
  assert.equal(named("resumed")[0][0].lostSeconds, 0.5);
});

test("our own stop is not resumed: the server finishes, and its close ends the run", async () => {
  const { live, connections, capture, named } = makeRun();
  await live.open();
  capture(1);
  live.stop();
  assert.equal(connections[0].stopped, true);
  capture(0.2); // nothing goes out after stop
  assert.equal(connections[0].audio.length, 1000);
  connections[0].handlers.onDone({ type: "done", notes: 0, duration: 1.0, windows: 0, skipped_windows: 0 });
  connections[0].vanish(1000);
  await settle();
  assert.equal(connections.length, 1);
  assert.equal(named("ended")[0][0].reason, "finished");
});

test("a server that ends the session itself (an idle timeout: error, done, 1000) is not resumed", async () => {
  const { live, connections, capture, named } = makeRun();
  await live.open();
  capture(1);
  connections[0].handlers.onError({ type: "error", code: "timeout", message: "idle", fatal: true });
  connections[0].vanish(1000);
  await settle();
  assert.equal(connections.length, 1);
  const [[ended]] = named("ended");
  assert.deepEqual([ended.reason, ended.failure.code], ["fatal", "timeout"]);
});

test("stop while reconnecting ends the run at once, and a late connection is closed", async () => {
  const { live, connections, capture, named } = makeRun();
  await live.open();
  capture(1);
  connections[0].vanish();
  live.stop();
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(connections.length, 1);
  assert.equal(named("ended")[0][0].reason, "finished");
});

test("a first session that cannot start ends the run as failed, with no tries at resuming", async () => {
  const { live, connections, named } = makeRun(["busy"]);
  assert.equal(await live.open(), null);
  await settle();
  assert.equal(connections.length, 1);
  const [[ended]] = named("ended");
  assert.deepEqual([ended.reason, ended.failure.code], ["failed", "busy"]);
});
