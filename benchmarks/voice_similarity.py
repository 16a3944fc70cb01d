"""How alike each pair of a joint model's voices sounds as the two people of one dialogue
-> a copy of the checkpoint carrying that table (`voice_similarity`, read by the speaker
mapper) with each voice's F0 median in those dialogues (`voice_f0_spoken`: the mapper gives
women only voices the model speaks in the female range) and
benchmarks/results/voice_similarity.md.

    pip install -e '.[eval,voices-eval]'
    python benchmarks/voice_similarity.py --checkpoint CKPT --write OUT.safetensors

For every pair of voices, short two-person dialogues (`SCRIPTS`, one order of speakers
each, so neither voice always speaks first) are generated with the pair's voices, each
person's speech is vocoded with the shipped vocoder, and the resemblyzer cosine between
the two people is taken in each; the table keeps the most alike of the scripts, so a
pair counts as clearly apart only if it sounded so in every one of them (between two
scripts the same pair moves by up to 0.06, more than the mapper's margin). This is the
measure the mapper's line (`avgen.speaker.CLEARLY_APART`) is about: how alike two people
sound together. Each
voice's speech alone (benchmarks/voices_eval.py --write-similarity) reads 0.04-0.10 less
alike than the same two voices in a dialogue, by an amount that differs from pair to pair,
so no single margin on that measure stands in for this one.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from voices_eval import SpeakerEncoder, cosine, f0_median, people_speech  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Short dialogues (about 10 s each) of everyday sentences; names play no part (the voices
# are given), the lines alternate so both people speak twice.
SCRIPTS = (
    """A: Good morning. Did the new relay arrive from the factory?
B: It did, and it works better than the old one ever did.
A: Then we can run the whole program again tonight.
B: Let us check every connection twice before we start.
""",
    """A: Where did you leave the map of the harbour?
B: On the kitchen table, under the blue notebook.
A: I looked there this morning and found only the keys.
B: Then your brother must have taken it to the boat.
""",
    """A: How was the concert last night? I heard it sold out.
B: Wonderful. The violins were so quiet at the start that nobody moved.
A: I wish I had gone with you instead of working late.
B: They play again in spring, so we can buy tickets early.
""",
    """A: Could you pass me the small screwdriver, please?
B: Here you are. Is the radio broken again?
A: Only the switch. It needs a new spring and a drop of oil.
B: My grandfather fixed radios like that for fifty years.
""",
)


def pair_similarity(model, normalizer, vocoder, encoder, voices: tuple[str, str],
                    seed: int = 0) -> tuple[list[float], list[float]]:
    """(cosine between the two people in each of `SCRIPTS`, F0 medians of voices[0] then
    voices[1] per script)."""
    from avgen.text.script import parse_script

    cosines, f0s = [], []
    for k, text in enumerate(SCRIPTS):
        # every second script swaps who speaks first; its speech is put back in the
        # order of `voices`
        swap = k % 2
        waves = people_speech(model, normalizer, vocoder, parse_script(text, f"pair-{k}"),
                              voices[::-1] if swap else voices, seed=seed)
        if swap:
            waves = waves[::-1]
        cosines.append(cosine(encoder.embed(waves[0]), encoder.embed(waves[1])))
        f0s += [f0_median(w) for w in waves]
    return cosines, f0s


def measure(checkpoint: str | None, encoder) -> tuple[tuple[str, ...], dict, dict]:
    """(voice names, {(i, j): cosine per script} for each pair i < j, F0 median per voice
    over all its dialogues)."""
    from avgen.audio.vocoder import load_vocoder
    from avgen.pipeline import load_av_model

    model, normalizer = load_av_model(checkpoint)
    vocoder = load_vocoder("vocos")
    names = tuple(model.config.voices)
    cosines: dict[tuple[int, int], list[float]] = {}
    f0s: dict[str, list[float]] = {n: [] for n in names}
    pairs = list(itertools.combinations(range(len(names)), 2))
    start = time.perf_counter()
    for done, (i, j) in enumerate(pairs, 1):
        cosines[i, j], f0 = pair_similarity(model, normalizer, vocoder, encoder,
                                            (names[i], names[j]))
        f0s[names[i]] += f0[0::2]
        f0s[names[j]] += f0[1::2]
        print(f"{done}/{len(pairs)} {names[i]}/{names[j]} "
              + " ".join(f"{c:.3f}" for c in cosines[i, j])
              + f" ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return names, cosines, {n: float(np.median(v)) for n, v in f0s.items() if v}


def tables(names, cosines: dict) -> tuple[np.ndarray, np.ndarray]:
    """(each pair's most alike script: the mapper's table, each pair's mean), (V, V) with
    ones on the diagonal."""
    most, mean = np.eye(len(names)), np.eye(len(names))
    for (i, j), scores in cosines.items():
        most[i, j] = most[j, i] = max(scores)
        mean[i, j] = mean[j, i] = float(np.mean(scores))
    return most, mean


def report_lines(checkpoint: str, names, matrix: np.ndarray, mean: np.ndarray, f0s: dict,
                 line: float, command: str) -> list[str]:
    index_pairs = list(itertools.combinations(range(len(names)), 2))
    apart = sum(matrix[i, j] <= line for i, j in index_pairs)
    apart_by_mean = sum(mean[i, j] <= line for i, j in index_pairs)
    lines = ["# Voice similarity in dialogue", "",
             f"Checkpoint: `{checkpoint}`. Resemblyzer cosine between the two people of "
             f"{len(SCRIPTS)} short dialogues per pair of voices; the table the speaker "
             f"mapper reads keeps the most alike of them. {apart} of {len(index_pairs)} pairs "
             f"are at most {line:.2f} alike in every dialogue (clearly apart for the mapper); "
             f"{apart_by_mean} by the mean over the dialogues. Largest difference between a "
             f"pair's most alike dialogue and its mean: {float(np.max(matrix - mean)):.3f}.",
             "",
             "| voice | F0 median in dialogue (Hz) | least like | most like |",
             "| --- | --- | --- | --- |"]
    for i, name in enumerate(names):
        order = sorted((matrix[i, j], names[j]) for j in range(len(names)) if j != i)
        lines.append(f"| {name} | {f0s.get(name, float('nan')):.0f} | "
                     + ", ".join(f"{n} {s:.2f}" for s, n in order[:3]) + " | "
                     + ", ".join(f"{n} {s:.2f}" for s, n in order[::-1][:3]) + " |")
    lines += ["", "Reproduce: `" + command + "`", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None,
                        help="joint-model checkpoint (default: the registered one)")
    parser.add_argument("--write", type=Path, required=True, metavar="OUT",
                        help="write a copy of the checkpoint carrying the table here")
    parser.add_argument("-o", "--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "voice_similarity.md")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write each pair's cosine per script here")
    args = parser.parse_args()
    from avgen.model.av_checkpoint import with_voice_similarity
    from avgen.pipeline import av_checkpoint_path
    from avgen.speaker import CLEARLY_APART

    names, cosines, f0s = measure(args.checkpoint, SpeakerEncoder())
    matrix, mean = tables(names, cosines)
    with_voice_similarity(av_checkpoint_path(args.checkpoint), matrix.tolist(), args.write,
                          f0_spoken=[f0s.get(name, 0.0) for name in names])
    command = "python benchmarks/voice_similarity.py " + " ".join(sys.argv[1:])
    args.output.write_text("\n".join(report_lines(args.checkpoint or "av-flow (registered)",
                                                  names, matrix, mean, f0s, CLEARLY_APART,
                                                  command)))
    if args.json:
        import json

        args.json.write_text(json.dumps(
            {"scripts": len(SCRIPTS), "f0_spoken": f0s,
             "cosines": {f"{names[i]}/{names[j]}": [round(float(c), 4) for c in scores]
                         for (i, j), scores in cosines.items()}}, indent=1))
    print(f"wrote {args.write} and {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
