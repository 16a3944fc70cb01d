"""Issue 7's figures for a joint-model checkpoint on held-out teacher dialogues
-> benchmarks/results/av_eval.md.

    pip install -e '.[eval]'
    python benchmarks/av_eval.py CORPUS --checkpoint RUN/av-latest.safetensors [--dialogues 6]

The model gets the teacher's exact tokens (so this measures the joint model, not the
duration model). Reported: WER of the generated speech per turn (Whisper tiny.en, speech
vocoded with the shipped vocoder) next to the teacher audio's WER on the same turns;
lip-closure F1 and FDe against the teacher motion; BC_h / BC_e with their chance level;
listener checks (speech energy while listening, nods and smiles per listening minute).
Run it for the highway model and the `--fusion separate` ablation to compare BC.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from avgen import formats
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.metrics.asr import WhisperTinyEn, word_error_rate
    from avgen.metrics.evaluate import evaluate
    from avgen.pipeline import GenerateConfig, generate_from_tokens
    from avgen.train import corpus
    from avgen.train.av import load_checkpoint
    from avgen.tokens import one_hot_log_probs
    from avgen.train.av_data import DialogueWindows

    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dialogues", type=int, default=6)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "av_eval.md")
    args = parser.parse_args()

    model, normalizer, step, _ = load_checkpoint(args.checkpoint)
    model.eval()
    data = DialogueWindows(args.corpus, model.config.voices, heldout=True)
    teacher_motions = {d.index: m for d, m in corpus.load_dialogues(args.corpus) if d.heldout}
    vocoder = load_vocoder("vocos")
    asr = WhisperTinyEn()
    refs, hyps, teacher_hyps, reports = [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        for k, (dialogue, _) in enumerate(data.dialogues[:args.dialogues]):
            n = dialogue.num_frames
            ids = [data.person_arrays(dialogue, p, 0, n)[1] for p in range(2)]
            tokens = np.stack([one_hot_log_probs(i) for i in ids])
            generated = generate_from_tokens(
                tokens, dialogue.voices, model, normalizer,
                GenerateConfig(steps=args.steps, seed=args.seed, voices=dialogue.voices))
            teacher, _ = corpus.dialogue_av(args.corpus, dialogue,
                                            teacher_motions[dialogue.index], data.utterances)
            formats.save(f"{work}/gen{k}.av.npz", formats.AV, generated)
            formats.save(f"{work}/ref{k}.av.npz", formats.AV, teacher)
            reports.append(evaluate([f"{work}/gen{k}.av.npz"], f"{work}/ref{k}.av.npz"))
            waves = [vocode(vocoder, generated[f"p{p}/mel"]) for p in range(2)]
            for person, index, start in zip(dialogue.persons, dialogue.utterances,
                                            dialogue.starts):
                u = data.utterances[index]
                segment = waves[person][start * 256:(start + u.num_frames) * 256]
                teacher_audio, _ = soundfile.read(u.audio_path(args.corpus), dtype="float32")
                refs.append(u.text)
                hyps.append(asr.transcribe(segment))
                teacher_hyps.append(asr.transcribe(teacher_audio))
            print(f"dialogue {dialogue.index} done", file=sys.stderr)

    def overall(key):
        values = [r["metrics"][key]["overall"] for r in reports]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    def reference(key):
        values = [r["metrics"][key].get("reference") for r in reports]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    lines = ["# Joint model on held-out teacher dialogues\n",
             f"`python benchmarks/av_eval.py {args.corpus} --checkpoint {args.checkpoint} "
             f"--dialogues {args.dialogues} --steps {args.steps}`; checkpoint step {step}, "
             f"fusion {model.config.fusion}, {len(refs)} turns in {len(reports)} dialogues\n",
             "| metric | generated | teacher |", "| --- | --- | --- |",
             f"| WER (Whisper tiny.en, per turn) | {word_error_rate(refs, hyps):.3f} | "
             f"{word_error_rate(refs, teacher_hyps):.3f} |",
             f"| lip-closure F1 vs teacher | {overall('lip_f1'):.3f} | 1 |",
             f"| FDe vs teacher | {overall('fde'):.3f} | 0 |" if "fde" in reports[0]["metrics"]
             else "",
             f"| BC_h | {overall('bc_h'):.3f} | {reference('bc_h'):.3f} |",
             f"| BC_e | {overall('bc_e'):.3f} | {reference('bc_e'):.3f} |",
             f"| BC of random beats (chance) | {overall('bc_chance'):.3f} | "
             f"{reference('bc_chance'):.3f} |",
             f"| speech energy while listening (nats) | {overall('listener_energy'):.3f} | "
             f"{reference('listener_energy'):.3f} |",
             f"| nods per listening minute | {overall('listener_nods_per_minute'):.1f} | "
             f"{reference('listener_nods_per_minute'):.1f} |",
             f"| fraction of listening smiling | {overall('listener_smile_fraction'):.3f} | "
             f"{reference('listener_smile_fraction'):.3f} |"]
    lines = [line for line in lines if line]
    args.o.parent.mkdir(parents=True, exist_ok=True)
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
