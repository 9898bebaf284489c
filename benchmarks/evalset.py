"""The accuracy bench's evaluation set: public-domain scores from the music21 corpus, rendered with FluidSynth.

Each piece's first `seconds` are written as a standard MIDI file (the reference) and rendered from that same file
with a General MIDI SoundFont, so audio and reference share exact timing. Every piece also comes in a noisy,
reverberant variant: the clean rendering convolved with a synthetic room (exponentially decaying noise) plus white
noise at a set SNR, both seeded. The set is cached under `$XDG_CACHE_HOME/streamer/bench/<hash of the settings>/`.
A user's own folder of `song.wav` + `song.mid` pairs is accepted as a set too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.client.audio_file import read_audio, to_mono
from streamer.notes import Note
from streamer.sinks.midi_file import notes_to_midi, read_notes

RATE = 44100
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
# Notes beginning this close to the excerpt's end are left out: cut there, they would last less than a model frame.
END_GUARD_S = 0.05
TAIL_S = 1.0  # audio kept after the excerpt's end, so the last notes' releases are heard
PEAK = 0.7  # renderings are normalised to this peak, leaving headroom for the noisy variant
CACHE_FORMAT = 1  # bump when the rendering changes, so old caches are not reused
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

# General MIDI programs (zero-based) given to the voices of ensemble pieces, top voice first.
STRINGS = (40, 41, 42, 43)  # violin, viola, cello, contrabass
WOODWINDS = (73, 68, 71, 70)  # flute, oboe, clarinet, bassoon
PIANO = 0

DEFAULT_SECONDS = 20.0

PIANO_SET = "piano"
ENSEMBLE_SET = "ensemble"
USER_SET = "user"
CLEAN = "clean"
NOISY = "noisy"


@dataclass(frozen=True, slots=True)
class Piece:
    """A score of the music21 corpus and how to voice it: one GM program for every part, or one per part."""

    name: str
    corpus_path: str
    group: str
    programs: tuple[int, ...] = (PIANO,)

    def program_of(self, part: int) -> int:
        return self.programs[min(part, len(self.programs) - 1)]


PIECES: tuple[Piece, ...] = (
    Piece("joplin-maple-leaf-rag", "joplin/maple_leaf_rag.mxl", PIANO_SET),
    Piece("mozart-k545-i", "mozart/k545/movement1_exposition.mxl", PIANO_SET),
    Piece("clara-schumann-polonaise-op1-1", "schumann_clara/polonaise_op1n1.mxl", PIANO_SET),
    Piece("bach-bwv66.6-strings", "bach/bwv66.6.mxl", ENSEMBLE_SET, STRINGS),
    Piece("bach-bwv1.6-woodwinds", "bach/bwv1.6.mxl", ENSEMBLE_SET, WOODWINDS),
    Piece("haydn-op74-1-i-strings", "haydn/opus74no1/movement1.mxl", ENSEMBLE_SET, STRINGS),
)


@dataclass(frozen=True, slots=True)
class SetSettings:
    """Everything the rendered set depends on; its hash names the cache folder."""

    seconds: float = DEFAULT_SECONDS
    pieces: tuple[str, ...] = tuple(p.name for p in PIECES)
    snr_db: float = 20.0
    rt60_s: float = 0.8  # reverberation time of the synthetic room (decay by 60 dB)
    wet: float = 0.5  # level of the reverberant tail relative to the direct sound
    seed: int = 0
    soundfont: str = str(SOUNDFONT)

    def key(self) -> str:
        voicing = [asdict(p) for p in pieces_named(self.pieces)]
        text = json.dumps({**asdict(self), "voicing": voicing, "format": CACHE_FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Item:
    """One audio file of the set and its reference MIDI."""

    name: str
    group: str
    variant: str
    audio_path: Path
    midi_path: Path

    def audio(self) -> tuple[np.ndarray, int]:
        """Mono float32 audio and its sample rate."""
        data, rate = read_audio(self.audio_path)
        return to_mono(data), rate

    def reference(self) -> list[Note]:
        return read_notes(self.midi_path)


@dataclass
class Manifest:
    settings: dict[str, object]
    items: list[dict[str, str]] = field(default_factory=list)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamer" / "bench"


def pieces_named(names: Sequence[str]) -> list[Piece]:
    known = {p.name: p for p in PIECES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown piece(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def build_set(settings: SetSettings, root: Path | None = None, log: bool = True) -> list[Item]:
    """The rendered set for `settings`, from the cache when it is there (rendering it once otherwise)."""
    folder = (root or cache_root()) / settings.key()
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        require_fluidsynth(Path(settings.soundfont))
        folder.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(settings=asdict(settings))
        for piece in pieces_named(settings.pieces):
            if log:
                print(f"rendering {piece.name} ({settings.seconds:g} s)", flush=True)
            manifest.items += _render_piece(piece, settings, folder)
        # Written last: a manifest means every file it names is complete.
        partial = manifest_path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(manifest), indent=1))
        partial.replace(manifest_path)
    items = json.loads(manifest_path.read_text())["items"]
    return [Item(i["name"], i["group"], i["variant"], folder / i["audio"], folder / i["midi"]) for i in items]


def user_set(folder: Path) -> list[Item]:
    """Every `song.wav` (or .flac, .ogg) in `folder` that has a `song.mid` (or .midi) beside it."""
    items = []
    for audio in sorted(folder.iterdir()):
        if audio.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        midi = next((m for m in (audio.with_suffix(".mid"), audio.with_suffix(".midi")) if m.is_file()), None)
        if midi is not None:
            items.append(Item(audio.stem, USER_SET, CLEAN, audio, midi))
    if not items:
        raise ValueError(f"{folder}: no audio file with a MIDI file of the same name")
    return items


def require_fluidsynth(soundfont: Path = SOUNDFONT) -> None:
    if shutil.which("fluidsynth") is None or not soundfont.is_file():
        raise RuntimeError(
            f"the bench renders with FluidSynth and {soundfont}; on Debian/Ubuntu: "
            "apt-get install fluidsynth fluid-soundfont-gm (or bash scripts/install-test-system-packages.sh)"
        )


def render_midi(midi_path: Path, seconds: float, soundfont: Path = SOUNDFONT) -> np.ndarray:
    """Mono float32 audio at RATE of a MIDI file, `seconds` long, dry (FluidSynth reverb and chorus off)."""
    require_fluidsynth(soundfont)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "render.wav"
        dry = ["-R", "0", "-C", "0"]  # reverb and chorus off: the noisy variant adds its own room
        command = ["fluidsynth", "-n", "-i", "-q", *dry, "-g", "0.5", "-r", str(RATE), "-T", "wav", "-F", str(wav)]
        subprocess.run([*command, str(soundfont), str(midi_path)], check=True, stdout=subprocess.DEVNULL)
        data, rate = read_audio(wav)
    if rate != RATE:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz, asked for {RATE}")
    audio = np.zeros(round(seconds * RATE), dtype=np.float32)
    mono = to_mono(data)[: len(audio)]
    audio[: len(mono)] = mono
    peak = float(np.max(np.abs(audio)))
    return audio * (PEAK / peak) if peak > 0 else audio


def degrade(audio: np.ndarray, rate: int, snr_db: float, rt60_s: float, wet: float, seed: int) -> np.ndarray:
    """The noisy, reverberant variant: convolution with a synthetic room, then white noise at `snr_db`."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rt60_s * rate)) / rate
    # Amplitude falls by 60 dB (a factor 1000) over rt60: exp(-ln(1000) t / rt60).
    tail = rng.standard_normal(len(t)) * np.exp(-np.log(1000.0) * t / rt60_s)
    tail *= wet / np.sqrt(np.sum(tail**2))  # tail energy relative to the direct path's
    room = tail
    room[0] = 1.0  # the direct sound
    size = len(audio) + len(room) - 1
    wetted = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(room, size), size)[: len(audio)]
    noise = rng.standard_normal(len(audio))
    noise *= np.sqrt(np.mean(wetted**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    out = wetted + noise
    return (out * (PEAK / np.max(np.abs(out)))).astype(np.float32)


def excerpt(notes: Sequence[Note], seconds: float) -> list[Note]:
    """The notes that begin in the first `seconds` (up to a guard), cut to end there, one sounding note per key.

    Two voices on one instrument in unison sound as one key (a piano has one string per pitch): notes struck
    together merge, and a key struck again while it sounds ends there. Zero-length notes (grace notes) are dropped.
    """
    by_key: dict[tuple[int, int, bool], list[Note]] = {}
    for n in sorted(notes, key=lambda n: (n.onset, -n.offset)):
        if n.onset >= seconds - END_GUARD_S:
            continue
        same = by_key.setdefault(n.key, [])
        if same and same[-1].onset == n.onset:
            continue  # a unison: the longer note, sorted first, stands for both
        if same and same[-1].offset > n.onset:
            same[-1] = replace(same[-1], offset=n.onset)
        same.append(replace(n, offset=min(n.offset, seconds)))
    kept = [n for same in by_key.values() for n in same if n.offset > n.onset]
    return sorted(kept, key=lambda n: (n.onset, n.pitch, n.program))


def score_notes(piece: Piece) -> list[Note]:
    """All notes of a corpus score, each part voiced with its GM program, as music21 writes them to MIDI."""
    from music21 import corpus, instrument

    score = corpus.parse(piece.corpus_path)
    for i, part in enumerate(score.parts):
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        part.insert(0, instrument.instrumentFromMidiProgram(piece.program_of(i)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "score.mid"
        score.write("midi", fp=str(path))
        return read_notes(path)


def _render_piece(piece: Piece, settings: SetSettings, folder: Path) -> list[dict[str, str]]:
    midi_name = f"{piece.name}.mid"
    notes_to_midi(excerpt(score_notes(piece), settings.seconds)).save(str(folder / midi_name))
    clean = render_midi(folder / midi_name, settings.seconds + TAIL_S, Path(settings.soundfont))
    noisy = degrade(clean, RATE, settings.snr_db, settings.rt60_s, settings.wet, settings.seed)
    items = []
    for variant, audio in ((CLEAN, clean), (NOISY, noisy)):
        audio_name = f"{piece.name}.{variant}.wav"
        sf.write(folder / audio_name, audio, RATE, subtype="PCM_16")
        items.append(
            {"name": piece.name, "group": piece.group, "variant": variant, "audio": audio_name, "midi": midi_name}
        )
    return items
