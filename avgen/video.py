"""Video plumbing: motion resampling from the model clock to video frames, composing two
faces into one picture, and H.264/AAC MP4 writing/reading through the ffmpeg binary that
ships in `imageio-ffmpeg` (no system ffmpeg needed)."""

from __future__ import annotations

import sys
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
    with an audio file as AAC. ffmpeg writes a temp file in the output folder
    (`avgen.outputs.atomic_output`), renamed into place only when everything succeeded;
    on any failure or signal nothing is left behind, and ffmpeg dies with avgen.
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
        self._output = None
        self._process = None
        self.frames = 0

    def _command(self, tmp: str) -> list[str]:
        from fractions import Fraction

        fps = str(Fraction(self.fps).limit_denominator())
        command = [ffmpeg_exe(), "-y", "-nostdin", "-f", "rawvideo", "-vcodec", "rawvideo",
                   "-s", f"{self.size[0]}x{self.size[1]}", "-pix_fmt", "rgb24", "-r", fps,
                   "-i", "-"]
        if self.audio is not None:
            command += ["-i", str(self.audio)]
        command += ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-v", "error"]
        if self.audio is not None:
            command += ["-acodec", "aac", "-map", "0:v:0", "-map", "1:a:0"]
        return command + ["-preset", self.preset, "-crf", str(self.crf),
                          "-movflags", "+faststart", "-f", "mp4", tmp]

    def __enter__(self):
        import subprocess

        from avgen import outputs

        self._output = outputs.atomic_output(self.path)
        tmp = self._output.__enter__()
        try:
            self._process = outputs.spawn(self._command(tmp), stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame shape {frame.shape} does not match {self.size}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except (BrokenPipeError, OSError):
            raise InputError(f"ffmpeg stopped while writing the video "
                             f"({self._stderr()})", str(self.path)) from None
        self.frames += 1

    def _stderr(self) -> str:
        from avgen import outputs

        outputs.stop(self._process) if self._process.poll() is None else None
        try:
            text = self._process.stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return text.splitlines()[-1] if text else f"exit code {self._process.returncode}"

    def __exit__(self, kind, exc, tb):
        from avgen import outputs

        process, output = self._process, self._output
        try:
            if kind is None:
                process.stdin.close()
                error = process.stderr.read().decode("utf-8", "replace").strip()
                code = process.wait()
                outputs.release(process)
                if code != 0:
                    last = error.splitlines()[-1] if error else f"exit code {code}"
                    raise InputError(f"ffmpeg could not write the video ({last})",
                                     str(self.path))
        except BaseException:
            outputs.stop(process)
            output.__exit__(*sys.exc_info())
            raise
        if kind is not None:
            outputs.stop(process)  # the original exception is the one to report
            output.__exit__(kind, exc, tb)
            return False
        output.__exit__(None, None, None)
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
    from avgen.limits import MAX_IMAGE_PIXELS

    if width * height > MAX_IMAGE_PIXELS:
        reader.close()
        raise InputError(f"frames of {width}x{height} pixels; the limit is "
                         f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels", source)
    if not fps > 0:
        raise InputError("the video has no frame rate", source)
    count = int(round(float(meta.get("duration") or 0) * fps))

    def frames():
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)

    return fps, frames(), count
