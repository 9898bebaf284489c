// The bookkeeping of resuming on another server: which closes call for it, the committed point, the ring of recent
// audio and where a resumed session begins (clients/web/resume.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { CommitPoint, PcmRing, planResume, retryable, shouldResume } from "../../../clients/web/resume.js";

const frame = (first, length) => Int16Array.from({ length }, (_, i) => (first + i) % 32768);

test("a drained (1001) or vanished (1006) server calls for resuming; our stop, a 1000 or fatal errors do not", () => {
  assert.equal(shouldResume(1001), true);
  assert.equal(shouldResume(1006), true);
  assert.equal(shouldResume(1006, { stopRequested: true }), false);
  assert.equal(shouldResume(1001, { stopRequested: true }), false);
  assert.equal(shouldResume(1000), false); // e.g. after an idle `timeout`: the server ended the session on purpose
  assert.equal(shouldResume(1008), false);
  assert.equal(shouldResume(1011), false);
  assert.equal(shouldResume(1001, { fatalCode: "shutting_down" }), true);
  assert.equal(shouldResume(1006, { fatalCode: "internal_error" }), false);
});

test("a failed try is retried while another server may answer", () => {
  assert.equal(retryable({ kind: "close", code: 1006, opened: false }), true);
  assert.equal(retryable({ kind: "close", code: 1001, opened: true }), true);
  assert.equal(retryable({ kind: "error", code: "busy", fatal: true }), true);
  assert.equal(retryable({ kind: "error", code: "shutting_down", fatal: true }), true);
  assert.equal(retryable({ kind: "error", code: "unauthorized", fatal: true }), false);
  assert.equal(retryable({ kind: "error", code: "unknown_model", fatal: true }), false);
  assert.equal(retryable({ kind: "close", code: 1008, opened: true }), false);
});

test("the committed point: the latest event time, interim time or done duration; it never goes back", () => {
  const point = new CommitPoint();
  assert.equal(point.seconds, 0);
  point.events([{ type: "note_on", id: 1, time: 1.25 }, { type: "note_off", id: 1, time: 1.5 }]);
  assert.equal(point.seconds, 1.5);
  point.interim({ type: "interim", time: 1.75, notes: [] });
  assert.equal(point.seconds, 1.75);
  point.events([{ type: "note_off", id: 2, time: 1.6 }]); // an end settled late: no step back
  assert.equal(point.seconds, 1.75);
  point.done({ type: "done", duration: 2.5 });
  assert.equal(point.seconds, 2.5);
  point.advance(2.0);
  assert.equal(point.seconds, 2.5);
});

test("the ring keeps exactly the latest `capacity` samples, on the timeline's sample numbers", () => {
  const ring = new PcmRing(100);
  assert.deepEqual([ring.start, ring.end], [0, 0]);
  assert.equal(ring.push(frame(0, 40)), 0);
  assert.equal(ring.push(frame(40, 40)), 40);
  assert.deepEqual([ring.start, ring.end], [0, 80]);
  ring.push(frame(80, 40));
  assert.deepEqual([ring.start, ring.end], [20, 120]); // trimmed inside the oldest frame
  for (let first = 120; first < 1000; first += 40) ring.push(frame(first, 40));
  assert.deepEqual([ring.start, ring.end], [900, 1000]);
  const held = ring.from(0).flatMap((pcm) => [...pcm]);
  assert.deepEqual(held, [...frame(900, 100)]);
});

test("the ring hands out its audio from any sample on, as views of the frames", () => {
  const ring = new PcmRing(1000);
  for (let first = 0; first < 200; first += 40) ring.push(frame(first, 40));
  const from = ring.from(50);
  assert.deepEqual(from.map((pcm) => pcm.length), [30, 40, 40, 40]);
  assert.deepEqual(from.flatMap((pcm) => [...pcm]), [...frame(50, 150)]);
  assert.deepEqual(ring.from(200), []);
  assert.deepEqual(ring.from(0).flatMap((pcm) => [...pcm]), [...frame(0, 200)]); // never before the oldest held
});

test("a held floor keeps the audio a resumed session waits for, and releasing it trims again", () => {
  const ring = new PcmRing(100);
  for (let first = 0; first < 200; first += 40) ring.push(frame(first, 40));
  assert.equal(ring.start, 100);
  ring.hold(120);
  for (let first = 200; first < 400; first += 40) ring.push(frame(first, 40));
  assert.equal(ring.start, 120);
  assert.deepEqual(ring.from(120).flatMap((pcm) => [...pcm]), [...frame(120, 280)]);
  ring.release();
  assert.deepEqual([ring.start, ring.end], [300, 400]);
});

test("a resumed session begins at the committed point, on a whole sample at or after it", () => {
  const rate = 48000;
  const ring = new PcmRing(10 * rate);
  for (let i = 0; i < 200; i++) ring.push(new Int16Array(1920)); // 8 s of 40 ms frames
  const plan = planResume(3.2974, ring, rate);
  assert.equal(plan.fromSample, 158276); // 3.2974 × 48000 = 158275.2: the next whole sample
  assert.equal(plan.resumeAt, 158276 / rate);
  assert.ok(plan.resumeAt >= 3.2974);
  assert.equal(plan.lostSeconds, 0);
  assert.deepEqual(planResume(2, ring, rate), { fromSample: 96000, resumeAt: 2, lostSeconds: 0 });
});

test("audio older than the ring is lost: the session begins at the oldest audio held and says how much is gone", () => {
  const rate = 1000;
  const ring = new PcmRing(10 * rate);
  for (let i = 0; i < 300; i++) ring.push(new Int16Array(40)); // 12 s, of which the last 10 are held
  assert.deepEqual(planResume(1.5, ring, rate), { fromSample: 2000, resumeAt: 2, lostSeconds: 0.5 });
  assert.deepEqual(planResume(0, ring, rate), { fromSample: 2000, resumeAt: 2, lostSeconds: 2 });
});
