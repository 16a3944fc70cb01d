"""Whole videos: the motion resampled to the video's frame rate, every person rendered,
the people framed and laid out, and the MP4s written (`avgen.video.Mp4Writer`).

Framing (`crop`): "photo" shows each whole photo as it was given, the animated face
pasted back in (`PhotoRenderer`); "face" shows the square crop around each face
(`FaceRenderer`). Layout: "side" (side by side at a common height), "stacked" (one above
the other at a common width) or "single" (one MP4 per person).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avgen.constants import SAMPLE_RATE
from avgen.errors import ConfigError, InputError
from avgen.face.render import PhotoFraming, RenderConfig, load_renderers

CROPS = ("photo", "face")
LAYOUTS = ("side", "stacked", "single")
_LAYOUT_ALIASES = {"side-by-side": "side"}


@dataclass(frozen=True)
class VideoConfig:
    """`size`: with crop "face", the side of each square face; with crop "photo", the
    height of each photo (layouts side and single) or its width (stacked)."""

    fps: float = 25.0
    size: int = 512
    layout: str = "side"
    crop: str = "photo"
    crf: int = 20
    preset: str = "veryfast"

    def __post_init__(self) -> None:
        # errors name the command-line option that sets the value
        layout = _LAYOUT_ALIASES.get(self.layout, self.layout)
        object.__setattr__(self, "layout", layout)
        if layout not in LAYOUTS:
            raise ConfigError(f"{self.layout!r} is not a layout; use {', '.join(LAYOUTS)}",
                              "--layout")
        if self.crop not in CROPS:
            raise ConfigError(f"{self.crop!r} is not a framing; use {' or '.join(CROPS)}",
                              "--crop")
        from avgen.limits import CRF, FPS, SIZE, check_range

        check_range(self.fps, FPS, "--fps")
        check_range(self.size, SIZE, "--size", integer=True)
        if self.size % 2:
            raise ConfigError(f"{self.size} is odd; the video needs an even size", "--size")
        check_range(self.crf, CRF, "crf", integer=True)

    @property
    def framing(self) -> PhotoFraming | None:
        """How each photo is framed (None: the square face crop)."""
        if self.crop == "face":
            return None
        return PhotoFraming("width" if self.layout == "stacked" else "height", self.size)


def output_paths(output: str | Path, layout: str, people: int) -> list[Path]:
    """The MP4s a video of `people` people is written to: `output` itself, or with layout
    "single" one per person, numbered from 1 in the file's order (out.mp4 -> out-1.mp4,
    out-2.mp4)."""
    output = Path(output)
    if layout != "single" or people == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{k + 1}{output.suffix}") for k in range(people)]


def compose(pictures: list[np.ndarray], layout: str, out: np.ndarray | None = None
            ) -> np.ndarray:
    """One picture from each person's: side by side (heights equal) or stacked (widths
    equal); written into `out` when given (no new frame)."""
    if len(pictures) == 1:
        if out is None:
            return pictures[0]
        out[...] = pictures[0]
        return out
    return np.concatenate(pictures, axis=1 if layout == "side" else 0, out=out)


class VideoFrames:
    """The video's frames at `config.fps`, rendered one at a time as they are iterated:
    each item is a tuple of pictures (H, W, 3) uint8, one per output file (one for layouts
    side and stacked, one per person for single); len() is their number.
    `motion`: an `avgen.face.motion.Motion`; `renderers`: one per person."""

    def __init__(self, motion, renderers: list, config: VideoConfig) -> None:
        from avgen.constants import FRAMES_PER_SECOND
        from avgen.video import interpolate, resample_head_pose, resample_times

        positions = resample_times(motion.num_frames, FRAMES_PER_SECOND, config.fps)
        self.poses = [resample_head_pose(p, positions) for p in motion.head_pose]
        self.expressions = [interpolate(e, positions) for e in motion.expression]
        self.renderers, self.layout, self.count = renderers, config.layout, len(positions)

    def __len__(self) -> int:
        return self.count

    def sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each output's pictures."""
        shapes = [r.shape for r in self.renderers]
        if self.layout == "single":
            return [(w, h) for h, w in shapes]
        if self.layout == "side":
            return [(sum(w for _, w in shapes), max(h for h, _ in shapes))]
        return [(max(w for _, w in shapes), sum(h for h, _ in shapes))]

    def __iter__(self):
        for k in range(self.count):
            pictures = [r.render(self.expressions[i][k], self.poses[i][k])
                        for i, r in enumerate(self.renderers)]
            yield tuple(pictures) if self.layout == "single" else (compose(pictures,
                                                                            self.layout),)


def render_video(motion, refs: list[str], output: str, audio=None,
                 config: VideoConfig = VideoConfig(), frames_dir: str | None = None,
                 progress: bool = True, renderers: list | None = None,
                 sample_rate: int = SAMPLE_RATE) -> int:
    """Render motion with one reference photo per person into MP4s (H.264 yuv420p, AAC if
    `audio`; see `output_paths` for the files of layout "single"). Returns the number of
    video frames.

    `motion`: an `avgen.av/1` or `avgen.motion/1` file, or a loaded `Motion`. `audio`: an
    audio file, or samples (N,) at `sample_rate`. `renderers`: already set up for `refs`
    and `config` (e.g. from a RendererCache)."""
    import tempfile

    from tqdm import tqdm

    from avgen.face.motion import Motion, load_motion
    from avgen.video import Mp4Writer

    if not isinstance(motion, Motion):
        motion_path = str(motion)
        motion = load_motion(motion_path)
    else:
        motion_path = "motion"
    if len(refs) != motion.num_people:
        raise InputError(f"the file has {motion.num_people} "
                         f"{'person' if motion.num_people == 1 else 'people'} but "
                         f"{len(refs)} --ref image{'s' if len(refs) != 1 else ''} were given",
                         motion_path)
    from avgen.outputs import check_output

    files = [f for f in (motion_path, *refs, audio) if isinstance(f, (str, Path))]
    for path in output_paths(output, config.layout, len(refs)):
        check_output(str(path), (".mp4",), inputs=files)
    if isinstance(audio, (str, Path)) and not Path(audio).is_file():
        raise InputError("no such audio file", str(audio))
    frames_path = None
    if frames_dir is not None:
        frames_path = Path(frames_dir)
        frames_path.mkdir(parents=True, exist_ok=True)
    if renderers is None:
        renderers = load_renderers(refs, RenderConfig(size=config.size), config.framing)
    frames = VideoFrames(motion, renderers, config)
    paths = output_paths(output, config.layout, len(renderers))
    with tempfile.TemporaryDirectory(prefix="avgen-render-") as work:
        if audio is not None and not isinstance(audio, (str, Path)):
            import soundfile

            # ffmpeg muxes audio from a file: the samples go to it through a WAV
            wav = str(Path(work) / "audio.wav")
            soundfile.write(wav, np.asarray(audio), sample_rate)
            audio = wav
        writers = [Mp4Writer(path, width, height, config.fps, audio=audio, crf=config.crf,
                             preset=config.preset)
                   for path, (width, height) in zip(paths, frames.sizes())]
        from contextlib import ExitStack

        with ExitStack() as stack:
            for writer in writers:
                stack.enter_context(writer)
            for k, pictures in enumerate(tqdm(frames, total=len(frames), desc="render",
                                              unit="frame", disable=not progress,
                                              file=sys.stderr, dynamic_ncols=True)):
                for i, (writer, picture) in enumerate(zip(writers, pictures)):
                    writer.write(picture)
                    if frames_path is not None:
                        name = f"frame_{k:05d}" + (f"-{i + 1}" if len(writers) > 1 else "")
                        cv2.imwrite(str(frames_path / f"{name}.png"), picture[:, :, ::-1])
    return len(frames)
