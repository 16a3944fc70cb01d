"""Kill `avgen synth` and `avgen synth --batch` with SIGTERM at random moments and check
what is left: no temp files in the output folder, no avgen scratch folders (synth work
files, espeak library copies), no ffmpeg child still running, previous outputs byte-for-byte
intact -> benchmarks/results/kill.md.

    python benchmarks/kill_test.py [--trials 10] [--seed 0] [--synth-args "--steps 4"]

Even trials: SIGTERM after a moment drawn uniformly between 0.5 s and the duration of an
uninterrupted run (measured first), so kills land in start-up, model loading, generation
and vocoding alike. Odd trials: SIGTERM a moment after the render stage began (the ffmpeg
encoder started), drawn uniformly within the render stage's length, when
ffmpeg runs and the temp MP4 grows. SIGHUP takes
the same path as SIGTERM in avgen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SCRIPT = "A: Hello there, how are you today?\nB: I am fine, thank you. And you?\n"
TEMP = Path(tempfile.gettempdir())


def children(pid: int) -> set[int]:
    """Every descendant of `pid` now (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def scratch_of(pid: int) -> list[str]:
    return sorted(p.name for p in TEMP.iterdir() if re.match(rf"avgen-[a-z]+-{pid}-", p.name))


def launch(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}
    # stderr to a file: a pipe nobody reads while avgen's progress bars fill it would stall
    log = open(cwd / "stderr.log", "w+b")
    process = subprocess.Popen([sys.executable, "-m", "avgen", *args], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=log)
    process.log = log
    return process


def run_until(args, cwd, kill_after: float | None, in_render: bool = False):
    """Run avgen; SIGTERM it after `kill_after` s (counted from the start of the render
    stage when `in_render`: the encoder starting). (exit code, seconds,
    descendants seen, scratch folders seen, pid, stderr, when rendering began)."""
    process = launch(args, cwd)
    started = time.perf_counter()
    seen_children: set[int] = set()
    seen_scratch: set[str] = set()
    render_at = None
    killed = False
    while process.poll() is None:
        now_children = children(process.pid)
        seen_children |= now_children
        scratch = set(scratch_of(process.pid))
        # rendering has begun once a child process (the encoder, ffmpeg, or the render
        # worker; both start with the render stage) runs,
        # or, in releases that rendered from a scratch folder, once that folder appeared
        if render_at is None and (now_children
                                  or any(s.startswith("avgen-synth-") for s in scratch)):
            render_at = time.perf_counter() - started
        seen_scratch |= scratch
        since = (time.perf_counter() - started - (render_at or 0.0)) if in_render else \
            time.perf_counter() - started
        if kill_after is not None and not killed and (render_at or not in_render) \
                and since >= kill_after:
            process.send_signal(signal.SIGTERM)
            killed = True
        time.sleep(0.05)
    process.wait()
    process.log.seek(0)
    stderr = process.log.read().decode(errors="replace")
    process.log.close()
    return (process.returncode, time.perf_counter() - started, seen_children, seen_scratch,
            process.pid, stderr, render_at)


def check(folder: Path, expected: dict[str, bytes], allowed: set[str], pid: int,
          seen_children: set[int]) -> dict:
    names = {p.name for p in folder.iterdir()}
    stray = sorted(names - allowed)
    intact = all((folder / n).is_file() and (folder / n).read_bytes() == data
                 for n, data in expected.items())
    time.sleep(0.2)  # a child killed with its parent needs a moment to be reaped
    orphans = sorted(c for c in seen_children if alive(c))
    return {"stray": stray, "intact": intact, "orphans": orphans,
            "scratch": scratch_of(pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "kill.md"))
    parser.add_argument("--from-log", help="rebuild the report from the JSON lines this "
                        "script printed (a run stopped before its end)")
    parser.add_argument("--synth-args", default="--steps 4 --size 256",
                        help="extra options of every synth run (fewer steps and a smaller "
                             "face make each run shorter; the stages are the same)")
    args = parser.parse_args()
    if args.from_log:
        return report_from_log(Path(args.from_log), args)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-test-"))
    (work / "dialogue.txt").write_text(SCRIPT)
    refs = [str(EXAMPLES / "eileen.png"), str(EXAMPLES / "grace.png")]
    rows = {"synth": [], "batch": []}

    # -- single synth: the previous output is the same file name, so a killed run must
    #    leave the old MP4 exactly as it was (a finished run rewrites the same bytes)
    out = work / "out"
    out.mkdir()
    extra = args.synth_args.split()
    single = ["synth", "dialogue.txt", "--ref", *refs, "-o", "out/video.mp4", *extra]
    code, full, _, _, _, stderr, render_at = run_until(single, work, None)
    assert code == 0, f"the uninterrupted synth failed: {stderr}"
    previous = {"video.mp4": (out / "video.mp4").read_bytes()}
    print(f"synth uninterrupted: {full:.1f} s, render from {render_at:.1f} s", flush=True)
    for trial in range(args.trials):
        in_render = trial % 2 == 1
        moment = rng.uniform(0, full - render_at) if in_render else rng.uniform(0.5, full)
        code, seconds, seen, scratch, pid, stderr, _ = run_until(single, work, moment,
                                                                 in_render)
        result = check(out, previous, {"video.mp4"}, pid, seen)
        rows["synth"].append({"trial": trial, "kill_at": moment, "in_render": in_render,
                              "exit": code,
                              "scratch_seen": len(scratch), "children_seen": len(seen),
                              **result})
        print(json.dumps(rows["synth"][-1]), flush=True)

    # -- batch: three jobs; the first two are finished (copies of the video above), the
    #    third is removed before each trial so every trial has work to do
    jobs = work / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"text": SCRIPT, "refs": refs, "seed": s,
                                        "output": f"job{s}.mp4"}) + "\n" for s in range(3)))
    batch_out = work / "batch"
    batch = ["synth", "--batch", str(jobs), "-o", str(batch_out), *extra]
    batch_out.mkdir()
    for name in ("job0.mp4", "job1.mp4"):  # finished earlier: complete MP4s are skipped
        (batch_out / name).write_bytes(previous["video.mp4"])
    code, one_job, _, _, _, stderr, batch_render_at = run_until(batch, work, None)
    assert code == 0, f"the uninterrupted batch failed: {stderr}"
    print(f"batch with one job to do: {one_job:.1f} s, render from {batch_render_at:.1f} s",
          flush=True)
    finished = {n: (batch_out / n).read_bytes() for n in ("job0.mp4", "job1.mp4")}
    for trial in range(args.trials):
        (batch_out / "job2.mp4").unlink(missing_ok=True)
        in_render = trial % 2 == 1
        moment = (rng.uniform(0, one_job - batch_render_at) if in_render
                  else rng.uniform(0.5, one_job))
        code, seconds, seen, scratch, pid, stderr, _ = run_until(batch, work, moment,
                                                                 in_render)
        result = check(batch_out, finished, {"job0.mp4", "job1.mp4", "job2.mp4",
                                              "results.jsonl"}, pid, seen)
        lines = (batch_out / "results.jsonl").read_text().splitlines()
        torn = 0
        for line in lines:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                torn += 1
        rows["batch"].append({"trial": trial, "kill_at": moment, "in_render": in_render,
                              "exit": code,
                              "scratch_seen": len(scratch), "children_seen": len(seen),
                              "torn_result_lines": torn, **result})
        print(json.dumps(rows["batch"][-1]), flush=True)

    write_report(Path(args.out), rows, full, one_job, args)


def report_from_log(log: Path, args) -> None:
    rows = {"synth": [], "batch": []}
    full = full_batch = float("nan")
    for line in log.read_text().splitlines():
        if line.startswith("synth uninterrupted:"):
            full = float(line.split()[2])
        elif line.startswith("batch with one job to do:"):
            full_batch = float(line.split()[6])
        elif line.startswith("{"):
            row = json.loads(line)
            rows["batch" if "torn_result_lines" in row else "synth"].append(row)
    write_report(Path(args.out), rows, full, full_batch, args)


def write_report(path: Path, rows: dict, full: float, full_batch: float, args) -> None:
    lines = ["# SIGTERM at random moments: what is left behind", "",
             f"Made by `python benchmarks/kill_test.py --trials {args.trials} --seed "
             f"{args.seed} --synth-args \"{args.synth_args}\"` ({time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores shared with other work).",
             "",
             "Each trial starts the command, sends SIGTERM `kill at` seconds after its start "
             "(even trials: uniform between 0.5 s and an uninterrupted run's length) or "
             "after its render stage began (odd trials, `in render`: uniform within the "
             "render stage's length), then checks the output folder "
             "(stray files: anything but the outputs and results.jsonl), the previous "
             "outputs (byte-for-byte), the scratch folders of the killed process in "
             f"{TEMP} (`avgen-KIND-PID-*`: synth work files, espeak library copies) and "
             "every child process seen during the run (ffmpeg, the render worker).", "",
             f"Uninterrupted: synth {full:.1f} s, batch of 3 jobs with 1 to do "
             f"{full_batch:.1f} s.", "",
             "Exit 143 is avgen's own exit after cleaning up (128 + SIGTERM); 0 means the "
             "run finished before the kill moment came (run times vary with the machine's "
             "load). -15 means the signal's default action ended the process: the signal "
             "landed before avgen's handler was installed (the first second or two of "
             "start-up, while Python imports the CLI and nothing is written yet) or while "
             "the interpreter shut down after its exit-time cleanup, when Python no longer "
             "runs signal handlers (our reading of when each happened, from the kill "
             "moments); the checks show nothing left there either.", ""]
    for name, title in (("synth", "avgen synth -o out/video.mp4 (previous video.mp4 "
                                  "present)"),
                        ("batch", "avgen synth --batch (2 of 3 jobs finished before)")):
        lines += [f"## {title}", "",
                  "| trial | kill at s | in render | exit | children seen | scratch seen | "
                  "stray files "
                  "| scratch left | children alive | previous intact |"
                  + (" torn result lines |" if name == "batch" else ""),
                  "|---:|---:|---|---:|---:|---:|---|---|---|---|"
                  + ("---:|" if name == "batch" else "")]
        for r in rows[name]:
            lines.append(f"| {r['trial']} | {r['kill_at']:.1f} | "
                         f"{'yes' if r['in_render'] else 'no'} | {r['exit']} | "
                         f"{r['children_seen']} | {r['scratch_seen']} | "
                         f"{', '.join(r['stray']) or 'none'} | "
                         f"{', '.join(r['scratch']) or 'none'} | "
                         f"{', '.join(map(str, r['orphans'])) or 'none'} | "
                         f"{'yes' if r['intact'] else 'NO'} |"
                         + (f" {r['torn_result_lines']} |" if name == "batch" else ""))
        clean = sum(1 for r in rows[name] if not r["stray"] and not r["scratch"]
                    and not r["orphans"] and r["intact"])
        lines += ["", f"Clean: {clean} of {len(rows[name])} trials.", ""]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
