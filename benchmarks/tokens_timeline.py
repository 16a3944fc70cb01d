"""Plot the example dialogue's token timeline (learned model vs espeak baseline).

    python benchmarks/tokens_timeline.py [--checkpoint PATH] [--script examples/dialogue.txt]

Writes benchmarks/results/tokens_timeline.png: (1) the turns of both people on the
model clock for both duration sources; (2) the learned decoder's token posteriors for the
first turn (rows: the symbols that turn uses, in order of first use), with the
timeline's phonemes written at their frames; (3) the same turn's phoneme boundaries from
espeak and from the learned model, phone by phone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avgen.constants import FRAMES_PER_SECOND as FPS  # noqa: E402
from avgen.text.script import read_script  # noqa: E402
from avgen.text.symbols import SILENCE_ID, SYMBOLS  # noqa: E402
from avgen.text.timeline import EspeakDurations, LearnedDurations, build_timeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--script", type=Path, default=REPO / "examples/dialogue.txt")
    parser.add_argument("--output", type=Path,
                        default=REPO / "benchmarks/results/tokens_timeline.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dialogue = read_script(args.script)
    timelines = {"learned": build_timeline(dialogue, LearnedDurations(args.checkpoint)),
                 "espeak": build_timeline(dialogue, EspeakDurations())}
    fig, axes = plt.subplots(3, 1, figsize=(16, 11),
                             gridspec_kw={"height_ratios": [1.2, 2.4, 1.0]})

    ax = axes[0]
    colors = ("tab:blue", "tab:orange")
    for row, (name, tl) in enumerate(timelines.items()):
        for turn in tl.turns:
            y = row * 2 + turn.person
            ax.barh(y, (turn.end_frame - turn.start_frame) / FPS, left=turn.start_frame / FPS,
                    color=colors[turn.person], alpha=0.8, height=0.8)
        for cue in tl.cues:
            ax.plot([cue.start_frame / FPS], [row * 2 + cue.person], "k|", markersize=14)
        ax.axvline(tl.num_frames / FPS, color="grey", lw=0.8, ls=":")
    ax.set_yticks(range(4), [f"{src}: {tl.names[p]}" for src, tl in timelines.items()
                             for p in (0, 1)])
    ax.set_xlabel("seconds (| = cue)")
    ax.set_title(f"{args.script.name}: turns; learned {timelines['learned'].num_frames / FPS:.1f}"
                 f" s, espeak {timelines['espeak'].num_frames / FPS:.1f} s")

    tl = timelines["learned"]
    turn = tl.turns[0]
    start, end = turn.start_frame, turn.end_frame
    logp = tl.token_logits(turn.person)[start:end]
    span = slice(turn.phoneme_start, turn.phoneme_start + turn.phoneme_count)
    used = list(dict.fromkeys(int(i) for i in tl.phoneme_ids[span]))
    ax = axes[1]
    ax.imshow(np.exp(logp[:, used]).T, aspect="auto", origin="lower", cmap="magma",
              extent=(start / FPS, end / FPS, -0.5, len(used) - 0.5), vmin=0, vmax=1)
    ax.set_yticks(range(len(used)), [SYMBOLS[i] for i in used], fontsize=7)
    for sid, s0, d in zip(tl.phoneme_ids[span], tl.phoneme_starts[span],
                          tl.phoneme_durations[span]):
        ax.axvline(s0 / FPS, color="white", lw=0.3, alpha=0.6)
        ax.text((s0 + d / 2) / FPS, len(used) - 0.3, SYMBOLS[sid], ha="center", va="bottom",
                fontsize=7, clip_on=False)
    ax.set_title(f"learned token posteriors, turn 1 ({tl.names[turn.person]}): {turn.text}",
                 pad=16)
    ax.set_xlabel("seconds")

    ax = axes[2]
    for row, (name, t) in enumerate(timelines.items()):
        tn = t.turns[0]
        sp = slice(tn.phoneme_start, tn.phoneme_start + tn.phoneme_count)
        for sid, s0, d in zip(t.phoneme_ids[sp], t.phoneme_starts[sp], t.phoneme_durations[sp]):
            rel = (s0 - tn.start_frame) / FPS
            ax.barh(row, d / FPS, left=rel, height=0.8, edgecolor="black", lw=0.4,
                    color="lightgrey" if sid == SILENCE_ID else "tab:green", alpha=0.7)
            ax.text(rel + d / FPS / 2, row, SYMBOLS[sid], ha="center", va="center", fontsize=6)
    ax.set_yticks([0, 1], list(timelines))
    ax.set_xlabel("seconds from the start of turn 1 (grey = pause)")
    ax.set_title("turn 1 phonemes: learned vs espeak")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
