"""The chain as library functions: tokens -> joint model -> (vocoder, renderer).

`generate` runs the joint audio-visual model for both people of a dialogue timeline and
returns `avgen.av/1` arrays; the CLI's `generate` and `synth` are thin wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgen import formats
from avgen.constants import DEFAULT_TEMPERATURE, EXPRESSION_NAMES, NUM_PEOPLE, SAMPLE_RATE
from avgen.errors import ConfigError, InputError
from avgen.face.frames import VideoConfig
from avgen.text.timeline import Timeline, TimelineConfig, floor_log_probs

AV_WEIGHTS = "av-flow"
MAX_STEPS = 256  # Euler steps; past this the sampler is converged and only slower
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class GenerateConfig:
    steps: int = 8
    seed: int = 0
    voices: tuple[str, ...] | None = None  # per person; default: by face, or the first two
    device: str = "cpu"
    chunk_frames: int = 2048  # frames generated at a time (~24 s): bounds working memory
    temperature: float = DEFAULT_TEMPERATURE  # mel's starting noise (AVFlow.sample_dyad)

    def __post_init__(self) -> None:
        if (not isinstance(self.steps, (int, np.integer)) or isinstance(self.steps, bool)
                or not 1 <= self.steps <= MAX_STEPS):
            raise ConfigError(f"steps must be an integer from 1 to {MAX_STEPS}, "
                              f"got {self.steps!r}")
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise ConfigError(f"temperature must be from 0 to {MAX_TEMPERATURE:g}, "
                              f"got {self.temperature!r}")
        if self.chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.voices is not None and len(self.voices) != NUM_PEOPLE:
            raise ConfigError(f"voices: one per person ({NUM_PEOPLE}), got {len(self.voices)}")


def load_av_model(checkpoint: str | None = None, device: str = "cpu"):
    """(model, normaliser) from a checkpoint path, or the registered default."""
    from avgen.errors import WeightsError
    from avgen.model.av_checkpoint import load_checkpoint
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
    cues = [(c.person, c.kind, c.start_frame, c.duration) for c in timeline.cues]
    return generate_from_tokens(tokens, timeline.names, model, normalizer, config, progress,
                                cues)


def act_cues(motion: np.ndarray, cues, seed: int = 0) -> np.ndarray:
    """The script's (nods)/(smiles)/(laughs) acted out on generated motion features
    (2, T, M) (see `avgen.model.features.motion_features`), as the motion teacher acts them
    out in the training dialogues: the joint model's inputs carry no cues, so they are
    added after generation. `cues`: (person, kind, start_frame, frames)."""
    from avgen.face.gestures import act_cues as act
    from avgen.face.model import EXPRESSION_INDEX as E
    from avgen.model.features import EXPRESSION_FEATURES as X, PITCH_FEATURE

    motion = motion.copy()
    rng = np.random.default_rng(seed)
    smiles = (X + E["smile_left"], X + E["smile_right"])
    for person in range(NUM_PEOPLE):
        mine = [(k, s, d) for p, k, s, d in cues if p == person]
        theirs = [(k, s, d) for p, k, s, d in cues if p != person]
        if not mine and not theirs:
            continue
        features = motion[person]
        pitch = features[:, PITCH_FEATURE].astype(np.float64)
        smile = features[:, list(smiles)].mean(1).astype(np.float64)
        jaw = features[:, X + E["jaw_open"]].astype(np.float64)
        before = smile.copy()
        act(pitch, smile, jaw, mine, theirs, rng)
        features[:, PITCH_FEATURE] = pitch
        features[:, X + E["jaw_open"]] = jaw
        for index in smiles:
            features[:, index] += smile - before
        features[:, X + E["eye_squint"]] += 0.45 * (smile - before)
    return motion


def generate_from_tokens(tokens: np.ndarray, names, model, normalizer,
                         config: GenerateConfig = GenerateConfig(), progress=None, cues=()
                         ) -> dict[str, np.ndarray]:
    """`generate` for per-person token log-probabilities (2, T, V) from any source.
    `progress(frames)` is called as chunks finish; `cues` as in `act_cues`."""
    import torch

    from avgen.model.features import motion_from_features

    voices = config.voices or model.config.voices[:NUM_PEOPLE]
    unknown = [v for v in voices if v not in model.config.voices]
    if unknown or len(voices) != NUM_PEOPLE:
        raise InputError(f"voices must be two of {', '.join(model.config.voices)}; got "
                         f"{', '.join(voices)}")
    device = config.device
    voice_ids = torch.tensor([model.config.voices.index(v) for v in voices])
    generator = torch.Generator(device=device).manual_seed(config.seed)
    tokens = np.stack([floor_log_probs(t) for t in tokens])
    mel, motion = model.sample_dyad(torch.from_numpy(tokens).to(device),
                                    voice_ids.to(device), config.steps, generator,
                                    chunk=config.chunk_frames, progress=progress,
                                    temperature=config.temperature)
    mel = mel.cpu().numpy() * normalizer.mel_std + normalizer.mel_mean
    motion = motion.cpu().numpy() * normalizer.motion_std + normalizer.motion_mean
    if cues:
        motion = act_cues(motion, cues, config.seed)
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
    fps: float = VideoConfig.fps
    size: int = VideoConfig.size
    layout: str = VideoConfig.layout  # side, stacked or single
    crop: str = VideoConfig.crop      # photo (the whole photos) or face (square face crops)
    turn_gap: float = TimelineConfig.turn_gap
    rate: float = TimelineConfig.rate

    def __post_init__(self) -> None:
        self.video()  # the video settings are checked where they are defined: VideoConfig
        TimelineConfig(turn_gap=self.turn_gap, rate=self.rate)  # checks both

    def video(self, layout: str | None = None, crop: str | None = None) -> VideoConfig:
        """The `VideoConfig` of these settings (`layout`, `crop`: one job's overrides)."""
        return VideoConfig(fps=self.fps, size=self.size, layout=layout or self.layout,
                           crop=crop or self.crop)


def mix(waves: list[np.ndarray], peak: float = 0.95) -> np.ndarray:
    """Sum the people's tracks; scale down only if the sum would clip."""
    total = np.sum(waves, axis=0)
    top = float(np.abs(total).max(initial=0.0))
    return total * (peak / top) if top > peak else total


def synth(script: str, refs: list[str], output: str, checkpoint: str | None = None,
          config: SynthConfig = SynthConfig(), durations=None, log=lambda message: None) -> int:
    """The whole chain: script -> tokens -> joint model -> vocoder -> renderer -> MP4.

    Inputs are all checked (script, faces, weights) before any long work; the MP4 is
    written atomically. Returns the number of video frames. For many dialogues, keep one
    `Synthesizer` instead: it loads the models once."""
    return Synthesizer(checkpoint, config, durations).synth(script, refs, output, log=log)


class Synthesizer:
    """The chain with its models loaded once, for many dialogues (`avgen synth --batch`).

    The joint model, vocoder and text-to-tokens model load on the first `synth` (or on
    `load()`) and stay; face renderers are cached per photo (path, size, mtime), so a batch
    that reuses two photos finds their landmarks once. One job's settings (seed, steps,
    voices) are per call; the rest (`config`: vocoder, fps, size, layout, device) is fixed.
    `durations`: a duration source for every job (default: the learned model, reseeded
    per job with the job's seed, as `synth` does)."""

    def __init__(self, checkpoint: str | None = None, config: SynthConfig = SynthConfig(),
                 durations=None) -> None:
        from avgen.face.render import RenderConfig, RendererCache

        self.checkpoint = checkpoint
        self.config = config
        self.renderers = RendererCache(RenderConfig(size=config.size))
        self._durations = durations
        self._models = None  # (joint model, normaliser, vocoder, learned durations | None)

    def load(self) -> Synthesizer:
        """Load the models now (otherwise the first `synth` does); returns self."""
        if self._models is None:
            from avgen.audio import vocoder as vocoders
            from avgen.text.timeline import LearnedDurations

            device = self.config.generate.device
            model, normalizer = load_av_model(self.checkpoint, device)
            vocoder = vocoders.load_vocoder(self.config.vocoder, device=device)
            learned = None if self._durations is not None else LearnedDurations(
                seed=self.config.generate.seed)
            self._models = (model, normalizer, vocoder, learned)
        return self

    def synth(self, script, refs: list[str], output: str, *, seed: int | None = None,
              steps: int | None = None, voices: tuple[str, ...] | None = None,
              layout: str | None = None, crop: str | None = None,
              log=lambda message: None, progress: bool = True) -> int:
        """One dialogue to one MP4 (written atomically; layout "single": one per person,
        see `avgen.face.frames.output_paths`); returns the number of video frames.

        `script`: a script file path or a parsed `avgen.text.script.Dialogue`. `seed`,
        `steps`, `voices`, `layout`, `crop` override the config's for this call. Inputs
        (script, faces, settings) are checked before the models run; `progress` shows the
        render bar."""
        from dataclasses import replace
        from pathlib import Path

        from avgen.audio.vocoder import vocode
        from avgen.face.frames import render_video
        from avgen.face.motion import motion_from_arrays
        from avgen.text.script import Dialogue, read_script
        from avgen.text.timeline import build_timeline

        config = self.config
        overrides = {k: v for k, v in (("seed", seed), ("steps", steps), ("voices", voices))
                     if v is not None}
        settings = replace(config.generate, **overrides)
        video = config.video(layout, crop)
        if len(refs) != NUM_PEOPLE:
            raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
        if not Path(output).parent.is_dir():
            raise InputError("output folder does not exist", str(Path(output).parent))
        dialogue = script if isinstance(script, Dialogue) else read_script(script)
        renderers = self.renderers.get(list(refs), video.framing)  # no face -> error now
        model, normalizer, vocoder, learned = self.load()._models
        if settings.voices is None:  # each face keeps its voice across dialogues
            from avgen.speaker import voices_for_faces

            settings = replace(settings, voices=voices_for_faces(refs, model.config.voices))
            log(f"voices: {', '.join(settings.voices)}")
        durations = self._durations or learned.with_seed(settings.seed)
        log("tokens")
        timeline = build_timeline(dialogue, durations,
                                  TimelineConfig(turn_gap=config.turn_gap, rate=config.rate))
        log("joint model")
        av = generate(timeline, model, normalizer, settings)
        log("vocoder")
        audio = mix([vocode(vocoder, av[f"p{p}/mel"]) for p in range(NUM_PEOPLE)])
        log("render")
        return render_video(motion_from_arrays(av, "generated motion"), list(refs), output,
                            audio=audio, sample_rate=SAMPLE_RATE, config=video, progress=progress,
                            renderers=renderers)
