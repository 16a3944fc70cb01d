"""The chain as library functions: tokens -> joint model -> (vocoder, renderer).

`generate` runs the joint audio-visual model for both people of a dialogue timeline and
returns `avgen.av/1` arrays; the CLI's `generate` and `synth` are thin wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen import formats, outputs
from avgen.constants import (DEFAULT_SWAY, DEFAULT_TEMPERATURE, DEFAULT_VOICE_GUIDANCE,
                             EXPRESSION_NAMES, NUM_PEOPLE, PRECISIONS, SAMPLE_RATE, SOLVERS)
from avgen.errors import AvgenError, ConfigError, InputError
from avgen.face.frames import VideoConfig
from avgen.text.timeline import Timeline, TimelineConfig, floor_log_probs
from avgen.video import EncoderConfig

AV_WEIGHTS = "av-flow"


@dataclass(frozen=True)
class MotionStyle:
    """How strongly the generated motion is played back (SadTalker's pose and expression
    scales). `head_scale` scales each frame's head rotation angle (about the photo's own
    pose) and translation; `expression_scale` scales the expression coefficients (offsets
    from the photo), except blinks, which stay whole; `still` keeps the head exactly at
    the photo's pose (head_scale 0) while the face still talks and reacts."""

    head_scale: float = 1.0
    expression_scale: float = 1.0
    still: bool = False

    SCALE_RANGE = (0.0, 3.0)

    def __post_init__(self) -> None:
        low, high = self.SCALE_RANGE
        for name in ("head_scale", "expression_scale"):
            value = getattr(self, name)
            if not low <= value <= high:  # also rejects nan
                raise ConfigError(f"{name.replace('_', ' ')} must be from {low:g} to "
                                  f"{high:g} (1 plays the motion as generated), got {value!r}")

    @property
    def identity(self) -> bool:
        return not self.still and self.head_scale == 1.0 and self.expression_scale == 1.0

    def apply_if_set(self, head_pose: np.ndarray, expression: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """`apply`, or the arrays untouched when the style is the identity."""
        return (head_pose, expression) if self.identity else self.apply(head_pose, expression)

    def apply(self, head_pose: np.ndarray, expression: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Scaled copies of head_pose (T, 7) and expression (T, E) (EXPRESSION_NAMES)."""
        from avgen.constants import SIGNED_EXPRESSIONS

        head = 0.0 if self.still else self.head_scale
        pose = head_pose.astype(np.float32, copy=True)
        quaternion = pose[:, :4] / np.linalg.norm(pose[:, :4], axis=1, keepdims=True)
        quaternion *= np.where(quaternion[:, :1] < 0, -1.0, 1.0)  # the shorter way round
        sine = np.linalg.norm(quaternion[:, 1:], axis=1)
        angle = 2 * np.arctan2(sine, quaternion[:, 0]) * head
        axis = quaternion[:, 1:] / np.maximum(sine, 1e-12)[:, None]
        pose[:, 0] = np.cos(angle / 2)
        pose[:, 1:4] = axis * np.sin(angle / 2)[:, None]
        pose[:, 4:] *= head
        scaled = expression.astype(np.float32, copy=True)
        for k, name in enumerate(EXPRESSION_NAMES):
            if name.startswith("eye_blink"):
                continue
            low = -1.0 if name in SIGNED_EXPRESSIONS else 0.0
            scaled[:, k] = np.clip(scaled[:, k] * self.expression_scale, low, 1.0)
        return pose, scaled


@dataclass(frozen=True)
class GenerateConfig:
    # 3 midpoint steps (6 model evaluations, as 6 Euler steps cost) spaced by sway -1: on
    # 25 held-out dialogues the listener nods 7.5 and 7.9 times a minute (6 Euler steps:
    # 4.6 on both; the teacher 10.1 and 8.7), the speech as faithful (speaker similarity
    # 0.864 against 0.859) and as clear (WER within a word); fewer Euler steps flattened
    # the listener further (benchmarks/results/sampler.md)
    steps: int = 3
    seed: int = 0
    # per person, a voice spec (`af_bella`, `af_bella+am_michael`, see avgen.speaker);
    # default: the speaker mapper's choice (synth), or the model's first two voices
    voices: tuple[str, ...] | None = None
    device: str = "cpu"
    chunk_frames: int = 2048  # frames generated at a time (~24 s): bounds working memory
    # synth/stream: the first chunk is this small (~0.55 s), so the first picture and
    # sound come fast; chunks then double up to chunk_frames (less context recomputed)
    first_chunk_frames: int = 48
    temperature: float = DEFAULT_TEMPERATURE  # mel's starting noise (AVFlow.sample_dyad)
    # > 1 makes each voice more its own (AVFlow.forward); 1 is off (no mean-voice pass)
    voice_guidance: float = DEFAULT_VOICE_GUIDANCE
    solver: str = "midpoint"  # ODE solver of the sampler (avgen.model.av_flow.SOLVERS)
    sway: float = DEFAULT_SWAY  # spacing of the steps in flow time (av_flow.step_times)
    style: MotionStyle = MotionStyle()  # head and expression scales on the result
    # the model's arithmetic (PRECISIONS): "auto" is bfloat16 where `device` does it
    # natively (half the sampler's time on CPU), float32 elsewhere (emulated bfloat16
    # would be slower); float32 gives the same numbers on every CPU
    precision: str = "auto"

    def __post_init__(self) -> None:
        from avgen.limits import SEED, STEPS, SWAY, TEMPERATURE, VOICE_GUIDANCE, check_range

        check_range(self.steps, STEPS, "--steps", integer=True, name="steps")
        check_range(self.seed, SEED, "--seed", integer=True, name="seed")
        check_range(self.temperature, TEMPERATURE, "--temperature", name="temperature")
        check_range(self.voice_guidance, VOICE_GUIDANCE, "--voice-guidance",
                    name="voice_guidance")
        check_range(self.sway, SWAY, "--sway", name="sway")
        check_range(self.chunk_frames, (1, 1 << 20), "chunk_frames", integer=True,
                    name="chunk_frames")
        if self.first_chunk_frames < 1:
            raise ConfigError(f"first_chunk_frames must be >= 1, got {self.first_chunk_frames}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {', '.join(SOLVERS)}, got "
                              f"{self.solver!r}", "--solver")
        if self.voices is not None and len(self.voices) != NUM_PEOPLE:
            raise ConfigError(f"voices: one per person ({NUM_PEOPLE}), "
                              f"got {len(self.voices)}", "--voice")
        if self.precision not in ("auto", *PRECISIONS):
            raise ConfigError(f"precision must be auto, {' or '.join(PRECISIONS)}, got "
                              f"{self.precision!r}", "--precision")

    def evaluation_precision(self) -> str:
        """The precision the sampler runs at: `precision`, with "auto" resolved for
        `device`."""
        if self.precision != "auto":
            return self.precision
        from avgen.model.av_flow import native_bfloat16

        return "bfloat16" if native_bfloat16(self.device) else "float32"


def av_checkpoint_path(checkpoint: str | None = None) -> str:
    """`checkpoint`, or the registered default joint model's verified path."""
    from avgen.errors import WeightsError
    from avgen.weights import Weights

    if checkpoint is not None:
        return str(checkpoint)
    registry = Weights()
    if AV_WEIGHTS not in registry.entries:
        raise WeightsError("no trained joint audio-visual model is registered yet "
                           f"('{AV_WEIGHTS}' in weights.toml); train one with "
                           "'avgen train av' and pass --checkpoint")
    return str(registry.path(AV_WEIGHTS))


def load_av_model(checkpoint: str | None = None, device: str = "cpu"):
    """(model, normaliser) from a checkpoint path, or the registered default."""
    from avgen.model.av_checkpoint import load_checkpoint

    model, normalizer, _, _ = load_checkpoint(av_checkpoint_path(checkpoint), device)
    return model.eval(), normalizer


def _load_raster() -> None:
    from avgen.face.raster import warm_up

    warm_up()


def _share_cores_with_renderer() -> None:
    """Fewer threads for the joint model in the calling thread (torch's thread count is
    per thread) while both faces render and the encoder runs beside it: the two faces
    take a core each, and a model thread more only contends with them. Measured on 2
    cores with one model thread against two: a 20 s dialogue's command 0.3-0.5 s faster
    for 1 s less CPU; the first streamed chunk 0.22 s against 0.32 s in a warm process,
    2.6-2.8 s against 3.1-3.2 s from a cold start (the worker starts and the raster loads
    beside it)."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads() - 2))


def check_voices(specs, checkpoint: str | None = None, field: str = "--voice") -> None:
    """Each voice spec (`af_bella`, `af_bella+am_michael`, `af_bella*3+am_michael`) names
    voices of the joint model; InputError otherwise. Reads the checkpoint's metadata only,
    so a mistyped voice is refused in a fraction of a second, before any model loads."""
    from avgen.model.av_checkpoint import checkpoint_voices
    from avgen.speaker import parse_voice

    known = checkpoint_voices(av_checkpoint_path(checkpoint))
    for spec in specs:
        parse_voice(spec, known, field)


def generate(timeline: Timeline, model, normalizer, config: GenerateConfig = GenerateConfig(),
             progress=None, on_step=None) -> dict[str, np.ndarray]:
    """Mel and motion for both people over the whole timeline (T frames at 86.13 fps).

    Returns `avgen.av/1` arrays. Deterministic for `config.seed` on one device.
    `progress`, `on_step`: as in `generate_from_tokens`.
    """
    tokens = np.stack([timeline.token_logits(p) for p in range(NUM_PEOPLE)])
    cues = [(c.person, c.kind, c.start_frame, c.duration) for c in timeline.cues]
    return generate_from_tokens(tokens, timeline.names, model, normalizer, config, progress,
                                cues, on_step)


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


def voice_condition(names: tuple[str, ...], specs: tuple[str, ...] | None):
    """What the joint model takes as the two people's voices: (2,) ids when each is one
    of the model's voices, else (2, V) blend weights over them (see avgen.speaker)."""
    import torch

    from avgen.speaker import parse_voice, voice_weights

    specs = specs or names[:NUM_PEOPLE]
    if len(specs) != NUM_PEOPLE:
        raise InputError(f"--voice takes one voice per person ({NUM_PEOPLE}), got {len(specs)}")
    if all(spec in names for spec in specs):
        return torch.tensor([names.index(spec) for spec in specs])
    for spec in specs:
        parse_voice(spec, names)
    return torch.from_numpy(voice_weights(specs, names))


def generate_from_tokens(tokens: np.ndarray, names, model, normalizer,
                         config: GenerateConfig = GenerateConfig(), progress=None, cues=(),
                         on_step=None) -> dict[str, np.ndarray]:
    """`generate` for per-person token log-probabilities (2, T, V) from any source.
    `progress(frames)` is called as chunks finish, `on_step(n)` after every solver step
    (its calls add up to `model.sampling_work(T, config.steps)`); `cues` as in
    `act_cues`. `config.style` scales the motion last."""
    import torch

    from avgen.model.features import motion_from_features

    device = config.device
    voice_ids = voice_condition(model.config.voices, config.voices)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    tokens = np.stack([floor_log_probs(t) for t in tokens])
    mel, motion = model.sample_dyad(torch.from_numpy(tokens).to(device),
                                    voice_ids.to(device), config.steps, generator,
                                    chunk=config.chunk_frames, progress=progress,
                                    temperature=config.temperature, solver=config.solver,
                                    on_step=on_step,
                                    precision=config.evaluation_precision(),
                                    voice_guidance=config.voice_guidance, sway=config.sway)
    mel = mel.cpu().numpy() * normalizer.mel_std + normalizer.mel_mean
    motion = motion.cpu().numpy() * normalizer.motion_std + normalizer.motion_mean
    if not (np.isfinite(mel).all() and np.isfinite(motion).all()):
        # never write NaN files that later stages would turn into noise or blank video
        raise AvgenError("the joint model produced NaN or infinite values; its checkpoint "
                         "or normaliser is broken")
    if cues:
        motion = act_cues(motion, cues, config.seed)
    num_frames = tokens.shape[1]
    arrays = {"num_people": np.array(NUM_PEOPLE), "num_frames": np.array(num_frames),
              "names": formats.string_array(names),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for person in range(NUM_PEOPLE):
        pose, expression = config.style.apply_if_set(*motion_from_features(motion[person]))
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
    turn_gap: float = TimelineConfig.turn_gap  # seconds between turns (`--gap`)
    rate: float = TimelineConfig.rate  # speaking rate, 1.2 is 20% faster (`--rate`)
    encoder: EncoderConfig = EncoderConfig()
    # the second face renders in a process of its own (avgen.face.worker) where more than
    # one CPU is available, while this one renders the first: frames come out the same
    render_process: bool = True

    def __post_init__(self) -> None:
        from avgen.audio import VOCODERS

        if self.vocoder not in VOCODERS:
            raise ConfigError(f"unknown vocoder {self.vocoder!r}; choose one of "
                              f"{', '.join(VOCODERS)}", "--vocoder")
        self.video()  # the video settings are checked where they are defined: VideoConfig
        self.timeline()  # checks rate and gap

    def timeline(self, rate: float | None = None, gap: float | None = None) -> TimelineConfig:
        """The TimelineConfig for this config, or for one job's `rate` / `gap`."""
        return TimelineConfig(rate=self.rate if rate is None else rate,
                              turn_gap=self.turn_gap if gap is None else gap)

    def video(self, layout: str | None = None, crop: str | None = None) -> VideoConfig:
        """The `VideoConfig` of these settings (`layout`, `crop`: one job's overrides)."""
        return VideoConfig(fps=self.fps, size=self.size, layout=layout or self.layout,
                           crop=crop or self.crop)


@dataclass(frozen=True)
class SynthResult:
    """What one `Synthesizer.synth` made. `output`: the MP4 asked for; `seconds`: the
    video's length; `files`: every file written, by kind (video, or video:NAME per person
    with layout "single"; subtitles, tokens, av, wav, and wav:NAME per person)."""

    output: str
    frames: int
    seconds: float
    voices: tuple[str, ...]
    timeline: Timeline
    files: dict[str, str]

    @property
    def videos(self) -> list[str]:
        """The MP4s written: `output`, or one per person with layout "single"."""
        return [path for kind, path in self.files.items()
                if kind == "video" or kind.startswith("video:")]


def mix(waves: list[np.ndarray], peak: float = 0.95, knee: float = 0.8) -> np.ndarray:
    """Sum the people's tracks. Samples above `knee` are compressed smoothly so that none
    exceeds `peak`; below it the sum is untouched. Sample by sample, so a dialogue mixed
    piece by piece (streaming) equals one mixed at once."""
    total = np.sum(waves, axis=0)
    loud = np.abs(total) > knee
    if loud.any():
        over = np.abs(total[loud]) - knee
        squeezed = knee + (peak - knee) * np.tanh(over / (peak - knee))
        total[loud] = np.sign(total[loud]) * np.minimum(squeezed, peak)  # float rounding
    return total


def chunk_bounds(length: int, first: int, largest: int) -> list[int]:
    """Chunk edges [0, ..., length]: `first` frames, then doubling up to `largest`."""
    bounds, size = [0], max(1, min(first, largest))
    while bounds[-1] < length:
        bounds.append(min(length, bounds[-1] + size))
        size = min(size * 2, largest)
    return bounds


# frames of mel context either side for chunk-wise vocoding: the shipped vocoder's
# receptive field (7 convolutions of kernel 7, then the inverse STFT's frames reaching 2
# either side) is 23 frames, so its chunks equal whole-dialogue vocoding; the other
# vocoders' are close at this context
VOCODER_CONTEXT = 24


@dataclass(frozen=True)
class AVChunk:
    """A piece of a generated dialogue as `Synthesizer.stream` yields it: video frames
    (N, H, W, 3) uint8 RGB and the mixed mono audio (M,) float32 at 22050 Hz, starting at
    video frame `first_frame` and audio sample `first_sample`. The audio runs ahead of
    the video by less than a frame (plus the last chunk's tail)."""

    frames: np.ndarray
    audio: np.ndarray
    first_frame: int
    first_sample: int


def synth(script: str, refs: list[str], output: str, checkpoint: str | None = None,
          config: SynthConfig = SynthConfig(), durations=None, log=lambda message: None,
          **options) -> SynthResult:
    """The whole chain: script -> tokens -> joint model -> vocoder -> renderer -> MP4.

    Inputs are all checked (script, faces, weights) before any long work; the MP4 is
    written atomically. `options`: as `Synthesizer.synth` (keep, subtitles, progress...).
    For many dialogues, keep one `Synthesizer` instead: it loads the models once."""
    with Synthesizer(checkpoint, config, durations) as synthesizer:
        return synthesizer.synth(script, refs, output, log=log, **options)


def _file_part(name: str) -> str:
    """A speaker's name as a safe piece of a file name."""
    import re

    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "person"


def keep_paths(keep_dir, stem: str, names) -> dict[str, str]:
    """Where `--keep DIR` puts the side outputs of the video `stem`.mp4."""
    from pathlib import Path

    folder = Path(keep_dir)
    files = {"tokens": folder / f"{stem}.tokens.npz", "av": folder / f"{stem}.av.npz",
             "wav": folder / f"{stem}.wav"}
    for person, name in enumerate(names):
        files[f"wav:{name}"] = folder / f"{stem}.p{person}-{_file_part(name)}.wav"
    return {k: str(v) for k, v in files.items()}




class Synthesizer:
    """The chain with its models loaded once, for many dialogues (`avgen synth --batch`).

    The joint model, vocoder and text-to-tokens model load on the first `synth` (or on
    `load()`) and stay; face renderers are cached per photo (path, size, mtime), so a batch
    that reuses two photos finds their landmarks once. One job's settings (seed, steps,
    voices, rate, gap) are per call; the rest (`config`: vocoder, fps, size, layout,
    device, solver, motion style, encoder) is fixed. `durations`: a duration source for
    every job (default: the learned model, reseeded per job with the job's seed, as
    `synth` does).

    `stream` yields the dialogue piece by piece as it is generated; `synth` writes the
    same pieces to an MP4, so both give the same frames and audio for a seed."""

    def __init__(self, checkpoint: str | None = None, config: SynthConfig = SynthConfig(),
                 durations=None) -> None:
        from avgen.face.render import RenderConfig, RendererCache

        self.checkpoint = checkpoint
        self.config = config
        self.renderers = RendererCache(RenderConfig(size=config.size))
        self._durations = durations
        self._models = None  # (joint model, normaliser, vocoder, learned durations | None)
        self._render_process = None  # avgen.face.worker.RenderProcess, started when needed

    def close(self) -> None:
        """Stop the renderer's helper process, if one was started (it is also stopped when
        the Synthesizer is collected, and when the program exits). It can be used again
        after: a new helper starts when needed."""
        if self._render_process is not None:
            self._render_process.close()
            self._render_process = None

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _helper(self, faces: int):
        """The render worker (started if needed), or None where the faces render here
        (one face, one CPU, or `config.render_process` off)."""
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        if faces != 2 or cpus < 2 or not self.config.render_process:
            return None
        if self._render_process is not None and not self._render_process.alive:
            self.close()  # it failed or was killed during an earlier dialogue
        if self._render_process is None:
            import weakref

            from avgen.face.worker import RenderProcess

            try:
                self._render_process = RenderProcess()
            except OSError as exc:  # no interpreter to start, no temp file for its log
                import warnings

                warnings.warn(f"both faces render in this process (slower): the render "
                              f"worker could not start ({exc})", RuntimeWarning, stacklevel=3)
                return None
            weakref.finalize(self, self._render_process.close)
        return self._render_process

    def _render_helper(self, renderers):
        """The RenderProcess holding `renderers[1]`, or None where the faces render here."""
        helper = self._helper(len(renderers))
        if helper is not None:
            helper.load(renderers[1])
        return helper

    def load(self, progress=None) -> Synthesizer:
        """Load the models and the renderer's compiled raster now (otherwise the first
        `synth` does); returns self."""
        from avgen.face.raster import warm_up

        self._load_models(progress)
        warm_up()
        return self

    def _load_models(self, progress=None) -> Synthesizer:
        from avgen.progress import NullProgress

        if self._models is None:
            import threading

            from avgen.audio import vocoder as vocoders
            from avgen.text.timeline import LearnedDurations

            # The renderer's compiled raster loads beside the models. Measured on a cold
            # `avgen synth --stream`: loading it here costs the first fragment 0.45 s
            # (its imports hold the GIL), loading it while the model makes the first
            # chunk cost 1 s (the model waits for the core)
            threading.Thread(target=_load_raster, name="avgen-raster-load",
                             daemon=True).start()
            with (progress or NullProgress()).stage("load models", unit="model"):
                device = self.config.generate.device
                model, normalizer = load_av_model(self.checkpoint, device)
                if self.config.generate.evaluation_precision() == "bfloat16":
                    from avgen.model.av_flow import cast_matrix_weights

                    cast_matrix_weights(model)  # the config's precision is the only one used
                vocoder = vocoders.load_vocoder(self.config.vocoder, device=device)
                learned = None if self._durations is not None else LearnedDurations(
                    seed=self.config.generate.seed)
            self._models = (model, normalizer, vocoder, learned)
        return self

    def prepare(self, script, refs: list[str], *, seed: int | None = None,
                steps: int | None = None, voices: tuple[str, ...] | None = None,
                rate: float | None = None, gap: float | None = None,
                layout: str | None = None, crop: str | None = None,
                log=lambda message: None, progress=None):
        """Check every input and build the timeline: (timeline, generate settings,
        renderers framed for `layout` / `crop`). Everything a user can get wrong fails
        here, before long work. `script`: a script file path or a parsed
        `avgen.text.script.Dialogue`; `progress`: an `avgen.progress` reporter (default:
        none)."""
        from dataclasses import replace

        from avgen.progress import NullProgress
        from avgen.text.script import Dialogue, read_script
        from avgen.text.timeline import build_timeline

        progress = progress or NullProgress()
        config = self.config
        overrides = {k: v for k, v in (("seed", seed), ("steps", steps), ("voices", voices))
                     if v is not None}
        settings = replace(config.generate, **overrides)
        video = config.video(layout, crop)
        timeline_config = config.timeline(rate, gap)
        if len(refs) != NUM_PEOPLE:
            raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
        dialogue = script if isinstance(script, Dialogue) else read_script(script)
        from avgen.speaker import choose_voices, faces_needed, model_voices

        # The render worker starts now, before torch is imported here, and on the other
        # core finds the faces in the photos (MediaPipe's import and face mesh, 0.2 s)
        # and looks at them for the speaker mapper (its face model, ~0.5 s) while this
        # process imports torch and loads the models. Whatever the worker could not do
        # (it died, a photo has no face) is done here, which reports what is wrong.
        directives = dialogue.voice_directives()
        looks = faces_needed(dialogue.names, len(refs), settings.voices, directives)
        for ref in refs:
            if not Path(ref).is_file():
                raise InputError("no such file", str(ref))
        missing = self.renderers.missing(list(refs), video.framing)
        helper = self._helper(len(refs)) if looks or video.layout != "single" else None
        try:
            if helper is not None and missing:
                helper.request_landmarks(missing)
            if helper is not None and looks:
                helper.request_attributes(list(refs))
        except AvgenError:
            helper = None
            self.close()
        if helper is None:
            renderers = self.renderers.get(list(refs), video.framing)  # no face: error now
        model, _, _, learned = self._load_models(progress)._models
        if helper is not None:
            landmarks = None
            try:
                landmarks = helper.collect_landmarks()
            except AvgenError:
                helper = None
                self.close()
            renderers = self.renderers.get(list(refs), video.framing, landmarks)
        try:
            if helper is not None:
                helper.collect_attributes()
        except AvgenError:
            self.close()
        choices = choose_voices(dialogue.names, list(refs), model_voices(model.config),
                                explicit=settings.voices, directives=directives)
        settings = replace(settings, voices=tuple(c.voice for c in choices))
        names = list(dialogue.names) + ["(listener)"] * (NUM_PEOPLE - len(dialogue.names))
        for name, choice in zip(names, choices):
            log(f"voice {choice.describe(name)}")
            progress.note(f"voice {choice.describe(name)}")
        durations = self._durations or learned.with_seed(settings.seed)
        log("tokens")
        with progress.stage("tokens"):
            timeline = build_timeline(dialogue, durations, timeline_config)
        return timeline, settings, renderers

    def stream(self, script, refs: list[str], *, seed: int | None = None,
               steps: int | None = None, voices: tuple[str, ...] | None = None,
               rate: float | None = None, gap: float | None = None,
               layout: str | None = None, crop: str | None = None,
               log=lambda message: None, progress=None):
        """The dialogue as an iterator of `AVChunk`s, each yielded as soon as it is made:
        the joint model makes the next piece (in a thread of its own) while the caller
        renders, encodes or plays this one. Working memory does not grow with the
        dialogue's length. Inputs are checked before the first chunk is made.
        `progress`: a reporter for the joint model and vocoder stages (their updates come
        from the model's thread). Layout "single" (one video per person) is not streamed:
        use `synth`."""
        video = self._streamable(layout, crop)
        timeline, settings, renderers = self.prepare(script, refs, seed=seed, steps=steps,
                                                     voices=voices, rate=rate, gap=gap,
                                                     layout=layout, crop=crop,
                                                     log=log, progress=progress)
        log("joint model, vocoder and renderer")
        return self._chunks(timeline, settings, renderers, video, progress)

    def _streamable(self, layout: str | None, crop: str | None) -> VideoConfig:
        """The video settings, checked to be ones the chunked path makes (one picture)."""
        video = self.config.video(layout, crop)
        if video.layout == "single":
            raise InputError("streaming writes one video; --layout single (one MP4 per "
                             "person) cannot be streamed yet", "--stream")
        return video

    def video_frames(self, timeline: Timeline) -> int:
        """How many video frames the dialogue of `timeline` makes at the config's fps."""
        from avgen.constants import FRAMES_PER_SECOND
        from avgen.video import resample_times

        return len(resample_times(timeline.num_frames, FRAMES_PER_SECOND, self.config.fps))

    @staticmethod
    def frame_size(renderers, layout: str) -> tuple[int, int]:
        """(width, height) of the one picture per frame of `layout` side or stacked."""
        shapes = [r.shape for r in renderers]
        if layout == "side":
            return sum(w for _, w in shapes), max(h for h, _ in shapes)
        return max(w for _, w in shapes), sum(h for h, _ in shapes)

    def _chunks(self, timeline, settings: GenerateConfig, renderers, video: VideoConfig,
                progress=None, record=None):
        import queue
        import threading

        from avgen.constants import FRAMES_PER_SECOND, SAMPLE_RATE
        from avgen.face.frames import compose
        from avgen.face.render import one_render_thread
        from avgen.video import interpolate_window, resample_times

        config = video
        width, height = self.frame_size(renderers, video.layout)
        total = timeline.num_frames
        positions = resample_times(total, FRAMES_PER_SECOND, config.fps)
        pieces: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce():
            try:
                _share_cores_with_renderer()
                for piece in self._audio_and_motion(timeline, settings, progress, record):
                    while True:
                        if stop.is_set():
                            return
                        try:
                            pieces.put(piece, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                pieces.put(None)
            except BaseException as error:  # reported by the consumer
                pieces.put(error)

        producer = threading.Thread(target=produce, name="avgen-joint-model", daemon=True)
        producer.start()
        helper = None
        # The first face renders in this thread and the second in a worker process, each
        # with OpenCV on one thread: rendering the two in two threads took as long as one
        # after the other, for a third more CPU (the GIL)
        try:
            # started after the model (the worker takes a moment to start and read its
            # renderer), so the first chunk does not wait for it
            helper = self._render_helper(renderers)
            from avgen.face.raster import warm_up

            warm_up()  # started by `_load_models`: waits if it is still loading
            poses = expressions = None
            first = 0  # model frame of poses[.][0]
            frame = 0  # next video frame
            while (piece := pieces.get()) is not None:
                if isinstance(piece, BaseException):
                    raise piece
                audio, first_sample, new_poses, new_expressions, start, ready = piece
                if poses is None:
                    poses, expressions = new_poses, new_expressions
                else:
                    poses = [np.concatenate([a, b]) for a, b in zip(poses, new_poses)]
                    expressions = [np.concatenate([a, b])
                                   for a, b in zip(expressions, new_expressions)]
                end = len(positions) if ready >= total else int(
                    np.searchsorted(positions, ready, side="left"))
                at = positions[frame:end]
                pose = [interpolate_window(p, first, at, total, quaternions=True)
                        for p in poses]
                expression = [interpolate_window(e, first, at, total) for e in expressions]
                # yielded in pieces of at most half a second of video, so memory holds a
                # few pieces of frames, not a whole model chunk's (25 s of 1024 x 512
                # frames is 1.4 GB)
                step = max(1, int(config.fps // 2))
                sample = first_sample
                for lo in range(frame, max(end, frame + 1), step):
                    hi = min(end, lo + step)
                    frames = np.empty((hi - lo, height, width, 3), np.uint8)
                    rows = slice(lo - frame, hi - frame)
                    with one_render_thread():
                        if helper is not None and hi > lo:  # the second face, alongside
                            helper.submit(expression[1][rows], pose[1][rows])
                        here = renderers[:1] if helper is not None else renderers
                        faces = [[renderer.render(e, p)
                                  for e, p in zip(expression[i][rows], pose[i][rows])]
                                 for i, renderer in enumerate(here)]
                        if helper is not None:
                            faces.append(helper.collect() if hi > lo else [])
                        for k in range(hi - lo):
                            compose([person[k] for person in faces], config.layout,
                                    out=frames[k])
                    audio_end = first_sample + len(audio)
                    until = audio_end if hi >= end else min(
                        audio_end, max(sample, int(np.ceil(hi / config.fps * SAMPLE_RATE))))
                    yield AVChunk(frames, audio[sample - first_sample:until - first_sample],
                                  lo, sample)
                    sample = until
                frame = end
                # keep the motion the next video frame interpolates from
                keep = min(int(np.floor(positions[frame])) if frame < len(positions) else
                           total, total - 1 if total > 1 else 0)
                keep = max(first, min(keep, first + len(poses[0])))
                poses = [p[keep - first:] for p in poses]
                expressions = [e[keep - first:] for e in expressions]
                first = keep
        finally:
            stop.set()
            if helper is not None and helper.pending:  # interrupted mid-batch: start afresh
                self.close()
            while producer.is_alive():
                try:
                    pieces.get(timeout=0.1)
                except queue.Empty:
                    pass
            producer.join()

    def _audio_and_motion(self, timeline, settings: GenerateConfig, progress=None,
                          record=None):
        """Per model chunk: (audio samples, first sample, per-person head poses and
        expressions of the chunk's model frames, the chunk's first model frame, the model
        frame up to which audio is final). Runs in the producer thread. `record`: a dict
        that gathers the whole dialogue's mel, motion and per-person waves (for `keep`)."""
        from avgen.audio.vocoder import vocode
        from avgen.model.features import motion_from_features
        from avgen.progress import NullProgress

        progress = progress or NullProgress()
        model, normalizer, vocoder, _ = self._models
        voice_ids, tokens, generator = _sampling_inputs(timeline, model, settings)
        cues = [(c.person, c.kind, c.start_frame, c.duration) for c in timeline.cues]
        total = timeline.num_frames
        bounds = chunk_bounds(total, settings.first_chunk_frames, settings.chunk_frames)
        mel_kept, mel_first, audio_done = None, 0, 0
        # both stages run side by side, chunk by chunk, in this thread
        with progress.stage("joint model", model.sampling_work(total, settings.steps),
                            "frame-steps") as on_step, \
                progress.stage("vocoder", total, "frames") as vocoded:
            for a, b, mel, motion in model.sample_chunks(
                    tokens, voice_ids, bounds, settings.steps, generator,
                    settings.temperature, settings.solver, on_step,
                    settings.evaluation_precision(), settings.voice_guidance,
                    settings.sway):
                mel = mel.cpu().numpy() * normalizer.mel_std + normalizer.mel_mean
                motion = motion.cpu().numpy() * normalizer.motion_std + normalizer.motion_mean
                if cues:  # per frame, so a chunk is acted out as the whole dialogue would be
                    motion = act_cues(motion, [(p, k, s - a, d) for p, k, s, d in cues],
                                      settings.seed)
                # the style is per frame too
                poses, expressions = zip(*(settings.style.apply_if_set(
                    *motion_from_features(motion[p])) for p in range(NUM_PEOPLE)))
                mel_kept = mel if mel_kept is None else np.concatenate([mel_kept, mel], axis=1)
                ready = total if b == total else max(audio_done, b - VOCODER_CONTEXT)
                audio = np.zeros(0, np.float32)
                if ready > audio_done:
                    lo = max(mel_first, audio_done - VOCODER_CONTEXT)
                    hi = min(b, ready + VOCODER_CONTEXT)
                    waves = [vocode(vocoder, mel_kept[p, lo - mel_first:hi - mel_first])
                             [(audio_done - lo) * 256:(ready - lo) * 256]
                             for p in range(NUM_PEOPLE)]
                    audio = mix(waves).astype(np.float32)
                    vocoded(ready - audio_done)
                    if record is not None:
                        record.setdefault("waves", []).append(waves)
                if record is not None:
                    record.setdefault("mel", []).append(mel.astype(np.float32))
                    record.setdefault("motion", []).append((poses, expressions))
                yield (audio, audio_done * 256, poses, expressions, a, ready)
                audio_done = ready
                drop = max(0, audio_done - VOCODER_CONTEXT - mel_first)
                mel_kept, mel_first = mel_kept[:, drop:], mel_first + drop

    def synth(self, script, refs: list[str], output: str, *, seed: int | None = None,
              steps: int | None = None, voices: tuple[str, ...] | None = None,
              rate: float | None = None, gap: float | None = None,
              layout: str | None = None, crop: str | None = None, keep: str | None = None,
              subtitles: str | None = None, log=lambda message: None, progress=True,
              stream: bool = False) -> SynthResult:
        """One dialogue to one MP4 (written atomically; layout "single": one per person,
        see `avgen.face.frames.output_paths`).

        `script`: a script file path or a parsed `avgen.text.script.Dialogue`. `seed`,
        `steps`, `voices`, `rate`, `gap`, `layout`, `crop` override the config's for this
        call. `keep`: a folder for the side outputs (tokens, av file, mixed WAV, one WAV per
        person; `keep_paths`); `subtitles`: an .srt or .vtt file, one cue per sentence.
        `progress`: an `avgen.progress` reporter, True (bars or lines on stderr) or False
        (nothing). `stream`: a fragmented MP4 written as the dialogue is generated
        (playable while it grows; `output` "-" is standard output; not with layout
        "single"); the frames and audio are the same either way. Inputs (script, faces,
        settings, output places) are checked before the models run; the side outputs are
        written once the video is."""
        from contextlib import closing

        from avgen import progress as reporters
        from avgen.audio.io import wav_bytes
        from avgen.formats import atomic_write_bytes
        from avgen.text.timeline import save_timeline
        from avgen.video import AVWriter

        if progress is True:
            progress = reporters.for_stream()
        elif not progress:
            progress = reporters.NullProgress()
        video = self._streamable(layout, crop) if stream else self.config.video(layout, crop)
        script_path = script if isinstance(script, (str, Path)) else None
        outputs.check_output(output, (".mp4",), inputs=[*refs, script_path], stdout=stream)
        if subtitles is not None:
            from avgen.subtitles import check_path

            check_path(subtitles)
            outputs.check_output(subtitles, inputs=[*refs, script_path, output],
                                 option="--subtitles")
        if keep is not None:
            if Path(keep).exists() and not Path(keep).is_dir():
                raise InputError("--keep names a folder, and this is a file", str(keep))
            if not Path(keep).parent.is_dir():
                raise InputError("output folder does not exist", str(Path(keep).parent))
            outputs.check_writable(keep if Path(keep).is_dir() else Path(keep).parent)
        timeline, settings, renderers = self.prepare(script, refs, seed=seed, steps=steps,
                                                     voices=voices, rate=rate, gap=gap,
                                                     layout=layout, crop=crop,
                                                     log=log, progress=progress)
        if video.layout == "single":
            av, waves, count = self._single(timeline, settings, refs, renderers, video,
                                            output, progress, log)
            audio = mix(waves)
        else:
            log("joint model, vocoder and renderer")
            record = {} if keep is not None else None
            pieces = []
            writer = AVWriter(output, *self.frame_size(renderers, video.layout), video.fps,
                              SAMPLE_RATE, fragmented=stream, config=self.config.encoder)
            chunks = self._chunks(timeline, settings, renderers, video, progress, record)
            # closing: a failed write stops the model's thread at once
            with writer, closing(chunks), progress.stage(
                    "render", self.video_frames(timeline), "frame") as bar:
                for chunk in chunks:
                    writer.write(chunk.frames, chunk.audio)
                    if record is not None:
                        pieces.append(chunk.audio)
                    bar(len(chunk.frames))
            count = writer.frames
            if record is not None:
                av = _av_arrays(timeline, record)
                audio = np.concatenate(pieces)
                waves = [np.concatenate([w[person] for w in record["waves"]])
                         for person in range(NUM_PEOPLE)]
        from avgen.face.frames import output_paths

        videos = output_paths(output, video.layout, NUM_PEOPLE)
        if len(videos) == 1:
            files = {"video": str(videos[0])}
        else:
            files = {f"video:{name}": str(path) for name, path in zip(timeline.names, videos)}
        if subtitles is not None:
            from avgen.subtitles import write_subtitles

            write_subtitles(subtitles, timeline)
            files["subtitles"] = str(subtitles)
        if keep is not None:
            Path(keep).mkdir(exist_ok=True)
            stem = "dialogue" if str(output) == "-" else Path(output).stem
            kept = keep_paths(keep, stem, timeline.names)
            save_timeline(kept["tokens"], timeline)
            formats.save(kept["av"], formats.AV, av)
            atomic_write_bytes(kept["wav"], wav_bytes(audio))
            for person, name in enumerate(timeline.names):
                atomic_write_bytes(kept[f"wav:{name}"], wav_bytes(waves[person]))
            files.update(kept)
        return SynthResult(str(output), count, count / video.fps, tuple(settings.voices),
                           timeline, files)

    def _single(self, timeline, settings: GenerateConfig, refs, renderers,
                video: VideoConfig, output, progress, log):
        """Layout "single" (one MP4 per person), made whole-dialogue stage by stage (the
        chunked path writes one video): (av arrays, per-person waves, frames written)."""
        import contextlib

        from avgen.audio.vocoder import vocode
        from avgen.face.frames import render_video
        from avgen.face.motion import motion_from_arrays

        model, normalizer, vocoder, _ = self._models
        log("joint model")
        with progress.stage("joint model", model.sampling_work(timeline.num_frames,
                                                               settings.steps),
                            "frame-steps") as update:
            av = generate(timeline, model, normalizer, settings, on_step=update)
        log("vocoder")
        with progress.stage("vocoder", NUM_PEOPLE, "tracks") as update:
            waves = []
            for p in range(NUM_PEOPLE):
                waves.append(vocode(vocoder, av[f"p{p}/mel"]))
                update(1)
        log("render")
        # on a terminal the renderer draws its own bar
        with contextlib.nullcontext() if progress.terminal else progress.stage("render"):
            count = render_video(motion_from_arrays(av, "generated motion"), list(refs), output, audio=mix(waves), sample_rate=SAMPLE_RATE,
                config=video, progress=progress.terminal, renderers=renderers)
        return av, waves, count


def _av_arrays(timeline: Timeline, record: dict) -> dict[str, np.ndarray]:
    """`avgen.av/1` arrays of a dialogue gathered chunk by chunk (`record` of
    `Synthesizer._audio_and_motion`), as `generate` makes them at once."""
    arrays = {"num_people": np.array(NUM_PEOPLE), "num_frames": np.array(timeline.num_frames),
              "names": formats.string_array(timeline.names),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for person in range(NUM_PEOPLE):
        arrays[f"p{person}/mel"] = np.concatenate([m[person] for m in record["mel"]])
        arrays[f"p{person}/head_pose"] = np.concatenate(
            [poses[person] for poses, _ in record["motion"]])
        arrays[f"p{person}/expression"] = np.concatenate(
            [expressions[person] for _, expressions in record["motion"]])
    return arrays


class TimelineTokens:
    """The joint model's token input (2, T, V) of a timeline (floored log-probabilities,
    as `generate` feeds it), made window by window when the sampler slices it
    (`tokens[:, lo:hi]` -> tensor): a long dialogue never holds its whole (2, T, V)."""

    def __init__(self, timeline: Timeline, device) -> None:
        import torch

        from avgen.text.symbols import NUM_SYMBOLS

        self.timeline = timeline
        self.device = torch.device(device)
        self.shape = (NUM_PEOPLE, timeline.num_frames, NUM_SYMBOLS)

    def __getitem__(self, index):
        import torch

        people, frames = index
        if people != slice(None) or not isinstance(frames, slice) or frames.step not in (
                None, 1):
            raise IndexError("TimelineTokens takes [:, start:end]")
        start, end, _ = frames.indices(self.shape[1])
        window = np.stack([floor_log_probs(self.timeline.token_window(p, start, end))
                           for p in range(NUM_PEOPLE)])
        return torch.from_numpy(window).to(self.device)


def _sampling_inputs(timeline: Timeline, model, settings: GenerateConfig):
    """(voice ids, token windows (`TimelineTokens`, (2, T, V)), seeded generator)."""
    import torch

    device = settings.device
    # ids, or blend weights for blended voices (as `generate_from_tokens`)
    voice_ids = voice_condition(model.config.voices, settings.voices).to(device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    return voice_ids, TimelineTokens(timeline, device), generator
