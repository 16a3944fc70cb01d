"""Joint-model checkpoints on held-out teacher dialogues, in AV-Flow's Table 1 layout
-> benchmarks/results/av_eval.md.

    pip install -e '.[eval]'
    python benchmarks/av_eval.py CORPUS --checkpoint ours=RUN/av-latest.safetensors \
        [--checkpoint separate=ABLATION/av-latest.safetensors ...] [--dialogues 3] [--samples 2]

Every model gets the teacher's exact tokens (so this measures the joint model, not the
duration model) and the same seeds. Per model: WER of the generated speech per turn
(Whisper tiny.en, speech vocoded with the shipped vocoder), MCD per turn against the
teacher's mel (13 MFCC, DTW), lip-closure F1 and FDe against the teacher motion, Div_h /
Div_e (std across `--samples` seeds), BC_h / BC_e with their chance level (random beats
at the same rate), and the listener checks (speech energy while listening, nods and
smiles per listening minute). The teacher row is the teacher itself where that means
something.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]


def evaluate_checkpoint(corpus_root: Path, checkpoint: str, dialogues: int, steps: int,
                        samples: int, asr, teacher_cache: dict, temperature: float = 1.0,
                        start: int = 0, sway: float = 0.0, solver: str = "euler") -> dict:
    """Figures of one checkpoint (see the module docstring); teacher transcripts are
    cached across checkpoints in `teacher_cache`."""
    from avgen import formats
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.metrics.asr import word_error_rate
    from avgen.metrics.audio import mel_cepstral_distortion
    from avgen.metrics.evaluate import evaluate
    from avgen.pipeline import GenerateConfig, generate_from_tokens
    from avgen.text.timeline import one_hot_log_probs
    from avgen.train import corpus
    from avgen.train.dialogues import dialogue_av, load_dialogues
    from avgen.model.av_checkpoint import load_checkpoint
    from avgen.train.av_data import DialogueWindows

    model, normalizer, step, _ = load_checkpoint(checkpoint)
    model.eval()
    data = DialogueWindows(corpus_root, model.config.voices, heldout=True)
    teacher_motions = {d.index: m for d, m in load_dialogues(corpus_root) if d.heldout}
    vocoder = load_vocoder("vocos")
    refs, hyps, teacher_hyps, mcds, reports = [], [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        for k, (dialogue, _) in enumerate(data.dialogues[start:start + dialogues]):
            n = dialogue.num_frames
            ids = [data.person_arrays(dialogue, p, 0, n)[1] for p in range(2)]
            tokens = np.stack([one_hot_log_probs(i) for i in ids])
            paths = []
            for seed in range(samples):
                generated = generate_from_tokens(
                    tokens, dialogue.voices, model, normalizer,
                    GenerateConfig(steps=steps, seed=seed, voices=dialogue.voices,
                                   temperature=temperature,
                                   sway=sway, solver=solver))
                paths.append(f"{work}/gen{k}-{seed}.av.npz")
                formats.save(paths[-1], formats.AV, generated)
                if seed == 0:
                    first = generated
            teacher, _ = dialogue_av(corpus_root, dialogue,
                                            teacher_motions[dialogue.index], data.utterances)
            formats.save(f"{work}/ref{k}.av.npz", formats.AV, teacher)
            reports.append(evaluate(paths, f"{work}/ref{k}.av.npz"))
            waves = [vocode(vocoder, first[f"p{p}/mel"]) for p in range(2)]
            for person, index, start in zip(dialogue.persons, dialogue.utterances,
                                            dialogue.starts):
                u = data.utterances[index]
                end = start + u.num_frames
                segment = waves[person][start * 256:end * 256]
                refs.append(u.text)
                hyps.append(asr.transcribe(segment))
                mcds.append(mel_cepstral_distortion(teacher[f"p{person}/mel"][start:end],
                                                    first[f"p{person}/mel"][start:end]))
                if index not in teacher_cache:
                    audio, _ = soundfile.read(u.audio_path(corpus_root), dtype="float32")
                    teacher_cache[index] = asr.transcribe(audio)
                teacher_hyps.append(teacher_cache[index])
            print(f"{checkpoint}: dialogue {dialogue.index} done", file=sys.stderr)

    def overall(key, field="overall"):
        values = [r["metrics"][key].get(field) for r in reports]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    keys = ("lip_f1", "fde", "div_h", "div_e", "bc_h", "bc_e", "bc_chance", "listener_energy",
            "listener_nods_per_minute", "listener_smiles_per_minute", "listener_smile_fraction")
    return {"step": step, "fusion": model.config.fusion, "turns": len(refs),
            "wer": word_error_rate(refs, hyps), "teacher_wer": word_error_rate(refs, teacher_hyps),
            "mcd": float(np.median(mcds)),
            **{k: overall(k) for k in keys},
            **{f"teacher_{k}": overall(k, "reference") for k in keys}}


def evaluate_all(corpus: Path, checkpoints: list[str], dialogues: int = 3, samples: int = 2,
                 steps: int | None = None, temperature: float = 1.0, start: int = 0,
                 cache: Path | None = None, sway: float | None = None,
                 solver: str | None = None) -> dict:
    """{label: figures} for `checkpoints` given as LABEL=PATH (or PATH: the label is its
    folder's name). With `cache`, figures already measured with the same settings for the
    same file (path, size, modification time) are reused, and new ones added."""
    import json

    from avgen.metrics.asr import WhisperTinyEn

    steps, sway, solver = sampler(steps, sway, solver)  # the key holds what was run
    asr, teacher_cache = None, {}
    kept = json.loads(cache.read_text()) if cache and cache.exists() else {}
    results = {}
    for spec in checkpoints:
        label, _, path = spec.rpartition("=")
        stat = Path(path).stat()
        key = json.dumps([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns,
                          dialogues, samples, steps, temperature, start, sway, solver])
        if key not in kept:
            asr = asr or WhisperTinyEn()
            kept[key] = evaluate_checkpoint(corpus, path, dialogues, steps, samples, asr,
                                            teacher_cache, temperature, start, sway, solver)
            if cache:
                cache.write_text(json.dumps(kept, indent=1))
        results[label or Path(path).parent.name] = kept[key]
    return results


def sampler(steps: int | None, sway: float | None, solver: str | None
            ) -> tuple[int, float, str]:
    """The sampler's steps, spacing and solver: as given, else GenerateConfig's defaults."""
    from avgen.pipeline import GenerateConfig

    return ((GenerateConfig.steps if steps is None else steps),
            (GenerateConfig.sway if sway is None else sway), (solver or GenerateConfig.solver))


def seconds_per_smile(fraction: float, per_minute: float) -> float:
    """Seconds of smiling (frames over the threshold) per smile event: 60 x fraction /
    smiles per minute; nan where no smile was counted."""
    return 60.0 * fraction / per_minute if per_minute else math.nan


def table_lines(results: dict, dialogues: int, samples: int, steps: int | None,
                temperature: float, start: int, sway: float | None = None,
                solver: str | None = None) -> list[str]:
    """Markdown: the Table 1 layout (one row per result, then the teacher) and the
    listener table."""
    steps, sway, solver = sampler(steps, sway, solver)
    any_result = next(iter(results.values()))
    lines = [f"{any_result['turns']} turns in held-out dialogues {start} to "
             f"{start + dialogues - 1}, teacher "
             f"tokens, {steps} {solver} steps (sway {sway:g}), mel temperature {temperature}, "
             f"{samples} seeds for Div. BC is the "
             "fraction of audio onsets with a motion beat nearby; 'chance' is the same for "
             "random beats at the motion's beat rate.\n",
             "| model | fusion | step | WER | MCD (dB) | lip F1 | FDe | Div_h | Div_e | BC_h | "
             "BC_e | BC chance |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['fusion']} | {r['step']} | {r['wer']:.3f} | "
                     f"{r['mcd']:.2f} | {r['lip_f1']:.3f} | {r['fde']:.3f} | {r['div_h']:.4f} | "
                     f"{r['div_e']:.4f} | {r['bc_h']:.3f} | {r['bc_e']:.3f} | "
                     f"{r['bc_chance']:.3f} |")
    t = any_result
    lines.append(f"| teacher | | | {t['teacher_wer']:.3f} | 0 | 1 | 0 | | | {t['teacher_bc_h']:.3f} "
                 f"| {t['teacher_bc_e']:.3f} | {t['teacher_bc_chance']:.3f} |")
    lines += ["", "Listener (frames where the person does not speak):", "",
              "| model | speech energy (nats) | nods per minute | fraction smiling | "
              "smiles per minute | seconds smiling per smile |",
              "| --- | --- | --- | --- | --- | --- |"]
    rows = [(label, r, "") for label, r in results.items()] + [("teacher", t, "teacher_")]
    for label, r, prefix in rows:
        fraction, smiles = (r.get(f"{prefix}listener_{k}", math.nan)
                            for k in ("smile_fraction", "smiles_per_minute"))
        lines.append(f"| {label} | {r[prefix + 'listener_energy']:.3f} | "
                     f"{r[prefix + 'listener_nods_per_minute']:.1f} | {fraction:.3f} | "
                     f"{smiles:.1f} | {seconds_per_smile(fraction, smiles):.2f} |")
    return lines


def write_keeping_notes(path: Path, lines: list[str]) -> None:
    """Write `lines` to `path` atomically; what an earlier version had below a NOTES line
    (hand-written reading of the figures) is kept."""
    text = "\n".join(lines) + "\n"
    if path.exists() and NOTES in path.read_text():
        text += "\n" + NOTES + path.read_text().split(NOTES, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


NOTES = "<!-- notes: kept when the figures above are regenerated -->"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--checkpoint", action="append", required=True,
                        help="LABEL=PATH (or PATH); repeat to compare models")
    parser.add_argument("--dialogues", type=int, default=3)
    parser.add_argument("--start", type=int, default=0,
                        help="skip this many held-out dialogues (e.g. those used to choose "
                        "the temperature)")
    parser.add_argument("--samples", type=int, default=2, help="seeds per dialogue (Div)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps (default: GenerateConfig's)")
    parser.add_argument("--solver", default=None, help="ODE solver (default: GenerateConfig's)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--sway", type=float, default=None,
                        help="spacing of the sampler's steps (default: GenerateConfig's)")
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "av_eval.md")
    parser.add_argument("--json", type=Path, help="keep each checkpoint's figures here and "
                        "reuse them on a later run with the same settings")
    args = parser.parse_args()
    args.steps = sampler(args.steps, args.sway, args.solver)[0]  # the command shows it
    settings = dict(dialogues=args.dialogues, samples=args.samples, steps=args.steps,
                    temperature=args.temperature, start=args.start, sway=args.sway,
                    solver=args.solver)
    results = evaluate_all(args.corpus, args.checkpoint, cache=args.json, **settings)
    command = ("python benchmarks/av_eval.py " + shlex.quote(str(args.corpus)) + " "
               + " ".join(f"--checkpoint {shlex.quote(c)}" for c in args.checkpoint)
               + f" --dialogues {args.dialogues} --samples {args.samples} --steps {args.steps}"
               + f" --temperature {args.temperature} --start {args.start}"
               + ("" if args.sway is None else f" --sway {args.sway:g}")
               + ("" if args.solver is None else f" --solver {args.solver}"))
    lines = ["# Joint model on held-out teacher dialogues (AV-Flow Table 1 layout)\n",
             f"`{command}`\n", *table_lines(results, **settings)]
    write_keeping_notes(args.o, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
