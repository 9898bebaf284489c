// The page's notes: committed events keyed by session and id, resumed runs, and interim notes that each `interim`
// message replaces (clients/web/notes.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { NoteStore, instrumentOf, noteName } from "../../../clients/web/notes.js";

const on = (id, time, pitch, extra = {}) => ({
  type: "note_on", id, time, pitch, velocity: 80, program: 0, is_drum: false, ...extra,
});
const off = (id, time) => ({ type: "note_off", id, time });
const interim = (time, ...notes) => ({
  type: "interim",
  time,
  notes: notes.map(([pitch, onset]) => ({ pitch, onset, velocity: 70, program: 0, is_drum: false })),
});

test("note names and instrument families", () => {
  assert.equal(noteName(60), "C4");
  assert.equal(noteName(69), "A4");
  assert.equal(noteName(61), "C#4");
  assert.equal(noteName(21), "A0");
  assert.deepEqual(instrumentOf({ program: 0, isDrum: false })[0], "Piano");
  assert.deepEqual(instrumentOf({ program: 33, isDrum: false })[0], "Bass");
  assert.deepEqual(instrumentOf({ program: 0, isDrum: true })[0], "Drums");
});

test("note_on opens a note, note_off closes it; the store reports both for playback", () => {
  const store = new NoteStore();
  let { started, ended } = store.apply([on(1, 0.5, 60), on(2, 0.5, 64)], "a");
  assert.deepEqual(
    started.map((n) => [n.key, n.pitch, n.onset, n.offset]),
    [["a#1", 60, 0.5, null], ["a#2", 64, 0.5, null]],
  );
  assert.deepEqual(ended, []);
  ({ started, ended } = store.apply([off(1, 0.9)], "a"));
  assert.deepEqual(started, []);
  assert.deepEqual(ended.map((n) => [n.key, n.offset]), [["a#1", 0.9]]);
  assert.equal(store.notes.length, 2);
  assert.deepEqual([...store.open.keys()], ["a#2"]);
});

test("a note_off of a note this store never opened is ignored", () => {
  const store = new NoteStore();
  assert.deepEqual(store.apply([off(7, 1.0)], "a"), { started: [], ended: [] });
  assert.deepEqual(store.notes, []);
});

test("ids restart in a resumed session: notes are keyed by session and id", () => {
  const store = new NoteStore();
  store.apply([on(1, 0.5, 60), off(1, 0.8), on(2, 1.0, 62)], "first");
  // The first server vanished with note 2 sounding: it ends where the page resumed.
  const closed = store.closeOpen(1.4);
  assert.deepEqual(closed.map((n) => [n.key, n.offset]), [["first#2", 1.4]]);
  store.apply([on(1, 1.5, 64)], "second");
  store.apply([off(1, 2.0), off(2, 2.1)], "second"); // "second#2" was never opened: nothing changes
  assert.deepEqual(
    store.notes.map((n) => [n.key, n.pitch, n.onset, n.offset]),
    [["first#1", 60, 0.5, 0.8], ["first#2", 62, 1.0, 1.4], ["second#1", 64, 1.5, 2.0]],
  );
});

test("closing at a time before a note's onset ends it at its onset, never before", () => {
  const store = new NoteStore();
  store.apply([on(1, 2.0, 60)], "a");
  assert.equal(store.closeOpen(1.5)[0].offset, 2.0);
});

test("each interim message replaces the previous set: new ones are shown, missing ones dropped", () => {
  const store = new NoteStore();
  store.setInterim(interim(1.0, [60, 1.1]));
  assert.deepEqual(store.interim.map((n) => n.pitch), [60]);
  store.setInterim(interim(1.05, [60, 1.1], [64, 1.12]));
  assert.deepEqual(store.interim.map((n) => n.pitch), [60, 64]);
  store.setInterim(interim(1.1, [64, 1.12]));
  assert.deepEqual(store.interim.map((n) => n.pitch), [64]);
  assert.deepEqual(store.interimStats, { messages: 3, shown: 2, confirmed: 0, dropped: 1 });
  store.setInterim(interim(1.2));
  assert.deepEqual(store.interim, []);
  assert.deepEqual(store.interimStats, { messages: 4, shown: 2, confirmed: 0, dropped: 2 });
});

test("a committed note_on confirms the interim note of the same sound; interim notes never become notes", () => {
  const store = new NoteStore();
  store.setInterim(interim(1.0, [60, 1.1], [67, 1.1]));
  store.apply([on(1, 1.1, 60)], "a");
  assert.deepEqual(store.interim.map((n) => n.pitch), [67]);
  assert.deepEqual(store.notes.map((n) => n.pitch), [60]);
  // The next message no longer holds the confirmed note, and it is not counted as dropped.
  store.setInterim(interim(1.2, [67, 1.1]));
  assert.deepEqual(store.interimStats, { messages: 2, shown: 2, confirmed: 1, dropped: 0 });
  // A note_on of another instrument or pitch confirms nothing.
  store.apply([on(2, 1.3, 67, { program: 40 }), on(3, 1.3, 62)], "a");
  assert.deepEqual(store.interim.map((n) => n.pitch), [67]);
  assert.equal(store.interimStats.confirmed, 1);
});

test("forgetting the interim notes (their session is gone) drops them", () => {
  const store = new NoteStore();
  store.setInterim(interim(1.0, [60, 1.1], [64, 1.1]));
  store.setInterim(null);
  assert.deepEqual(store.interim, []);
  assert.deepEqual(store.interimStats, { messages: 1, shown: 2, confirmed: 0, dropped: 2 });
});

test("clear starts a new run", () => {
  const store = new NoteStore();
  store.apply([on(1, 0.1, 60)], "a");
  store.setInterim(interim(0.2, [62, 0.2]));
  store.clear();
  assert.deepEqual([store.notes, store.interim, store.open.size], [[], [], 0]);
  assert.deepEqual(store.interimStats, { messages: 0, shown: 0, confirmed: 0, dropped: 0 });
});
