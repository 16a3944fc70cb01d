"""Face benchmark: render speed (512 px faces, 25 fps, H.264 encoding included), the
render -> track round trip (per-coefficient correlation) for both example faces, and a
contact sheet of rendered key frames to look at.

    python benchmarks/face.py            # writes benchmarks/results/face.md and
                                         # benchmarks/results/face_contact_sheet.png
    python benchmarks/face.py --quick    # shorter runs (smoke test)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avgen.constants import EXPRESSION_NAMES  # noqa: E402
from avgen.face import landmarks as lm  # noqa: E402
from avgen.face.rotations import degrees_from_quaternion, quaternion_from_degrees  # noqa: E402
from avgen.face.motion import save_motion  # noqa: E402
from avgen.face.render import FaceRenderer, VideoConfig, render_video  # noqa: E402
from avgen.face.sequence import scripted_motion  # noqa: E402
from avgen.face.track import track_video  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FACES = ("eileen", "grace")
REQUIRED = ("jaw_open", "lips_close", "eye_blink_left", "eye_blink_right", "head_yaw",
            "head_pitch")

# Key frames of the scripted sequence, as (label, coefficients, yaw, pitch).
KEY_FRAMES = (
    ("neutral", {}, 0, 0),
    ("aa (jaw 0.75)", {"jaw_open": 0.75}, 0, 0),
    ("m (lips closed)", {"lips_close": 1.0, "jaw_open": 0.05}, 0, 0),
    ("oh (funnel)", {"lips_funnel": 0.7, "jaw_open": 0.35}, 0, 0),
    ("uw (pucker)", {"lips_pucker": 0.9, "jaw_open": 0.1}, 0, 0),
    ("iy (stretch)", {"mouth_stretch": 0.7, "jaw_open": 0.2}, 0, 0),
    ("blink", {"eye_blink_left": 1.0, "eye_blink_right": 1.0}, 0, 0),
    ("smile + squint", {"smile_left": 1.0, "smile_right": 0.85, "eye_squint": 0.4}, 0, 0),
    ("brows up", {"brow_inner_up": 0.8, "brow_outer_up": 0.9}, 0, 0),
    ("nod down 10", {"jaw_open": 0.2}, 0, 10),
    ("turn 20 + talk", {"jaw_open": 0.5}, 20, 0),
    ("turn -20 + smile", {"smile_left": 0.8, "smile_right": 0.8}, -20, 5),
)


def _coeffs(values: dict) -> np.ndarray:
    c = np.zeros(len(EXPRESSION_NAMES))
    for name, value in values.items():
        c[EXPRESSION_NAMES.index(name)] = value
    return c


def contact_sheet(path: Path, tile: int = 256) -> None:
    rows = []
    for name in FACES:
        image = lm.read_image(ROOT / "examples" / f"{name}.png")
        renderer = FaceRenderer(image, lm.detect_image(image, name))
        p, W = renderer.model.neutral, renderer.model.width
        cx, cy, half = int(p[:, 0].mean()), int(p[:, 1].mean()), int(0.95 * W)
        tiles = []
        for label, values, yaw, pitch in KEY_FRAMES:
            pose = np.concatenate([quaternion_from_degrees(yaw, pitch), [0, 0, 0]])
            frame = renderer.render(_coeffs(values), pose)
            y0, x0 = max(cy - half, 0), max(cx - half, 0)
            crop = cv2.resize(frame[y0:y0 + 2 * half, x0:x0 + 2 * half], (tile, tile),
                              interpolation=cv2.INTER_AREA)
            cv2.rectangle(crop, (0, 0), (tile, 22), (0, 0, 0), -1)
            cv2.putText(crop, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                        cv2.LINE_AA)
            tiles.append(crop)
        half_n = len(tiles) // 2
        rows += [np.hstack(tiles[:half_n]), np.hstack(tiles[half_n:])]
        # whole frames, to see that background, hair and shoulders stay put
        full = []
        for label, values, yaw, pitch in (KEY_FRAMES[0], KEY_FRAMES[1], KEY_FRAMES[6],
                                          KEY_FRAMES[9], KEY_FRAMES[10], KEY_FRAMES[11]):
            pose = np.concatenate([quaternion_from_degrees(yaw, pitch), [0, 0, 0]])
            frame = cv2.resize(renderer.render(_coeffs(values), pose), (tile, tile),
                               interpolation=cv2.INTER_AREA)
            cv2.rectangle(frame, (0, 0), (tile, 22), (0, 0, 0), -1)
            cv2.putText(frame, "full: " + label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)
            full.append(frame)
        rows.append(np.hstack(full))
    sheet = np.vstack(rows)
    cv2.imwrite(str(path), sheet[:, :, ::-1])


def round_trip(name: str, seconds: float, work: Path) -> tuple[dict, float, float]:
    truth = scripted_motion(seconds, people=1)
    save_motion(work / f"{name}.truth.npz", truth)
    video = work / f"{name}.mp4"
    t0 = time.perf_counter()
    render_video(str(work / f"{name}.truth.npz"), [str(ROOT / "examples" / f"{name}.png")],
                 str(video), progress=False)
    t1 = time.perf_counter()
    tracked = track_video(str(video), ref=str(ROOT / "examples" / f"{name}.png"),
                          progress=False)
    t2 = time.perf_counter()
    n = min(truth.num_frames, tracked.num_frames)
    out = {}
    a, b = truth.expression[0][:n], tracked.expression[0][:n]
    for k, coef in enumerate(EXPRESSION_NAMES):
        ok = a[:, k].std() > 0 and b[:, k].std() > 0
        out[coef] = float(np.corrcoef(a[:, k], b[:, k])[0, 1]) if ok else float("nan")
    ea = degrees_from_quaternion(truth.head_pose[0][:n, :4])
    eb = degrees_from_quaternion(tracked.head_pose[0][:n, :4])
    for k, axis in enumerate(("head_yaw", "head_pitch", "head_roll")):
        out[axis] = float(np.corrcoef(ea[:, k], eb[:, k])[0, 1])
    return out, t1 - t0, t2 - t1


def speed(seconds: float, repeats: int, work: Path) -> list[float]:
    """Face frames per second rendering a two-person motion at 512 px, 25 fps, into an
    H.264 MP4 (encoding included; photo loading and landmark detection included too)."""
    motion = scripted_motion(seconds, people=2)
    save_motion(work / "two.npz", motion)
    refs = [str(ROOT / "examples" / f"{n}.png") for n in FACES]
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames = render_video(str(work / "two.npz"), refs, str(work / "two.mp4"),
                              config=VideoConfig(fps=25, size=512), progress=False)
        rates.append(2 * frames / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, repeats, rt_seconds = (4.0, 1, 6.0) if args.quick else (20.0, 3, 12.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rates = speed(seconds, repeats, work)
        load_after = os.getloadavg()
        trips = {name: round_trip(name, rt_seconds, work) for name in FACES}
    contact_sheet(RESULTS / "face_contact_sheet.png")

    cmd = "python benchmarks/face.py" + (" --quick" if args.quick else "")
    lines = [
        "# Face renderer and tracker",
        "",
        f"Command: `{cmd}` (commit {_commit()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average before/after the speed runs {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other engineers' jobs share these cores).",
        "",
        "## Render speed",
        "",
        f"Two people, 512x512 per face, {seconds:g} s at 25 fps -> 1024x512 H.264 (libx264 "
        "veryfast, crf 20, yuv420p) MP4; everything inside `render_video` is timed (reading "
        "the photos, landmark detection, warping, mouth painting, composing, encoding).",
        "",
        f"- face frames per second, {repeats} runs: "
        + ", ".join(f"{r:.1f}" for r in rates),
        f"- **median {statistics.median(rates):.1f} face fps** (target >= 50), i.e. "
        f"{2 * seconds * 25 / statistics.median(rates):.1f} s for {seconds:g} s of two-person "
        "video",
        "",
        "## Round trip: render -> MP4 -> track",
        "",
        f"`scripted_motion({rt_seconds:g} s)` rendered at 512 px / 25 fps into an MP4, tracked "
        "with `--ref` the same photo, both on the 86.13 fps clock; Pearson correlation per "
        "coefficient (head angles: yaw, pitch, roll from the quaternions).",
        "",
        "| coefficient | " + " | ".join(FACES) + " |",
        "| --- | " + " | ".join("---" for _ in FACES) + " |",
    ]
    for key in list(EXPRESSION_NAMES) + ["head_yaw", "head_pitch", "head_roll"]:
        mark = " (required > 0.8)" if key in REQUIRED else ""
        cells = []
        for name in FACES:
            value = trips[name][0][key]
            flag = " **below**" if key in REQUIRED and not value > 0.8 else ""
            cells.append(f"{value:.3f}{flag}")
        lines.append(f"| {key}{mark} | " + " | ".join(cells) + " |")
    lines += ["", "Round-trip timings: " + "; ".join(
        f"{name}: render {t[1]:.1f} s, track {t[2]:.1f} s" for name, t in trips.items()), "",
        "Contact sheet: `benchmarks/results/face_contact_sheet.png` (per face: two rows of "
        "face crops of the key frames of the scripted sequence, then a row of whole frames).",
        ""]
    (RESULTS / "face.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
