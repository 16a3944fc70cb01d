"""AV-Flow's Table 1 for our joint model: the four ways the audio and motion streams can
meet (highway fusion = ours, separate models, shared weights, cascaded audio-then-motion),
trained with equal budgets and evaluated alike -> benchmarks/results/table1.md.

    pip install -e '.[eval]'
    python benchmarks/table1.py CORPUS --runs RUNS [--budget 2000 --budget 4000] \
        [--schedule 7000] [--dialogues 3] [--samples 2] [--temperature 1.0]

Per variant, RUNS/FUSION is an ordinary training run (`avgen train av CORPUS -o RUNS/FUSION
--steps SCHEDULE --stop-at BUDGET --fusion FUSION`, seed 0, default model size); every
variant follows the same learning-rate schedule of SCHEDULE steps and is stopped at each
BUDGET, where its checkpoint is kept as RUNS/eval/FUSION-BUDGET.safetensors. Everything is
resumable: kept checkpoints are not retrained, runs go on from where they stopped, and
figures already measured are reused (RUNS/eval/table1.json). Placing a checkpoint at
RUNS/eval/FUSION-BUDGET.safetensors by hand (e.g. the shipped run's snapshot at that
step) uses it instead of training one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import av_eval  # noqa: E402

FUSIONS = ("highway", "separate", "shared", "cascaded")


def checkpoint_at(corpus: Path, runs: Path, fusion: str, budget: int, schedule: int,
                  threads: int) -> Path:
    """RUNS/eval/FUSION-BUDGET.safetensors, training (or resuming) the variant's run up to
    `budget` steps of the `schedule` if it is not there yet."""
    from avgen.model.av_checkpoint import load_checkpoint
    from avgen.train.av import CHECKPOINT

    kept = runs / "eval" / f"{fusion}-{budget}.safetensors"
    if kept.exists():
        return kept
    run = runs / fusion
    command = [sys.executable, "-m", "avgen", "train", "av", str(corpus), "-o", str(run),
               "--steps", str(schedule), "--stop-at", str(budget), "--fusion", fusion,
               "--threads", str(threads)]
    print("+ " + " ".join(command[1:]), file=sys.stderr)
    subprocess.run(command, check=True)
    step = load_checkpoint(run / CHECKPOINT)[2]
    if step != budget:  # a run that had already gone past this budget
        raise SystemExit(f"{run / CHECKPOINT} is at step {step}, not {budget}: its "
                         f"step-{budget} checkpoint is gone; place one at {kept}")
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_name(kept.name + ".partial")
    shutil.copy2(run / CHECKPOINT, partial)
    partial.replace(kept)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--runs", type=Path, required=True, help="folder of the runs")
    parser.add_argument("--budget", type=int, action="append",
                        help="training steps per variant (repeat for several; default 2000)")
    parser.add_argument("--schedule", type=int, default=7000,
                        help="length of the learning-rate schedule (the shipped model's)")
    parser.add_argument("--fusion", action="append", choices=FUSIONS,
                        help="variants (default: all four)")
    parser.add_argument("--dialogues", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="Euler steps")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("-o", type=Path,
                        default=av_eval.REPO / "benchmarks" / "results" / "table1.md")
    args = parser.parse_args()
    budgets = sorted(set(args.budget or [2000]))
    fusions = args.fusion or list(FUSIONS)
    if max(budgets) > args.schedule:
        parser.error(f"--budget {max(budgets)} is past --schedule {args.schedule}")

    checkpoints = [f"{fusion} @{budget}="
                   f"{checkpoint_at(args.corpus, args.runs, fusion, budget, args.schedule, args.threads)}"
                   for budget in budgets for fusion in fusions]
    # Euler, evenly spaced, as the table was measured (`--steps` counts Euler steps)
    settings = dict(dialogues=args.dialogues, samples=args.samples, steps=args.steps,
                    temperature=args.temperature, start=0, sway=0.0, solver="euler")
    results = av_eval.evaluate_all(args.corpus, checkpoints,
                                   cache=args.runs / "eval" / "table1.json", **settings)
    command = (f"python benchmarks/table1.py {args.corpus} --runs {args.runs} "
               + " ".join(f"--budget {b}" for b in budgets)
               + f" --schedule {args.schedule}"
               + "".join(f" --fusion {f}" for f in args.fusion or [])
               + f" --dialogues {args.dialogues} --samples {args.samples} --steps {args.steps}"
               + f" --temperature {args.temperature}")
    lines = ["# Table 1: how the audio and motion streams meet, at equal training budgets\n",
             f"`{command}`\n",
             "Each variant: `avgen train av CORPUS -o RUNS/FUSION --steps "
             f"{args.schedule} --stop-at BUDGET --fusion FUSION` (seed 0, batch 8 x 300 "
             "frames, the same learning-rate schedule), evaluated on held-out dialogues it "
             "never saw.\n",
             *av_eval.table_lines(results, **settings)]
    av_eval.write_keeping_notes(args.o, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
