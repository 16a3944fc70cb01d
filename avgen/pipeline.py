"""The chain as library functions: tokens -> joint model -> (vocoder, renderer).

`generate` runs the joint audio-visual model for both people of a dialogue timeline and
returns `avgen.av/1` arrays; the CLI's `generate` and `synth` are thin wrappers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avgen import formats, outputs
from avgen.constants import DEFAULT_TEMPERATURE, EXPRESSION_NAMES, NUM_PEOPLE, SAMPLE_RATE
from avgen.errors import AvgenError, ConfigError, InputError
from avgen.face.frames import VideoConfig
from avgen.text.timeline import Timeline, TimelineConfig, floor_log_probs

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
    steps: int = 8
    seed: int = 0
    # per person, a voice spec (`af_bella`, `af_bella+am_michael`, see avgen.speaker);
    # default: the speaker mapper's choice (synth), or the model's first two voices
    voices: tuple[str, ...] | None = None
    device: str = "cpu"
    chunk_frames: int = 2048  # frames generated at a time (~24 s): bounds working memory
    temperature: float = DEFAULT_TEMPERATURE  # mel's starting noise (AVFlow.sample_dyad)
    style: MotionStyle = MotionStyle()  # head and expression scales on the result

    def __post_init__(self) -> None:
        from avgen.limits import SEED, STEPS, TEMPERATURE, check_range

        check_range(self.steps, STEPS, "--steps", integer=True, name="steps")
        check_range(self.seed, SEED, "--seed", integer=True, name="seed")
        check_range(self.temperature, TEMPERATURE, "--temperature", name="temperature")
        check_range(self.chunk_frames, (1, 1 << 20), "chunk_frames", integer=True,
                    name="chunk_frames")
        if self.voices is not None and len(self.voices) != NUM_PEOPLE:
            raise ConfigError(f"voices: one per person ({NUM_PEOPLE}), "
                              f"got {len(self.voices)}", "--voice")


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
    `progress(frames)` is called as chunks finish, `on_step(n)` after every Euler step
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
                                    temperature=config.temperature, on_step=on_step)
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
        pose, expression = motion_from_features(motion[person])
        if not config.style.identity:
            pose, expression = config.style.apply(pose, expression)
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

    def __post_init__(self) -> None:
        from avgen.audio.vocoder import VOCODERS

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


def mix(waves: list[np.ndarray], peak: float = 0.95) -> np.ndarray:
    """Sum the people's tracks; scale down only if the sum would clip."""
    total = np.sum(waves, axis=0)
    top = float(np.abs(total).max(initial=0.0))
    return total * (peak / top) if top > peak else total


def synth(script: str, refs: list[str], output: str, checkpoint: str | None = None,
          config: SynthConfig = SynthConfig(), durations=None, log=lambda message: None,
          **options) -> SynthResult:
    """The whole chain: script -> tokens -> joint model -> vocoder -> renderer -> MP4.

    Inputs are all checked (script, faces, weights) before any long work; the MP4 is
    written atomically. `options`: as `Synthesizer.synth` (keep, subtitles, progress...).
    For many dialogues, keep one `Synthesizer` instead: it loads the models once."""
    return Synthesizer(checkpoint, config, durations).synth(script, refs, output, log=log,
                                                            **options)


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
    device, motion style) is fixed. `durations`: a duration source for every job (default:
    the learned model, reseeded per job with the job's seed, as `synth` does)."""

    def __init__(self, checkpoint: str | None = None, config: SynthConfig = SynthConfig(),
                 durations=None) -> None:
        from avgen.face.render import RenderConfig, RendererCache

        self.checkpoint = checkpoint
        self.config = config
        self.renderers = RendererCache(RenderConfig(size=config.size))
        self._durations = durations
        self._models = None  # (joint model, normaliser, vocoder, learned durations | None)

    def load(self, progress=None) -> Synthesizer:
        """Load the models now (otherwise the first `synth` does); returns self."""
        from avgen.progress import NullProgress

        if self._models is None:
            from avgen.audio import vocoder as vocoders
            from avgen.text.timeline import LearnedDurations

            with (progress or NullProgress()).stage("load models", unit="model"):
                device = self.config.generate.device
                model, normalizer = load_av_model(self.checkpoint, device)
                vocoder = vocoders.load_vocoder(self.config.vocoder, device=device)
                learned = None if self._durations is not None else LearnedDurations(
                    seed=self.config.generate.seed)
            self._models = (model, normalizer, vocoder, learned)
        return self

    def synth(self, script, refs: list[str], output: str, *, seed: int | None = None,
              steps: int | None = None, voices: tuple[str, ...] | None = None,
              rate: float | None = None, gap: float | None = None,
              layout: str | None = None, crop: str | None = None, keep: str | None = None,
              subtitles: str | None = None, log=lambda message: None, progress=True
              ) -> SynthResult:
        """One dialogue to one MP4 (written atomically; layout "single": one per person,
        see `avgen.face.frames.output_paths`).

        `script`: a script file path or a parsed `avgen.text.script.Dialogue`. `seed`,
        `steps`, `voices`, `rate`, `gap`, `layout`, `crop` override the config's for this
        call. `keep`: a folder for the side outputs (tokens, av file, mixed WAV, one WAV per
        person; `keep_paths`); `subtitles`: an .srt or .vtt file, one cue per sentence.
        `progress`: an `avgen.progress` reporter, True (bars or lines on stderr) or False
        (nothing). Inputs (script, faces, settings, output places) are checked before the
        models run."""
        import contextlib
        from dataclasses import replace
        from pathlib import Path

        from avgen import progress as progress_reporters
        from avgen.audio.io import wav_bytes
        from avgen.audio.vocoder import vocode
        from avgen.face.frames import output_paths, render_video
        from avgen.face.motion import motion_from_arrays
        from avgen.formats import atomic_write_bytes
        from avgen.text.script import Dialogue, read_script
        from avgen.text.timeline import build_timeline, save_timeline

        if progress is True:
            progress = progress_reporters.for_stream()
        elif not progress:
            progress = progress_reporters.NullProgress()
        config = self.config
        overrides = {k: v for k, v in (("seed", seed), ("steps", steps), ("voices", voices))
                     if v is not None}
        settings = replace(config.generate, **overrides)
        video = config.video(layout, crop)
        timeline_config = config.timeline(rate, gap)
        if len(refs) != NUM_PEOPLE:
            raise InputError(f"--ref takes one photo per person (2), got {len(refs)}")
        script_path = script if isinstance(script, (str, Path)) else None
        outputs.check_output(output, (".mp4",), inputs=[*refs, script_path])
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
        dialogue = script if isinstance(script, Dialogue) else read_script(script)
        renderers = self.renderers.get(list(refs), video.framing)  # no face -> error now
        model, normalizer, vocoder, learned = self.load(progress)._models
        from avgen.speaker import choose_voices, model_voices

        choices = choose_voices(dialogue.names, list(refs), model_voices(model.config),
                                explicit=settings.voices,
                                directives=dialogue.voice_directives())
        settings = replace(settings, voices=tuple(c.voice for c in choices))
        names = list(dialogue.names) + ["(listener)"] * (NUM_PEOPLE - len(dialogue.names))
        for name, choice in zip(names, choices):
            log(f"voice {choice.describe(name)}")
            progress.note(f"voice {choice.describe(name)}")
        durations = self._durations or learned.with_seed(settings.seed)
        log("tokens")
        with progress.stage("tokens"):
            timeline = build_timeline(dialogue, durations, timeline_config)
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
        audio = mix(waves)
        log("render")
        # on a terminal the renderer draws its own bar
        with contextlib.nullcontext() if progress.terminal else progress.stage("render"):
            count = render_video(motion_from_arrays(av, "generated motion"), list(refs),
                                 output, audio=audio, sample_rate=SAMPLE_RATE, config=video,
                                 progress=progress.terminal, renderers=renderers)
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
            kept = keep_paths(keep, Path(output).stem, timeline.names)
            save_timeline(kept["tokens"], timeline)
            formats.save(kept["av"], formats.AV, av)
            atomic_write_bytes(kept["wav"], wav_bytes(audio))
            for person, name in enumerate(timeline.names):
                atomic_write_bytes(kept[f"wav:{name}"], wav_bytes(waves[person]))
            files.update(kept)
        return SynthResult(str(output), count, count / video.fps, tuple(settings.voices),
                           timeline, files)
