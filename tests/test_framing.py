"""Whole-photo framing: any photo size and aspect, the face pasted back seamlessly, layouts
(side by side, stacked, one MP4 per person), the square face crop on request."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from avgen.constants import EXPRESSION_NAMES
from avgen.errors import InputError
from avgen.face import landmarks as lm
from avgen.face.frames import VideoConfig, VideoFrames, output_paths, render_video
from avgen.face.motion import Motion
from avgen.face.render import (FaceRenderer, PhotoFraming, PhotoRenderer, RenderConfig,
                               load_renderers)
from avgen.face.rotations import quaternion_from_degrees

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def coeffs(**values):
    c = np.zeros(len(EXPRESSION_NAMES))
    for name, value in values.items():
        c[EXPRESSION_NAMES.index(name)] = value
    return c


def pose(yaw=0.0, pitch=0.0, x=0.0):
    q = quaternion_from_degrees(yaw, pitch)
    return np.concatenate([q, [x, 0.0, 0.0]])


def backdrop(face: np.ndarray, height: int, width: int, x: int, y: int) -> np.ndarray:
    """`face` placed on a smooth colour gradient of (height, width): a wider shot."""
    yy, xx = np.mgrid[0:height, 0:width]
    canvas = np.stack([60 + 100 * xx / width, 90 + 60 * yy / height,
                       140 - 50 * xx / width], -1).astype(np.uint8)
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
    return canvas


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Photo files of odd sizes and kinds made from the examples: a landscape shot, a tall
    portrait (JPEG), grayscale and RGBA PNGs."""
    root = tmp_path_factory.mktemp("photos")
    grace = cv2.imread(str(EXAMPLES / "grace.png"))
    eileen = cv2.imread(str(EXAMPLES / "eileen.png"))
    cv2.imwrite(str(root / "landscape.png"), backdrop(cv2.resize(grace, (301, 301)), 421, 903,
                                                      455, 97))
    cv2.imwrite(str(root / "portrait.jpg"), backdrop(cv2.resize(eileen, (262, 262)), 701, 333,
                                                     41, 60))
    cv2.imwrite(str(root / "gray.png"), cv2.cvtColor(grace, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(eileen, cv2.COLOR_BGR2BGRA)
    rgba[:40, :, 3] = 0
    rgba[:40, :, :3] = 0   # hidden colour under transparent pixels
    cv2.imwrite(str(root / "rgba.png"), rgba)
    return {name: root / f"{name}.{ext}" for name, ext in
            (("landscape", "png"), ("portrait", "jpg"), ("gray", "png"), ("rgba", "png"))}


@pytest.fixture(scope="module")
def detected(photos):
    out = {}
    for name, path in photos.items():
        image = lm.read_image(path)
        out[name] = (image, lm.detect_image(image, str(path)))
    return out


def test_any_photo_kind_is_read_as_rgb(photos, detected):
    for name, (image, points) in detected.items():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, name
        assert points.shape == (478, 3), name
    gray = detected["gray"][0]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # transparent pixels show over white, not the colour hidden under them
    assert (detected["rgba"][0][:40] == 255).all()


def test_face_of_a_tall_portrait_is_found(detected):
    image, points = detected["portrait"]
    # the face was pasted at (41, 60), 262 px wide: its landmarks are there
    assert 41 < points[:, 0].min() and points[:, 0].max() < 41 + 262
    assert 60 < points[:, 1].min() and points[:, 1].max() < 60 + 262


@pytest.mark.parametrize("side", ["height", "width"])
def test_frame_sizes_keep_the_aspect_and_are_even(detected, side):
    for name, (image, points) in detected.items():
        framing = PhotoFraming(side, 250)
        renderer = PhotoRenderer(image, points, framing)
        frame = renderer.render(coeffs(), pose())
        h, w = frame.shape[:2]
        assert (h, w) == renderer.shape == framing.shape(image.shape), name
        assert h % 2 == 0 and w % 2 == 0, name
        assert (h if side == "height" else w) == 250, name
        assert abs(w / h - image.shape[1] / image.shape[0]) < 2.5 / min(h, w), name


def test_face_moves_and_the_rest_of_the_photo_is_the_photo(detected):
    image, points = detected["landscape"]
    renderer = PhotoRenderer(image, points, PhotoFraming("height", 360))
    x0, y0, side = renderer.region
    h, w = renderer.shape
    assert side < min(h, w) and renderer.shape == (360, 772)  # the region is a part
    frame = renderer.render(coeffs(jaw_open=1.0, smile_left=0.5), pose(yaw=15, pitch=8))
    outside = np.ones((h, w), bool)
    outside[y0:y0 + side, x0:x0 + side] = False
    assert (frame[outside] == renderer.image[outside]).all()
    # ... while the face itself changed a lot
    face = renderer.face.model.neutral
    fx0, fy0 = (face[:, :2].min(0) + [x0, y0]).astype(int)
    fx1, fy1 = (face[:, :2].max(0) + [x0, y0]).astype(int)
    changed = np.abs(frame[fy0:fy1, fx0:fx1].astype(int) - renderer.image[fy0:fy1, fx0:fx1])
    assert (changed.max(-1) > 40).mean() > 0.2


def test_no_seam_at_the_edge_of_the_pasted_region(detected):
    """Across the band where the render fades into the photo, the frame stays the photo
    (the warp keeps that band still), so no edge can show even as the head moves."""
    image, points = detected["landscape"]
    renderer = PhotoRenderer(image, points, PhotoFraming("height", 360))
    x0, y0, side = renderer.region
    band = max(3, int(0.75 * renderer.face.config.border_margin * side))
    for head in (pose(), pose(yaw=25), pose(pitch=-15, x=0.08)):
        frame = renderer.render(coeffs(jaw_open=0.8), head).astype(int)
        region = np.abs(frame - renderer.image.astype(int))[y0:y0 + side, x0:x0 + side]
        ring = np.ones((side, side), bool)
        ring[band:-band, band:-band] = False
        assert region[ring].max() <= 2, head


def test_tiny_face_region_is_rendered(detected):
    """A portrait framed small gives a face region under the renderer's working size:
    warped larger and scaled back, same frame size."""
    image, points = detected["portrait"]
    renderer = PhotoRenderer(image, points, PhotoFraming("height", 200))
    assert renderer.region[2] < PhotoRenderer.MIN_WORK
    frame = renderer.render(coeffs(jaw_open=1.0), pose(yaw=10))
    assert frame.shape == (200, 96, 3)


def test_rendering_is_deterministic(detected):
    image, points = detected["landscape"]
    a = PhotoRenderer(image, points, PhotoFraming("height", 300))
    b = PhotoRenderer(image, points, PhotoFraming("height", 300))
    c, p = coeffs(jaw_open=0.7, eye_blink_left=0.5), pose(yaw=-12)
    assert np.array_equal(a.render(c, p), b.render(c, p))


def test_layout_sizes(photos):
    refs = [str(photos["landscape"]), str(photos["portrait"])]
    motion = Motion((np.tile(pose(), (5, 1)),) * 2,
                    (np.zeros((5, len(EXPRESSION_NAMES))),) * 2)
    # 903x421 and 333x701 photos: 644x300 and 142x300 at a common height, 300x140 and
    # 300x632 at a common width
    for layout, size, want in (("side", 300, [(644 + 142, 300)]),
                               ("stacked", 300, [(300, 140 + 632)]),
                               ("single", 300, [(644, 300), (142, 300)])):
        config = VideoConfig(size=size, layout=layout)
        renderers = load_renderers(refs, RenderConfig(size=size), config.framing)
        frames = VideoFrames(motion, renderers, config)
        assert frames.sizes() == want, layout
        pictures = next(iter(frames))
        assert [p.shape[1::-1] for p in pictures] == want, layout
    # the square face crop: every person a square of `size`
    config = VideoConfig(size=128, layout="side", crop="face")
    assert config.framing is None
    renderers = load_renderers(refs, RenderConfig(size=128), None)
    assert all(isinstance(r, FaceRenderer) for r in renderers)
    assert VideoFrames(motion, renderers, config).sizes() == [(256, 128)]


def test_single_layout_writes_one_mp4_per_person(tmp_path):
    from avgen.video import read_video

    frames = 6
    motion = Motion((np.tile(pose(), (frames * 4, 1)),) * 2,
                    (np.zeros((frames * 4, len(EXPRESSION_NAMES))),) * 2)
    refs = [str(EXAMPLES / "eileen.png"), str(EXAMPLES / "grace.png")]
    output = tmp_path / "talk.mp4"
    audio = np.zeros(22050, np.float32)
    render_video(motion, refs, str(output), audio=audio,
                 config=VideoConfig(size=128, layout="single"), progress=False)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["talk-1.mp4", "talk-2.mp4"]  # and no temp files left
    assert output_paths(output, "single", 2) == [tmp_path / "talk-1.mp4",
                                                  tmp_path / "talk-2.mp4"]
    for path in output_paths(output, "single", 2):
        fps, pictures, _ = read_video(path)
        assert next(iter(pictures)).shape == (128, 128, 3)


def test_bad_video_settings_are_one_line_errors():
    with pytest.raises(InputError, match="^--layout: 'diagonal' is not a layout; use side, "
                       "stacked, single$"):
        VideoConfig(layout="diagonal")
    with pytest.raises(InputError, match="^--crop: 'chin' is not a framing; use photo or face$"):
        VideoConfig(crop="chin")
    with pytest.raises(InputError, match="^--size: 101 is odd"):
        VideoConfig(size=101)
    assert VideoConfig(layout="side-by-side").layout == "side"


# -- mouth interior -------------------------------------------------------------------------
def mouth_pixels(renderer, frame, c, head):
    """Pixels (N, 3) inside the open mouth (inner-lip polygon) of a rendered frame."""
    posed = renderer.model.posed(c, head)
    poly = np.concatenate([posed[list(lm.LIPS_INNER_UPPER), :2],
                           posed[list(lm.LIPS_INNER_LOWER)[::-1], :2]])
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return frame[mask > 0].astype(float)


def luma(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("name", ["grace", "eileen"])
def test_open_mouth_shows_a_cavity_darker_than_the_lips(name):
    image = lm.read_image(EXAMPLES / f"{name}.png")
    renderer = FaceRenderer(image, lm.detect_image(image, name))
    c, head = coeffs(jaw_open=0.8), pose()
    frame = renderer.render(c, head)
    inside = luma(mouth_pixels(renderer, frame, c, head))
    p = renderer.model.neutral
    lips = luma(np.array([renderer.image[int(y), int(x)] for x, y in
                          p[list(lm.LIPS_OUTER_LOWER[2:-2]), :2] * 0.5
                          + p[list(lm.LIPS_INNER_LOWER[2:-2]), :2] * 0.5], float))
    # a good part of the opening is cavity, well below the lips' brightness
    assert np.percentile(inside, 30) < 0.5 * lips.mean(), name
    assert inside.min() < 0.3 * lips.mean(), name


def test_mouth_colours_come_from_the_photo():
    """A grayscale photo gets a grey mouth (no painted red cavity or ivory teeth); a warm
    photo gets a reddish cavity."""
    gray = cv2.cvtColor(cv2.imread(str(EXAMPLES / "grace.png")), cv2.COLOR_BGR2GRAY)
    image = np.repeat(gray[..., None], 3, axis=2)
    renderer = FaceRenderer(image, lm.detect_image(image, "gray"))
    c, head = coeffs(jaw_open=0.6), pose()
    inside = mouth_pixels(renderer, renderer.render(c, head), c, head)
    assert np.abs(inside - inside.mean(1, keepdims=True)).max() <= 3
    colour = lm.read_image(EXAMPLES / "grace.png")
    renderer = FaceRenderer(colour, lm.detect_image(colour, "grace"))
    cavity = renderer.mouth._cavity_rgb
    assert cavity[0] > 2 * cavity[2] and luma(cavity) < 0.5 * luma(renderer.mouth._lip_rgb)


def test_cli_render_framings_and_layouts(tmp_path, photos):
    """`avgen render`: the whole photos by default (a landscape and a tall portrait side by
    side at --size height), --layout single (two files), --crop face (squares); a bad value
    is a usage error naming the option, and nothing is written."""
    import subprocess
    import sys

    from avgen.face.motion import save_motion
    from avgen.face.sequence import scripted_motion
    from avgen.video import read_video

    save_motion(tmp_path / "two.npz", scripted_motion(0.4, people=2))
    refs = ["--ref", str(photos["landscape"]), str(photos["portrait"])]

    def render(*extra):
        return subprocess.run([sys.executable, "-m", "avgen", "render", str(tmp_path / "two.npz"),
                               *refs, *extra], capture_output=True, text=True)

    assert render("--size", "100", "-o", str(tmp_path / "a.mp4")).returncode == 0
    # 903x421 -> 214x100 and 333x701 -> 48x100 (even widths)
    assert next(read_video(tmp_path / "a.mp4")[1]).shape == (100, 214 + 48, 3)
    result = render("--size", "100", "--layout", "single", "-o", str(tmp_path / "b.mp4"))
    assert result.returncode == 0, result.stderr
    assert [next(read_video(tmp_path / f"b-{k}.mp4")[1]).shape for k in (1, 2)] == [
        (100, 214, 3), (100, 48, 3)]
    assert render("--size", "64", "--crop", "face", "--layout", "stacked", "-o",
                  str(tmp_path / "c.mp4")).returncode == 0
    assert next(read_video(tmp_path / "c.mp4")[1]).shape == (128, 64, 3)
    bad = render("--crop", "chin", "-o", str(tmp_path / "d.mp4"))
    assert bad.returncode == 2 and "'--crop'" in bad.stderr and "'chin'" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.mp4", "b-1.mp4", "b-2.mp4", "c.mp4", "two.npz"]
