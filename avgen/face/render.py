"""Photo + motion -> frames of one person: `FaceRenderer` puts the pieces together.

The photo is warped so its landmarks follow the motion (`avgen.face.geometry`), then what a
warp cannot show is painted over it (`avgen.face.paint`: the irises where the gaze puts
them, the open mouth's interior). Whole videos (timing, layout, the MP4) are
`avgen.face.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avgen.face import landmarks as lm
from avgen.face.geometry import Warp, square_crop
from avgen.face.model import FaceModel, ModelConfig
from avgen.face.paint import Irises, Mouth


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
    teeth_rgb: tuple = (236, 222, 196)
    cavity_rgb: tuple = (92, 34, 36)
    tongue_rgb: tuple = (178, 86, 90)


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

    def vertices(self, expression: np.ndarray, head_pose: np.ndarray):
        """(warp vertices (V, 3), posed landmarks (478, 3)) of one frame."""
        return self.warp.vertices(expression, head_pose)

    def warp_map(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward map (size, size) x and y into the reference photo."""
        return self.warp.warp_map(verts)

    def render(self, expression: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
        """One frame (size, size, 3) uint8 RGB."""
        verts, posed = self.warp.vertices(expression, head_pose)
        mx, my = self.warp.warp_map(verts)
        # fixed-point maps: remap runs about a third faster and the conversion is cheap
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        frame = cv2.remap(self.irises.eyeballs, m1, m2, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        self.irises.paint(frame, expression, head_pose, posed)
        self.mouth.paint(frame, posed)
        return frame


def load_renderers(refs: list[str], config: RenderConfig) -> list[FaceRenderer]:
    """One renderer per reference photo (errors name the photo)."""
    renderers = []
    for ref in refs:
        image = lm.read_image(ref)
        renderers.append(FaceRenderer(image, lm.detect_image(image, ref), config))
    return renderers


class RendererCache:
    """Renderers by reference photo, for many videos from the same photos (a batch).

    Setting a renderer up (face mesh on the photo, triangulation, iris cut-outs) costs far
    more than one frame. Keyed on the resolved path with its size and mtime, so an edited
    photo is seen afresh; a renderer keeps no per-video state, so reuse is exact."""

    def __init__(self, config: RenderConfig = RenderConfig(), capacity: int = 16) -> None:
        from collections import OrderedDict

        self.config = config
        self.capacity = capacity  # a renderer holds a few MB of images and maps
        self._cache: OrderedDict = OrderedDict()

    def get(self, refs: list[str]) -> list[FaceRenderer]:
        """One renderer per photo (errors name the photo, as `load_renderers`)."""
        from pathlib import Path

        from avgen.errors import InputError

        out = []
        for ref in refs:
            path = Path(ref)
            if not path.is_file():
                raise InputError("no such file", str(ref))
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if key not in self._cache:
                self._cache[key] = load_renderers([ref], self.config)[0]
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        return out
