"""Training windows from an `avgen prepare` folder, and the loader that picks the kind.

`open_windows(root, voices)` reads `root/config.json`: a prepared folder (format
`avgen.prepared/1`) gives `PreparedWindows`, anything else the teacher corpus's
`DialogueWindows`. Both yield the same example dict (mel, motion, tokens, partner_tokens,
partner_motion, voice, mask) and batches, so `avgen train av` takes either folder.

A monologue item has no partner: its partner tokens are silence and its partner motion is
zero *after* normalisation, the same "no partner" the trainer's partner-motion dropout
shows the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avgen.audio.mel import LOG_SILENCE
from avgen.constants import EXPRESSION_NAMES, N_MELS
from avgen.model.av_flow import MOTION_DIM
from avgen.text.symbols import SILENCE_ID
from avgen.text.timeline import one_hot_log_probs
from avgen.model.av_checkpoint import load_checkpoint
from avgen.model.features import Normalizer, motion_features
from avgen.train.av_data import DialogueWindows

PREPARED_FORMAT = "avgen.prepared/1"


def folder_format(root: str | Path) -> str | None:
    path = Path(root) / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("format")


def open_windows(root: str | Path, voices: tuple[str, ...], heldout: bool = False):
    """Training windows from a teacher corpus or a prepared folder (by its config.json)."""
    if folder_format(root) == PREPARED_FORMAT:
        return PreparedWindows(root, voices, heldout)
    return DialogueWindows(root, voices, heldout)


@dataclass(frozen=True)
class PreparedPerson:
    mel: np.ndarray            # (T, 80) float16
    motion: np.ndarray         # (T, M) motion features
    speech: np.ndarray         # (T,) bool
    token_ids: np.ndarray | None     # (T,) from a transcript, or
    token_logits: np.ndarray | None  # (T, V) float16 log-probs from a CTC model
    voice: str

    def tokens(self, start: int, length: int) -> np.ndarray:
        """Log-probs (length, V) of frames [start, start + length), silence past the end."""
        if self.token_ids is not None:
            ids = np.full(length, SILENCE_ID, np.int64)
            part = self.token_ids[start:start + length]
            ids[:len(part)] = part
            return one_hot_log_probs(ids)
        out = one_hot_log_probs(np.full(length, SILENCE_ID, np.int64))
        part = self.token_logits[start:start + length]
        out[:len(part)] = part
        return out


class PreparedWindows(DialogueWindows):
    """Random training windows from a prepared folder (train items unless `heldout`)."""

    def __init__(self, root: str | Path, voices: tuple[str, ...], heldout: bool = False) -> None:
        self.root = Path(root)
        self.voices = voices
        config = json.loads((self.root / "config.json").read_text())
        self.items: list[list[PreparedPerson]] = []
        for name in config["items"]:
            path = self.root / "items" / f"{name}.npz"
            with np.load(path, allow_pickle=False) as data:
                if bool(data["heldout"]) != heldout:
                    continue
                names = [str(n) for n in data["expression_names"]]
                if names != list(EXPRESSION_NAMES):
                    raise ValueError(f"{path}: expression names differ from this avgen's")
                people = []
                for k in range(int(data["num_people"])):
                    voice = str(data["voices"][k])
                    if voice not in voices:
                        raise ValueError(f"{root}: voice {voice!r} is not in the model's "
                                         f"{voices}")
                    key = f"p{k}/"
                    people.append(PreparedPerson(
                        data[key + "mel"], motion_features(data[key + "head_pose"],
                                                           data[key + "expression"]),
                        data[key + "speech"].astype(bool),
                        data[key + "token_ids"].astype(np.int64)
                        if key + "token_ids" in data.files else None,
                        data[key + "token_logits"] if key + "token_logits" in data.files
                        else None, voice))
                self.items.append(people)
        if not self.items:
            raise ValueError(f"{root}: no {'held-out' if heldout else 'training'} items")

    def example(self, rng: np.random.Generator, length: int, speech_bias: float = 0.0
                ) -> dict[str, np.ndarray]:
        """One person over one window; with probability `speech_bias` the window is cut
        around one of the person's own speech frames (see DialogueWindows.example)."""
        people = self.items[int(rng.integers(len(self.items)))]
        k = int(rng.integers(len(people)))
        own = people[k]
        frames = len(own.mel)
        start = int(rng.integers(0, max(frames - length, 0) + 1))
        if speech_bias > 0 and rng.random() < speech_bias and own.speech.any():
            spoken = np.flatnonzero(own.speech)
            centre = int(spoken[int(rng.integers(len(spoken)))])
            start = centre - int(rng.integers(length // 4, 3 * length // 4 + 1))
            start = int(np.clip(start, 0, max(frames - length, 0)))
        real = min(length, frames - start)
        mel = np.full((length, N_MELS), LOG_SILENCE, np.float32)
        mel[:real] = own.mel[start:start + real]
        motion = np.zeros((length, MOTION_DIM), np.float32)
        motion[:real] = own.motion[start:start + real]
        partner_motion = np.zeros((length, MOTION_DIM), np.float32)
        if len(people) == 2:
            partner = people[1 - k]
            partner_tokens = partner.tokens(start, length)
            partner_motion[:real] = partner.motion[start:start + real]
        else:
            partner_tokens = one_hot_log_probs(np.full(length, SILENCE_ID, np.int64))
        mask = np.zeros(length, bool)
        mask[:real] = True
        return {"mel": mel, "motion": motion, "tokens": own.tokens(start, length),
                "partner_tokens": partner_tokens, "partner_motion": partner_motion,
                "voice": np.array(self.voices.index(own.voice)), "mask": mask,
                "partner_present": np.array(len(people) == 2)}

    def batch(self, rng: np.random.Generator, size: int, length: int,
              normalizer: Normalizer, speech_bias: float = 0.0) -> dict[str, torch.Tensor]:
        out = super().batch(rng, size, length, normalizer, speech_bias)
        present = out.pop("partner_present").to(out["partner_motion"].dtype)
        out["partner_motion"] = out["partner_motion"] * present[:, None, None]
        return out


def extend_voices(model, voices: tuple[str, ...], log=print):
    """The model with `voices` it lacks appended to its voice table, each starting as a
    copy of its first voice's embedding (a new speaker starts from a known voice and
    fine-tuning moves it); the model itself when it has them all."""
    from dataclasses import replace

    from avgen.model.av_flow import AVFlow

    new = tuple(v for v in voices if v not in model.config.voices)
    if not new:
        return model
    config = replace(model.config, voices=model.config.voices + new)
    bigger = AVFlow(config).to(next(model.parameters()).device)
    state = model.state_dict()
    table = state["voice.table.weight"]
    state["voice.table.weight"] = torch.cat([table, table[:1].repeat(len(new), 1)])
    bigger.load_state_dict(state)
    log(f"new voices {', '.join(new)} start as copies of {model.config.voices[0]!r}")
    return bigger


def style_voice_config(config, voices: tuple[str, ...], table: dict):
    """`config` with the corpus's voices as style-vector voices (see VoiceEmbedder)."""
    from dataclasses import replace

    embeddings = [table[v]["embedding"] for v in voices]
    return replace(config, voices=voices, voice_dim=len(embeddings[0]),
                   voice_info=tuple((table[v]["gender"], table[v]["accent"],
                                     float(table[v]["f0_median"])) for v in voices),
                   voice_similarity=(), voice_f0_spoken=())  # measured after training


def set_voice_table(model, voices: tuple[str, ...], table: dict) -> None:
    """Fill a style-voice model's fixed voice vectors from a corpus voice table."""
    with torch.no_grad():
        model.voice.table.copy_(torch.tensor([table[v]["embedding"] for v in voices]))


def has_style_voices(table: dict | None, voices) -> bool:
    return bool(table) and all("embedding" in table.get(v, {}) for v in voices)


def to_style_voices(model, voices: tuple[str, ...], table: dict, log=print):
    """A copy of `model` whose voices are the corpus's style-vector voices: every weight
    but the voice embedder is kept (fine-tuning a model trained on other voices)."""
    from avgen.model.av_flow import AVFlow

    config = style_voice_config(model.config, voices, table)
    if config == model.config:
        return model
    # the same voices, measured again on a grown corpus (their F0 figures move), keep the
    # learned voice embedder; other voices start it fresh
    same_voices = (model.config.voices == voices and model.config.voice_dim == config.voice_dim)
    new = AVFlow(config).to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items()
             if same_voices or not k.startswith("voice.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or any(same_voices or not k.startswith("voice.") for k in missing):
        raise ValueError(f"cannot carry weights over: missing {missing}, unexpected {unexpected}")
    set_voice_table(new, voices, table)
    log(f"voices {', '.join(voices)} kept, their figures from this corpus" if same_voices else
        f"voices are now {len(voices)} style vectors ({', '.join(voices)}); "
        "the voice embedder starts fresh")
    return new


def start_from(checkpoint: str | Path, voices: tuple[str, ...], device: str = "cpu",
               log=print, table: dict | None = None):
    """(model, normaliser) to fine-tune from: an existing checkpoint's weights and
    normaliser, its voice table extended by the data's new voices, or, when the data's
    voices come with style vectors (`table`, a corpus's voices.json), replaced by them."""
    from dataclasses import replace

    model, normalizer, step, _ = load_checkpoint(checkpoint, device)
    log(f"starting from {checkpoint} (step {step}, voices {', '.join(model.config.voices)})")
    # how alike its voices sound was measured on that model: training changes it
    model.config = replace(model.config, voice_similarity=(), voice_f0_spoken=())
    if has_style_voices(table, voices):
        return to_style_voices(model, voices, table, log), normalizer
    return extend_voices(model, voices, log), normalizer
