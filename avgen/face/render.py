"""Photo + motion -> frames of one person: `FaceRenderer` puts the pieces together.

The photo is warped so its landmarks follow the motion (`avgen.face.geometry`), then what a
warp cannot show is painted over it (`avgen.face.paint`: the irises where the gaze puts
them, the open mouth's interior). Whole videos (timing, layout, the MP4) are
`avgen.face.frames`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import cv2
import numpy as np

from avgen.face import landmarks as lm
from avgen.face.geometry import Warp, square_crop
from avgen.face.model import FaceModel, ModelConfig
from avgen.face.paint import Irises, Mouth
from avgen.smoothing import smoothstep


@dataclass(frozen=True)
class RenderConfig:
    size: int = 512                  # output square, pixels
    grid_step: int = 2               # the warp map is computed every `grid_step` pixels
    hair_ring: float = 1.3           # ring scale about the face centre (x face oval)
    outer_ring: float = 1.85
    hair_follow: float = 1.0         # how much of the head motion each ring follows
    outer_follow: float = 0.15
    border_margin: float = 0.08      # of the frame: this band along the edges never moves
    neck_follow: float = 0.45        # ring points below the chin follow less (neck)
    neck_jaw_follow: float = 0.0     # the neck stays when the jaw drops: the chin covers it
    teeth_light: float = 1.3          # painted teeth's luminance, x the skin's (<= 225)
    cavity_darkness: float = 0.3      # open mouth's luminance, as a fraction of the lips'


class FaceRenderer:
    """Renders one person: `render(expression (E,), head_pose (7,))` -> (size, size, 3).
    The photo is cropped to the largest square around the face (`square_crop`) and
    scaled to `config.size`; everything that depends only on the photo is prepared here."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray,
                 config: RenderConfig = RenderConfig(),
                 model_config: ModelConfig = ModelConfig()):
        self.config = config
        self.image, points = square_crop(image, landmarks, config.size)
        self.model = FaceModel(points, model_config)
        self.warp = Warp(self.model, config)
        self.irises = Irises(self.model, self.image)
        self.mouth = Mouth(self.model, self.image, config)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of its frames."""
        return self.config.size, self.config.size

    def vertices(self, expression: np.ndarray, head_pose: np.ndarray):
        """(warp vertices (V, 3), posed landmarks (478, 3)) of one frame."""
        return self.warp.vertices(expression, head_pose)

    def warp_map(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward map (size, size) x and y into the reference photo."""
        return self.warp.warp_map(verts)

    def render(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """One frame (size, size, 3) uint8 RGB."""
        verts, posed = self.warp.vertices(expression, head_pose)
        box, mx, my = self.warp.moving_map(verts)
        # fixed-point maps: remap runs about a third faster and the conversion is cheap
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        frame = self.irises.eyeballs.copy()  # outside the box nothing moves
        frame[box] = cv2.remap(self.irises.eyeballs, m1, m2, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        self.irises.paint(frame, expression, head_pose, posed)
        self.mouth.paint(frame, posed)
        return frame


@dataclass(frozen=True)
class PhotoFraming:
    """Whole-photo framing: each photo keeps its aspect ratio and is scaled so that its
    `side` ("height" or "width") is `pixels` long (the other side rounded to an even
    number of pixels, as H.264 wants)."""
    side: str = "height"
    pixels: int = 512

    def shape(self, photo_shape: tuple) -> tuple[int, int]:
        """(height, width) of a photo of `photo_shape` in the video."""
        h, w = photo_shape[:2]
        if self.side == "height":
            return self.pixels, max(2, 2 * int(round(w * self.pixels / h / 2)))
        return max(2, 2 * int(round(h * self.pixels / w / 2))), self.pixels


class PhotoRenderer:
    """Renders one person as the whole photo: `render(expression, head_pose)` -> (height,
    width, 3) with the photo scaled by `framing` and the animated face pasted back in.

    Only a square region around the face is warped (at its own pixels, so the cost
    follows the face's size, not the photo's); the rest of every frame is the photo
    itself. The warp keeps a band along the region's edges still, and the paste fades
    the render in across that band, so the region's edge never shows, even when the
    head moves."""

    REGION_FACES = 2.6   # region side, in face sizes: room for the rings and the neck
    MIN_WORK = 128       # smaller regions are warped at this size and scaled back

    def __init__(self, image: np.ndarray, landmarks: np.ndarray,
                 framing: PhotoFraming = PhotoFraming(),
                 config: RenderConfig = RenderConfig(),
                 model_config: ModelConfig = ModelConfig()):
        H, W = image.shape[:2]
        h, w = framing.shape(image.shape)
        sx, sy = w / W, h / H
        if (h, w) != (H, W):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if sx < 1
                               else cv2.INTER_CUBIC)
        self.image = np.ascontiguousarray(image)
        points = np.asarray(landmarks, np.float64) * [sx, sy, sx]
        oval = points[list(lm.FACE_OVAL), :2]
        extent = float(np.ptp(oval, axis=0).max())
        side = min(2 * int(np.ceil(self.REGION_FACES * extent / 2)), 2 * (min(h, w) // 2))
        cx, cy = points[:, 0].mean(), points[:, 1].mean()
        x0 = int(np.clip(round(cx - side / 2), 0, w - side))
        y0 = int(np.clip(round(cy - side / 2), 0, h - side))
        self.region = (x0, y0, side)
        work = max(side, self.MIN_WORK)
        self.face = FaceRenderer(self.image[y0:y0 + side, x0:x0 + side],
                                 points - [x0, y0, 0], replace(config, size=work), model_config)
        self.model = self.face.model
        self.covers_photo = (side, side) == (h, w)
        # Fade-in weights of the render: 0 on the region's edge, 1 inside the still band.
        # A side on the photo's own edge needs no fade: there is no photo beyond it.
        ramp = max(2.0, 0.75 * config.border_margin * side)
        edge = np.arange(side, dtype=np.float32)
        towards = [edge if x0 > 0 else np.full(side, np.inf, np.float32),
                   edge[::-1] if x0 + side < w else np.full(side, np.inf, np.float32),
                   edge if y0 > 0 else np.full(side, np.inf, np.float32),
                   edge[::-1] if y0 + side < h else np.full(side, np.inf, np.float32)]
        distance = np.minimum(np.minimum(towards[2], towards[3])[:, None],
                              np.minimum(towards[0], towards[1])[None, :])
        self.weight = np.ascontiguousarray(smoothstep((distance - 1.0) / ramp), np.float32)
        # Only the band along the region's edges is blended per frame (inside it the render
        # is copied as is): its strips, their weights and the photo under them, cut once.
        band = int(np.ceil(ramp + 1.0))
        t, b = (band if y0 > 0 else 0), (band if y0 + side < h else 0)
        l, r = (band if x0 > 0 else 0), (band if x0 + side < w else 0)
        self._inside = (slice(t, side - b), slice(l, side - r))
        strips = [(slice(0, t), slice(0, side)), (slice(side - b, side), slice(0, side)),
                  (slice(t, side - b), slice(0, l)), (slice(t, side - b), slice(side - r, side))]
        photo = self.image[y0:y0 + side, x0:x0 + side]
        self._strips = [(rows, cols, np.ascontiguousarray(self.weight[rows, cols]),
                         np.ascontiguousarray(1.0 - self.weight[rows, cols]),
                         np.ascontiguousarray(photo[rows, cols]))
                        for rows, cols in strips
                        if rows.stop > rows.start and cols.stop > cols.start]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of its frames."""
        return self.image.shape[:2]

    def render(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """One frame (height, width, 3) uint8 RGB: the photo with the face moved."""
        face = self.face.render(expression, head_pose)
        x0, y0, side = self.region
        if face.shape[0] != side:
            face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        if self.covers_photo:
            return face
        frame = self.image.copy()
        region = frame[y0:y0 + side, x0:x0 + side]
        region[self._inside] = face[self._inside]
        for rows, cols, weight, photo_weight, photo in self._strips:
            region[rows, cols] = cv2.blendLinear(np.ascontiguousarray(face[rows, cols]), photo,
                                                 weight, photo_weight)
        return frame


@contextlib.contextmanager
def one_render_thread():
    """OpenCV on one thread while frames render (its thread count is per process).
    On images this small its thread pool costs more than it saves: a frame of two faces
    took 14 ms of CPU with it and 10 ms without, at about the same wall time, and that
    CPU is better spent by the joint model and the encoder running alongside."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def load_renderers(refs: list[str], config: RenderConfig,
                   framing: PhotoFraming | None = None, landmarks: dict | None = None) -> list:
    """One renderer per reference photo (errors name the photo): a FaceRenderer (the
    square face crop, `config.size`) or, with `framing`, a PhotoRenderer (the whole
    photo). `landmarks`: {photo: points (478, 3)} already found (by the render worker,
    `avgen.face.worker`); the others are found here."""
    renderers = []
    for ref in refs:
        image = lm.read_image(ref)
        points = (landmarks or {}).get(str(ref))
        if points is None:
            points = lm.detect_image(image, ref)
        renderers.append(FaceRenderer(image, points, config) if framing is None
                         else PhotoRenderer(image, points, framing, config))
    return renderers


class RendererCache:
    """Renderers by reference photo, for many videos from the same photos (a batch).

    Setting a renderer up (face mesh on the photo, triangulation, iris cut-outs) costs far
    more than one frame. Keyed on the resolved path with its size and mtime, so an edited
    photo is seen afresh; a renderer keeps no per-video state, so reuse is exact."""

    def __init__(self, config: RenderConfig = RenderConfig(), capacity: int = 16) -> None:
        from avgen.formats import FileCache

        self.config = config
        self._cache = FileCache(capacity)  # a renderer holds a few MB of images and maps

    def get(self, refs: list[str], framing: PhotoFraming | None = None,
            landmarks: dict | None = None) -> list:
        """One renderer per photo (errors name the photo, as `load_renderers`, which
        `landmarks` is passed to)."""
        from pathlib import Path

        from avgen.errors import InputError

        out = []
        for ref in refs:
            if not Path(ref).is_file():
                raise InputError("no such file", str(ref))
            out.append(self._cache.get(
                ref, lambda: load_renderers([ref], self.config, framing, landmarks)[0],
                (framing,)))
        return out

    def missing(self, refs: list[str], framing: PhotoFraming | None = None) -> list[str]:
        """The photos `get` would set a renderer up for (not kept, or changed since)."""
        return [ref for ref in refs if not self._cache.has(ref, (framing,))]
