"""Training windows for the joint audio-visual model, cut from teacher dialogues.

Each example is one person of a dialogue over a window of frames: their log-mel and
motion (the targets), their tokens, and their partner's tokens and motion (the
conditions). Mel is placed from per-utterance features; frames where a person says
nothing hold the log-mel floor (silence) and the silence token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avgen.audio.mel import LOG_SILENCE
from avgen.constants import N_MELS
from avgen.model.av_flow import MOTION_DIM
from avgen.model.features import Normalizer, motion_features
from avgen.text.symbols import SILENCE_ID
from avgen.text.timeline import one_hot_log_probs


class DialogueWindows:
    """Random training windows from a teacher corpus (train split unless `heldout`)."""

    def __init__(self, root: str | Path, voices: tuple[str, ...], heldout: bool = False) -> None:
        from avgen.train import corpus
        from avgen.train.dialogues import load_dialogues

        self.root = Path(root)
        self.voices = voices
        utterances = corpus.load_utterances(self.root)
        self.utterances = {u.index: u for u in utterances}
        self.mel, _, offsets = corpus.load_features(self.root)
        self.mel_offset = {u.index: int(o) for u, o in zip(utterances, offsets[:-1])}
        self.dialogues = [(d, {k: motion_features(m[f"{k}/head_pose"], m[f"{k}/expression"])
                               for k in ("p0", "p1")})
                          for d, m in load_dialogues(self.root) if d.heldout == heldout]
        if not self.dialogues:
            raise ValueError(f"{root}: no {'held-out' if heldout else 'training'} dialogues")
        for d, _ in self.dialogues:
            for voice in d.voices:
                if voice not in voices:
                    raise ValueError(f"{root}: voice {voice!r} is not in the model's {voices}")

    def person_arrays(self, dialogue, person: int, start: int, length: int):
        """mel (L, 80), token ids (L,) of `person` over frames [start, start + L)."""
        mel = np.full((length, N_MELS), LOG_SILENCE, np.float32)
        ids = np.full(length, SILENCE_ID, np.int64)
        for who, index, turn_start in zip(dialogue.persons, dialogue.utterances, dialogue.starts):
            if who != person:
                continue
            u = self.utterances[index]
            a, b = max(start, turn_start), min(start + length, turn_start + u.num_frames)
            if a >= b:
                continue
            offset = self.mel_offset[index]
            mel[a - start:b - start] = self.mel[offset + a - turn_start:offset + b - turn_start]
            frame_ids = np.repeat(u.symbol_ids, u.durations)
            ids[a - start:b - start] = frame_ids[a - turn_start:b - turn_start]
        return mel, ids

    def example(self, rng: np.random.Generator, length: int, speech_bias: float = 0.0
                ) -> dict[str, np.ndarray]:
        """One person over one window. With probability `speech_bias` the window is cut
        around one of the person's own turns: a uniform window holds that person's speech
        only about half the time, and speech is what is slow to learn."""
        dialogue, motion = self.dialogues[int(rng.integers(len(self.dialogues)))]
        person = int(rng.integers(2))
        start = int(rng.integers(0, max(dialogue.num_frames - length, 0) + 1))
        if speech_bias > 0 and rng.random() < speech_bias:
            turn = int(rng.integers(len(dialogue.persons)))
            person = dialogue.persons[turn]
            turn_frames = self.utterances[dialogue.utterances[turn]].num_frames
            low = dialogue.starts[turn] - length // 4
            high = max(dialogue.starts[turn] + turn_frames - 3 * length // 4, low + 1)
            start = int(np.clip(rng.integers(low, high), 0,
                                max(dialogue.num_frames - length, 0)))
        real = min(length, dialogue.num_frames - start)
        mel, ids = self.person_arrays(dialogue, person, start, length)
        _, partner_ids = self.person_arrays(dialogue, 1 - person, start, length)
        own_motion = np.zeros((length, MOTION_DIM), np.float32)
        partner_motion = np.zeros((length, MOTION_DIM), np.float32)
        own_motion[:real] = motion[f"p{person}"][start:start + real]
        partner_motion[:real] = motion[f"p{1 - person}"][start:start + real]
        mask = np.zeros(length, bool)
        mask[:real] = True
        return {"mel": mel, "motion": own_motion, "tokens": one_hot_log_probs(ids),
                "partner_tokens": one_hot_log_probs(partner_ids), "partner_motion": partner_motion,
                "voice": np.array(self.voices.index(dialogue.voices[person])), "mask": mask}

    def batch(self, rng: np.random.Generator, size: int, length: int,
              normalizer: Normalizer, speech_bias: float = 0.0) -> dict[str, torch.Tensor]:
        examples = [self.example(rng, length, speech_bias) for _ in range(size)]
        out = {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0]}
        out["mel"] = (out["mel"] - torch.from_numpy(normalizer.mel_mean)) / torch.from_numpy(
            normalizer.mel_std)
        for key in ("motion", "partner_motion"):
            out[key] = (out[key] - torch.from_numpy(normalizer.motion_mean)) / torch.from_numpy(
                normalizer.motion_std)
        return out

    def normalizer(self, rng: np.random.Generator, windows: int = 200,
                   length: int = 400) -> Normalizer:
        """Statistics from random windows (speech and silence in their natural mix)."""
        mels, motions = [], []
        for _ in range(windows):
            e = self.example(rng, length)
            mels.append(e["mel"][e["mask"]])
            motions.append(e["motion"][e["mask"]])
        mel, motion = np.concatenate(mels), np.concatenate(motions)
        return Normalizer(mel.mean(0), mel.std(0) + 1e-3, motion.mean(0), motion.std(0) + 1e-3)
