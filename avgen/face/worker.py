"""A face renderer in a process of its own, so that two faces render at once.

Threads could not do it when measured: a frame then made about a thousand short OpenCV
calls (the triangle raster, now one compiled call), each releasing and retaking the GIL,
and two faces rendered in two threads took as long as one after the other, for a third
more CPU; the rest of a frame is still a few dozen numpy and OpenCV calls.
`RenderProcess` runs `python -m avgen.face.worker`, hands it a renderer (pickled by this
process: the child only ever unpickles what its parent wrote on its stdin, never a file)
and then, per batch of frames, their expressions and head poses; the child writes the
frames back, raw RGB, on its stdout.
At start-up, while this process imports torch and loads the models, the child can also
find the faces' landmarks in the photos (`request_landmarks`: MediaPipe's import and face
mesh stay out of this process) and look at them (apparent gender and age for the speaker
mapper, `request_attributes`): each answer comes back as one length-prefixed JSON
message, in the order asked.
The child is started with `avgen.outputs.spawn`, so it dies with avgen however avgen
exits, and it exits by itself when its stdin closes.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import tempfile

import numpy as np

from avgen.errors import AvgenError

_LENGTH = struct.Struct("<Q")


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream):
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None  # the parent closed our stdin: done
    (length,) = _LENGTH.unpack(head)
    return pickle.loads(stream.read(length))


class RenderProcess:
    """One renderer at a time, in a child process: `load(renderer)` (a `FaceRenderer` or
    `PhotoRenderer`; sent again only when it changes), then `submit(expressions (N, E),
    head_poses (N, 7))` and `collect()` -> frames (N, height, width, 3) uint8, equal to
    `renderer.render` of each row. Submit, render something else meanwhile, collect."""

    def __init__(self) -> None:
        import os
        from pathlib import Path

        import avgen
        from avgen import outputs

        # the child imports this avgen, wherever it came from (an installed package, a
        # checkout a program put on sys.path by hand)
        here = str(Path(avgen.__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}
        # its messages go to a file: a pipe nobody reads while it renders could fill
        self._log = tempfile.TemporaryFile()
        try:
            self._process = outputs.spawn([sys.executable, "-m", "avgen.face.worker"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._log, env=env)
        except BaseException:
            self._log.close()
            raise
        outputs.widen_pipe(self._process.stdout)  # a frame is about 0.8 MB
        self._loaded = None  # the renderer the child holds
        self._pending = 0
        # the questions the child is answering, in order: (kind, [(photo, file_key)])
        self._asked: list[tuple[str, list]] = []
        self._landmarks: dict = {}  # photo -> (file_key when asked, points (478, 3))

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pending(self) -> int:
        """Frames submitted and not yet collected."""
        return self._pending

    def load(self, renderer) -> None:
        if renderer is not self._loaded:
            self._write(("renderer", renderer))
            self._loaded = renderer

    def request_landmarks(self, paths: list[str]) -> None:
        """Have the child find the face landmarks of each photo (`avgen.face.landmarks.
        detect_image`); `collect_landmarks` returns them."""
        self._ask("landmarks", paths)

    def collect_landmarks(self) -> dict:
        """Wait for the answer to `request_landmarks`: {photo: points (478, 3) float32}
        for each photo the child found one face in and that has not changed since (any
        other is left to this process, which then reports what is wrong with it)."""
        from avgen.formats import file_key

        self._collect("landmarks")
        found, self._landmarks = self._landmarks, {}
        return {path: points for path, (key, points) in found.items()
                if file_key(path) == key}

    def request_attributes(self, paths: list[str]) -> None:
        """Have the child find each photo's face attributes (`avgen.speaker.
        face_attributes`); `collect_attributes` stores them where that function looks."""
        self._ask("attributes", paths)

    def collect_attributes(self) -> None:
        """Wait for the answer to `request_attributes` and remember it for each photo not
        changed since (a photo the child could not read is left to this process)."""
        self._collect("attributes")

    def _ask(self, kind: str, paths: list[str]) -> None:
        from avgen.formats import file_key

        asked = [(str(path), file_key(path)) for path in paths]
        self._write((kind, [path for path, _ in asked]))
        self._asked.append((kind, asked))

    def _collect(self, kind: str) -> None:
        """Read answers off the pipe, in the order asked, until none of `kind` is due."""
        while any(asked_kind == kind for asked_kind, _ in self._asked):
            self._read_answer()

    def _read_answer(self) -> None:
        import json

        from avgen import speaker
        from avgen.formats import file_key

        kind, asked = self._asked.pop(0)
        head = self._process.stdout.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            self._failed()
        (length,) = _LENGTH.unpack(head)
        data = self._process.stdout.read(length)
        if len(data) < length:
            self._failed()
        answers = json.loads(data)
        for (path, key), answer in zip(asked, answers):
            if answer == "failed" or key is None:
                continue
            if kind == "landmarks":
                points = np.asarray(answer, np.float32)
                if points.ndim == 2 and points.shape[1] == 3:
                    self._landmarks[path] = (key, points)
            elif file_key(path) == key:
                speaker.face_attributes.remember(
                    path, None if answer is None else speaker.FaceAttributes(**answer))

    def _drain(self) -> None:
        while self._asked:  # answers nobody collected: read them off the pipe
            self._read_answer()

    def submit(self, expressions: np.ndarray, head_poses: np.ndarray) -> None:
        self._drain()
        if self._pending:
            raise RuntimeError("collect the frames submitted before submitting more")
        self._write(("frames", np.asarray(expressions), np.asarray(head_poses)))
        self._pending = len(expressions)

    def collect(self) -> np.ndarray:
        height, width = self._loaded.shape
        frames = np.empty((self._pending, height, width, 3), np.uint8)
        view = memoryview(frames).cast("B")
        got = self._process.stdout.readinto(view)
        self._pending = 0
        if got != len(view):
            self._failed()
        return frames

    def close(self) -> None:
        """Stop the child (it finishes when its stdin closes; killed if it does not)."""
        from avgen import outputs

        if self._process.poll() is None:
            try:
                self._process.stdin.close()
                self._process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        outputs.stop(self._process)
        self._log.close()

    def _write(self, message) -> None:
        try:
            _send(self._process.stdin, message)
        except (BrokenPipeError, OSError):
            self._failed()

    def _failed(self):
        from avgen import outputs

        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        reason = ""
        if self._process.poll() is not None:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").strip().splitlines()
            reason = f": {lines[-1]}" if lines else f" (exit code {self._process.returncode})"
        outputs.stop(self._process)
        raise AvgenError(f"the face renderer's process stopped{reason}")


def _landmarks(paths: list[str]) -> bytes:
    """The length-prefixed JSON answer to a landmarks request: per photo its face's
    landmarks as (478, 3) lists (float32 values, exact through JSON's doubles) or
    "failed" (unreadable, no face, several: the parent finds out and says which)."""
    import json

    from avgen.face import landmarks as lm

    answers = []
    for path in paths:
        try:
            answers.append(lm.detect_image(lm.read_image(path), path).tolist())
        except Exception:  # the parent looks at the photo itself and reports the problem
            answers.append("failed")
    data = json.dumps(answers).encode()
    return _LENGTH.pack(len(data)) + data


def _attributes(paths: list[str]) -> bytes:
    """The length-prefixed JSON answer to an attributes request: per photo its face
    attributes as a dict, null (no face, or no face model installed) or "failed"."""
    import json
    from dataclasses import asdict

    from avgen.speaker import face_attributes

    answers = []
    for path in paths:
        try:
            face = face_attributes(path)
            answers.append(None if face is None else asdict(face))
        except Exception:  # the parent reads the photo itself and reports the problem
            answers.append("failed")
    data = json.dumps(answers).encode()
    return _LENGTH.pack(len(data)) + data


def main() -> int:
    import cv2

    from avgen.heap import retain_freed_memory

    retain_freed_memory()  # a frame is made and dropped per render
    cv2.setNumThreads(1)  # the parent renders the other face on the other core
    from avgen.face.raster import warm_up

    warm_up()  # while the parent loads its models, not when the first frames are due
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    renderer = None
    try:
        while (message := _receive(source)) is not None:
            if message[0] == "renderer":
                renderer = message[1]
            elif message[0] in ("landmarks", "attributes"):
                answer = _landmarks if message[0] == "landmarks" else _attributes
                sink.write(answer(message[1]))
                sink.flush()
            else:
                _, expressions, head_poses = message
                # the whole batch first, then written: a frame is larger than the pipe,
                # and writing each as it is made would wait for the parent, which is
                # rendering its own face meanwhile
                frames = [np.ascontiguousarray(renderer.render(expression, head_pose))
                          for expression, head_pose in zip(expressions, head_poses)]
                for frame in frames:
                    sink.write(memoryview(frame).cast("B"))
                sink.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        return 0  # the parent is gone, or Ctrl-C reached the whole process group
    except Exception as exc:  # reported by the parent, whose read comes up short
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown: with OpenCV, numba and the face models
    loaded it took about 0.15 s, which the parent spends waiting in `close`. The worker
    holds no files of its own; its pipes are flushed first."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # the parent is gone
            pass
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
