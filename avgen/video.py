"""Video plumbing: motion resampling from the model clock to video frames, composing two
faces into one picture, and H.264/AAC MP4 writing/reading through the ffmpeg binary that
ships in `imageio-ffmpeg` (no system ffmpeg needed)."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.errors import InputError
from avgen.heap import child_environment


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


def interpolate_window(values: np.ndarray, first: int, positions: np.ndarray, total: int,
                       quaternions: bool = False) -> np.ndarray:
    """`interpolate` (or `resample_head_pose` with `quaternions`) of a T-frame sequence of
    which only rows first..first+len(values)-1 are at hand, at positions (N,) on the whole
    sequence's clock: each output frame reads the same two source frames with the same
    weights as the whole-sequence call, so a video can be made piece by piece. Quaternions
    are taken into the hemisphere of the earlier frame (sign alone: same rotation)."""
    values = np.asarray(values, dtype=np.float64)
    if total == 1:
        out = np.repeat(values[:1], len(positions), axis=0)
    else:
        lo = np.clip(np.floor(positions).astype(int), 0, total - 2)
        frac = (positions - lo)[:, None]
        a, b = values[lo - first], values[lo + 1 - first].copy()
        if quaternions:
            flip = (a[:, :4] * b[:, :4]).sum(axis=1) < 0
            b[flip, :4] = -b[flip, :4]
        out = a * (1 - frac) + b * frac
    if quaternions:
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
                   "-s", f"{self.size[0]}x{self.size[1]}", "-pix_fmt", "yuv420p", "-r", fps,
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
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          env=child_environment())
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame shape {frame.shape} does not match {self.size}")
        try:
            self._process.stdin.write(yuv420(frame))
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


def yuv420(frame: np.ndarray) -> np.ndarray:
    """RGB frame (H, W, 3) uint8, H and W even -> its yuv420p planes (H * 3 / 2, W), what
    the writers hand ffmpeg. The conversion is the one ffmpeg makes of rgb24 input
    (BT.601, limited range; luma within one level) but for chroma, averaged over 2x2
    blocks where ffmpeg filters wider (on rendered dialogues 0.05 levels apart on
    average, 10 at most on sharp colour edges); it takes a sixth of ffmpeg's CPU, and
    the pipe carries half the bytes."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2YUV_I420)


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


# -- audio + video writer for generated dialogues ------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """H.264 + AAC settings of generated videos. `preset` and `tune` were chosen by
    measuring encode time, file size and PSNR on rendered dialogues
    (benchmarks/results/speed.md); `crf` 20 keeps the faces visually lossless.
    `keyframe_seconds` bounds how far a player must go back to seek."""

    crf: int = 20
    # superfast with veryfast's macroblock-tree rate control: on rendered dialogues, 27 %
    # less encoder CPU than veryfast for 14 % more bytes and 0.7 dB less PSNR (41.0 ->
    # 40.3 dB at CRF 20); plain superfast saves as much CPU for 66 % more bytes
    preset: str = "superfast"
    x264_params: str | None = "mbtree=1:rc-lookahead=10"
    tune: str | None = None
    keyframe_seconds: float = 2.0
    fragment_seconds: float = 0.5  # streamed MP4: a fragment at least this often
    audio_bitrate: str = "128k"
    threads: int = 0  # x264 threads; 0: ffmpeg's choice

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise InputError(f"crf must be 0 to 51, got {self.crf}")
        if self.keyframe_seconds <= 0:
            raise InputError(f"keyframe_seconds must be > 0, got {self.keyframe_seconds}")


class AVWriter:
    """Streams RGB frames (H, W, 3) uint8 and mono float audio into an H.264 + AAC MP4
    through one ffmpeg process (video on its stdin, raw float32 audio on a second pipe,
    each fed by its own thread, so neither input can stall the other).

    `fragmented`: a fragmented MP4 (moov first, then self-contained fragments at every
    keyframe) that players can start while it grows; otherwise an ordinary MP4 with its
    index moved to the front. `path` "-" writes to standard output (fragmented only).
    A file is written under a temporary name in the output folder and renamed into place
    when everything succeeded (fragmented: `NAME.part`, playable while it grows); on any
    failure nothing is left behind. Use as a context manager; `write(frames, audio)`
    takes any number of frames (N, H, W, 3) and samples (M,), in order."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float,
                 sample_rate: int, fragmented: bool = False,
                 config: EncoderConfig = EncoderConfig()) -> None:
        self.stdout = str(path) == "-"
        self.path = Path(path)
        if self.stdout and not fragmented:
            raise InputError("an MP4 written to standard output must be fragmented "
                             "(streamed)", "-o")
        if not self.stdout and not self.path.parent.is_dir():
            raise InputError("output folder does not exist", str(self.path.parent))
        if width % 2 or height % 2:
            raise InputError(f"frame size {width}x{height} must be even for yuv420p",
                             str(path))
        self.size, self.fps, self.sample_rate = (width, height), fps, sample_rate
        self.fragmented, self.config = fragmented, config
        self.frames = self.samples = 0
        self._process = self._tmp = None
        self._queues, self._threads, self._errors = [], [], []

    def command(self, target: str, audio_fd: int) -> list[str]:
        from fractions import Fraction

        c = self.config
        rate = Fraction(self.fps).limit_denominator()
        keyint = max(1, round(c.keyframe_seconds * self.fps))
        # delay_moov: the index waits for the first fragment, so it can carry the edit list
        # that hides the AAC encoder's priming samples (as the ordinary MP4's does)
        fragments = ["-movflags", "frag_keyframe+delay_moov+default_base_moof",
                     "-frag_duration", str(round(c.fragment_seconds * 1e6))]
        flags = fragments if self.fragmented else ["-movflags", "+faststart"]
        return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{self.size[0]}x{self.size[1]}",
                "-r", str(rate), "-i", "pipe:0",
                "-f", "f32le", "-ar", str(self.sample_rate), "-ac", "1",
                "-i", f"pipe:{audio_fd}",
                "-map", "0:v:0", "-map", "1:a:0",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", c.preset,
                "-crf", str(c.crf), "-g", str(keyint),
                *(["-tune", c.tune] if c.tune else []),
                *(["-x264-params", c.x264_params] if c.x264_params else []),
                *(["-threads", str(c.threads)] if c.threads else []),
                "-c:a", "aac", "-b:a", c.audio_bitrate,
                *flags, "-f", "mp4", target]

    def __enter__(self) -> "AVWriter":
        import queue
        import subprocess
        import threading

        copy_out = None
        if self.stdout:
            target, out = "pipe:1", getattr(sys.stdout, "buffer", sys.stdout)
            out.flush()
            try:
                out.fileno()
            except (AttributeError, OSError, ValueError):  # e.g. a test's captured stdout
                copy_out, out = out, subprocess.PIPE
        else:
            if self.fragmented:
                self._tmp = str(self.path.with_name(self.path.name + ".part"))
                open(self._tmp, "wb").close()
            else:  # ffmpeg is told the container (-f mp4): the name need not say it
                from avgen.outputs import temp_beside

                self._tmp = temp_beside(self.path)
            target, out = self._tmp, subprocess.DEVNULL
        self._log = tempfile.TemporaryFile()
        read_audio, self._audio_pipe = os.pipe()
        try:
            self._process = subprocess.Popen(self.command(target, read_audio),
                                             stdin=subprocess.PIPE, stdout=out,
                                             stderr=self._log, pass_fds=(read_audio,),
                                             env=child_environment())
        except BaseException:
            os.close(self._audio_pipe)
            self._cleanup()
            raise
        finally:
            os.close(read_audio)
        from avgen.outputs import widen_pipe

        widen_pipe(self._process.stdin)  # a frame is 0.8-1.6 MB
        audio_out = os.fdopen(self._audio_pipe, "wb")
        if copy_out is not None:
            def copy():
                while data := self._process.stdout.read(1 << 16):
                    copy_out.write(data)
            self._threads.append(threading.Thread(target=copy, daemon=True))
            self._threads[-1].start()
        for stream, convert in ((self._process.stdin, True), (audio_out, False)):
            feed = queue.Queue(maxsize=4)
            thread = threading.Thread(target=self._feed, args=(feed, stream, convert),
                                      daemon=True)
            thread.start()
            self._queues.append(feed)
            self._threads.append(thread)
        return self

    def _feed(self, feed, stream, frames: bool) -> None:
        """Write what arrives on `feed` to `stream` until None (`frames`: RGB frames,
        written as yuv420p); then close it."""
        try:
            while (data := feed.get()) is not None:
                if self._errors:
                    continue
                for part in (map(yuv420, data) if frames else (data,)):
                    stream.write(memoryview(part).cast("B"))  # the array's bytes, no copy
        except (BrokenPipeError, OSError) as error:  # ffmpeg died: reported on exit
            self._errors.append(error)
            while feed.get() is not None:
                pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """Frames (N, H, W, 3) uint8 and the audio samples (M,) that go with them."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (self.size[1], self.size[0], 3):
            raise ValueError(f"frames of shape {frames.shape} do not match {self.size}")
        if self._errors:
            raise InputError(f"ffmpeg stopped ({self._reason()})", str(self.path))
        if len(audio):  # audio first: it leads the video, so ffmpeg never waits for it
            self._queues[1].put(np.ascontiguousarray(audio, dtype="<f4"))
            self.samples += len(audio)
        if len(frames):
            self._queues[0].put(np.ascontiguousarray(frames, dtype=np.uint8))
            self.frames += len(frames)

    def _reason(self) -> str:
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip().splitlines()
        return text[-1] if text else "no message"

    def _finish(self) -> int:
        for feed in self._queues:
            feed.put(None)
        for thread in self._threads:
            thread.join()
        code = self._process.wait()
        if self.stdout:
            getattr(sys.stdout, "buffer", sys.stdout).flush()
        return code

    def __exit__(self, kind, exc, tb):
        try:
            if self._process is None:
                return False
            if kind is None:
                code = self._finish()
                if code != 0 or self._errors:
                    raise InputError(f"ffmpeg could not write the video ({self._reason()})",
                                     str(self.path))
                if not self.stdout:
                    os.chmod(self._tmp, 0o644)
                    os.replace(self._tmp, self.path)
                    self._tmp = None
            else:
                self._process.kill()
                self._errors.append(RuntimeError("stopped"))
                self._finish()
        finally:
            self._cleanup()
        return False

    def _cleanup(self) -> None:
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
