"""Two inference-time ways to make the joint model's voices more like their teachers, and
more unlike each other, measured -> benchmarks/results/voice_calibration.md.

    pip install -e '.[eval,voices-eval]'
    python benchmarks/voice_calibration.py CORPUS --trained-utterances N \
        [--checkpoint CKPT] [--alphas 1 1.5 2] [--calibration 6]

- exaggerated style: each voice's style vector pushed away from the mean of the model's
  voices, mean + alpha (style - mean) (blend weights alpha on the voice and
  (1 - alpha) / V on every voice, which the voice embedder reads like any blend);
- voice guidance (`--guidance`): the sampler's classifier-free guidance away from the
  mean of the model's voices (`AVFlow.forward`, `voice_guidance`);
- per-voice mel offset: the mean difference, over speech frames, between the teacher's
  log-mel and the model's for `--calibration` training sentences of each voice (the
  model speaking the teacher's exact tokens, so frames align), added to the model's mel.

Each is scored as `voices_eval.py` scores the shipped model: unseen sentences of every
voice (teacher tokens, partner silent, seed 0), fidelity (resemblyzer cosine to the
teacher's audio of the same sentence), Whisper tiny.en WER, and how alike the voices are
to each other (cosine between voices' mean embeddings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def generate_mel(model, normalizer, utterance, voice: str, alpha: float = 1.0,
                 guidance: float = 1.0):
    """(mel (T, 80), frame symbol ids (T,)) of `utterance` said by `voice`, its style
    vector exaggerated by `alpha` (1: as trained), with voice guidance `guidance` (the
    sampler's `voice_guidance`; 1: off)."""
    import torch

    from avgen.pipeline import GenerateConfig
    from avgen.text.timeline import floor_log_probs
    from voices_eval import alone_inputs

    names = model.config.voices
    ids, tokens, partner = alone_inputs(utterance, voice, names)
    weights = torch.full((2, len(names)), (1 - alpha) / len(names))
    weights[0, names.index(voice)] += alpha
    weights[1] = 0.0
    weights[1, names.index(partner)] = 1.0
    tokens = torch.from_numpy(np.stack([floor_log_probs(t) for t in tokens]))
    settings = GenerateConfig(seed=0)
    generator = torch.Generator().manual_seed(settings.seed)
    mel, _ = model.sample_dyad(tokens, weights, settings.steps, generator,
                               temperature=settings.temperature, solver=settings.solver,
                               sway=settings.sway,
                               precision=settings.evaluation_precision(),
                               voice_guidance=guidance)
    mel = mel[0].numpy() * normalizer.mel_std + normalizer.mel_mean
    return mel, ids


def score(rows, encoder) -> dict:
    """rows: voice -> [(generated wave, teacher wave, text)] -> figures."""
    from avgen.metrics.asr import WhisperTinyEn, word_error_rate
    from voices_eval import cosine

    asr = score.asr = getattr(score, "asr", None) or WhisperTinyEn()
    fidelity, wer, embedding = {}, {}, {}
    for voice, items in rows.items():
        generated = [encoder.embed(wave) for wave, _, _ in items]
        fidelity[voice] = float(np.mean([cosine(g, encoder.embed(teacher))
                                         for g, (_, teacher, _) in zip(generated, items)]))
        wer[voice] = word_error_rate([text for _, _, text in items],
                                     [asr.transcribe(wave) for wave, _, _ in items])
        embedding[voice] = np.mean(generated, axis=0)
    names = list(embedding)
    pairs = [cosine(embedding[a], embedding[b]) for i, a in enumerate(names)
             for b in names[i + 1:]]
    women = [n for n in names if n[1] == "f"]
    women_pairs = [cosine(embedding[a], embedding[b]) for i, a in enumerate(women)
                   for b in women[i + 1:]]
    return {"fidelity": float(np.mean(list(fidelity.values()))),
            "fidelity_min": min(fidelity.values()),
            "at_080": sum(v >= 0.80 for v in fidelity.values()),
            "wer": float(np.mean(list(wer.values()))), "wer_max": max(wer.values()),
            "alike": float(np.mean(pairs)), "women_alike": float(np.mean(women_pairs)),
            "women_least_alike": float(np.min(women_pairs)), "voices": len(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--trained-utterances", type=int, required=True,
                        help="utterances the model was trained on (the rest are unseen)")
    parser.add_argument("--per-voice", type=int, default=4)
    parser.add_argument("--alphas", type=float, nargs="*", default=[1.0, 1.5, 2.0])
    parser.add_argument("--guidance", type=float, nargs="*", default=[],
                        help="voice guidance weights to try (velocity pushed away from "
                             "the voices' mean voice)")
    parser.add_argument("--calibration", type=int, default=6,
                        help="training sentences per voice for the mel offset (0: skip)")
    parser.add_argument("-o", "--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "voice_calibration.md")
    args = parser.parse_args()

    import json

    import soundfile
    import torch

    from avgen.audio.vocoder import load_vocoder, vocode
    from avgen.pipeline import GenerateConfig, load_av_model
    from avgen.text.symbols import SILENCE_ID
    from avgen.train import corpus
    from voices_eval import SpeakerEncoder, unseen_utterances

    torch.set_num_threads(2)
    model, normalizer = load_av_model(args.checkpoint)
    vocoder = load_vocoder("vocos")
    encoder = SpeakerEncoder()
    unseen = {v: us for v, us in unseen_utterances(args.corpus, args.trained_utterances,
                                                   args.per_voice).items()
              if v in model.config.voices and us}
    teacher = {u.index: soundfile.read(u.audio_path(args.corpus), dtype="float32")[0]
               for us in unseen.values() for u in us}
    results = []

    def evaluate(label, offsets=None, alpha=1.0, guidance=1.0):
        rows = {}
        for voice, utterances in unseen.items():
            rows[voice] = []
            for u in utterances:
                mel, _ = generate_mel(model, normalizer, u, voice, alpha, guidance)
                if offsets is not None:
                    mel = mel + offsets[voice]
                rows[voice].append((vocode(vocoder, mel), teacher[u.index], u.text))
        results.append((label, score(rows, encoder)))
        print(label, results[-1][1], file=sys.stderr, flush=True)

    for alpha in args.alphas:
        evaluate("as trained" if alpha == 1 else f"style exaggerated x{alpha:g}", alpha=alpha)
    for weight in args.guidance:
        evaluate(f"voice guidance w={weight:g}", guidance=weight)
    if args.calibration:
        config = json.loads((args.corpus / "config.json").read_text())
        config = corpus.CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in config.items()})
        mels, _, starts = corpus.load_features(args.corpus)
        seen: dict[str, list] = {}
        for u in corpus.load_utterances(args.corpus):
            if u.index < args.trained_utterances and not corpus.is_heldout(u.index, config):
                seen.setdefault(u.voice, []).append(u)
        offsets = {}
        for voice in unseen:
            gaps = []
            for u in seen[voice][:args.calibration]:
                mel, ids = generate_mel(model, normalizer, u, voice)
                target = mels[starts[u.index]:starts[u.index + 1]].astype(np.float32)
                gaps.append((target - mel)[ids != SILENCE_ID])
            offsets[voice] = np.concatenate(gaps).mean(0)
        evaluate(f"per-voice mel offset ({args.calibration} sentences a voice)", offsets)

    lines = ["# Voice calibration at inference time (tried)\n",
             f"`python benchmarks/voice_calibration.py {args.corpus.name} --trained-utterances "
             f"{args.trained_utterances} --per-voice {args.per_voice} --alphas "
             f"{' '.join(f'{a:g}' for a in args.alphas)} --calibration {args.calibration}"
             f"{' --guidance ' + ' '.join(f'{w:g}' for w in args.guidance) if args.guidance else ''}"
             f"{' --checkpoint ' + str(args.checkpoint) if args.checkpoint else ''}`: "
             f"{sum(len(us) for us in unseen.values())} unseen sentences of "
             f"{len(unseen)} voices, {GenerateConfig.steps} {GenerateConfig.solver} steps "
             "(the default), seed 0. Fidelity: resemblyzer cosine to "
             "the teacher's audio of the same sentence (target >= 0.80 for every voice); "
             "alike: cosine between two voices' mean embeddings (lower is more distinct).\n",
             "| variant | fidelity mean | lowest voice | voices >= 0.80 | WER mean | worst "
             "voice WER | voices alike (mean) | women alike (mean) | least alike women |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in results:
        lines.append(f"| {label} | {r['fidelity']:.3f} | {r['fidelity_min']:.3f} | "
                     f"{r['at_080']} of {r['voices']} | {r['wer']:.3f} | {r['wer_max']:.3f} | "
                     f"{r['alike']:.3f} | {r['women_alike']:.3f} | "
                     f"{r['women_least_alike']:.3f} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
