// The client side of protocol v1 (docs/protocol.md): `start`, binary PCM frames, `stop`; the server answers
// `ready`, `events`, `interim`, `lagging`, `error` and `done`. This class only moves messages for one session; what
// they mean, and resuming on another server, is decided above it (stream.js).

export function streamUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // A server with [auth] token: open the page as /?token=… and the token travels with the socket (browsers cannot
  // set an Authorization header on a WebSocket).
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/v1/stream${query}`;
}

/**
 * One session. Handlers: onEvents(events), onInterim(msg), onLagging(msg), onError(msg), onDone(msg),
 * onClose({code, reason, opened}) where `opened` says whether the socket ever connected.
 */
export class StreamConnection {
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    this.opened = false;
  }

  /** Connect and send `start`; resolves with the server's `ready`, rejects with the error or close that came first. */
  open(start) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn, value) => {
        if (!settled) {
          settled = true;
          fn(value);
        }
      };
      const socket = new WebSocket(this.url);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      socket.onopen = () => {
        this.opened = true;
        socket.send(JSON.stringify(start));
      };
      socket.onmessage = (e) => {
        if (typeof e.data !== "string") return;
        const message = JSON.parse(e.data);
        switch (message.type) {
          case "ready":
            settle(resolve, message);
            break;
          case "events":
            this.handlers.onEvents(message.events);
            break;
          case "interim":
            this.handlers.onInterim(message);
            break;
          case "lagging":
            this.handlers.onLagging(message);
            break;
          case "error":
            if (message.fatal) settle(reject, { kind: "error", ...message });
            this.handlers.onError(message);
            break;
          case "done":
            this.handlers.onDone(message);
            break;
        }
      };
      socket.onclose = (e) => {
        const closed = { kind: "close", code: e.code, reason: e.reason, opened: this.opened };
        settle(reject, closed);
        this.handlers.onClose(closed);
      };
    });
  }

  get isOpen() {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Bytes queued in the browser but not yet on the network: the upload backlog. */
  get bufferedAmount() {
    return this.socket?.bufferedAmount ?? 0;
  }

  sendPcm(pcm) {
    this.socket.send(pcm);
  }

  /** Ask the server to finish: it transcribes what it has, sends the last events and `done`, then closes. */
  stop() {
    if (this.isOpen) this.socket.send(JSON.stringify({ type: "stop" }));
  }

  close() {
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000, "client closed");
  }
}
