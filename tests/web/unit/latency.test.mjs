// Latency: the wall time a note arrives minus the wall time the page had the audio at its onset
// (clients/web/latency.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { LatencyMeter } from "../../../clients/web/latency.js";

const RATE = 1000; // samples per second: 1 sample is 1 ms

test("the wall time of a sample is its frame's arrival less the samples after it", () => {
  const meter = new LatencyMeter(RATE);
  meter.recordFrame(0, 40, 1040); // samples 0–39 arrived at 1040 ms: sample 40 "is" 1040 ms
  meter.recordFrame(40, 80, 1085); // a late frame: 5 ms of jitter
  assert.equal(meter.wallTimeAt(0), 1000);
  assert.equal(meter.wallTimeAt(0.02), 1020);
  assert.equal(meter.wallTimeAt(0.04), 1040);
  assert.equal(meter.wallTimeAt(0.05), 1055);
  assert.equal(meter.wallTimeAt(0.08), 1085);
});

test("audio the meter never saw has no wall time", () => {
  const meter = new LatencyMeter(RATE);
  assert.equal(meter.wallTimeAt(0.01), null);
  meter.recordFrame(100, 140, 5000);
  assert.equal(meter.wallTimeAt(0.05), null);
  assert.equal(meter.wallTimeAt(0.2), null);
  assert.equal(meter.noteArrived(0.2, 6000), null);
  assert.equal(meter.median, null);
});

test("each note's latency, and the median of the recent ones", () => {
  const meter = new LatencyMeter(RATE);
  for (let i = 0; i < 100; i++) meter.recordFrame(i * 40, (i + 1) * 40, 1000 + (i + 1) * 40);
  assert.equal(meter.noteArrived(0.5, 1500 + 300), 300);
  assert.equal(meter.noteArrived(1.0, 2000 + 100), 100);
  assert.equal(meter.noteArrived(2.0, 3000 + 200), 200);
  assert.equal(meter.median, 200);
  for (let i = 0; i < 25; i++) meter.noteArrived(3.0, 4000 + 50);
  assert.equal(meter.recent.length, 20); // only the latest 20 count
  assert.equal(meter.median, 50);
});

test("old frames are let go, so memory stays bounded however long the run", () => {
  const meter = new LatencyMeter(RATE);
  const frame = 40;
  for (let i = 0; i < 20_000; i++) meter.recordFrame(i * frame, (i + 1) * frame, i * frame);
  const heldSeconds = (meter.frames.at(-1)[1] - meter.frames[0][0]) / RATE;
  // Frames older than 120 s go a quarter at a time: between 90 and 120 s stay, far more than events refer back.
  assert.ok(heldSeconds >= 90 && heldSeconds <= 120.04, `holds ${heldSeconds} s`);
  assert.equal(meter.wallTimeAt(799.99), 799_990 - frame); // the latest audio still has its time
});
