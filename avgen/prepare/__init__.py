"""`avgen prepare`: real conversation recordings -> training shards for `avgen train av`.

Per item (see `avgen.prepare.manifest` for the manifest format) and person:
  audio   -> 22050 Hz mono (resampled when needed), log-mel (T, 80) (docs/design.md,
             "Rates and shapes");
  video   -> head pose (T, 7) + expression (T, E) from the tracker (`avgen.face.track`,
             the person's view of the frame), resampled from the video's fps to the
             86.13 fps model clock by the tracker and cut/padded to the audio's length;
  energy  -> speech frames (T,) (`media.voice_activity`: own channel, crosstalk-aware);
  tokens  -> from the transcript (`transcript.align_transcript`, MAS) as ids (T,), or
             else from a local CTC model (`ctc.CtcTokens`) as log-probs (T, V);
             frames off speech are silence either way.
Off-speech frames of the mel hold the log-mel floor (`LOG_SILENCE`), as teacher data
does: the model learns that a listener is silent, not the room noise or the partner
leaking into the microphone.

Output folder:
  config.json          {"format": "avgen.prepared/1", "voices": [...], "items": [...], ...}
  items/NAME.npz       one shard per item (`avgen.prepared-item/1`), written atomically
A shard whose manifest, media files (size and time) and settings are unchanged is kept,
so a run resumes where it stopped; `--jobs N` prepares N items at once in processes.
`avgen.train.prepared.PreparedWindows` draws training windows from the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avgen import formats
from avgen.constants import (EXPRESSION_NAMES, FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE)
from avgen.errors import InputError
from avgen.prepare.ctc import CtcConfig
from avgen.prepare.manifest import Item, find_manifests, read_manifest
from avgen.prepare.media import VadConfig
from avgen.prepare.transcript import AlignConfig

FORMAT = "avgen.prepared/1"
ITEM_FORMAT = "avgen.prepared-item/1"


@dataclass(frozen=True)
class PrepareConfig:
    tolerance: float = 0.5          # seconds the streams of an item may disagree in length
    ctc_model: str | None = None    # local CTC model folder, for people without transcript
    aligner: str | None = None      # text-to-tokens checkpoint for MAS (default: shipped)
    gate_mel: bool = True           # off-speech frames hold the log-mel floor
    vad: VadConfig = field(default_factory=VadConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    ctc: CtcConfig = field(default_factory=CtcConfig)

    def settings(self) -> dict:
        """What a shard depends on besides its files (for resuming)."""
        out = asdict(self)
        out["ctc_model"] = str(Path(self.ctc_model).resolve()) if self.ctc_model else None
        out["aligner"] = str(Path(self.aligner).resolve()) if self.aligner else None
        return out


def item_digest(item: Item, config: PrepareConfig) -> str:
    h = hashlib.sha256(item.manifest.read_bytes())
    h.update(json.dumps(config.settings(), sort_keys=True).encode())
    for person in item.people:
        for path in (person.video, person.audio, person.transcript):
            if path is not None:
                stat = path.stat()
                h.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    if config.ctc_model and any(p.transcript is None for p in item.people):
        for weights in sorted(Path(config.ctc_model).glob("*")):
            h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()


def shard_path(out_dir: Path, item: Item) -> Path:
    return out_dir / "items" / f"{item.name}.npz"


def shard_is_current(path: Path, digest: str) -> bool:
    """True for a complete shard of the same inputs (a broken one is redone)."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["format"]) == ITEM_FORMAT and str(data["digest"]) == digest
    except (OSError, ValueError, KeyError, EOFError):
        return False


_MODELS: dict = {}  # per process: the aligner and CTC model, loaded once


def _aligner(config: PrepareConfig):
    from avgen.prepare.transcript import load_aligner

    key = ("aligner", config.aligner)
    if key not in _MODELS:
        _MODELS[key] = load_aligner(config.aligner)
    return _MODELS[key]


def _ctc(config: PrepareConfig):
    from avgen.prepare.ctc import CtcTokens

    key = ("ctc", config.ctc_model)
    if key not in _MODELS:
        _MODELS[key] = CtcTokens(config.ctc_model, config.ctc)
    return _MODELS[key]


def _fit_length(values: np.ndarray, length: int) -> np.ndarray:
    """Cut or edge-pad (T, D) to `length` rows."""
    if len(values) >= length:
        return values[:length]
    return np.concatenate([values, np.repeat(values[-1:], length - len(values), axis=0)])


def check_item(item: Item, config: PrepareConfig) -> None:
    """What can be told before any work: every person has a source of tokens."""
    for p in item.people:
        if p.transcript is None and config.ctc_model is None:
            raise InputError(f"person {p.name!r} has no 'transcript' and no --ctc-model was "
                             "given; one of them gives the tokens", str(item.manifest))


def prepare_item(item: Item, out_dir: str | Path, config: PrepareConfig = PrepareConfig()
                 ) -> dict:
    """Prepare one item and write its shard atomically; returns a short summary."""
    from avgen.audio.mel import LOG_SILENCE, log_mel
    from avgen.face.track import track_video
    from avgen.prepare import media
    from avgen.prepare.transcript import align_transcript, transcript_lines

    out_dir = Path(out_dir)
    source = str(item.manifest)
    check_item(item, config)
    digest = item_digest(item, config)
    people = item.people
    # audio: one read per file (a stereo file serves both people)
    decoded: dict = {}
    waves = []
    for p in people:
        path = p.audio_source
        try:
            if path not in decoded:
                decoded[path] = media.read_audio_any(path)[0]
            wave = media.pick_channel(decoded[path], p.channel, str(path))
        except InputError as exc:
            raise InputError(f"person {p.name!r}: {exc}", source) from None
        if len(wave) < SAMPLE_RATE // 2:
            raise InputError(f"person {p.name!r}: {path.name} holds less than half a second "
                             "of audio", source)
        waves.append(wave)
    seconds = [len(w) / SAMPLE_RATE for w in waves]
    if len(people) == 2 and abs(seconds[0] - seconds[1]) > config.tolerance:
        raise InputError(
            f"audio lengths disagree: {people[0].name!r} {people[0].audio_source.name} "
            f"{seconds[0]:.2f} s, {people[1].name!r} {people[1].audio_source.name} "
            f"{seconds[1]:.2f} s (tolerance {config.tolerance:g} s)", source)
    T = min(len(w) for w in waves) // HOP_LENGTH
    waves = [w[:T * HOP_LENGTH] for w in waves]
    motions = []
    for p in people:
        try:
            motion = track_video(str(p.video), progress=False, region=p.region)
        except InputError as exc:
            raise InputError(f"person {p.name!r} ({p.view} view): {exc}", source) from None
        video_seconds = motion.num_frames / FRAMES_PER_SECOND
        if abs(video_seconds - T / FRAMES_PER_SECOND) > config.tolerance:
            raise InputError(
                f"person {p.name!r}: video {p.video.name} lasts {video_seconds:.2f} s but "
                f"audio {p.audio_source.name} {T / FRAMES_PER_SECOND:.2f} s (tolerance "
                f"{config.tolerance:g} s)", source)
        motions.append((_fit_length(motion.head_pose[0], T).astype(np.float32),
                        _fit_length(motion.expression[0], T).astype(np.float32)))
    speech = media.voice_activity([media.frame_energy_db(w) for w in waves], config.vad)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(ITEM_FORMAT), "digest": np.array(digest),
        "name": np.array(item.name), "heldout": np.array(item.heldout),
        "num_people": np.array(len(people)), "num_frames": np.array(T),
        "names": formats.string_array(p.name for p in people),
        "voices": formats.string_array(p.voice for p in people),
        "expression_names": formats.string_array(EXPRESSION_NAMES),
    }
    sources, left_out = [], []
    for k, (p, wave) in enumerate(zip(people, waves)):
        mel = log_mel(wave).T[:T]
        if p.transcript is not None:
            ids = align_transcript(_aligner(config), transcript_lines(p.transcript), mel,
                                   speech[k], str(p.transcript), config.align)
            arrays[f"p{k}/token_ids"] = ids.astype(np.int16)
            sources.append("transcript")
        elif config.ctc_model is not None:
            ctc = _ctc(config)
            arrays[f"p{k}/token_logits"] = ctc.token_logits(wave, speech[k]).astype(np.float16)
            sources.append("ctc")
            left_out = ctc.left_out
        else:  # check_item rules this out
            raise AssertionError("no token source")
        if config.gate_mel:
            mel = np.where(speech[k][:, None], mel, LOG_SILENCE)
        arrays[f"p{k}/mel"] = mel.astype(np.float16)
        arrays[f"p{k}/head_pose"], arrays[f"p{k}/expression"] = motions[k]
        arrays[f"p{k}/speech"] = speech[k]
    arrays["token_sources"] = formats.string_array(sources)
    arrays["ctc_left_out"] = formats.string_array(left_out)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = shard_path(out_dir, item)
    path.parent.mkdir(parents=True, exist_ok=True)
    formats.atomic_write_bytes(path, buffer.getvalue())
    return {"name": item.name, "frames": T, "speech": [float(s.mean()) for s in speech],
            "sources": sources}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # the pool's processes are the parallelism


def _work(args) -> dict:
    item, out_dir, config = args
    return prepare_item(item, out_dir, config)


@dataclass(frozen=True)
class PrepareResult:
    prepared: int
    kept: int
    voices: tuple[str, ...]
    frames: int


def prepare(input_dir: str | Path, out_dir: str | Path, config: PrepareConfig = PrepareConfig(),
            jobs: int = 1, progress: bool = True, log=None) -> PrepareResult:
    """Prepare every item under `input_dir` into `out_dir` (resumable)."""
    from tqdm import tqdm

    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if jobs < 1:
        raise InputError(f"{jobs} is not allowed; use 1 or more", "--jobs")
    if config.ctc_model is not None:
        from avgen.prepare.ctc import check_model_dir

        check_model_dir(config.ctc_model)
    items = [read_manifest(path, input_dir) for path in find_manifests(input_dir)]
    for item in items:  # all items are checked before any work
        check_item(item, config)
    (out_dir / "items").mkdir(parents=True, exist_ok=True)
    todo = [it for it in items
            if not shard_is_current(shard_path(out_dir, it), item_digest(it, config))]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="prepare", unit="item",
               disable=not progress, dynamic_ncols=True)
    try:
        if jobs == 1 or len(todo) <= 1:
            for item in todo:
                prepare_item(item, out_dir, config)
                bar.update(1)
        else:
            import multiprocessing
            from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

            context = multiprocessing.get_context("spawn")  # no forked torch/MediaPipe state
            with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=context,
                                     initializer=_worker_init) as pool:
                pending = {pool.submit(_work, (item, out_dir, config)) for item in todo}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                        for future in done:
                            future.result()  # raises the item's error, if any
                            bar.update(1)
                except BaseException:
                    # stop at the first error: items not started yet are not started
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    return write_config(out_dir, items, config, len(todo))


def write_config(out_dir: Path, items: list[Item], config: PrepareConfig,
                 prepared: int) -> PrepareResult:
    """The folder's config.json, from its items' shards (all must exist)."""
    voices: list[str] = []
    frames = 0
    heldout = []
    left_out: set[str] = set()
    for item in items:
        with np.load(shard_path(out_dir, item), allow_pickle=False) as data:
            for voice in data["voices"]:
                if str(voice) not in voices:
                    voices.append(str(voice))
            frames += int(data["num_frames"])
            left_out.update(str(t) for t in data["ctc_left_out"])
        if item.heldout:
            heldout.append(item.name)
    data = {"format": FORMAT, "voices": voices, "items": [it.name for it in items],
            "heldout": heldout, "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH,
            "frames_per_second": FRAMES_PER_SECOND, "settings": config.settings(),
            "ctc_left_out": sorted(left_out)}
    formats.atomic_write_bytes(out_dir / "config.json",
                               (json.dumps(data, indent=2) + "\n").encode())
    return PrepareResult(prepared, len(items) - prepared, tuple(voices), frames)
