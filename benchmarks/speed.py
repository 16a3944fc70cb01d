"""Speed of each stage and of the whole chain, as real-time factors (seconds of compute
per second of dialogue; < 1 is faster than real time), and peak memory, for dialogues of
about 10, 20 and 60 s -> benchmarks/results/speed.md.

    python benchmarks/speed.py [--lengths 10 20 60] [--threads 2]
    python benchmarks/speed.py --against 16f0309 [--lengths 20 60] [--repeats 2]

The joint model is the registered default ('av-flow'), or random weights of the
default size where none is registered (speed does not depend on the weights). Each
length runs in its own process so peak memory (max RSS) is per length. The last rows
time the user's command, `avgen synth script.txt --ref a.png b.png -o out.mp4`, as a
whole (process start, model loading and everything else included).

`--against REV` compares this checkout with the release REV side by side: a git
worktree of REV (made under /tmp unless `--old-tree` names one) runs its own
`benchmarks/speed.py --one` and its own `avgen synth`, each with its own source tree
first on PYTHONPATH, interleaved with this checkout's runs (old, new, old, new, ...) on
the same scripts, so a machine that other work slows down slows both alike. It reports
new/old wall-time ratios per stage and for the whole command, with each side's
real-time factor beside them, and the load average over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's avgen, not whichever one is installed


def script_of_length(seconds: float) -> str:
    """The example dialogue's turns repeated until about `seconds` of speech."""
    lines = [l for l in (REPO / "examples" / "dialogue.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    per_turn = 4.3  # measured mean turn length of the example, gap included
    count = max(2, round(seconds / per_turn))
    return "\n".join(lines[k % len(lines)] for k in range(count)) + "\n"


def run_one(seconds: float, threads: int) -> dict:
    import avgen  # noqa: F401 - first, as the command does: it sets up torch's threads
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from avgen import formats
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.constants import FRAMES_PER_SECOND
    from avgen.face.frames import VideoConfig
    from avgen.model.av_flow import MOTION_DIM, AVFlow, evaluations_of
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
    settings = GenerateConfig()
    evaluations = evaluations_of(settings.steps, settings.solver)
    start = time.perf_counter()
    av = generate(timeline, model, normalizer, settings)
    times[f"joint model ({settings.steps} {settings.solver} steps, {evaluations} "
          "evaluations)"] = time.perf_counter() - start
    vocoder = load_vocoder("vocos")
    start = time.perf_counter()
    audio = mix([vocode(vocoder, av[f"p{p}/mel"]) for p in range(2)])
    times["vocoder (both people)"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as work:
        from avgen.constants import SAMPLE_RATE
        from avgen.face.motion import load_motion
        from avgen.face.frames import VideoFrames
        from avgen.face.render import RenderConfig, load_renderers
        from avgen.video import AVWriter

        formats.save(f"{work}/d.av.npz", formats.AV, av)
        refs = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]
        video = VideoConfig()
        start = time.perf_counter()
        renderers = load_renderers(refs, RenderConfig(size=video.size))
        times["renderer setup (face mesh of both photos)"] = time.perf_counter() - start
        motion = load_motion(f"{work}/d.av.npz")
        start = time.perf_counter()
        for _ in VideoFrames(motion, renderers, video):
            pass
        render_only = time.perf_counter() - start
        frames = VideoFrames(motion, renderers, video)
        per_frame = len(audio) / max(len(frames), 1)
        start = time.perf_counter()
        (width, height), = frames.sizes()  # the default layout writes one MP4
        with AVWriter(f"{work}/d.mp4", width, height, video.fps, SAMPLE_RATE) as writer:
            for k, (frame,) in enumerate(frames):
                writer.write(frame[None], audio[round(k * per_frame):round((k + 1) * per_frame)])
        both = time.perf_counter() - start
        # ffmpeg encodes in its own process alongside the renderer: its cost is what it
        # adds to the wall time of rendering alone
        times[f"renderer ({video.size} px faces, {video.fps:g} fps)"] = render_only
        times["encoder (H.264 + AAC, added wall time)"] = both - render_only
    return {"seconds": duration, "times": times,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


OLD_ENV: dict = {}  # extra environment of the old release's runs (--old-env)


def tree_env(tree: Path, threads: int) -> dict:
    """Environment that makes `python` import `tree`'s avgen."""
    extra = OLD_ENV if tree != REPO else {}
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads), **extra}


def time_cli(seconds: float, threads: int, tree: Path = REPO) -> dict:
    """Wall seconds and peak memory of the whole `avgen synth` command of `tree` for a
    script of about `seconds`."""
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "s.txt"
        script.write_text(script_of_length(seconds))
        command = [sys.executable, "-m", "avgen", "synth", str(script), "--ref",
                   str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png"),
                   "-o", f"{work}/d.mp4"]
        peak = Path(work) / "rss"
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), *command], check=True,
                       capture_output=True, cwd=tree, env=tree_env(tree, threads))
        wall = time.perf_counter() - start
        from avgen.video import read_video

        fps, _, count = read_video(f"{work}/d.mp4")
        return {"wall": wall, "max_rss_mb": int(peak.read_text().split()[-1]) / 1024,
                "seconds": count / fps}


def stage_times(seconds: float, threads: int, tree: Path = REPO) -> dict:
    """`tree`'s own `benchmarks/speed.py --one` (stage times), in a process of its own."""
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "speed.py"), "--one",
                           str(seconds), "--threads", str(threads)], capture_output=True,
                          text=True, cwd=tree, env=tree_env(tree, threads))
    if done.returncode:
        raise SystemExit(f"{tree}: speed.py --one failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# stage names of both releases -> one row each (the release names the joint model with its
# step count)
STAGES = (("tokens", "tokens"), ("joint model", "joint model"), ("vocoder", "vocoder"),
          ("renderer setup", "renderer setup"), ("renderer (", "renderer"),
          ("encoder", "encoder"))


def canonical_stages(times: dict) -> dict:
    out = {}
    for name, value in times.items():
        for prefix, row in STAGES:
            if name.startswith(prefix):
                out[row] = out.get(row, 0.0) + value
                break
        else:
            out[name] = value
    return out


def load_average() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def old_tree(rev: str, path: Path | None) -> Path:
    """A git worktree of `rev` (made once, reused while it is at that commit)."""
    resolved = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", rev + "^{commit}"],
                              capture_output=True, text=True)
    if resolved.returncode:
        raise SystemExit(f"--against: {rev!r} is not a commit of {REPO}")
    commit = resolved.stdout.strip()
    path = path or Path(tempfile.gettempdir()) / f"avgen-old-{commit[:7]}"
    if path.exists():
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        if head != commit:
            raise SystemExit(f"--old-tree {path} is at {head[:7] or 'no commit'}, not {rev}")
        return path
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)
    if (path / "setup.py").exists():  # its compiled kernels, as installing it builds them
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                       cwd=path, capture_output=True)
    return path


def against(args) -> None:
    """Old and new side by side (see the module docstring) -> markdown."""
    old = old_tree(args.against, args.old_tree)
    sides = {"old": old, "new": REPO}
    runs = {(side, length): [] for side in sides for length in args.lengths}
    loads = [load_average()]
    for repeat in range(args.repeats):  # every length once before any twice
        for length in args.lengths:
            for side, tree in sides.items():
                # the stages only in the first `--stage-repeats` runs: on a loaded machine
                # each costs as much as the command itself
                record = stage_times(length, args.threads, tree) \
                    if repeat < args.stage_repeats else {}
                loads.append(load_average())
                record["cli"] = time_cli(length, args.threads, tree)
                loads.append(load_average())
                runs[(side, length)].append(record)
                print(f"{length:g} s, run {repeat + 1}, {side}: command "
                      f"{record['cli']['wall']:.1f} s, load {loads[-1]:.1f}", file=sys.stderr,
                      flush=True)
                if all(runs[(s, length)] for s in sides):  # figures so far, rewritten
                    write_against(args, runs, loads, sides)


def write_against(args, runs, loads, sides) -> None:
    """The side-by-side tables of the runs made so far -> args.o."""
    runs = {key: value for key, value in runs.items() if value}
    lengths = [length for length in args.lengths if all((s, length) in runs for s in sides)]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    counts = {f"{length:g} s": len(runs[("new", length)]) for length in lengths}
    lines = [f"# Speed: this checkout against {args.against} (side by side, one run)\n",
             f"`python benchmarks/speed.py --against {args.against} --lengths "
             f"{' '.join(f'{x:g}' for x in args.lengths)} --threads {args.threads} "
             f"--repeats {args.repeats} --stage-repeats {args.stage_repeats}"
             + (f" --old-env {' '.join(args.old_env)}" if args.old_env else "")
             + f"` at {commit} (working tree as committed, plus any "
             f"uncommitted changes). Runs interleaved old, new, old, new; each figure is the "
             f"median over the runs made (per side: {counts}; "
             + (f"stages from the first {args.stage_repeats}" if args.stage_repeats > 0 else
                "stages not run: `--stage-repeats 0`")
             + f"). Ratio = new / old wall time (< 1: new is "
             f"faster); RTF = seconds of compute per second of dialogue. Load average (1 min) "
             f"over the runs: mean {sum(loads) / len(loads):.1f}, min {min(loads):.1f}, max "
             f"{max(loads):.1f} on {os.cpu_count()} cores.\n"]

    def median(values):
        values = sorted(values)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    header = "| stage | " + " | ".join(f"{length:g} s: old RTF | new RTF | **new/old**"
                                        for length in lengths) + " |"
    lines += [header, "| --- |" + " --- | --- | --- |" * len(lengths)]
    # stage rows only where stages were timed (--stage-repeats 0 times the command alone)
    rows = [row for _, row in STAGES] if args.stage_repeats > 0 else []
    cells = {row: [] for row in rows + ["command"]}
    for length in lengths:
        for row in rows + ["command"]:
            pair = []
            for side in sides:
                records = runs[(side, length)]
                timed = [r for r in records if "times" in r]
                duration = records[0]["cli"]["seconds"]
                if row == "command":
                    values = [r["cli"]["wall"] for r in records]
                elif timed:
                    values = [canonical_stages(r["times"]).get(row, 0.0) for r in timed]
                else:
                    values = [float("nan")]
                pair.append((median(values), duration))
            (old_s, old_d), (new_s, new_d) = pair
            ratio = new_s / old_s if old_s > 0 else float("nan")  # nan: not timed
            cells[row].append(f"{old_s / old_d:.3f} | {new_s / new_d:.3f} | **{ratio:.2f}**")
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(cells[row]) + " |")
    lines.append("| **`avgen synth` command (all included)** | " + " | ".join(cells["command"])
                 + " |")
    lines.append("")
    lines.append("| | " + " | ".join(f"{length:g} s: old | new" for length in lengths)
                 + " |")
    lines.append("| --- |" + " --- | --- |" * len(lengths))
    for label, key in (("video length (s)", None), ("command wall s (median)", "wall"),
                       ("command peak RSS (MB)", "rss")):
        out = []
        for length in lengths:
            for side in sides:
                records = runs[(side, length)]
                if key is None:
                    out.append(f"{records[0]['cli']['seconds']:.1f}")
                elif key == "wall":
                    out.append(f"{median([r['cli']['wall'] for r in records]):.1f}")
                else:
                    peaks = [r["cli"]["max_rss_mb"] for r in records if r["cli"]["max_rss_mb"]]
                    out.append(f"{max(peaks):.0f}" if peaks else "n/a")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    lines.append("")
    lines.append("Every run (wall s of the command): " + "; ".join(
        f"{length:g} s {side}: " + ", ".join(f"{r['cli']['wall']:.1f}" for r in runs[(side, length)])
        for length in lengths for side in sides))
    text = "\n".join(lines) + "\n"
    args.o.parent.mkdir(parents=True, exist_ok=True)
    args.o.write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=float, nargs="+", default=[10, 20, 60])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--against", metavar="REV", help="compare with release REV side by side")
    parser.add_argument("--old-tree", type=Path, help="with --against: the worktree of REV to "
                        "use (default: one made under /tmp)")
    parser.add_argument("--repeats", type=int, default=2, help="with --against: runs per side")
    parser.add_argument("--stage-repeats", type=int, default=1,
                        help="with --against: runs per side that also time each stage")
    parser.add_argument("--old-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="with --against: environment for the old release's runs only "
                        "(e.g. OMP_WAIT_POLICY=PASSIVE, which this checkout sets itself)")
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "speed.md")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.threads)))
        return
    if args.against:
        OLD_ENV.update(item.split("=", 1) for item in args.old_env)
        against(args)
        return
    load_before = open("/proc/loadavg").read().split()[0]  # other work would skew the times
    results = []
    for length in args.lengths:
        done = subprocess.run([sys.executable, __file__, "--one", str(length), "--threads",
                               str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        results[-1]["cli"] = time_cli(length, args.threads)["wall"]
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
