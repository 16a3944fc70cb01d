"""Mouth interior before/after: contact sheets of the open mouth painted on four photos,
rendered by an earlier avgen checkout (before) and by this one (after).

    git worktree add /tmp/avgen-before 16f0309
    python benchmarks/mouth.py --before /tmp/avgen-before
        # -> benchmarks/results/mouth_<photo>.png and benchmarks/results/mouth.md

Photos: the two examples (Eileen's shows her teeth, Grace's mouth is closed), the whole
Grace Hopper portrait matplotlib ships (closed mouth, 512x600, public domain) and an
open-mouth photo made from examples/grace.png (this checkout renders her with the jaw
open; both checkouts then animate that picture). Each sheet: one row per checkout, one
column per mouth shape, zoomed on the mouth, plus the whole face at the last column.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TILE = 120

# (label, coefficients, yaw) of the mouth shapes shown
SHAPES = (
    ("closed", {}, 0),
    ("jaw 0.2", {"jaw_open": 0.2}, 0),
    ("jaw 0.45", {"jaw_open": 0.45}, 0),
    ("jaw 0.8", {"jaw_open": 0.8}, 0),
    ("oh", {"lips_funnel": 0.7, "jaw_open": 0.35}, 0),
    ("smile + talk", {"smile_left": 0.8, "smile_right": 0.8, "jaw_open": 0.35}, 0),
    ("turn 20 + jaw 0.5", {"jaw_open": 0.5}, 20),
)


def photos(work: Path) -> dict[str, Path]:
    """The four photos; the open-mouth one is made with this checkout."""
    import matplotlib

    out = {"eileen": ROOT / "examples" / "eileen.png", "grace": ROOT / "examples" / "grace.png",
           "hopper_whole": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}
    open_mouth = work / "grace_open.png"
    frame = render_tiles(str(ROOT), {"grace": out["grace"]}, [("open", {"jaw_open": 0.55}, 0)],
                         whole=True)["grace"][0]
    cv2.imwrite(str(open_mouth), frame[:, :, ::-1])
    out["open_mouth"] = open_mouth
    return out


def render_tiles(repo: str, refs: dict, shapes, whole: bool = False, with_stats: bool = False):
    """{photo: [tile per shape (+ the whole face)]} rendered by the avgen at `repo`."""
    sys.path.insert(0, repo)
    from avgen.constants import EXPRESSION_NAMES
    from avgen.face import landmarks as lm
    from avgen.face.render import FaceRenderer
    try:
        from avgen.face.rotations import quaternion_from_degrees
    except ImportError:  # checkouts before the rotations moved
        from avgen.motion import quaternion_from_degrees

    out, stats = {}, {}
    for name, path in refs.items():
        image = lm.read_image(path)
        renderer = FaceRenderer(image, lm.detect_image(image, str(path)))
        tiles = []
        for _, values, yaw in shapes:
            c = np.zeros(len(EXPRESSION_NAMES))
            for key, value in values.items():
                c[EXPRESSION_NAMES.index(key)] = value
            head = np.concatenate([quaternion_from_degrees(yaw, 0.0), [0.0, 0.0, 0.0]])
            frame = renderer.render(c, head)
            if whole:
                tiles.append(frame)
                continue
            lips = renderer.model.posed(c, head)[list(lm.LIPS_OUTER_UPPER + lm.LIPS_OUTER_LOWER),
                                                 :2]
            cx, cy = lips.mean(0)
            half = 0.75 * np.ptp(lips[:, 0])
            x0, y0 = int(cx - half), int(cy - 0.75 * half)
            crop = frame[max(y0, 0):y0 + int(1.5 * half), max(x0, 0):x0 + int(2 * half)]
            tiles.append(cv2.resize(crop, (TILE, int(TILE * 0.75)), interpolation=cv2.INTER_AREA))
        c = np.zeros(len(EXPRESSION_NAMES))
        c[EXPRESSION_NAMES.index("jaw_open")] = 0.45
        frame = renderer.render(c, np.array([1.0, 0, 0, 0, 0, 0, 0]))
        stats[name] = opening_stats(renderer, frame, c, lm)
        tiles.append(cv2.resize(frame, (int(TILE * 0.75), int(TILE * 0.75)),
                                interpolation=cv2.INTER_AREA))
        out[name] = tiles
    sys.path.remove(repo)
    return (out, stats) if with_stats else out


def opening_stats(renderer, frame, c, lm) -> dict:
    """Luminance of the open mouth (inner-lip polygon; median and darkest tenth) and of
    the lips in the photo, and the interior's mean colour."""
    posed = renderer.model.posed(c, np.array([1.0, 0, 0, 0, 0, 0, 0]))
    poly = np.concatenate([posed[list(lm.LIPS_INNER_UPPER), :2],
                           posed[list(lm.LIPS_INNER_LOWER)[::-1], :2]])
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    inside = frame[mask > 0].astype(float)
    weights = np.array([0.299, 0.587, 0.114])
    p = renderer.model.neutral
    lips = np.array([renderer.image[int(y), int(x)] for x, y in
                     0.5 * (p[list(lm.LIPS_OUTER_LOWER[2:-2]), :2]
                            + p[list(lm.LIPS_INNER_LOWER[2:-2]), :2])], float)
    return {"median": float(np.median(inside @ weights)),
            "dark10": float(np.percentile(inside @ weights, 10)),
            "lips": float((lips @ weights).mean()),
            "rgb": [int(round(v)) for v in inside.mean(0)]}


def label(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((16, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image])


def sheet(rows: dict[str, list[np.ndarray]]) -> np.ndarray:
    lines = []
    for row_name, tiles in rows.items():
        cells = [label(t, f"{row_name}: {SHAPES[k][0]}" if k < len(SHAPES) else "jaw 0.45")
                 for k, t in enumerate(tiles)]
        height = max(c.shape[0] for c in cells)
        cells = [np.pad(c, ((0, height - c.shape[0]), (0, 2), (0, 0)), constant_values=255)
                 for c in cells]
        lines.append(np.concatenate(cells, 1))
    return np.concatenate(lines, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="checkout of the earlier avgen")
    parser.add_argument("--render", help=argparse.SUPPRESS)  # internal: repo to render with
    parser.add_argument("--refs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render:  # one checkout, in its own process (two avgen packages cannot share one)
        tiles, stats = render_tiles(args.render, json.loads(args.refs), SHAPES,
                                    with_stats=True)
        np.savez(args.out, stats=json.dumps(stats), **{
            f"{name}/{k}": t for name, ts in tiles.items() for k, t in enumerate(ts)})
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        refs = {name: str(path) for name, path in photos(work).items()}
        rendered, stats = {}, {}
        for which, repo in (("before", args.before), ("after", str(ROOT))):
            out = work / f"{which}.npz"
            subprocess.run([sys.executable, __file__, "--before", args.before, "--render", repo,
                            "--refs", json.dumps(refs), "--out", str(out)], check=True)
            with np.load(out) as npz:
                rendered[which] = {name: [npz[f"{name}/{k}"] for k in range(len(SHAPES) + 1)]
                                   for name in refs}
                stats[which] = json.loads(str(npz["stats"]))
    rows = []
    for name in refs:
        image = sheet({which: rendered[which][name] for which in ("before", "after")})
        path = RESULTS / f"mouth_{name}.png"
        cv2.imwrite(str(path), image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
        b, a = stats["before"][name], stats["after"][name]
        rows.append(f"| `{path.name}` | {b['lips']:.0f} | {b['median']:.0f} / {b['dark10']:.0f}"
                    f" | {tuple(b['rgb'])} | {a['median']:.0f} / {a['dark10']:.0f} | "
                    f"{tuple(a['rgb'])} |")
    (RESULTS / "mouth.md").write_text(NOTE.format(before=args.before, rows="\n".join(rows)))
    print((RESULTS / "mouth.md").read_text())


NOTE = """# Mouth interior, before and after

`python benchmarks/mouth.py --before {before}` (the earlier checkout: `git worktree add
{before} 16f0309`). One sheet per photo, `before` row over `after` row, zoomed on the mouth:

- `mouth_eileen.png`, `mouth_grace.png`: the two examples (Eileen's photo shows her teeth,
  which both versions keep up to her own opening; Grace's mouth is closed).
- `mouth_hopper_whole.png`: the whole Grace Hopper portrait matplotlib ships (512x600,
  closed mouth, public domain).
- `mouth_open_mouth.png`: an open-mouth photo made from `examples/grace.png` (rendered with
  the jaw at 0.55 by this checkout); both versions animate that same picture.

Before, a closed-mouth photo's open mouth was a flat band of pale grey-green teeth from lip
to lip with one fixed dark red (92, 34, 36) behind. After: the cavity takes the hue of the
photo's darkest lip/inner-mouth pixels at 0.3 of the lips' luminance, darker into the
corners and the throat; the tongue is the lips' colour in shadow; painted teeth are white in
the photo's light and skin colour cast (grey in a grayscale photo), as tall as 40 % of the
opening at most (a slightly open mouth shows the teeth's edge and the dark behind, not a
band of teeth), tapering into the corners; the lips' inner edge is lip-coloured instead of
the warp's stretched lip seam.

Luminance (0-255) of the open mouth at jaw 0.45 (inner-lip polygon: median / darkest
tenth) against the lips in the photo, and the interior's mean colour:

| sheet | lips | before: median / dark 10 % | before: mean RGB | after: median / dark 10 % | after: mean RGB |
|---|---|---|---|---|---|
{rows}
"""


if __name__ == "__main__":
    main()
