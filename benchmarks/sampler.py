"""Sampler settings (ODE solver x steps) on the example dialogue, end to end as a user
runs it (learned durations, shipped joint model and vocoder): WER per turn (Whisper
tiny.en), lip-closure F1 against the script's p/b/m phonemes, the joint model's time,
and how far each setting's mel and motion lie from the 8-step Euler result of the same
seed -> benchmarks/results/sampler.md.

    pip install -e '.[eval]'
    python benchmarks/sampler.py [--seeds 3] [--settings euler:8 euler:4 midpoint:2 heun:2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's avgen, not whichever one is installed


def main() -> None:
    import torch

    from avgen import formats
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.metrics.asr import WhisperTinyEn, word_error_rate
    from avgen.metrics.evaluate import evaluate
    from avgen.model.av_flow import evaluations_of
    from avgen.pipeline import GenerateConfig, generate, load_av_model
    from avgen.text.script import read_script
    from avgen.speaker import voices_for_faces
    from avgen.text.timeline import LearnedDurations, build_timeline, save_timeline

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", nargs="+",
                        default=["euler:8", "euler:4", "midpoint:2", "heun:2"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "sampler.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings]
    script = REPO / "examples" / "dialogue.txt"
    photos = [str(REPO / "examples" / n) for n in ("eileen.png", "grace.png")]
    model, normalizer = load_av_model()
    vocoder = load_vocoder("vocos")
    asr = WhisperTinyEn()
    voices = voices_for_faces(photos, model.config.voices)
    figures = {s: {"refs": [], "hyps": [], "f1": [], "seconds": [], "audio_seconds": 0.0,
                   "mel_gap": [], "motion_gap": []} for s in settings}
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.seeds):
            timeline = build_timeline(read_script(str(script)), LearnedDurations(seed=seed))
            save_timeline(f"{work}/t{seed}.tokens.npz", timeline)
            baseline = None
            for solver, steps in settings:
                start = time.perf_counter()
                av = generate(timeline, model, normalizer,
                              GenerateConfig(seed=seed, voices=voices, steps=steps,
                                             solver=solver))
                row = figures[(solver, steps)]
                row["seconds"].append(time.perf_counter() - start)
                row["audio_seconds"] += av["p0/mel"].shape[0] * 256 / 22050
                if baseline is None:
                    baseline = av
                row["mel_gap"].append(float(np.mean([np.abs(av[f"p{p}/mel"] - baseline[
                    f"p{p}/mel"]).mean() for p in range(2)])))
                row["motion_gap"].append(float(np.mean([np.abs(av[f"p{p}/expression"] - baseline[
                    f"p{p}/expression"]).mean() for p in range(2)])))
                path = f"{work}/{solver}{steps}-{seed}.av.npz"
                formats.save(path, formats.AV, av)
                report = evaluate([path], tokens=f"{work}/t{seed}.tokens.npz")
                row["f1"].append(report["metrics"]["lip_f1"]["overall"])
                waves = [vocode(vocoder, av[f"p{p}/mel"]) for p in range(2)]
                for turn in timeline.turns:
                    segment = waves[turn.person][turn.start_frame * 256:turn.end_frame * 256]
                    row["refs"].append(turn.text)
                    row["hyps"].append(asr.transcribe(segment))
                print(f"seed {seed} {solver}:{steps} done", flush=True)
    lines = ["# Sampler settings on the example dialogue\n",
             f"`python benchmarks/sampler.py --seeds {args.seeds} --settings "
             f"{' '.join(args.settings)} --threads {args.threads}`: examples/dialogue.txt, "
             f"voices {', '.join(voices)}, learned durations (seeds 0-{args.seeds - 1}), "
             "default mel temperature. Lip F1 is against the script's p/b/m phonemes; the "
             "gaps are mean absolute differences from the first setting's result for the "
             "same seed (normalised log-mel; expression coefficients).\n",
             "| solver | steps | model evaluations | WER | lip F1 | joint model s per "
             "dialogue s | mel gap | expression gap |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (solver, steps), row in figures.items():
        lines.append(
            f"| {solver} | {steps} | {evaluations_of(steps, solver)} | "
            f"{word_error_rate(row['refs'], row['hyps']):.3f} | {np.mean(row['f1']):.3f} | "
            f"{sum(row['seconds']) / row['audio_seconds']:.3f} | "
            f"{np.mean(row['mel_gap']):.3f} | {np.mean(row['motion_gap']):.4f} |")
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
