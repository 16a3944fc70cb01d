"""Voices of a joint model: fidelity, intelligibility and distinctness
-> benchmarks/results/voices.md (and --json).

    pip install -e '.[eval,voices-eval]'
    python benchmarks/voices_eval.py CORPUS [--checkpoint CKPT] [--per-voice 3] \
        [--trained-utterances N] [--example]

Unseen utterances of the teacher corpus (its held-out list, plus every utterance at index
>= --trained-utterances when the model was trained on a corpus that has grown since),
each generated for its own voice from the teacher's exact tokens (so this measures the
joint model, not the duration model; the partner is silent), vocoded with the shipped
vocoder and compared with the teacher's audio of the same sentence:
- fidelity: resemblyzer speaker-embedding cosine, generated vs teacher audio;
- WER: Whisper tiny.en, per voice and averaged over voices;
- F0 median of generated speech vs the teacher voice's.
`--example` also runs the README example (examples/dialogue.txt with eileen.png and
grace.png) and a second script with the same photos: each person's F0 median, the cosine
between the two people, and the cosine of each face's voice across the two dialogues.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SECOND_SCRIPT = """EILEEN: Good morning. Did the new relay arrive from the factory?
GRACE: It did, and it works better than the old one ever did.
EILEEN: Then we can run the whole program again tonight.
GRACE: Let us check every connection twice before we start.
"""


class SpeakerEncoder:
    """resemblyzer's pretrained speaker encoder (weights inside the wheel)."""

    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)

    def embed(self, wave: np.ndarray, rate: int = 22050) -> np.ndarray:
        from resemblyzer import preprocess_wav

        return self.encoder.embed_utterance(preprocess_wav(wave.astype(np.float32), rate))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


F0_MAX = 400.0  # Hz: the pitch tracker's upper bound


def f0_median(wave: np.ndarray, rate: int = 22050) -> float:
    from avgen.train.teachers import estimate_f0

    _, f0 = estimate_f0(wave.astype(np.float32), rate, fmax=F0_MAX)
    # A frame whose autocorrelation peaks at the shortest lag searched has no pitch there
    # (rough or breathy speech): counting it read one model's bm_fable at 401 Hz (its
    # teacher 150; its real peaks 95-104). Left out here, not in `estimate_f0`: the teacher
    # corpus's pitch accents and F0 metadata are made with it, shard by shard.
    voiced = f0[(f0 > 0) & (f0 < F0_MAX)]
    return float(np.median(voiced)) if len(voiced) else 0.0


def unseen_utterances(corpus_root: Path, trained: int | None, per_voice: int):
    from avgen.train import corpus

    config = json.loads((corpus_root / "config.json").read_text())
    cfg = corpus.CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in config.items()})
    picked: dict[str, list] = {}
    for u in corpus.load_utterances(corpus_root):
        unseen = corpus.is_heldout(u.index, cfg) or (trained is not None and u.index >= trained)
        if unseen and len(picked.setdefault(u.voice, [])) < per_voice:
            picked[u.voice].append(u)
    return picked


def alone_inputs(utterance, voice: str, names: tuple[str, ...]):
    """(frame symbol ids (T,), tokens (2, T, V), partner voice) for `utterance` said by
    `voice` from its exact tokens, the partner (another of `names`) silent."""
    from avgen.text.symbols import SILENCE_ID
    from avgen.text.timeline import one_hot_log_probs

    ids = np.repeat(utterance.symbol_ids, utterance.durations)
    silent = np.full_like(ids, SILENCE_ID)
    tokens = np.stack([one_hot_log_probs(ids), one_hot_log_probs(silent)])
    return ids, tokens, names[1] if voice == names[0] else names[0]


def generate_alone(model, normalizer, utterance, voice: str, vocoder, seed: int = 0,
                   guidance: float | None = None):
    """Speech of one utterance said by `voice` from its exact tokens, partner silent;
    `guidance`: the sampler's voice guidance (None: the default)."""
    from avgen.audio.vocoder import vocode
    from avgen.pipeline import generate_from_tokens

    _, tokens, partner = alone_inputs(utterance, voice, model.config.voices)
    arrays = generate_from_tokens(tokens, ("A", "B"), model, normalizer,
                                  settings(seed=seed, voices=(voice, partner),
                                           guidance=guidance))
    return vocode(vocoder, arrays["p0/mel"])


def people_speech(model, normalizer, vocoder, dialogue, voices: tuple[str, ...],
                  seed: int = 0, guidance: float | None = None) -> list[np.ndarray]:
    """Each person's vocoded speech in `dialogue` (a parsed script) spoken with `voices`,
    learned durations and sampler seeded with `seed`."""
    from avgen.audio.vocoder import vocode
    from avgen.pipeline import generate
    from avgen.text.timeline import LearnedDurations, build_timeline

    timeline = build_timeline(dialogue, LearnedDurations(seed=seed))
    arrays = generate(timeline, model, normalizer,
                      settings(seed=seed, voices=voices, guidance=guidance))
    return [vocode(vocoder, arrays[f"p{p}/mel"]) for p in range(2)]


def settings(guidance: float | None = None, **fields):
    """GenerateConfig with `fields`, and the voice guidance `guidance` unless None."""
    from avgen.pipeline import GenerateConfig

    return GenerateConfig(**fields, **({} if guidance is None
                                       else {"voice_guidance": guidance}))


def evaluate_voices(corpus_root: Path, checkpoint: str | None, per_voice: int,
                    trained: int | None, asr, encoder, guidance: float | None = None) -> dict:
    import soundfile

    from avgen.audio.vocoder import load_vocoder
    from avgen.metrics.asr import word_error_rate
    from avgen.pipeline import load_av_model

    model, normalizer = load_av_model(checkpoint)
    vocoder = load_vocoder("vocos")
    rows = {}
    for voice, utterances in unseen_utterances(corpus_root, trained, per_voice).items():
        if voice not in model.config.voices or not utterances:
            continue
        refs, hyps, teacher_hyps, cosines, f0s, embeddings = [], [], [], [], [], []
        for u in utterances:
            wave = generate_alone(model, normalizer, u, voice, vocoder, guidance=guidance)
            teacher, rate = soundfile.read(u.audio_path(corpus_root), dtype="float32")
            refs.append(u.text)
            hyps.append(asr.transcribe(wave))
            # the teacher's own audio of the sentence: how much of a voice's WER is the
            # recogniser's, not the model's
            teacher_hyps.append(asr.transcribe(teacher, rate))
            embeddings.append(encoder.embed(wave))
            cosines.append(cosine(embeddings[-1], encoder.embed(teacher, rate)))
            f0s.append(f0_median(wave))
        rows[voice] = {"utterances": len(utterances), "wer": word_error_rate(refs, hyps),
                       "teacher_wer": word_error_rate(refs, teacher_hyps),
                       "fidelity": float(np.mean(cosines)), "f0_median": float(np.median(f0s)),
                       "embedding": np.mean(embeddings, axis=0).tolist()}
        print(voice, {k: v for k, v in rows[voice].items() if k != "embedding"},
              file=sys.stderr, flush=True)
    return rows


def example_figures(checkpoint: str | None, encoder, work: Path,
                    guidance: float | None = None) -> dict:
    """README example and a second script with the same photos (default voices)."""
    from avgen.audio.vocoder import load_vocoder
    from avgen.pipeline import load_av_model
    from avgen.text.script import parse_script, read_script
    from avgen.speaker import choose_voices, model_voices

    model, normalizer = load_av_model(checkpoint)
    vocoder = load_vocoder("vocos")
    refs = [str(REPO / "examples" / "eileen.png"), str(REPO / "examples" / "grace.png")]
    out = {}
    embeddings = []
    for label, dialogue in (("example", read_script(REPO / "examples" / "dialogue.txt")),
                            ("second", parse_script(SECOND_SCRIPT, "second"))):
        choices = choose_voices(dialogue.names, refs, model_voices(model.config),
                                directives=dialogue.voice_directives())
        voices = tuple(c.voice for c in choices)
        people = []
        for p, wave in enumerate(people_speech(model, normalizer, vocoder, dialogue, voices,
                                               guidance=guidance)):
            people.append({"name": dialogue.names[p], "voice": voices[p],
                           "why": choices[p].reason, "f0_median": f0_median(wave)})
            embeddings.append(encoder.embed(wave))
        out[label] = {"people": people,
                      "cosine_between_people": cosine(embeddings[-2], embeddings[-1])}
    out["same_face_across_scripts"] = [cosine(embeddings[0], embeddings[2]),
                                       cosine(embeddings[1], embeddings[3])]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--per-voice", type=int, default=3)
    parser.add_argument("--trained-utterances", type=int, default=None,
                        help="Utterances (by index) the model was trained on; later ones "
                             "count as unseen.")
    parser.add_argument("--example", action="store_true")
    parser.add_argument("--example-only", action="store_true",
                        help="only the README example figures (no per-voice evaluation)")
    parser.add_argument("--voice-guidance", type=float, default=None,
                        help="the sampler's voice guidance (default: GenerateConfig's)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--write-similarity", type=Path, default=None, metavar="OUT",
                        help="Also write a copy of the checkpoint carrying the speaker "
                             "similarity of its voices as measured here, each voice's speech "
                             "alone; --example then uses it. The shipped table is measured "
                             "in dialogue instead (benchmarks/voice_similarity.py), which "
                             "is what the speaker mapper's line is about.")
    parser.add_argument("-o", "--output", type=Path,
                        default=REPO / "benchmarks" / "results" / "voices.md")
    args = parser.parse_args()
    import tempfile

    from avgen.pipeline import GenerateConfig

    from avgen.metrics.asr import WhisperTinyEn

    encoder = SpeakerEncoder()
    asr = WhisperTinyEn()
    if args.example_only:
        if args.write_similarity:
            parser.error("--write-similarity needs the per-voice evaluation")
        args.example, rows = True, {}
    else:
        rows = evaluate_voices(args.corpus, args.checkpoint, args.per_voice,
                               args.trained_utterances, asr, encoder, args.voice_guidance)
    report = {"checkpoint": args.checkpoint or "av-flow (registered)", "voices": rows}
    example_checkpoint = args.checkpoint
    if args.write_similarity:
        from avgen.model.av_checkpoint import with_voice_similarity
        from avgen.pipeline import av_checkpoint_path, load_av_model

        names = load_av_model(args.checkpoint)[0].config.voices
        missing = [v for v in names if v not in rows]
        if missing:
            raise SystemExit(f"--write-similarity: no unseen utterances of {', '.join(missing)}")
        unit = np.array([rows[v]["embedding"] for v in names])
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        report["similarity"] = (unit @ unit.T).tolist()
        with_voice_similarity(av_checkpoint_path(args.checkpoint), report["similarity"],
                              args.write_similarity)
        example_checkpoint = str(args.write_similarity)
    if args.example:
        with tempfile.TemporaryDirectory() as work:
            report["example"] = example_figures(example_checkpoint, encoder, Path(work),
                                                args.voice_guidance)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Voices", "", f"Checkpoint: `{report['checkpoint']}`; corpus `{args.corpus.name}`; "
             f"unseen utterances, teacher tokens, {GenerateConfig.steps} {GenerateConfig.solver} steps (the "
             f"default), voice guidance {args.voice_guidance or GenerateConfig.voice_guidance:g}, "
             "shipped vocoder."]
    if rows:
        lines += ["", "| voice | utterances | WER | teacher's WER | fidelity (cosine) | "
                  "F0 median (Hz) |", "| --- | --- | --- | --- | --- | --- |"]
    for voice, r in rows.items():
        lines.append(f"| {voice} | {r['utterances']} | {r['wer']:.3f} | {r['teacher_wer']:.3f} | "
                     f"{r['fidelity']:.3f} | {r['f0_median']:.0f} |")
    if rows:
        lines.append(f"| **mean** | {sum(r['utterances'] for r in rows.values())} | "
                     f"{np.mean([r['wer'] for r in rows.values()]):.3f} | "
                     f"{np.mean([r['teacher_wer'] for r in rows.values()]):.3f} | "
                     f"{np.mean([r['fidelity'] for r in rows.values()]):.3f} | |")
    if "similarity" in report:
        names = list(rows)
        matrix = np.array(report["similarity"])
        pairs = sorted((matrix[a, b], names[a], names[b]) for a in range(len(names))
                       for b in range(a + 1, len(names)))
        women = [(c, a, b) for c, a, b in pairs if a[1] == "f" and b[1] == "f"]
        lines += ["", f"Speaker similarity of the voices as the model speaks them (mean "
                  f"resemblyzer embedding of each voice's utterances above), written into "
                  f"`{args.write_similarity}` for the speaker mapper: least alike pairs "
                  + ", ".join(f"{a}/{b} {c:.3f}" for c, a, b in pairs[:3])
                  + "; least alike women " + ", ".join(f"{a}/{b} {c:.3f}"
                                                     for c, a, b in women[:3]) + "."]
    if "example" in report:
        ex = report["example"]
        lines += ["", "README example and a second script with the same photos:", ""]
        for label in ("example", "second"):
            people = ", ".join(f"{p['name']} {p['voice']} F0 {p['f0_median']:.0f} Hz"
                               for p in ex[label]["people"])
            lines.append(f"- {label}: {people}; cosine between the two people "
                         f"{ex[label]['cosine_between_people']:.3f}")
        lines.append("- same face across the two scripts: cosine "
                     + " / ".join(f"{c:.3f}" for c in ex["same_face_across_scripts"]))
        lines.append("- choices: " + "; ".join(f"{p['name']}: {p['voice']} ({p['why']})"
                                               for p in ex["example"]["people"]))
    lines += ["", "Reproduce: `python benchmarks/voices_eval.py " + " ".join(sys.argv[1:]) + "`"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
