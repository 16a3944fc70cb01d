"""WER of the README's example dialogue synthesised end to end (learned durations, the
shipped joint model and vocoder, default settings), per turn with Whisper tiny.en
-> benchmarks/results/example_wer.md.

    pip install -e '.[eval]'
    python benchmarks/example_wer.py [--seeds 3]

Unlike av_eval.py (teacher tokens on held-out corpus dialogues), this is the path a user
takes: script text -> text-to-tokens -> joint model. Reference words are the script's
turns with cues removed; numbers are compared as written ("1947", "$5"), which
normalisation of the transcripts does not always match.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.metrics.asr import WhisperTinyEn, word_error_rate
    from avgen.pipeline import GenerateConfig, generate, load_av_model
    from avgen.text.script import read_script
    from avgen.speaker import choose_voices, model_voices
    from avgen.text.timeline import LearnedDurations, build_timeline

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--steps", type=int, default=GenerateConfig.steps)
    parser.add_argument("--precision", default=GenerateConfig.precision,
                        help="auto, float32 or bfloat16 (GenerateConfig.precision)")
    parser.add_argument("--voice", action="append", default=None,
                        help="one voice per person, in order (default: the speaker mapper's)")
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" / "example_wer.md")
    args = parser.parse_args()
    script = REPO / "examples" / "dialogue.txt"
    refs_images = [str(REPO / "examples" / n) for n in ("eileen.png", "grace.png")]
    model, normalizer = load_av_model(args.checkpoint)
    vocoder = load_vocoder("vocos")
    asr = WhisperTinyEn()
    dialogue = read_script(str(script))
    voices = tuple(args.voice) if args.voice else tuple(
        c.voice for c in choose_voices(dialogue.names, refs_images, model_voices(model.config),
                                       directives=dialogue.voice_directives()))
    rows, all_refs, all_hyps = [], [], []
    for seed in range(args.seeds):
        timeline = build_timeline(read_script(str(script)), LearnedDurations(seed=seed))
        settings = GenerateConfig(seed=seed, voices=voices, steps=args.steps,
                                  precision=args.precision)
        av = generate(timeline, model, normalizer, settings)
        waves = [vocode(vocoder, av[f"p{p}/mel"]) for p in range(2)]
        refs, hyps = [], []
        for turn in timeline.turns:
            segment = waves[turn.person][turn.start_frame * 256:turn.end_frame * 256]
            refs.append(turn.text)
            hyps.append(asr.transcribe(segment))
        rows.append((seed, word_error_rate(refs, hyps), hyps))
        all_refs += refs
        all_hyps += hyps
    lines = ["# The example dialogue, synthesised end to end\n",
             f"`python benchmarks/example_wer.py --seeds {args.seeds} --steps {args.steps} "
             f"--precision {args.precision}"
             + "".join(f" --voice {v}" for v in args.voice or []) + "`: examples/dialogue.txt, voices "
             f"{', '.join(voices)}, learned durations, {args.steps} {GenerateConfig.solver} steps, "
             f"{settings.evaluation_precision()} arithmetic.\n",
             "| seed | WER (per turn, Whisper tiny.en) |", "| --- | --- |"]
    lines += [f"| {seed} | {wer:.3f} |" for seed, wer, _ in rows]
    lines += [f"| all | {word_error_rate(all_refs, all_hyps):.3f} |", "",
              "Seed 0 transcripts:", ""]
    lines += [f"- {h}" for h in rows[0][2]]
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
