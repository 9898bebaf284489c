"""The `streamer` command: serve | replicas | stream | transcribe | models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

from streamer import protocol as p
from streamer.client.display import format_event
from streamer.config import Config, load_config
from streamer.errors import ConfigError, StreamerError


def _config_from(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "model", None):
        overrides["model"] = args.model
    if getattr(args, "hop", None):
        overrides.setdefault("windowing", {})["hop"] = args.hop
    server = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    if server:
        overrides["server"] = server
    midi = {}
    if getattr(args, "midi_port", None):
        midi["port"] = args.midi_port
    if getattr(args, "midi_backend", None):
        midi["backend"] = args.midi_backend
    if midi:
        overrides["midi"] = midi
    return load_config(getattr(args, "config", None), overrides)


# ---- serve -------------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from streamer.server.app import create_app, load_models, serve

    config = _config_from(args)
    ssl_context = _tls(config)
    if config.midi.files_dir:
        from streamer.sinks.session_file import probe_directory

        probe_directory(config.midi.files_dir)
    # Load models before binding, so that a missing checkpoint fails here with its how-to message.
    app = create_app(config, load_models(config), owns_models=True)
    asyncio.run(serve(config, app, ssl_context))
    return 0


def _tls(config: Config) -> ssl.SSLContext | None:
    if not config.auth.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.auth.tls_cert, config.auth.tls_key or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"auth.tls_cert / auth.tls_key: cannot load {config.auth.tls_cert}: {e}") from None
    return context


# ---- replicas ----------------------------------------------------------------------------------------------------


def cmd_replicas(args: argparse.Namespace) -> int:
    from streamer.replicas.launcher import serve_replicas

    overrides: dict[str, Any] = {}
    replicas = {k: v for k in ("count", "address") if (v := getattr(args, k, None)) is not None}
    if replicas:
        overrides["replicas"] = replicas
    config = load_config(args.config, overrides)
    serve_replicas(config, args.model or [config.model])
    return 0


# ---- stream ------------------------------------------------------------------------------------------------------


def cmd_stream(args: argparse.Namespace) -> int:
    from streamer.client.audio_file import read_audio
    from streamer.client.stream import Resume, ResumePolicy, stream_audio
    from streamer.sinks.factory import client_sinks

    data, rate = read_audio(args.file)
    sinks = client_sinks(args.midi_port, args.midi_backend)

    def show(message: p.ServerMessage) -> None:
        if isinstance(message, p.Ready):
            print(f"ready: session {message.session}, model {message.model}, hop {message.hop:.3f}s", flush=True)
        elif isinstance(message, p.Error):
            print(f"error [{message.code}]: {message.message}", file=sys.stderr, flush=True)
        elif isinstance(message, p.Lagging):
            print(f"warning: server lagging ({message.behind:.2f}s behind)", file=sys.stderr, flush=True)

    def play(events: list[p.NoteEvent]) -> None:
        """The stream's timeline: every session's events, spliced where it resumed."""
        for sink in sinks:
            sink.send(events)
        if not args.quiet:
            for event in events:
                print(format_event(event), flush=True)

    def resumed(r: Resume) -> None:
        print(
            f"resumed at {r.at:.3f}s ({r.reason}): {r.uncommitted:.3f}s of audio not yet committed sent again, "
            f"{r.lost:.3f}s lost, ready after {r.reconnect_s:.3f}s ({r.tries} {'try' if r.tries == 1 else 'tries'})",
            file=sys.stderr,
            flush=True,
        )

    try:
        result = asyncio.run(
            stream_audio(
                args.url,
                data,
                rate,
                speed=args.speed,
                encoding=args.encoding,
                model=args.model,
                hop=args.hop,
                on_message=show,
                on_events=play,
                on_resume=resumed,
                resume=None if args.no_resume else ResumePolicy(),
            )
        )
    finally:
        for sink in sinks:
            sink.close()
    if result.failure:
        print(f"error: {result.failure}", file=sys.stderr)
    if result.done is not None:
        notes = sum(isinstance(e, p.NoteOff) for e in result.events)
        print(f"done: {notes} notes in {result.done.duration:.2f}s of audio", flush=True)
    if args.output:
        from streamer.sinks.midi_file import events_to_midi

        events_to_midi(result.events).save(str(args.output))
        print(f"wrote {args.output}")
    return 0 if result.done is not None and not any(e.fatal for e in result.errors) else 1


# ---- transcribe --------------------------------------------------------------------------------------------------


def cmd_transcribe(args: argparse.Namespace) -> int:
    from streamer.client.audio_file import read_audio, to_mono
    from streamer.models.registry import load_model
    from streamer.offline import transcribe_array
    from streamer.sinks.midi_file import events_to_midi

    config = _config_from(args)
    model = load_model(config.model, config.model_options(config.model))
    data, rate = read_audio(args.input)
    events, done = transcribe_array(
        model,
        to_mono(data),
        rate,
        hop_s=config.windowing.hop or model.spec.offline_hop_s,
        commit_margin_s=config.windowing.commit_margin,
        max_batch=config.engine.max_batch,
    )
    if args.json:
        for event in events:
            print(p.encode(event))
    elif not args.quiet:
        for event in events:
            print(format_event(event))
    if args.format == "notesequence":
        from streamer.sinks.notesequence import notesequence_bytes

        args.output.write_bytes(notesequence_bytes(events, done.duration))
    else:
        events_to_midi(events, done.duration).save(str(args.output))
    print(f"{done.notes} notes in {done.duration:.2f}s of audio → {args.output}", file=sys.stderr)
    return 0


# ---- parser ------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from streamer.client.stream import DEFAULT_URL

    parser = argparse.ArgumentParser(prog="streamer", description="Real-time music transcription server")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the WebSocket server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8765)")
    serve.add_argument("--model", help="default model (basic-pitch, mt3-pytorch, mr-mt3)")
    serve.add_argument("--config", type=Path, help="TOML file over configs/default.toml")
    serve.add_argument("--hop", type=float, help="seconds between window starts (default: the model's)")
    serve.add_argument("--midi-port", help="open a virtual MIDI output port with this name")
    serve.add_argument("--midi-backend", help="auto | alsa | jack | coremidi | windows-mm")
    serve.set_defaults(func=cmd_serve)

    replicas = sub.add_parser("replicas", help="run model replicas in Ray Serve for [engine] backend = \"ray\"")
    replicas.add_argument("--model", action="append", help="model to serve (repeat for several; default: config's)")
    replicas.add_argument("--count", type=int, help="replicas per model (default [replicas] count)")
    replicas.add_argument("--address", help="HTTP ingress to serve on, http://HOST:PORT (default [replicas] address)")
    replicas.add_argument("--config", type=Path, help="TOML file over configs/default.toml")
    replicas.set_defaults(func=cmd_replicas)

    stream = sub.add_parser("stream", help="stream an audio file to a server and print the notes")
    stream.add_argument("file", type=Path)
    stream.add_argument("--url", default=DEFAULT_URL)
    stream.add_argument("--speed", type=float, default=1.0, help="× real time; 0 = as fast as possible")
    stream.add_argument("--encoding", choices=["s16le", "f32le"], default="s16le")
    stream.add_argument("--model")
    stream.add_argument("--hop", type=float)
    stream.add_argument("-o", "--output", type=Path, help="write the received notes as a MIDI file")
    stream.add_argument("--midi-port", help="play received notes on a virtual MIDI port on this machine")
    stream.add_argument("--midi-backend", default="auto")
    stream.add_argument("-q", "--quiet", action="store_true")
    stream.add_argument(
        "--no-resume",
        action="store_true",
        help="end when the server goes away, instead of resuming on another (through the same URL)",
    )
    stream.set_defaults(func=cmd_stream)

    transcribe = sub.add_parser("transcribe", help="transcribe a file offline (same windowing and stitching)")
    transcribe.add_argument("input", type=Path)
    transcribe.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    transcribe.add_argument(
        "--format", choices=["midi", "notesequence"], default="midi",
        help="a standard MIDI file, or a Magenta NoteSequence (binary protobuf; needs note-seq, docs/midi.md)",
    )  # fmt: skip
    transcribe.add_argument("--model")
    transcribe.add_argument("--config", type=Path)
    transcribe.add_argument("--hop", type=float)
    transcribe.add_argument("--json", action="store_true", help="print events as protocol JSON")
    transcribe.add_argument("-q", "--quiet", action="store_true")
    transcribe.set_defaults(func=cmd_transcribe)

    from streamer.models.catalogue import add_models_subcommands

    models = sub.add_parser("models", help="list and download model checkpoints")
    add_models_subcommands(models.add_subparsers(dest="models_command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except StreamerError as e:
        print(f"error [{e.code}]: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
