"""Video plumbing: motion resampling from the model clock to video frames, composing two
faces into one picture, and H.264/AAC MP4 writing/reading through the ffmpeg binary that
ships in `imageio-ffmpeg` (no system ffmpeg needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from avgen.errors import InputError


def resample_times(num_frames: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Positions (N,) in source frames of the output frames k / dst_fps that fall inside
    the source's duration (always at least one)."""
    duration = num_frames / src_fps
    count = max(1, int(np.floor(duration * dst_fps + 1e-6)))
    return np.minimum(np.arange(count) * (src_fps / dst_fps), max(num_frames - 1, 0))


def interpolate(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of values (T, D) at fractional frame positions (N,)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return np.repeat(values, len(positions), axis=0)
    lo = np.clip(np.floor(positions).astype(int), 0, len(values) - 2)
    frac = (positions - lo)[:, None]
    return values[lo] * (1 - frac) + values[lo + 1] * frac


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """Flip signs so consecutive quaternions (T, 4) lie in the same hemisphere (q and -q
    are the same rotation, but interpolating between them is not)."""
    q = np.array(q, dtype=np.float64)
    for t in range(1, len(q)):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    return q


def resample_head_pose(head_pose: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """head_pose (T, 7) at fractional frame positions -> (N, 7) (normalised lerp)."""
    pose = np.array(head_pose, dtype=np.float64)
    pose[:, :4] = continuous_quaternions(pose[:, :4])
    out = interpolate(pose, positions)
    out[:, :4] /= np.maximum(np.linalg.norm(out[:, :4], axis=1, keepdims=True), 1e-12)
    return out


def compose(faces: list[np.ndarray], layout: str) -> np.ndarray:
    """One picture from one or two (S, S, 3) faces: 'side-by-side' or 'stacked'."""
    if len(faces) == 1:
        return faces[0]
    return np.concatenate(faces, axis=1 if layout == "side-by-side" else 0)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class Mp4Writer:
    """Streams RGB frames (H, W, 3) uint8 into an H.264 (yuv420p) MP4, optionally muxed
    with an audio file as AAC. ffmpeg writes a temp file in the output folder, renamed into
    place only when everything succeeded; on any failure nothing is left behind.
    Use as a context manager; call `write(frame)` per frame."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float,
                 audio: str | Path | None = None, crf: int = 20, preset: str = "veryfast"):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise InputError("output folder does not exist", str(self.path.parent))
        if audio is not None and not Path(audio).is_file():
            raise InputError("no such audio file", str(audio))
        if width % 2 or height % 2:
            raise InputError(f"frame size {width}x{height} must be even for yuv420p",
                             str(path))
        self.size = (width, height)
        self.fps = fps
        self.audio = audio
        self.crf = crf
        self.preset = preset
        self._gen = None
        self._tmp = None
        self.frames = 0

    def __enter__(self):
        import imageio_ffmpeg

        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4",
                                   dir=self.path.parent)
        os.close(fd)
        self._tmp = tmp
        self._gen = imageio_ffmpeg.write_frames(
            tmp, self.size, fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
            quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-preset", self.preset, "-crf", str(self.crf),
                           "-movflags", "+faststart", "-y"],
            audio_path=None if self.audio is None else str(self.audio),
            audio_codec=None if self.audio is None else "aac")
        self._gen.send(None)
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame shape {frame.shape} does not match {self.size}")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def __exit__(self, kind, exc, tb):
        try:
            if kind is None:
                try:
                    self._gen.close()
                except Exception as error:  # ffmpeg failed to finish the file
                    raise InputError(f"ffmpeg could not write the video ({error})",
                                     str(self.path)) from None
                os.chmod(self._tmp, 0o644)
                os.replace(self._tmp, self.path)
            else:
                try:
                    self._gen.close()
                except Exception:
                    pass  # the original exception is the one to report
        finally:
            if self._tmp and os.path.exists(self._tmp):
                os.unlink(self._tmp)
        return False


def read_video(path: str | Path):
    """(fps, iterator of RGB frames (H, W, 3) uint8, frame count estimate) of a video
    file; InputError naming the file if ffmpeg cannot read it."""
    import imageio_ffmpeg

    source = str(path)
    if not Path(path).is_file():
        raise InputError("no such file", source)
    reader = imageio_ffmpeg.read_frames(source)
    try:
        meta = reader.__next__()
    except (RuntimeError, OSError, StopIteration) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "ffmpeg failed"
        raise InputError(f"not a readable video ({reason})", source) from None
    fps = float(meta.get("fps") or 0)
    width, height = meta["size"]
    if not fps > 0:
        raise InputError("the video has no frame rate", source)
    count = int(round(float(meta.get("duration") or 0) * fps))

    def frames():
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)

    return fps, frames(), count
