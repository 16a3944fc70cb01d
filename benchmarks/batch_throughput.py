"""Throughput of `avgen synth --batch`: one worker process against two workers running
`--shard 0/2` and `--shard 1/2` side by side, on the same cores -> benchmarks/results/batch.md.

    python benchmarks/batch_throughput.py [--jobs 20] [--cores 2] [--checkpoint CKPT]

Each job is a short dialogue (`--turns` lines of the example dialogue, its own seed) with
the two example portraits. Without `--checkpoint` the joint model has random weights
(`--random default`: the default size, whose speed is what matters; `--random tiny`: a
smoke test), since speed does not depend on the weights. One worker gets all `--cores`
threads; with two workers each gets half, so both runs use the same cores. Wall time
includes each worker's start-up and model loading, which a batch pays once per process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def random_checkpoint(path: Path, size: str) -> None:
    """A joint model with random weights (default size or tiny) and a plain normaliser."""
    import numpy as np
    import torch

    from avgen.model.av_flow import MOTION_DIM, AVFlow, AVFlowConfig
    from avgen.model.av_checkpoint import save_checkpoint
    from avgen.train.av import TrainConfig
    from avgen.model.features import Normalizer

    torch.manual_seed(0)
    config = AVFlowConfig() if size == "default" else AVFlowConfig(d_model=32, n_blocks=2,
                                                                   n_heads=2, ff_mult=2)
    normalizer = Normalizer(np.full(80, -6.0, np.float32), np.full(80, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    save_checkpoint(path, AVFlow(config).eval(), normalizer, 0, TrainConfig())


def write_jobs(path: Path, count: int, turns: int) -> None:
    """`count` jobs of `turns` consecutive example lines each (wrapping), seeds 0..count-1."""
    lines = [l for l in (REPO / "examples" / "dialogue.txt").read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")]
    refs = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]
    with path.open("w") as f:
        for k in range(count):
            text = "\n".join(lines[(k * turns + i) % len(lines)] for i in range(turns))
            f.write(json.dumps({"text": text, "refs": refs, "seed": k}) + "\n")


def run_workers(workers: int, jobs: Path, out: Path, options: list[str], cores: int) -> float:
    """Wall seconds for `workers` processes covering the batch (shard k/workers each)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(max(cores // workers, 1)),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "avgen", "synth", "--batch", str(jobs),
                               "-o", str(out), "--shard", f"{k}/{workers}", *options],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for k in range(workers)]
    failed = []
    for k, proc in enumerate(procs):
        _, err = proc.communicate()
        if proc.returncode:
            failed.append(f"shard {k}/{workers} exited {proc.returncode}: "
                          f"{err.strip().splitlines()[-1] if err.strip() else ''}")
    seconds = time.perf_counter() - start
    if failed:
        raise SystemExit("; ".join(failed))
    return seconds


def summarise(out: Path, jobs: int, seconds: float, workers: int) -> dict:
    records = [json.loads(l) for f in sorted(out.glob("results*.jsonl"))
               for l in f.read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok"]
    if len(ok) != jobs or len({r["line"] for r in ok}) != jobs:
        raise SystemExit(f"{out}: expected {jobs} ok jobs, got {len(ok)}")
    return {"workers": workers, "seconds": seconds, "jobs_per_minute": 60 * jobs / seconds,
            "median_job_seconds": statistics.median(r["seconds"] for r in ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--turns", type=int, default=2, help="script lines per job")
    parser.add_argument("--cores", type=int, default=2, help="threads shared by the workers")
    parser.add_argument("--checkpoint", help="joint model checkpoint (default: random weights)")
    parser.add_argument("--random", choices=("default", "tiny"), default="default",
                        help="size of the random model when no --checkpoint is given")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--vocoder", default="vocos")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from avgen.formats import atomic_write_bytes

    with tempfile.TemporaryDirectory(prefix="avgen-batch-bench-") as work:
        work = Path(work)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = str(work / "random.safetensors")
            random_checkpoint(Path(checkpoint), args.random)
        jobs = work / "jobs.jsonl"
        write_jobs(jobs, args.jobs, args.turns)
        options = ["--checkpoint", checkpoint, "--steps", str(args.steps), "--size",
                   str(args.size), "--fps", str(args.fps), "--vocoder", args.vocoder]
        rows = []
        for workers in (1, 2):
            out = work / f"workers{workers}"
            seconds = run_workers(workers, jobs, out, options, args.cores)
            rows.append(summarise(out, args.jobs, seconds, workers))
            print(json.dumps(rows[-1]), file=sys.stderr)
    command = "python benchmarks/batch_throughput.py " + shlex.join(sys.argv[1:])
    model = args.checkpoint or f"random weights ({args.random} size)"
    text = [
        "# Batch throughput: one worker vs two shards", "",
        f"Made by `{command.strip()}` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs visible, {args.cores} used; "
        f"{platform.processor() or platform.machine()}).",
        "",
        f"{args.jobs} jobs of {args.turns} example lines each (seeds 0..{args.jobs - 1}), the two "
        f"example portraits; joint model: {model}; {args.steps} sampler steps (the default "
        f"solver), vocoder "
        f"{args.vocoder}, {args.size} px faces at {args.fps:g} fps. One worker runs "
        f"`avgen synth --batch` with {args.cores} threads; two workers run `--shard 0/2` and "
        f"`--shard 1/2` at once with {max(args.cores // 2, 1)} each. Wall time includes "
        "process start-up and model loading (once per worker).", "",
        "| workers | wall s | jobs / min | median s per job | speed-up |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        text.append(f"| {row['workers']} | {row['seconds']:.1f} | {row['jobs_per_minute']:.2f} | "
                    f"{row['median_job_seconds']:.2f} | "
                    f"{rows[0]['seconds'] / row['seconds']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, ("\n".join(text) + "\n").encode())
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
