"""Whole videos: the motion resampled to the video's frame rate, every person rendered,
the people composed into one picture, and the MP4 written (`avgen.video.Mp4Writer`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2

from avgen.face.render import FaceRenderer, RenderConfig, load_renderers


@dataclass(frozen=True)
class VideoConfig:
    fps: float = 25.0
    size: int = 512
    layout: str = "side-by-side"   # or "stacked"
    crf: int = 20
    preset: str = "veryfast"


class VideoFrames:
    """The video's frames (H, W, 3) uint8 at `config.fps`, all people composed by
    `config.layout`, rendered one at a time as they are iterated; len() is their number.
    `motion`: a loaded motion (avgen.face.motion.load_motion)."""

    def __init__(self, motion, renderers: list[FaceRenderer], config: VideoConfig) -> None:
        from avgen.constants import FRAMES_PER_SECOND
        from avgen.video import interpolate, resample_head_pose, resample_times

        positions = resample_times(motion.num_frames, FRAMES_PER_SECOND, config.fps)
        self.poses = [resample_head_pose(p, positions) for p in motion.head_pose]
        self.expressions = [interpolate(e, positions) for e in motion.expression]
        self.renderers, self.layout, self.count = renderers, config.layout, len(positions)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        from avgen.video import compose

        for k in range(self.count):
            yield compose([r.render(self.expressions[i][k], self.poses[i][k])
                           for i, r in enumerate(self.renderers)], self.layout)


def render_video(motion_path: str, refs: list[str], output: str, audio: str | None = None,
                 config: VideoConfig = VideoConfig(), frames_dir: str | None = None,
                 progress: bool = True, renderers: list[FaceRenderer] | None = None) -> int:
    """Render an `avgen.av/1` or `avgen.motion/1` file with one reference photo per person
    into an MP4 (H.264 yuv420p, AAC if `audio`). Returns the number of video frames.
    `renderers`: already set up for `refs` at `config.size` (e.g. from a RendererCache)."""
    from pathlib import Path

    from tqdm import tqdm

    from avgen.errors import InputError
    from avgen.face.motion import load_motion
    from avgen.video import Mp4Writer

    if config.size % 2 or config.size < 64:
        raise InputError(f"{config.size} is not allowed; use an even size of at least 64",
                         "--size")
    if not 1 <= config.fps <= 120:
        raise InputError(f"{config.fps:g} is out of range; use 1 to 120", "--fps")
    motion = load_motion(motion_path)
    if len(refs) != motion.num_people:
        raise InputError(f"the file has {motion.num_people} "
                         f"{'person' if motion.num_people == 1 else 'people'} but "
                         f"{len(refs)} --ref image{'s' if len(refs) != 1 else ''} were given",
                         motion_path)
    if output != "-" and not Path(output).parent.is_dir():
        raise InputError("output folder does not exist", str(Path(output).parent))
    if audio is not None and not Path(audio).is_file():
        raise InputError("no such audio file", audio)
    frames_path = None
    if frames_dir is not None:
        frames_path = Path(frames_dir)
        frames_path.mkdir(parents=True, exist_ok=True)
    if renderers is None:
        renderers = load_renderers(refs, RenderConfig(size=config.size))
    frames = VideoFrames(motion, renderers, config)
    width = config.size * (len(renderers) if config.layout == "side-by-side" else 1)
    height = config.size * (len(renderers) if config.layout == "stacked" else 1)
    with Mp4Writer(output, width, height, config.fps, audio=audio, crf=config.crf,
                   preset=config.preset) as writer:
        for k, frame in enumerate(tqdm(frames, total=len(frames), desc="render", unit="frame",
                                       disable=not progress, file=sys.stderr,
                                       dynamic_ncols=True)):
            writer.write(frame)
            if frames_path is not None:
                cv2.imwrite(str(frames_path / f"frame_{k:05d}.png"), frame[:, :, ::-1])
    return len(frames)
