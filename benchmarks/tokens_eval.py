"""Text-to-tokens on held-out teacher sentences vs the espeak baseline.

    python benchmarks/tokens_eval.py /work/corpus [--checkpoint PATH] [--limit N]

Writes benchmarks/results/tokens.md. Both duration sources go through the same code path
`avgen tokens` uses (`DurationSource.segment` on the sentence's phrases, then the
timeline's frame placement at rate 1), and are compared with the teacher's exact
durations on the speech span: every phone and every pause between phrases, without the
teacher's lead-in and tail silence (the dialogue timeline sets those itself).

Figures:
  - duration MAE per phone (frames), and per pause between phrases;
  - utterance length error: |predicted span / teacher span - 1|, mean and median;
  - frame accuracy of argmax tokens: (a) the token decoder laid out on the teacher's
    durations (direct and flow heads) -- how well the decoder reads its input; (b) end to
    end: the predicted timeline's argmax token at frame t vs the teacher's, over the
    longer of the two lengths (frames past the shorter one count as wrong).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avgen.align import gaussian_log_likelihood, monotonic_alignment_search  # noqa: E402
from avgen.model.text_to_tokens import collate_entries, phrases_to_entries  # noqa: E402
from avgen.text.symbols import SILENCE_ID, phones_to_ids  # noqa: E402
from avgen.text.phrases import to_phrases  # noqa: E402
from avgen.text.timeline import EspeakDurations, LearnedDurations, _Cursor  # noqa: E402
from avgen.train.corpus import (CorpusConfig, is_heldout, load_features,  # noqa: E402
                                 load_utterances)


def entry_frames(phrases, timing) -> np.ndarray:
    """Float frames per model entry (phone symbols, then pauses) from a SegmentTiming."""
    out = []
    for phrase, phone_frames, pause in zip(phrases, timing.phone_frames, timing.pause_frames):
        for phone, length in zip(phrase.phones, phone_frames):
            ids = phones_to_ids([phone])
            out.extend([float(length) / len(ids)] * len(ids))
        if pause > 0:
            out.append(float(pause))
    return np.asarray(out)


def place(symbols: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The timeline's whole-frame placement: integer durations and per-frame ids."""
    cursor = _Cursor(0)
    spans = [cursor.add(int(s), float(f)) for s, f in zip(symbols, frames)]
    durations = np.array([b - a for a, b in spans], np.int64)
    return durations, np.repeat(symbols, durations)


def frame_accuracy(pred: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    n = min(len(pred), len(true))
    return int((pred[:n] == true[:n]).sum()), max(len(pred), len(true))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="default: the shipped weights")
    parser.add_argument("--limit", type=int, default=0, help="first N held-out utterances")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks/results/tokens.md")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = CorpusConfig()
    utterances = load_utterances(args.corpus)
    position = {u.index: k for k, u in enumerate(utterances)}
    heldout = [u for u in utterances if is_heldout(u.index, config)]
    mel = offsets = None
    if (args.corpus / "features").is_dir():
        mel, _, offsets = load_features(args.corpus)
    if args.limit:
        heldout = heldout[:args.limit]
    learned = LearnedDurations(args.checkpoint)
    espeak = EspeakDurations()
    sources = {"learned": learned, "espeak": espeak}
    stats = {name: {"phone": [], "pause": [], "length": [], "e2e": [0, 0]}
             for name in sources}
    decoder_acc = {"direct": [0, 0], "flow": [0, 0]}
    mas_err = {"phone": [], "pause": []}
    seconds = {name: 0.0 for name in sources}
    skipped = 0
    from tqdm import tqdm

    for u in tqdm(heldout, desc="held-out", unit="utt", file=sys.stderr):
        phrases = to_phrases(u.text)
        entries = phrases_to_entries(phrases)
        lead = int(u.symbol_ids[0] == SILENCE_ID)
        tail = int(u.symbol_ids[-1] == SILENCE_ID)
        ids = u.symbol_ids[lead:len(u.symbol_ids) - tail]
        true = u.durations[lead:len(u.durations) - tail].astype(np.float64)
        if len(ids) != len(entries) or (ids != entries.symbols).any():
            skipped += 1
            continue
        is_pause = entries.symbols == SILENCE_ID
        true_frames = np.repeat(ids, true.astype(np.int64))
        for name, source in sources.items():
            started = time.perf_counter()
            frames = entry_frames(phrases, source.segment(phrases))
            seconds[name] += time.perf_counter() - started
            err = np.abs(frames - true)
            s = stats[name]
            s["phone"].append(err[~is_pause])
            s["pause"].append(err[is_pause])
            s["length"].append(abs(frames.sum() / true.sum() - 1.0))
            durations, hard = place(entries.symbols, frames)
            if name == "learned":
                started = time.perf_counter()
                tokens = learned.decode(phrases, durations).argmax(1)
                seconds[name] += time.perf_counter() - started
            else:
                tokens = hard
            right, total = frame_accuracy(tokens, true_frames)
            s["e2e"][0] += right
            s["e2e"][1] += total
        if mel is not None:
            # the path for data without durations: MAS of the model's mel prior against
            # the teacher audio's log-mel, scored against the exact durations
            start = offsets[position[u.index]] + (u.durations[0] if lead else 0)
            frames_mel = mel[start:start + int(true.sum())].astype(np.float64)
            with torch.no_grad():
                batch = collate_entries([entries])
                h, _ = learned.model.encode(batch)
                mu = learned.model.mel_prior(h).double().numpy()
            aligned = monotonic_alignment_search(
                gaussian_log_likelihood(mu, frames_mel[None])[0])
            err = np.abs(aligned - true)
            mas_err["phone"].append(err[~is_pause])
            mas_err["pause"].append(err[is_pause])
        for head in decoder_acc:
            logp = learned.model.decode(entries, true.astype(np.int64), decoder=head)
            decoder_acc[head][0] += int((logp.argmax(1) == true_frames).sum())
            decoder_acc[head][1] += len(true_frames)

    def row(name):
        s = stats[name]
        phone, pause = np.concatenate(s["phone"]), np.concatenate(s["pause"])
        length = np.asarray(s["length"])
        return (f"| {name} | {phone.mean():.2f} | {np.median(phone):.2f} | {pause.mean():.2f} "
                f"| {100 * length.mean():.2f} % | {100 * np.median(length):.2f} % "
                f"| {100 * s['e2e'][0] / s['e2e'][1]:.1f} % "
                f"| {1000 * seconds[name] / len(s['length']):.0f} ms |")

    from avgen.model.text_to_tokens import checkpoint_metadata

    path = learned.checkpoint
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    meta = checkpoint_metadata(path)
    n = len(stats["learned"]["length"])
    phones = sum(len(x) for x in stats["learned"]["phone"])
    pauses = sum(len(x) for x in stats["learned"]["pause"])
    command = "python " + " ".join(shlex.quote(a) for a in
                                   ["benchmarks/tokens_eval.py", *sys.argv[1:]])
    lines = [
        "# Text-to-tokens: held-out teacher sentences",
        "",
        f"Command: `{command}`",
        "",
        f"Checkpoint: `{path.name}` (sha256 {sha}…, step {meta.get('step')}, decoder "
        f"`{meta['config']['decoder']}`). {n} held-out utterances ({phones} phones, "
        f"{pauses} pauses between phrases); {skipped} skipped because the frontend no "
        "longer reproduces their symbols. Frames are 11.6 ms (86.13 fps).",
        "",
        "| durations | phone MAE (frames) | phone median AE | pause MAE (frames) "
        "| utterance length error, mean | median | end-to-end frame accuracy "
        "| time per utterance |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        row("learned"),
        row("espeak"),
        "",
        "Token decoder on the teacher's durations (argmax = teacher's symbol):",
        "",
        "| head | frame accuracy |",
        "| --- | --- |",
        *(f"| {head} | {100 * r / t:.2f} % |" for head, (r, t) in decoder_acc.items()),
        "",
        *([] if not mas_err["phone"] else [
            "Monotonic Alignment Search (the path for recordings without durations): the "
            "trained model's mel prior aligned to the teacher audio's log-mel, against the "
            "exact durations:",
            "",
            "| | phone MAE (frames) | phone median AE | pause MAE (frames) |",
            "| --- | --- | --- | --- |",
            f"| MAS | {np.concatenate(mas_err['phone']).mean():.2f} "
            f"| {np.median(np.concatenate(mas_err['phone'])):.2f} "
            f"| {np.concatenate(mas_err['pause']).mean():.2f} |",
            ""]),
        "Targets: utterance length error <= 5 %, phone duration MAE <= 2 frames, "
        "both better than espeak. Time per utterance: durations (+ decoding for learned), "
        "1 CPU thread on a shared machine.",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
