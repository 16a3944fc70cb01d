"""Framing before/after on the README example, and the renderer's speed side by side.

    git worktree add /tmp/avgen-before 16f0309
    python benchmarks/framing.py --before /tmp/avgen-before [--motion example.av.npz]
        # -> benchmarks/results/framing.md, framing_example.png, framing_whole_photo.png

The example's motion is the shipped joint model's for examples/dialogue.txt (seed 0, the
voices `avgen synth` picks), made here unless `--motion` names an `avgen.av/1` file.

- framing_example.png: frames of the README example at 5 and 20 s; the earlier
  checkout's (square face crops, the only framing it had) over this one's default (the
  whole photos; the examples are 512x512, so the whole photo is the crop, and what
  changes is the mouth interior and how much of the photo around the face moves).
- framing_whole_photo.png: the same motion on the whole Grace Hopper portrait matplotlib
  ships (512x600, public domain) beside examples/eileen.png: side by side at a common
  height, stacked at a common width, and `--crop face`.
- framing.md: renderer frames/s (both people rendered and composed, no encoding) of the
  earlier checkout and of this one (--crop face, and the default whole photos), measured
  in alternation in separate processes, median of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLE_REFS = [str(ROOT / "examples" / "eileen.png"), str(ROOT / "examples" / "grace.png")]
TIMES = (5.0, 20.0)


def make_motion(path: Path) -> None:
    """The example dialogue's av arrays, as `avgen synth` makes them (seed 0)."""
    sys.path.insert(0, str(ROOT))
    from avgen import formats
    from avgen.pipeline import GenerateConfig, generate, load_av_model
    from avgen.script import read_script
    from avgen.speaker import voices_for_faces
    from avgen.tokens import LearnedDurations, build_timeline

    model, normalizer = load_av_model()
    voices = voices_for_faces(EXAMPLE_REFS, model.config.voices)
    timeline = build_timeline(read_script(str(ROOT / "examples" / "dialogue.txt")),
                              LearnedDurations(seed=0).with_seed(0))
    formats.save(path, formats.AV, generate(timeline, model, normalizer,
                                            GenerateConfig(voices=tuple(voices))))


def frames_at(repo: str, motion_path: str, refs: list[str], settings: dict,
              times=TIMES) -> list[np.ndarray]:
    """Frames at `times` (s) rendered by the avgen at `repo` with VideoConfig(**settings)."""
    sys.path.insert(0, repo)
    from avgen.face.motion import load_motion
    from avgen.face.render import RenderConfig, load_renderers
    try:
        from avgen.face.frames import VideoConfig, VideoFrames
    except ImportError:  # before the face/ split
        from avgen.face.render import VideoConfig, VideoFrames

    config = VideoConfig(**settings)
    framing = [config.framing] if hasattr(config, "framing") else []
    renderers = load_renderers(refs, RenderConfig(size=config.size), *framing)
    frames = VideoFrames(load_motion(motion_path), renderers, config)
    try:
        from avgen.face.frames import compose
    except ImportError:
        from avgen.video import compose
    wanted = {int(round(t * config.fps)) for t in times}
    out = []
    for k in sorted(wanted):  # rendering only the wanted frames: frames share no state
        if k < frames.count:
            out.append(compose([r.render(frames.expressions[i][k], frames.poses[i][k])
                                for i, r in enumerate(renderers)], config.layout))
    return out


def speed(repo: str, motion_path: str, settings: dict, count: int) -> dict:
    """Renderer frames/s (wall and CPU time) over `count` frames, after one warm-up frame."""
    sys.path.insert(0, repo)
    from avgen.face.motion import load_motion
    from avgen.face.render import RenderConfig, load_renderers
    try:
        from avgen.face.frames import VideoConfig, VideoFrames
    except ImportError:
        from avgen.face.render import VideoConfig, VideoFrames

    config = VideoConfig(**settings)
    framing = [config.framing] if hasattr(config, "framing") else []
    renderers = load_renderers(EXAMPLE_REFS, RenderConfig(size=config.size), *framing)
    frames = iter(VideoFrames(load_motion(motion_path), renderers, config))
    next(frames)
    wall, cpu = time.perf_counter(), time.process_time()
    for _, _ in zip(range(count), frames):
        pass
    return {"fps": count / (time.perf_counter() - wall),
            "cpu_fps": count / (time.process_time() - cpu)}


def label(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((18, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image])


def grid(rows: list[list[np.ndarray]], widths: list[int]) -> np.ndarray:
    """Rows of (picture, caption) tiles, each scaled to its row's width, padded white."""
    lines = []
    for tiles, width in zip(rows, widths):
        scaled = [label(cv2.resize(t, (width, int(round(t.shape[0] * width / t.shape[1]))),
                                   interpolation=cv2.INTER_AREA), text) for t, text in tiles]
        height = max(t.shape[0] for t in scaled)
        lines.append(np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)),
                                            constant_values=255) for t in scaled], 1))
    wide = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 4), (0, wide - line.shape[1]), (0, 0)),
                                  constant_values=255) for line in lines])


def run(args, what: str, repo: str, settings: dict, refs=None) -> object:
    """One measurement or rendering in its own process (two checkouts cannot share one)."""
    done = subprocess.run([sys.executable, __file__, "--before", args.before, "--motion",
                           args.motion, "--job", json.dumps([what, repo, settings, refs,
                                                             args.frames])],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="checkout of the earlier avgen")
    parser.add_argument("--motion", help="avgen.av/1 file of the example (default: made here)")
    parser.add_argument("--frames", type=int, default=200, help="frames per speed run")
    parser.add_argument("--runs", type=int, default=3, help="speed runs per variant")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        what, repo, settings, refs, count = json.loads(args.job)
        if what == "speed":
            print(json.dumps(speed(repo, args.motion, settings, count)))
        else:
            with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as out:
                np.savez(out, *frames_at(repo, args.motion, refs or EXAMPLE_REFS, settings))
            print(json.dumps(out.name))
        return
    with tempfile.TemporaryDirectory() as work:
        if args.motion is None:
            args.motion = str(Path(work) / "example.av.npz")
            make_motion(Path(args.motion))
        here = str(ROOT)

        def frames(repo, settings, refs=None):
            path = run(args, "frames", repo, settings, refs)
            with np.load(path) as npz:
                out = [npz[k] for k in sorted(npz.files, key=lambda k: int(k.split("_")[1]))]
            os.unlink(path)
            return out

        before = frames(args.before, {})
        after = frames(here, {})
        sheet = grid([[(f, f"before (square crops) {t:g} s") for f, t in zip(before, TIMES)],
                      [(f, f"after (whole photos) {t:g} s") for f, t in zip(after, TIMES)]],
                     [384, 384])
        cv2.imwrite(str(RESULTS / "framing_example.png"), sheet[:, :, ::-1],
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        import matplotlib

        hopper = str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
        refs = [EXAMPLE_REFS[0], hopper]
        rows = []
        for name, settings in (("side by side", {}), ("stacked", {"layout": "stacked"}),
                               ("--crop face", {"crop": "face"})):
            shots = frames(here, settings, refs)
            rows.append([(f, f"{name}, {t:g} s") for f, t in zip(shots, TIMES)])
        sheet = grid([rows[0], rows[2], rows[1]], [320, 320, 160])
        cv2.imwrite(str(RESULTS / "framing_whole_photo.png"), sheet[:, :, ::-1],
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        variants = (("before (the --before checkout), square crops", args.before, {}),
                    ("after, --crop face", here, {"crop": "face"}),
                    ("after, default (whole photos)", here, {}))
        figures = {name: [] for name, _, _ in variants}
        load = open("/proc/loadavg").read().split()[0]
        for _ in range(args.runs):  # alternate, so a change in machine load hits all alike
            for name, repo, settings in variants:
                figures[name].append(run(args, "speed", repo, settings))
    lines = ["# Framing: before/after and renderer speed\n",
             f"`python benchmarks/framing.py --before {args.before} --frames {args.frames} "
             f"--runs {args.runs}`; load average (1 min) before the speed runs: {load}; "
             f"{os.cpu_count()} CPUs.\n",
             "- `framing_example.png`: the README example at 5 and 20 s, before (the "
             "earlier checkout: square crops) over after (default: whole photos).",
             "- `framing_whole_photo.png`: the whole 512x600 Grace Hopper portrait beside "
             "examples/eileen.png: side by side (common height 512), `--crop face`, and "
             "stacked (common width 512).\n",
             "Renderer speed on the README example's motion (both people rendered and "
             f"composed per frame, no encoding), {args.frames} frames a run, median of "
             f"{args.runs} runs measured in alternation:\n",
             "| renderer | frames/s (wall) | vs before | frames/s (CPU time) | vs before |",
             "|---|---|---|---|---|"]
    base = {key: statistics.median(f[key] for f in figures[variants[0][0]])
            for key in ("fps", "cpu_fps")}
    for name, _, _ in variants:
        wall = statistics.median(f["fps"] for f in figures[name])
        cpu = statistics.median(f["cpu_fps"] for f in figures[name])
        lines.append(f"| {name} | {wall:.1f} | {wall / base['fps']:.2f} x | {cpu:.1f} | "
                     f"{cpu / base['cpu_fps']:.2f} x |")
    lines.append("\nCPU time (all threads of the rendering process) is the steadier figure on "
                 "a loaded machine; wall time is what a user waits.")
    (RESULTS / "framing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
