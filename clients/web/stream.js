// A live run: one server session, or several when the server goes away and the run resumes on another one.
//
// It keeps the run's timeline (docs/protocol.md, "Resuming on another server"): the audio after the first session
// is ready goes into a ring of recent PCM and, while a session is live, to the server. When a live session's
// socket closes unexpectedly (1001 from a draining server, 1006 from one that vanished), it reconnects to the same
// URL with a short backoff, sends `start` again with `resume_at` at the latest committed point, sends the audio it
// still holds from there, and carries on live. The socket itself comes from `connect` (a StreamConnection in the
// page, a fake in tests/web/unit/stream.test.mjs) and waiting from `wait`, so this class needs neither.

import { CommitPoint, PcmRing, RETRY_DELAYS_MS, RING_SECONDS, planResume, retryable, shouldResume } from "./resume.js";

/**
 * `connect(handlers)` returns a connection: `open(start)` → Promise of `ready` (rejects with {kind: "error", code,
 * ...} or {kind: "close", code, opened}), `sendPcm(pcm)`, `stop()`, `close()`, `isOpen`, `bufferedAmount`; it calls
 * handlers.onEvents(events), onInterim(msg), onLagging(msg), onError(msg), onDone(msg), onClose({code, reason,
 * opened}). `listener` gets: ready(ready, {resumed}), events(events, session), interim(msg), lagging(msg),
 * error(msg), done(msg), reconnecting({attempt, tries, delayMs, code}), resumed({fromSample, resumeAt, lostSeconds,
 * ready, attempt}) and ended({reason, failure, close, tries, committed}): reason "finished", "failed" (the first
 * session never started), "fatal" (a fatal error) or "disconnected" (gone, and resuming failed or was not
 * possible); `failure` what ended it (a close or an error), `close` the last live session's close, `tries` the
 * tries at resuming since the last break, `committed` the committed point.
 */
export class LiveStream {
  constructor({
    connect,
    wait,
    start,
    listener,
    ringSeconds = RING_SECONDS,
    retryDelaysMs = RETRY_DELAYS_MS,
  }) {
    this.connect = connect;
    this.wait = wait;
    this.start = start; // the `start` message, without `resume_at`
    this.listener = listener;
    this.sampleRate = start.sample_rate;
    this.retryDelaysMs = retryDelaysMs;
    this.ring = new PcmRing(Math.round(ringSeconds * this.sampleRate));
    this.commit = new CommitPoint();
    this.conn = null;
    this.session = null; // the current session's `ready`
    this.state = "connecting"; // connecting → live ⇄ reconnecting → stopping → ended; audio goes out while live
    this.samplesSent = 0; // timeline position of the audio sent
    this.fatal = null;
    this.lastClose = null;
    this.tries = 0; // tries at resuming since the last break
  }

  get sending() {
    return this.state === "live" && this.conn?.isOpen === true;
  }

  get bufferedAmount() {
    return this.conn?.bufferedAmount ?? 0;
  }

  /** Open the first session; resolves with its `ready`, or null when it could not start (see `ended`). */
  async open() {
    const conn = this.newConnection();
    try {
      const ready = await conn.open({ ...this.start });
      if (this.state !== "connecting") return null;
      // A resumed session must run the same model, whatever another server's default is.
      this.start = { ...this.start, model: ready.model };
      this.becomeLive(ready);
      this.listener.ready(ready, { resumed: false });
      return ready;
    } catch (failure) {
      if (this.state === "connecting") this.end("failed", failure);
      return null;
    }
  }

  /**
   * The next frame of captured audio; returns its first timeline sample, or null before the first session is
   * ready (audio heard while connecting is not part of the run).
   */
  push(pcm) {
    if (this.state === "connecting" || this.state === "ended") return null;
    const first = this.ring.push(pcm);
    if (this.sending) {
      this.conn.sendPcm(pcm);
      this.samplesSent = this.ring.end;
    }
    return first;
  }

  /** End of audio: the server commits the rest and sends `done`; without a server, the run ends here. */
  stop() {
    if (this.state === "ended" || this.state === "stopping") return;
    const wasLive = this.sending;
    this.state = "stopping";
    if (wasLive) this.conn.stop();
    else {
      this.conn?.close();
      this.end("finished");
    }
  }

  /** Give up on the current socket (the server did not finish in time). */
  abort() {
    this.conn?.close();
  }

  newConnection() {
    const conn = this.connect({
      onEvents: (events) => {
        if (conn !== this.conn) return;
        this.commit.events(events);
        this.listener.events(events, this.session.session);
      },
      onInterim: (message) => {
        if (conn !== this.conn) return;
        this.commit.interim(message);
        this.listener.interim(message);
      },
      onLagging: (message) => conn === this.conn && this.listener.lagging(message),
      onError: (message) => {
        if (conn !== this.conn) return;
        if (message.fatal) this.fatal = message;
        this.listener.error(message);
      },
      onDone: (message) => {
        if (conn !== this.conn) return;
        this.commit.done(message);
        this.listener.done(message);
      },
      onClose: (closed) => this.closed(conn, closed),
    });
    this.conn = conn;
    this.fatal = null;
    return conn;
  }

  becomeLive(ready) {
    this.session = ready;
    this.state = "live";
  }

  closed(conn, closed) {
    // Closes before `ready` are the failures of `open` (or of a try at resuming): those handle them.
    if (conn !== this.conn || this.session === null || this.state === "connecting") return;
    if (this.state === "reconnecting" || this.state === "ended") return;
    this.lastClose = closed;
    if (this.state === "stopping") {
      this.end("finished", closed);
    } else if (shouldResume(closed.code, { fatalCode: this.fatal?.code ?? null })) {
      this.resume(closed);
    } else if (this.fatal) {
      this.end("fatal", { kind: "error", ...this.fatal });
    } else {
      this.end("disconnected", closed);
    }
  }

  async resume(closed) {
    this.state = "reconnecting";
    this.tries = 0;
    const tries = this.retryDelaysMs.length;
    let failure = closed;
    for (let attempt = 1; attempt <= tries; attempt++) {
      this.tries += 1;
      const delayMs = this.retryDelaysMs[attempt - 1];
      this.listener.reconnecting({ attempt, tries, delayMs, code: closed.code });
      await this.wait(delayMs);
      if (this.state !== "reconnecting") return; // stopped meanwhile
      const plan = planResume(this.commit.seconds, this.ring, this.sampleRate);
      this.ring.hold(plan.fromSample); // the audio to send again stays, however long the connection takes
      const conn = this.newConnection();
      let ready;
      try {
        ready = await conn.open({ ...this.start, resume_at: plan.resumeAt });
      } catch (error) {
        this.ring.release();
        failure = error;
        if (this.state !== "reconnecting") return;
        if (!retryable(error)) break;
        continue;
      }
      if (this.state !== "reconnecting") {
        conn.close();
        this.ring.release();
        return;
      }
      this.commit.advance(plan.resumeAt);
      this.becomeLive(ready);
      this.listener.resumed({ ...plan, ready, attempt });
      for (const pcm of this.ring.from(plan.fromSample)) conn.sendPcm(pcm);
      this.samplesSent = this.ring.end;
      this.ring.release();
      this.listener.ready(ready, { resumed: true });
      return;
    }
    this.end(failure.kind === "error" ? "fatal" : "disconnected", failure);
  }

  end(reason, failure = null) {
    if (this.state === "ended") return;
    this.state = "ended";
    this.listener.ended({ reason, failure, close: this.lastClose, tries: this.tries, committed: this.commit.seconds });
  }
}
