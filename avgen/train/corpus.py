"""The teacher corpus (DESIGN.md section 9): what the default models learn from.

Stage 1, utterances: generated sentences, each spoken by one teacher voice, stored as
`audio/<voice>/<id>.flac` (22050 Hz mono) plus alignment shards
`utterances/shard-NNNNN.npz` (symbol ids with exact frame durations, F0 per frame).
Stage 2, dialogues: utterances of two voices paired into dyadic dialogues with turn
gaps, short overlaps and pauses; each dialogue shard holds, per person and frame,
tokens, log-mel and teacher motion.

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
from avgen.errors import AvgenError


@dataclass(frozen=True)
class CorpusConfig:
    num_sentences: int = 6400
    shard_size: int = 200
    seed: int = 0
    voices: tuple[str, ...] = ("heart", "heart-low")
    heldout_every: int = 50  # every 50th utterance (2 %) is held out of training


def utterance_id(index: int) -> str:
    return f"u{index:06d}"


def voice_of(index: int, config: CorpusConfig) -> str:
    return config.voices[index % len(config.voices)]


def is_heldout(index: int, config: CorpusConfig) -> bool:
    return index % config.heldout_every == 0


def _write_flac(path: Path, audio: np.ndarray) -> None:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    formats.atomic_write_bytes(path, buffer.getvalue())


def build_utterances(root: str | Path, config: CorpusConfig = CorpusConfig(),
                     progress=None) -> None:
    """Stage 1. `progress(n)` is called with the number of utterances finished."""
    from avgen.text import to_phrases
    from avgen.train.sentences import sentences
    from avgen.train.teachers import VOICES, HibariTeacher

    root = Path(root)
    texts = sentences(config.num_sentences, config.seed)
    for voice in config.voices:
        if voice not in VOICES:
            raise AvgenError(f"unknown teacher voice {voice!r}; known: {', '.join(VOICES)}")
        (root / "audio" / voice).mkdir(parents=True, exist_ok=True)
    (root / "utterances").mkdir(parents=True, exist_ok=True)
    formats.atomic_write_bytes(root / "config.json", _json(asdict(config)))
    _write_heldout_list(root, config)
    teacher = None
    for shard in range(0, config.num_sentences, config.shard_size):
        path = root / "utterances" / f"shard-{shard // config.shard_size:05d}.npz"
        indices = range(shard, min(shard + config.shard_size, config.num_sentences))
        if path.exists():
            if progress:
                progress(len(indices))
            continue
        teacher = teacher or HibariTeacher()
        records = []
        for index in indices:
            voice = voice_of(index, config)
            utterance = teacher.synthesize(to_phrases(texts[index]), VOICES[voice],
                                           seed=config.seed * 1_000_003 + index)
            _write_flac(root / "audio" / voice / f"{utterance_id(index)}.flac", utterance.audio)
            records.append((index, utterance))
            if progress:
                progress(1)
        _save_utterance_shard(path, records)


def _json(data) -> bytes:
    import json

    return (json.dumps(data, indent=2) + "\n").encode()


def _write_heldout_list(root: Path, config: CorpusConfig) -> None:
    lines = [f"audio/{voice_of(i, config)}/{utterance_id(i)}.flac"
             for i in range(config.num_sentences) if is_heldout(i, config)]
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
        return Path(root) / "audio" / self.voice / f"{utterance_id(self.index)}.flac"


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
