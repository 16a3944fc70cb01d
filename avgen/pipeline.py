"""The chain as library functions: tokens -> joint model -> (vocoder, renderer).

`generate` runs the joint audio-visual model for both people of a dialogue timeline and
returns `avgen.av/1` arrays; the CLI's `generate` and `synth` are thin wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avgen import formats
from avgen.constants import EXPRESSION_NAMES, NUM_PEOPLE
from avgen.errors import InputError
from avgen.tokens import Timeline

AV_WEIGHTS = "av-flow"


@dataclass(frozen=True)
class GenerateConfig:
    steps: int = 8
    seed: int = 0
    voices: tuple[str, ...] | None = None  # per person; default: the model's first two
    device: str = "cpu"


def load_av_model(checkpoint: str | None = None, device: str = "cpu"):
    """(model, normaliser) from a checkpoint path, or the registered default."""
    from avgen.errors import WeightsError
    from avgen.train.av import load_checkpoint
    from avgen.weights import Weights

    if checkpoint is None:
        registry = Weights()
        if AV_WEIGHTS not in registry.entries:
            raise WeightsError("no trained joint audio-visual model is registered yet "
                               f"('{AV_WEIGHTS}' in weights.toml); train one with "
                               "'avgen train av' and pass --checkpoint")
        checkpoint = str(registry.path(AV_WEIGHTS))
    model, normalizer, _, _ = load_checkpoint(checkpoint, device)
    return model.eval(), normalizer


def generate(timeline: Timeline, model, normalizer, config: GenerateConfig = GenerateConfig()
             ) -> dict[str, np.ndarray]:
    """Mel and motion for both people over the whole timeline (T frames at 86.13 fps).

    Returns `avgen.av/1` arrays. Deterministic for `config.seed` on one device.
    """
    from avgen.train.av_data import motion_from_features

    if config.steps < 1:
        raise InputError(f"--steps must be >= 1, got {config.steps}")
    voices = config.voices or model.config.voices[:NUM_PEOPLE]
    unknown = [v for v in voices if v not in model.config.voices]
    if unknown or len(voices) != NUM_PEOPLE:
        raise InputError(f"voices must be two of {', '.join(model.config.voices)}; got "
                         f"{', '.join(voices)}")
    device = config.device
    tokens = torch.from_numpy(np.stack([timeline.token_logits(p) for p in range(NUM_PEOPLE)]))
    voice_ids = torch.tensor([model.config.voices.index(v) for v in voices])
    generator = torch.Generator(device=device).manual_seed(config.seed)
    mel, motion = model.sample_dyad(tokens.to(device), voice_ids.to(device), config.steps,
                                    generator)
    mel = mel.cpu().numpy() * normalizer.mel_std + normalizer.mel_mean
    motion = motion.cpu().numpy() * normalizer.motion_std + normalizer.motion_mean
    arrays = {"num_people": np.array(NUM_PEOPLE), "num_frames": np.array(timeline.num_frames),
              "names": formats.string_array(timeline.names),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for person in range(NUM_PEOPLE):
        pose, expression = motion_from_features(motion[person])
        arrays[f"p{person}/mel"] = mel[person].astype(np.float32)
        arrays[f"p{person}/head_pose"] = pose
        arrays[f"p{person}/expression"] = expression
    return arrays
