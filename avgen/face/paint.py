"""Painting over the warped photo: what a warp of the photo cannot show.

The open mouth is painted over with a cavity, teeth and tongue (or the photo's own upper
teeth, when its mouth shows them); lips closing over a photo whose mouth was open get lip
colour where they meet. Blinks need no paint (the lid is warped down over the eye); each
iris is cut out of the photo once (the eyeball behind it inpainted) and pasted where the
gaze puts it, clipped to the current lids.
"""

from __future__ import annotations

import cv2
import numpy as np

from avgen.face import landmarks as lm
from avgen.face.geometry import chaikin
from avgen.smoothing import smoothstep

_EYES = (lm.LEFT_EYE, lm.RIGHT_EYE)


class Irises:
    """Both irises of one photo (`image`, in the pixels of the face model `model`):
    `eyeballs` is the photo with the irises taken out; `paint` puts them back where the
    gaze and the head put them."""

    @staticmethod
    def _eye_outline(points: np.ndarray, eye: dict) -> np.ndarray:
        return np.concatenate([points[[eye["outer"]], :2], points[list(eye["upper"]), :2],
                               points[[eye["inner"]], :2], points[list(eye["lower"])[::-1], :2]])

    def __init__(self, model, image: np.ndarray) -> None:
        self.model = model
        p = model.neutral
        h, w = image.shape[:2]
        hole = np.zeros((h, w), np.uint8)
        self._irises = []
        for eye in _EYES:
            centre = p[eye["iris"], :2]
            radius = float(np.linalg.norm(p[list(eye["iris_ring"]), :2] - centre, axis=1).mean())
            half = int(np.ceil(radius)) + 3
            x0, y0 = int(round(centre[0])) - half, int(round(centre[1])) - half
            if radius < 1.5 or x0 < 0 or y0 < 0 or x0 + 2 * half >= w or y0 + 2 * half >= h:
                self._irises.append(None)
                continue
            opening = np.zeros((h, w), np.uint8)
            cv2.fillPoly(opening, [np.round(self._eye_outline(p, eye) * 4).astype(np.int32)],
                         255, lineType=cv2.LINE_AA, shift=2)
            disc = np.zeros((h, w), np.uint8)
            cv2.circle(disc, (int(round(centre[0] * 4)), int(round(centre[1] * 4))),
                       int(round(radius * 4)), 255, -1, lineType=cv2.LINE_AA, shift=2)
            alpha = (disc.astype(np.float32) / 255) * (opening.astype(np.float32) / 255)
            sl = (slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half))
            self._irises.append(dict(
                patch=image[sl].astype(np.float32), alpha=alpha[sl].copy(),
                offset=np.array([x0, y0], np.float64) - centre, eye=eye))
            hole |= ((disc > 0) & (opening > 0)).astype(np.uint8)
        hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))
        self.eyeballs = (cv2.inpaint(image, hole, 3, cv2.INPAINT_TELEA) if hole.any()
                         else image)
        gaze = [self.model.names.index(n) for n in ("gaze_x", "gaze_y")]
        self._gaze_idx = gaze

    def paint(self, frame: np.ndarray, expression: np.ndarray, head_pose: np.ndarray,
                      posed: np.ndarray) -> None:
        """Paste each iris where gaze and head pose put its centre, inside the current
        eye opening (so lids cover it as they close)."""
        m = self.model
        c = np.clip(np.asarray(expression, dtype=np.float64), m.lower, m.upper)
        h, w = frame.shape[:2]
        for iris in self._irises:
            if iris is None:
                continue
            eye = iris["eye"]
            centre = m.neutral[eye["iris"]] + sum(c[k] * m.basis[k, eye["iris"]]
                                                 for k in self._gaze_idx)
            # the iris rides on the head but not on the lids
            centre = m.pose(centre[None], head_pose)[0, :2]
            outline = self._eye_outline(posed, eye)
            lo = np.floor(outline.min(0)).astype(int) - 2
            hi = np.ceil(outline.max(0)).astype(int) + 3
            lo = np.maximum(lo, 0)
            hi = np.minimum(hi, [w, h])
            if (hi - lo).min() < 2:
                continue
            size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
            shift = centre + iris["offset"] - lo
            M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            patch = cv2.warpAffine(iris["patch"], M, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            alpha = cv2.warpAffine(iris["alpha"], M, size, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            opening = np.zeros((size[1], size[0]), np.uint8)
            cv2.fillPoly(opening, [np.round((outline - lo) * 4).astype(np.int32)], 255,
                         lineType=cv2.LINE_AA, shift=2)
            a = (alpha * (opening.astype(np.float32) / 255))[..., None]
            region = frame[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
            frame[lo[1]:hi[1], lo[0]:hi[0]] = np.clip(region * (1 - a) + patch * a + 0.5, 0,
                                                      255).astype(np.uint8)


class Mouth:
    """The mouth interior of one photo (`image` in the pixels of the face model `model`);
    `config` is a `RenderConfig`. Its colours come from the photo: the cavity from its
    darkest lip and inner-mouth pixels, the tongue from its lips, the teeth from its own
    teeth where the mouth shows them, else white in the photo's light and colour cast."""

    def __init__(self, model, image: np.ndarray, config) -> None:
        self.model, self.config, self._photo = model, config, image
        p = model.neutral
        self._ref_gap = self._mouth_gap(p)
        self._strip = self._cut_teeth_strip()
        lips = [0.5 * (p[a, :2] + p[b, :2]) for a, b in ((0, 13), (17, 14), (37, 82), (84, 87))]
        lip_rgb = np.mean([image[int(y), int(x)] for x, y in lips], axis=0)
        self._lip_rgb = np.asarray(lip_rgb, dtype=np.float32)
        self._skin_rgb = self._skin_colour()
        self._teeth_rgb = self._teeth_colour()
        self._cavity_rgb = self._cavity_colour()
        # the tongue: lip-coloured, a little darker (it sits inside, in the lips' shadow)
        self._tongue_rgb = 0.72 * self._lip_rgb.astype(np.float64)

    @staticmethod
    def _luma(rgb: np.ndarray) -> np.ndarray:
        return rgb @ np.array([0.299, 0.587, 0.114])

    def _region(self, polygon: np.ndarray) -> np.ndarray:
        """The photo's pixels (N, 3) float64 inside a polygon."""
        mask = np.zeros(self._photo.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
        return self._photo[mask > 0].astype(np.float64)

    def _skin_colour(self) -> np.ndarray:
        """The face's mid-tone skin: the face-oval pixels between the 40th and 80th
        luminance percentiles (past the shadows, eyes and brows, short of highlights)."""
        pixels = self._region(self.model.neutral[list(lm.FACE_OVAL), :2])
        if len(pixels) < 30:
            return np.array([180.0, 140.0, 120.0])
        luma = self._luma(pixels)
        lo, hi = np.percentile(luma, [40, 80])
        return pixels[(luma >= lo) & (luma <= hi)].mean(0)

    def _cavity_colour(self) -> np.ndarray:
        """The open mouth's inside: the hue of the photo's darkest lip/inner-mouth pixels
        (darkest tenth), at `config.cavity_darkness` of the lips' luminance (at most)."""
        p = self.model.neutral
        outer = np.concatenate([p[list(lm.LIPS_OUTER_UPPER), :2],
                                p[list(lm.LIPS_OUTER_LOWER)[::-1], :2]])
        pixels = self._region(outer)
        if len(pixels) < 10:
            pixels = self._lip_rgb[None].astype(np.float64)
        luma = self._luma(pixels)
        dark = pixels[luma <= np.percentile(luma, 10)].mean(0)
        target = self.config.cavity_darkness * float(self._luma(self._lip_rgb.astype(np.float64)))
        return dark * min(1.0, target / max(float(self._luma(dark)), 1.0))

    def _teeth_colour(self) -> np.ndarray:
        """The photo's own teeth colour if its mouth shows teeth, else painted teeth."""
        p = self.model.neutral
        poly = np.concatenate([p[list(lm.LIPS_INNER_UPPER), :2],
                               p[list(lm.LIPS_INNER_LOWER)[::-1], :2]])
        inside = self._region(poly)
        if len(inside) > 30:
            bright = inside[inside.sum(1) > np.percentile(inside.sum(1), 70)]
            lum = bright.mean(0)
            if lum.mean() > 150 and lum.min() > 110:  # looks like teeth, not lips or a cavity
                return np.clip(lum * 1.02, 0, 255)
        # painted teeth: white in the photo's light, tinted by the skin's colour cast (so
        # a grayscale photo gets grey teeth, a warm one warm teeth)
        skin = self._skin_rgb
        cast = (np.maximum(skin, 1.0) / max(skin.mean(), 1.0)) ** 0.3
        lit = min(self.config.teeth_light * float(self._luma(skin)), 225.0)
        return np.clip(cast * lit / max(float(self._luma(cast)), 1e-6), 0, 255)

    def _cut_teeth_strip(self, columns: int = 96, rows: int = 32):
        """The photo's own upper teeth, if its mouth is open: a strip hanging from the
        upper inner lip, unrolled to (rows, columns) so it can be laid under the upper lip
        of any later mouth shape (real teeth instead of painted ones, and no change of
        look as the mouth opens past the photo's own opening)."""
        W = self.model.width
        if self._ref_gap <= 0.02 * W:
            return None
        p = self.model.neutral
        upper = chaikin(p[list(lm.LIPS_INNER_UPPER), :2])
        lower = chaikin(p[list(lm.LIPS_INNER_LOWER), :2])
        upper, lower = upper[np.argsort(upper[:, 0])], lower[np.argsort(lower[:, 0])]
        x = np.linspace(upper[0, 0], upper[-1, 0], columns)
        yu = np.interp(x, upper[:, 0], upper[:, 1])
        yl = np.interp(x, lower[:, 0], lower[:, 1])
        depth = 0.065 * W
        Y = (yu[None, :] + np.linspace(0, 1, rows)[:, None] * depth).astype(np.float32)
        X = np.broadcast_to(x[None, :], Y.shape).astype(np.float32)
        strip = cv2.remap(self._photo, X, Y, cv2.INTER_LINEAR).astype(np.float32)
        alpha = np.clip((yl[None, :] - Y - 1.0) / 1.5, 0, 1).astype(np.float32)
        return dict(rgb=strip, alpha=alpha, depth=depth, width=upper[-1, 0] - upper[0, 0])

    @staticmethod
    def _mouth_gap(points: np.ndarray) -> float:
        upper = points[list(lm.LIPS_INNER_UPPER)[1:-1], 1]
        lower = points[list(lm.LIPS_INNER_LOWER)[1:-1], 1]
        return float((lower - upper).max())

    def paint(self, frame: np.ndarray, posed: np.ndarray) -> None:
        upper = posed[list(lm.LIPS_INNER_UPPER), :2]
        lower = posed[list(lm.LIPS_INNER_LOWER), :2]
        gap = float((lower[1:-1, 1] - upper[1:-1, 1]).max())
        W = self.model.width
        # fades in as the lips meet (no pop from one frame to the next)
        lip_paint = float(np.clip((0.03 * W - gap) / (0.015 * W), 0.0, 1.0))
        if self._ref_gap > 0.02 * W and lip_paint > 0:
            # Lips closed over a photo whose mouth was open: where they meet, the warp
            # would show the sliver of teeth between the mesh's inner-lip points and the
            # real lip edge. Paint lip over that band and the line where the lips meet.
            up, lo = chaikin(upper), chaikin(lower)
            band = np.concatenate([up - [0, 0.006 * W], (lo + [0, 0.018 * W])[::-1]])
            x0, y0 = np.floor(band.min(0)).astype(int) - 3
            x1, y1 = np.ceil(band.max(0)).astype(int) + 4
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
            if x1 - x0 > 2 and y1 - y0 > 2:
                region = frame[y0:y1, x0:x1].astype(np.float32)
                mask = np.zeros(region.shape[:2], np.float32)
                cv2.fillPoly(mask, [np.round((band - [x0, y0]) * 4).astype(np.int32)], 1.0,
                             lineType=cv2.LINE_AA, shift=2)
                mask = cv2.GaussianBlur(mask, (3, 3), 0)[..., None] * lip_paint
                paint = np.empty_like(region)
                paint[:] = self._lip_rgb
                seam = np.round((chaikin(0.5 * (upper + lower)) - [x0, y0]) * 4).astype(np.int32)
                cv2.polylines(paint, [seam], False, tuple(float(v) for v in 0.6 * self._lip_rgb),
                              thickness=max(1, int(round(0.01 * W))), lineType=cv2.LINE_AA,
                              shift=2)
                region = region * (1 - mask) + paint * mask
                frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        if gap < 0.75:
            return  # closed: nothing of the inside shows
        # A photo that shows its own teeth keeps them (warped) up to its own opening; the
        # painted interior takes over as the mouth opens wider than in the photo.
        strength = 1.0
        if self._ref_gap > 0.02 * W:
            strength = float(np.clip((gap - self._ref_gap) / (0.04 * W), 0.0, 1.0))
            if strength <= 0.0:
                return
        # smooth lip curves (the mesh has 11 points a lip), grown by ~1.5 % of a face width:
        # the inner-lip landmarks sit a little inside the visible lip edge
        upper, lower = chaikin(upper), chaikin(lower)
        mid = np.concatenate([upper, lower]).mean(0)
        grow = 1 + 0.015 * W / max(np.abs(upper - mid).max(), np.abs(lower - mid).max(), 1.0)
        # The lips' inner edge: a band of shaded lip colour a little wider than the
        # opening, over the photo's stretched lip seam (grey or dark where a closed
        # mouth was warped open) that the opening's soft edge would let through.
        reach = max(np.abs(upper - mid).max(), np.abs(lower - mid).max(), 1.0)
        rim = np.concatenate([mid + (upper - mid) * (1 + 0.03 * W / reach),
                              (mid + (lower - mid) * (1 + 0.03 * W / reach))[::-1]])
        upper = mid + (upper - mid) * grow
        lower = mid + (lower - mid) * grow
        poly = np.concatenate([upper, lower[::-1]])
        x0, y0 = np.floor(rim.min(0)).astype(int) - 2
        x1, y1 = np.ceil(rim.max(0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        h, w = y1 - y0, x1 - x0
        # anti-aliased polygon mask at 4x sub-pixel precision
        mask = np.zeros((h, w), np.uint8)
        shifted = np.round((poly - [x0, y0]) * 4).astype(np.int32)
        cv2.fillPoly(mask, [shifted], 255, lineType=cv2.LINE_AA, shift=2)
        mask = cv2.GaussianBlur(mask, (3, 3), 0)  # a soft lip edge, not a cut-out
        alpha = (mask.astype(np.float32) * (strength / 255.0))[..., None]
        rim_mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(rim_mask, [np.round((rim - [x0, y0]) * 4).astype(np.int32)], 255,
                     lineType=cv2.LINE_AA, shift=2)
        rim_alpha = cv2.GaussianBlur(rim_mask, (5, 5), 0).astype(np.float32)[..., None] * (
            strength / 255.0)
        xs = np.arange(x0, x1, dtype=np.float64) + 0.5
        ys = (np.arange(y0, y1, dtype=np.float64) + 0.5)[:, None]
        ou = np.argsort(upper[:, 0])
        ol = np.argsort(lower[:, 0])
        yu = np.interp(xs, upper[ou, 0], upper[ou, 1])[None, :]
        yl = np.interp(xs, lower[ol, 0], lower[ol, 1])[None, :]
        left, right = upper[0, 0], upper[-1, 0]
        centre = 0.5 * (left + right)
        half = max(0.5 * abs(right - left), 1.0)
        across = np.clip(1 - np.abs(xs - centre) / half, 0, 1)[None, :]  # 1 mid, 0 corner
        opening = np.clip(yl - yu, 0, None)
        depth = np.clip((ys - yu) / np.maximum(opening, 1), 0, 1)
        cavity = self._cavity_rgb
        # darker towards the throat (the middle of the opening) and, softly, the corners
        corner = smoothstep(across / 0.4)  # 0 at a corner, 1 from 40 % inwards
        shade = (0.35 + 0.65 * corner) * (1.0 - 0.5 * np.sin(np.pi * depth) ** 2)
        out = cavity * shade[..., None]
        # the tongue: a soft hump resting on the lower teeth, seen when the jaw is open
        tongue_top = yl - np.clip(opening * 0.45, 0, 0.07 * W) * np.sqrt(across)
        t_alpha = np.clip((ys - tongue_top) / np.maximum(0.3 * (yl - tongue_top), 1), 0, 1)
        tongue = self._tongue_rgb * ((0.55 + 0.35 * across) * (0.5 + 0.5 * corner))[..., None]
        out = out * (1 - t_alpha[..., None]) + tongue * t_alpha[..., None]
        teeth = self._teeth_rgb
        # upper incisors, shorter towards the corners; a slightly open mouth shows their
        # edge with dark cavity below (not a band of teeth from lip to lip)
        profile = 0.3 + 0.7 * corner   # even along the front, tapering into the corners
        up_h = np.minimum(0.06 * W, 0.4 * opening) * profile
        lo_h = np.minimum(0.025 * W, 0.15 * opening) * profile
        in_up = (ys >= yu) & (ys < yu + up_h)
        in_lo = (ys <= yl) & (ys > yl - lo_h) & ~in_up
        # a shadow right under the lips, between teeth and into the corners
        toothw = 0.05 * W
        seam = np.abs(((xs - centre) / toothw + 0.5) % 1.0 - 0.5)[None, :]
        seam_shade = np.where(seam < 0.04, 0.93, 1.0)
        t_up = (ys - yu) / np.maximum(up_h, 1)
        shade_up = (0.4 + 0.6 * corner) * (0.7 + 0.3 * np.clip(t_up * 3, 0, 1)) * seam_shade
        t_lo = (yl - ys) / np.maximum(lo_h, 1)
        shade_lo = (0.35 + 0.5 * corner) * (0.7 + 0.3 * np.clip(t_lo * 3, 0, 1)) * seam_shade
        out = np.where(in_lo[..., None], teeth * shade_lo[..., None], out)
        strip = self._strip
        if strip is None:
            # painted upper teeth with a soft bottom edge
            edge = np.clip((yu + up_h - ys) / 1.5, 0, 1)
            up_a = (in_up * edge)[..., None]
            out = out * (1 - up_a) + teeth * shade_up[..., None] * up_a
        else:
            # the photo's own upper teeth, laid along the current upper lip
            rows, cols = strip["alpha"].shape
            scale = (right - left) / max(strip["width"], 1.0)
            v = (ys - yu) / (strip["depth"] * scale)
            u = np.broadcast_to((xs[None, :] - left) / max(right - left, 1.0), v.shape)
            mx = (u * (cols - 1)).astype(np.float32)
            my = (v * (rows - 1)).astype(np.float32)
            rgb = cv2.remap(strip["rgb"], mx, my, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
            a = cv2.remap(strip["alpha"], mx, my, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)[..., None]
            out = out * (1 - a) + rgb * a
        region = frame[y0:y1, x0:x1].astype(np.float32)
        region = region * (1 - rim_alpha) + (0.8 * self._lip_rgb) * rim_alpha
        region = region * (1 - alpha) + out.astype(np.float32) * alpha
        frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
