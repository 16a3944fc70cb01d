"""Stage 2 of the teacher corpus: dialogues. Utterances of two voices (stage 1,
`avgen.train.corpus`) are paired into dyadic dialogues with turn gaps, short overlaps and
pauses; each dialogue shard holds, per person and frame, tokens, log-mel and teacher
motion. Shards are written atomically and skipped when present, so a build resumes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen import formats
from avgen.train.corpus import (AlignedUtterance, CorpusConfig, is_heldout, load_features,
                                load_utterances)


@dataclass(frozen=True)
class DialogueConfig:
    min_turns: int = 4
    max_turns: int = 10
    dialogues_per_shard: int = 50
    seed: int = 0
    overlap_probability: float = 0.15
    long_pause_probability: float = 0.2
    smile_cue_probability: float = 0.12
    nod_cue_probability: float = 0.1


@dataclass(frozen=True)
class Dialogue:
    """A dyadic dialogue: turn k is utterance `utterances[k]` said by `persons[k]` from
    frame `starts[k]`. `voices[i]` is person i's voice."""

    index: int
    heldout: bool
    voices: tuple[str, str]
    num_frames: int
    persons: tuple[int, ...]
    utterances: tuple[int, ...]
    starts: tuple[int, ...]
    cues: tuple[tuple[int, str, int, int], ...]  # (person, kind, start, duration)


def plan_dialogues(utterances: list[AlignedUtterance], corpus: CorpusConfig,
                   config: DialogueConfig = DialogueConfig()) -> list[Dialogue]:
    """Pair every utterance into exactly one dialogue (held-out ones only with each
    other), alternating between two voices with gaps, overlaps and pauses."""
    from avgen.constants import FRAMES_PER_SECOND as fps

    rng = np.random.default_rng(config.seed)
    by_id = {u.index: u for u in utterances}
    dialogues: list[Dialogue] = []
    for heldout in (False, True):
        pools = {v: [u.index for u in utterances
                     if u.voice == v and is_heldout(u.index, corpus) == heldout]
                 for v in corpus.voices}
        for pool in pools.values():
            rng.shuffle(pool)
        while sum(bool(pool) for pool in pools.values()) >= 2:
            # two different voices, drawn in proportion to what is left of each
            names = [v for v in corpus.voices if pools[v]]
            left = np.array([len(pools[v]) for v in names], np.float64)
            first = rng.choice(len(names), p=left / left.sum())
            left[first] = 0
            second = rng.choice(len(names), p=left / left.sum())
            voices = [names[first], names[second]]
            turns = int(rng.integers(config.min_turns, config.max_turns + 1))
            persons, chosen, starts, cues = [], [], [], []
            cursor = int(rng.uniform(0.1, 0.5) * fps)
            person = int(rng.integers(0, 2))
            previous_end = cursor
            for k in range(turns):
                pool = pools[voices[person]]
                if not pool:
                    break
                index = pool.pop()
                length = by_id[index].num_frames
                if k:
                    roll = rng.random()
                    if roll < config.overlap_probability:
                        gap = -rng.uniform(0.1, 0.35)
                    elif roll < config.overlap_probability + config.long_pause_probability:
                        gap = rng.uniform(0.7, 1.4)
                    else:
                        gap = rng.uniform(0.1, 0.6)
                    # utterances carry ~0.1-0.25 s of their own edge silence
                    cursor = max(previous_end + int(gap * fps), starts[-1] + 1)
                persons.append(person)
                chosen.append(index)
                starts.append(cursor)
                if rng.random() < config.smile_cue_probability:
                    cues.append((person, "smiles", cursor, int(1.2 * fps)))
                if rng.random() < config.nod_cue_probability:
                    cues.append((1 - person, "nods", cursor + length // 2, int(0.7 * fps)))
                previous_end = cursor + length
                person = 1 - person
            if len(chosen) < 2:
                continue
            num_frames = previous_end + int(rng.uniform(0.2, 0.6) * fps)
            dialogues.append(Dialogue(len(dialogues), heldout, (voices[0], voices[1]),
                                      num_frames, tuple(persons), tuple(chosen),
                                      tuple(starts), tuple(cues)))
    return dialogues


def dialogue_tracks(dialogue: Dialogue, by_id: dict, energy: np.ndarray,
                    offsets: np.ndarray):
    """Motion-teacher tracks for both people of a dialogue."""
    from avgen.text.symbols import SILENCE_ID
    from avgen.train.motion_teacher import Track

    n = dialogue.num_frames
    tracks = []
    for person in range(2):
        segments, questions = [], []
        f0, frame_energy = np.zeros(n), np.zeros(n)
        for who, index, start in zip(dialogue.persons, dialogue.utterances, dialogue.starts):
            if who != person:
                continue
            u = by_id[index]
            position = start
            last_speech_end = start
            for sid, dur in zip(u.symbol_ids, u.durations):
                segments.append((int(sid), position, int(dur)))
                position += int(dur)
                if sid != SILENCE_ID:
                    last_speech_end = position
            end = min(start + u.num_frames, n)
            f0[start:end] = u.f0[:end - start]
            frame_energy[start:end] = energy[offsets[index]:offsets[index] + end - start]
            if u.text.rstrip().endswith("?"):
                questions.append(last_speech_end)
        cues = [(kind, s, d) for who, kind, s, d in dialogue.cues if who == person]
        tracks.append(Track(segments, f0, frame_energy, questions, cues))
    return tracks


def build_dialogues(root: str | Path, config: DialogueConfig = DialogueConfig(),
                    progress=None) -> None:
    """Stage 2: plan dialogues and write their turns, cues and teacher motion."""
    import json

    from avgen.train.motion_teacher import animate

    root = Path(root)
    corpus = CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in
                             json.loads((root / "config.json").read_text()).items()})
    utterances = load_utterances(root)
    by_id = {u.index: u for u in utterances}
    _, energy, offsets = load_features(root)
    # features are concatenated in utterance-index order; map index -> frame offset
    order = [u.index for u in utterances]
    offset_of = dict(zip(order, offsets[:-1]))
    dialogues = plan_dialogues(utterances, corpus, config)
    (root / "dialogues").mkdir(exist_ok=True)
    for first in range(0, len(dialogues), config.dialogues_per_shard):
        group = dialogues[first:first + config.dialogues_per_shard]
        path = root / "dialogues" / f"shard-{first // config.dialogues_per_shard:05d}.npz"
        if path.exists():
            if progress:
                progress(len(group))
            continue
        motion = {f"p{i}/{k}": [] for i in range(2) for k in ("head_pose", "expression")}
        for d in group:
            tracks = dialogue_tracks(d, by_id, energy, offset_of)
            for person in range(2):
                pose, expr = animate(tracks[person], tracks[1 - person], person, d.num_frames,
                                     seed=config.seed * 1_000_003 + d.index * 2 + person)
                motion[f"p{person}/head_pose"].append(pose.astype(np.float16))
                motion[f"p{person}/expression"].append(expr.astype(np.float16))
            if progress:
                progress(1)
        _save_dialogue_shard(path, group, {k: np.concatenate(v) for k, v in motion.items()})


def _save_dialogue_shard(path: Path, group: list[Dialogue], motion: dict) -> None:
    from avgen.constants import EXPRESSION_NAMES

    s = formats.string_array
    arrays = {
        "index": np.array([d.index for d in group], np.int64),
        "heldout": np.array([d.heldout for d in group]),
        "voices": s(v for d in group for v in d.voices).reshape(-1, 2),
        "num_frames": np.array([d.num_frames for d in group], np.int64),
        "turn_count": np.array([len(d.persons) for d in group], np.int64),
        "turn_person": np.array([p for d in group for p in d.persons], np.int64),
        "turn_utterance": np.array([u for d in group for u in d.utterances], np.int64),
        "turn_start": np.array([t for d in group for t in d.starts], np.int64),
        "cue_count": np.array([len(d.cues) for d in group], np.int64),
        "cue_person": np.array([c[0] for d in group for c in d.cues], np.int64),
        "cue_kind": s(c[1] for d in group for c in d.cues),
        "cue_start": np.array([c[2] for d in group for c in d.cues], np.int64),
        "cue_duration": np.array([c[3] for d in group for c in d.cues], np.int64),
        "expression_names": s(EXPRESSION_NAMES),
        **motion,
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    formats.atomic_write_bytes(path, buffer.getvalue())


def load_dialogues(root: str | Path) -> list[tuple[Dialogue, dict[str, np.ndarray]]]:
    """Every dialogue with its motion arrays {'p0/head_pose': (T, 7), ...} (float32)."""
    out = []
    for path in sorted((Path(root) / "dialogues").glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        turn_bounds = np.concatenate([[0], np.cumsum(arrays["turn_count"])])
        cue_bounds = np.concatenate([[0], np.cumsum(arrays["cue_count"])])
        frame_bounds = np.concatenate([[0], np.cumsum(arrays["num_frames"])])
        for k, index in enumerate(arrays["index"]):
            t = slice(turn_bounds[k], turn_bounds[k + 1])
            c = slice(cue_bounds[k], cue_bounds[k + 1])
            f = slice(frame_bounds[k], frame_bounds[k + 1])
            dialogue = Dialogue(
                int(index), bool(arrays["heldout"][k]), tuple(str(v) for v in arrays["voices"][k]),
                int(arrays["num_frames"][k]), tuple(int(p) for p in arrays["turn_person"][t]),
                tuple(int(u) for u in arrays["turn_utterance"][t]),
                tuple(int(s) for s in arrays["turn_start"][t]),
                tuple((int(p), str(kd), int(s), int(d)) for p, kd, s, d in zip(
                    arrays["cue_person"][c], arrays["cue_kind"][c], arrays["cue_start"][c],
                    arrays["cue_duration"][c])))
            motion = {key: arrays[key][f].astype(np.float32) for key in arrays
                      if key.startswith("p")}
            out.append((dialogue, motion))
    return out


def dialogue_av(root: str | Path, dialogue: Dialogue, motion: dict,
                utterances: dict | None = None) -> tuple[dict, np.ndarray]:
    """A dialogue as `avgen.av/1` arrays (teacher mel + teacher motion) and its mixed
    audio (N,) at 22050 Hz, for rendering and listening."""
    import soundfile

    from avgen.audio.mel import LOG_SILENCE
    from avgen.constants import EXPRESSION_NAMES

    root = Path(root)
    utterances = utterances or {u.index: u for u in load_utterances(root)}
    n = dialogue.num_frames
    mel = np.full((2, n, 80), LOG_SILENCE, np.float32)
    audio = np.zeros(n * 256, np.float32)
    for person, index, start in zip(dialogue.persons, dialogue.utterances, dialogue.starts):
        u = utterances[index]
        wave, _ = soundfile.read(u.audio_path(root), dtype="float32")
        end = min(start + u.num_frames, n)
        audio[start * 256:end * 256] += wave[:(end - start) * 256]
        from avgen.audio.mel import log_mel
        mel[person, start:end] = log_mel(wave).T[:end - start]
    arrays = {"num_people": np.array(2), "num_frames": np.array(n),
              "names": formats.string_array(dialogue.voices),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for person in range(2):
        arrays[f"p{person}/mel"] = mel[person]
        arrays[f"p{person}/head_pose"] = motion[f"p{person}/head_pose"]
        arrays[f"p{person}/expression"] = motion[f"p{person}/expression"]
    return arrays, np.clip(audio, -1, 1)
