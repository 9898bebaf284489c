// Microphone capture: permission, device list, and an AudioWorklet that hands over 16-bit PCM frames at the
// AudioContext's native rate (browsers run 44.1 or 48 kHz whatever is asked; the server resamples).

export const FRAME_SECONDS = 0.04; // 20–50 ms per binary frame keeps latency low without a flood of messages

// Music needs the raw signal: the speech processing browsers apply by default would gate and squash it.
const RAW_AUDIO = { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 };

/** A user-facing explanation of a getUserMedia failure, with a stable code for the page's error list. */
export function microphoneError(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
      return {
        code: "microphone_denied",
        message:
          "Microphone access was denied. Allow the microphone for this page (the icon in the address bar) " +
          "and press Start again.",
      };
    case "NotFoundError":
    case "OverconstrainedError":
      return { code: "microphone_missing", message: "No microphone was found. Plug one in and press Start again." };
    case "NotReadableError":
    case "AbortError":
      return {
        code: "microphone_busy",
        message: "The microphone could not be opened: another application may be using it.",
      };
    case "InsecureContext":
      return {
        code: "insecure_page",
        message: "Browsers only give the microphone to secure pages: open this demo over https:// or on localhost.",
      };
    default:
      return { code: "microphone_error", message: `The microphone could not be opened: ${error?.message ?? error}` };
  }
}

/** Ask for the microphone (`deviceId` "" means the system default). Rejects with a DOMException on refusal. */
export async function openMicrophone(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new DOMException("getUserMedia is unavailable on insecure pages", "InsecureContext");
  }
  const audio = deviceId ? { ...RAW_AUDIO, deviceId: { exact: deviceId } } : RAW_AUDIO;
  return navigator.mediaDevices.getUserMedia({ audio, video: false });
}

/** Audio inputs as {id, label}; labels are empty until the page has been granted the microphone once. */
export async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices
    .filter((d) => d.kind === "audioinput" && d.deviceId !== "default" && d.deviceId !== "communications")
    .map((d, i) => ({ id: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
}

/** Runs a MediaStream through the worklet; `onFrame({pcm: Int16Array, peak})` is called on the main thread. */
export class Capture {
  constructor(media, onFrame) {
    this.media = media;
    this.onFrame = onFrame;
    this.context = null;
  }

  async start() {
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    const frameSamples = Math.round(this.context.sampleRate * FRAME_SECONDS);
    const source = this.context.createMediaStreamSource(this.media);
    this.node = new AudioWorkletNode(this.context, "pcm-frames", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
      processorOptions: { frameSamples },
    });
    this.node.port.onmessage = (e) => this.onFrame({ pcm: new Int16Array(e.data.pcm), peak: e.data.peak });
    source.connect(this.node);
    // The node writes silence; connecting it to the destination keeps every browser pulling it.
    this.node.connect(this.context.destination);
    await this.context.resume();
    const track = this.media.getAudioTracks()[0];
    this.deviceLabel = track?.label ?? "";
    this.deviceId = track?.getSettings?.().deviceId ?? "";
  }

  get sampleRate() {
    return this.context.sampleRate;
  }

  /** Calls `handler` if the device goes away (unplugged, or permission revoked) while capturing. */
  onEnded(handler) {
    for (const track of this.media.getAudioTracks()) track.addEventListener("ended", handler);
  }

  async stop() {
    if (this.node) this.node.port.onmessage = null;
    for (const track of this.media.getTracks()) track.stop();
    if (this.context && this.context.state !== "closed") await this.context.close();
  }
}
