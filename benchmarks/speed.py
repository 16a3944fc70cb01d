"""Speed of each stage and of the whole chain, as real-time factors (seconds of compute
per second of dialogue; < 1 is faster than real time), and peak memory, for dialogues of
about 10, 20 and 60 s -> benchmarks/results/speed.md.

    python benchmarks/speed.py [--lengths 10 20 60] [--threads 2]

The joint model is the registered default ('av-flow'), or random weights of the
default size where none is registered (speed does not depend on the weights). Each
length runs in its own process so peak memory (max RSS) is per length. The last rows
time the user's command, `avgen synth script.txt --ref a.png b.png -o out.mp4`, as a
whole (process start, model loading and everything else included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def script_of_length(seconds: float) -> str:
    """The example dialogue's turns repeated until about `seconds` of speech."""
    lines = [l for l in (REPO / "examples" / "dialogue.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    per_turn = 4.3  # measured mean turn length of the example, gap included
    count = max(2, round(seconds / per_turn))
    return "\n".join(lines[k % len(lines)] for k in range(count)) + "\n"


def run_one(seconds: float, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from avgen import formats
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.constants import FRAMES_PER_SECOND
    from avgen.face.frames import VideoConfig, render_video
    from avgen.model.av_flow import MOTION_DIM, AVFlow
    from avgen.pipeline import GenerateConfig, generate, mix
    from avgen.text.script import parse_script
    from avgen.text.timeline import LearnedDurations, build_timeline
    from avgen.model.features import Normalizer

    times = {}
    start = time.perf_counter()
    timeline = build_timeline(parse_script(script_of_length(seconds), "bench"),
                              LearnedDurations())
    times["tokens"] = time.perf_counter() - start
    duration = timeline.num_frames / FRAMES_PER_SECOND
    from avgen.pipeline import AV_WEIGHTS, load_av_model
    from avgen.weights import Weights

    if AV_WEIGHTS in Weights().entries:
        model, normalizer = load_av_model()
    else:
        torch.manual_seed(0)
        model = AVFlow().eval()
        normalizer = Normalizer(np.full(80, -6.0, np.float32), np.full(80, 2.0, np.float32),
                                np.zeros(MOTION_DIM, np.float32),
                                np.full(MOTION_DIM, 0.1, np.float32))
    start = time.perf_counter()
    av = generate(timeline, model, normalizer, GenerateConfig(steps=8))
    times["joint model (8 Euler steps)"] = time.perf_counter() - start
    vocoder = load_vocoder("vocos")
    start = time.perf_counter()
    audio = mix([vocode(vocoder, av[f"p{p}/mel"]) for p in range(2)])
    times["vocoder (both people)"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as work:
        import soundfile

        from avgen.face.motion import load_motion
        from avgen.face.frames import VideoFrames
        from avgen.face.render import RenderConfig, load_renderers

        formats.save(f"{work}/d.av.npz", formats.AV, av)
        soundfile.write(f"{work}/d.wav", audio, 22050)
        refs = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]
        video = VideoConfig()
        start = time.perf_counter()
        renderers = load_renderers(refs, RenderConfig(size=video.size))
        times["renderer setup (face mesh of both photos)"] = time.perf_counter() - start
        start = time.perf_counter()
        for _ in VideoFrames(load_motion(f"{work}/d.av.npz"), renderers, video):
            pass
        render_only = time.perf_counter() - start
        start = time.perf_counter()
        render_video(f"{work}/d.av.npz", refs, f"{work}/d.mp4", audio=f"{work}/d.wav",
                     config=video, progress=False, renderers=renderers)
        both = time.perf_counter() - start
        # ffmpeg encodes in its own process alongside the renderer: its cost is what it
        # adds to the wall time of rendering alone
        times[f"renderer ({video.size} px faces, {video.fps:g} fps)"] = render_only
        times["encoder (H.264 + AAC, added wall time)"] = both - render_only
    return {"seconds": duration, "times": times,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def time_cli(seconds: float, threads: int) -> float:
    """Wall seconds of the whole `avgen synth` command for a script of about `seconds`."""
    import os

    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "s.txt"
        script.write_text(script_of_length(seconds))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "avgen", "synth", str(script), "--ref",
                        str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png"),
                        "-o", f"{work}/d.mp4"], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 20, 60])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "speed.md")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.threads)))
        return
    load_before = open("/proc/loadavg").read().split()[0]  # other work would skew the times
    results = []
    for length in args.lengths:
        done = subprocess.run([sys.executable, __file__, "--one", str(length), "--threads",
                               str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        results[-1]["cli"] = time_cli(length, args.threads)
    stages = list(results[0]["times"])
    lines = ["# Speed per stage (real-time factor = compute s / dialogue s)\n",
             f"`python benchmarks/speed.py --lengths {' '.join(f'{x:g}' for x in args.lengths)} "
             f"--threads {args.threads}`; load average (1 min) before it started: {load_before}\n",
             "| stage | " + " | ".join(f"{r['seconds']:.1f} s" for r in results) + " |",
             "| --- | " + " | ".join("---" for _ in results) + " |"]
    for stage in stages:
        lines.append(f"| {stage} | " + " | ".join(
            f"{r['times'][stage] / r['seconds']:.3f}" for r in results) + " |")
    lines.append("| **end to end** | " + " | ".join(
        f"**{sum(r['times'].values()) / r['seconds']:.3f}**" for r in results) + " |")
    lines.append("| joint model, one Euler step | " + " | ".join(
        f"{r['times']['joint model (8 Euler steps)'] / 8 / r['seconds']:.3f}" for r in results)
        + " |")
    lines.append("| `avgen synth` command, wall s (all included) | " + " | ".join(
        f"{r['cli']:.1f}" for r in results) + " |")
    lines.append("| `avgen synth` command, real-time factor | " + " | ".join(
        f"**{r['cli'] / r['seconds']:.3f}**" for r in results) + " |")
    lines.append("| peak memory (max RSS, MB) | " + " | ".join(
        f"{r['max_rss_mb']:.0f}" for r in results) + " |")
    args.o.parent.mkdir(parents=True, exist_ok=True)
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
