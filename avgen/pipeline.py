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
    voices: tuple[str, ...] | None = None  # per person; default: by face, or the first two
    device: str = "cpu"
    chunk_frames: int = 2048  # frames generated at a time (~24 s): bounds working memory


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


def generate(timeline: Timeline, model, normalizer, config: GenerateConfig = GenerateConfig(),
             progress=None) -> dict[str, np.ndarray]:
    """Mel and motion for both people over the whole timeline (T frames at 86.13 fps).

    Returns `avgen.av/1` arrays. Deterministic for `config.seed` on one device.
    """
    tokens = np.stack([timeline.token_logits(p) for p in range(NUM_PEOPLE)])
    return generate_from_tokens(tokens, timeline.names, model, normalizer, config, progress)


def generate_from_tokens(tokens: np.ndarray, names, model, normalizer,
                         config: GenerateConfig = GenerateConfig(), progress=None
                         ) -> dict[str, np.ndarray]:
    """`generate` for per-person token log-probabilities (2, T, V) from any source.
    `progress(frames)` is called as chunks finish."""
    from avgen.train.av_data import motion_from_features

    if config.steps < 1:
        raise InputError(f"--steps must be >= 1, got {config.steps}")
    if config.chunk_frames < 1:
        raise InputError(f"chunk_frames must be >= 1, got {config.chunk_frames}")
    voices = config.voices or model.config.voices[:NUM_PEOPLE]
    unknown = [v for v in voices if v not in model.config.voices]
    if unknown or len(voices) != NUM_PEOPLE:
        raise InputError(f"voices must be two of {', '.join(model.config.voices)}; got "
                         f"{', '.join(voices)}")
    device = config.device
    voice_ids = torch.tensor([model.config.voices.index(v) for v in voices])
    generator = torch.Generator(device=device).manual_seed(config.seed)
    mel, motion = model.sample_dyad(torch.from_numpy(np.asarray(tokens, np.float32)).to(device),
                                    voice_ids.to(device), config.steps, generator,
                                    chunk=config.chunk_frames, progress=progress)
    mel = mel.cpu().numpy() * normalizer.mel_std + normalizer.mel_mean
    motion = motion.cpu().numpy() * normalizer.motion_std + normalizer.motion_mean
    num_frames = tokens.shape[1]
    arrays = {"num_people": np.array(NUM_PEOPLE), "num_frames": np.array(num_frames),
              "names": formats.string_array(names),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for person in range(NUM_PEOPLE):
        pose, expression = motion_from_features(motion[person])
        arrays[f"p{person}/mel"] = mel[person].astype(np.float32)
        arrays[f"p{person}/head_pose"] = pose
        arrays[f"p{person}/expression"] = expression
    return arrays


@dataclass(frozen=True)
class SynthConfig:
    generate: GenerateConfig = GenerateConfig()
    vocoder: str = "vocos"
    fps: float = 25.0
    size: int = 512
    layout: str = "side-by-side"
    turn_gap: float = 0.35
    rate: float = 1.0


def mix(waves: list[np.ndarray], peak: float = 0.95) -> np.ndarray:
    """Sum the people's tracks; scale down only if the sum would clip."""
    total = np.sum(waves, axis=0)
    top = float(np.abs(total).max(initial=0.0))
    return total * (peak / top) if top > peak else total


def synth(script: str, refs: list[str], output: str, checkpoint: str | None = None,
          config: SynthConfig = SynthConfig(), durations=None, log=lambda message: None) -> int:
    """The whole chain: script -> tokens -> joint model -> vocoder -> renderer -> MP4.

    Inputs are all checked (script, faces, weights) before any long work; the MP4 is
    written atomically. Returns the number of video frames."""
    import tempfile
    from pathlib import Path

    import soundfile

    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.face.render import RenderConfig, VideoConfig, load_renderers, render_video
    from avgen.script import read_script
    from avgen.tokens import LearnedDurations, TimelineConfig, build_timeline

    if len(refs) != NUM_PEOPLE:
        raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
    if not Path(output).parent.is_dir():
        raise InputError("output folder does not exist", str(Path(output).parent))
    dialogue = read_script(script)
    load_renderers(list(refs), RenderConfig(size=config.size))  # no face -> error now
    model, normalizer = load_av_model(checkpoint, config.generate.device)
    if config.generate.voices is None:
        from dataclasses import replace

        from avgen.speaker import voices_for_faces

        voices = voices_for_faces(refs, model.config.voices)
        config = replace(config, generate=replace(config.generate, voices=voices))
        log(f"voices: {', '.join(voices)}")
    vocoder = load_vocoder(config.vocoder, device=config.generate.device)
    log("tokens")
    timeline = build_timeline(dialogue, durations or LearnedDurations(seed=config.generate.seed),
                              TimelineConfig(turn_gap=config.turn_gap, rate=config.rate))
    log("joint model")
    av = generate(timeline, model, normalizer, config.generate)
    log("vocoder")
    audio = mix([vocode(vocoder, av[f"p{p}/mel"]) for p in range(NUM_PEOPLE)])
    with tempfile.TemporaryDirectory(prefix="avgen-synth-") as work:
        av_path, wav_path = str(Path(work) / "dialogue.av.npz"), str(Path(work) / "dialogue.wav")
        formats.save(av_path, formats.AV, av)
        soundfile.write(wav_path, audio, 22050)
        log("render")
        return render_video(av_path, list(refs), output, audio=wav_path,
                            config=VideoConfig(fps=config.fps, size=config.size,
                                               layout=config.layout))
