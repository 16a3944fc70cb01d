"""How far apart the speaker mapper sets two people's voices, over many pairs of faces.

    python benchmarks/speaker_pairs.py [--pairs 200] [--against REV]

Random photos (noise images: each has its own pixel digest, as a real photo does) are
paired as two women, two men, and a woman and a man, with apparent ages drawn from 20-85
and no names; the shipped joint model's voices and their measured similarity decide.
Reported per kind of pair: the mean and worst similarity (resemblyzer cosine, the
checkpoint's `voice_similarity`) between the two voices chosen, the share of pairs at or
below `avgen.speaker.CLEARLY_APART`, how many distinct voices were used, and the share of
faces that kept their own voice. `--against REV` scores the mapper of another revision
(its `avgen/speaker.py`) on the same pairs beside it. Writes
benchmarks/results/speaker_pairs.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_mapper(rev: str | None, work: Path):
    """avgen.speaker of this tree, or of git revision `rev` as a separate module."""
    if rev is None:
        from avgen import speaker

        return speaker
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:avgen/speaker.py"],
                            check=True, capture_output=True, text=True).stdout
    path = work / f"speaker_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"speaker_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs of each kind")
    parser.add_argument("--against", metavar="REV")
    parser.add_argument("-o", type=Path, default=REPO / "benchmarks" / "results" /
                        "speaker_pairs.md")
    args = parser.parse_args()
    from PIL import Image

    from avgen.pipeline import load_av_model
    from avgen.speaker import CLEARLY_APART

    config = load_av_model()[0].config
    names = list(config.voices)
    similarity = np.array(config.voice_similarity)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        mappers = {"this tree": load_mapper(None, work)}
        if args.against:
            mappers[args.against] = load_mapper(args.against, work)
        photos = []
        for k in range(2 * args.pairs):
            path = work / f"face{k}.png"
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
            photos.append(str(path))
        kinds = {"two women": ("female", "female"), "two men": ("male", "male"),
                 "a woman and a man": ("female", "male")}
        lines = ["# Speaker mapper: how far apart two people's voices are set\n",
                 f"`python benchmarks/speaker_pairs.py --pairs {args.pairs}"
                 + (f" --against {args.against}" if args.against else "") + "`: "
                 f"{args.pairs} pairs of random photos of each kind, apparent ages 20-85, no "
                 "names, the shipped joint model's voices; similarity: the checkpoint's "
                 "measured speaker similarity (resemblyzer cosine) of the two voices chosen; "
                 f"clearly apart: <= {CLEARLY_APART}; own voice kept: the face got the "
                 "voice it gets with a partner of the other gender.\n",
                 "| mapper | pair | mean similarity | worst | clearly apart | voices used | "
                 "own voice kept |", "| --- | --- | --- | --- | --- | --- | --- |"]
        ages = rng.uniform(20, 85, 2 * args.pairs)
        for label, mapper in mappers.items():
            voices = mapper.model_voices(config)
            attributes = mapper.FaceAttributes

            def face(k, gender):
                return attributes(gender, 0.95, float(ages[k]))

            for kind, (g0, g1) in kinds.items():
                scores, used, kept = [], set(), []
                for k in range(args.pairs):
                    a, b = 2 * k, 2 * k + 1
                    pair = mapper.choose_voices(("", ""), [photos[a], photos[b]], voices,
                                                faces=[face(a, g0), face(b, g1)])
                    v = [c.voice for c in pair]
                    scores.append(similarity[names.index(v[0]), names.index(v[1])])
                    used.update(v)
                    for person, (index, gender) in enumerate(((a, g0), (b, g1))):
                        other = "male" if gender == "female" else "female"
                        # the same face beside a partner of the other gender (the
                        # partner's photo: the next pair's, so it differs)
                        partner = photos[(index + 2) % len(photos)]
                        alone = mapper.choose_voices(("", ""), [photos[index], partner], voices,
                                                     faces=[face(index, gender),
                                                            face(index, other)])
                        kept.append(alone[0].voice == v[person])
                scores = np.array(scores)
                lines.append(f"| {label} | {kind} | {scores.mean():.3f} | {scores.max():.3f} | "
                             f"{np.mean(scores <= CLEARLY_APART):.0%} | {len(used)} | "
                             f"{np.mean(kept):.0%} |")
                print(lines[-1], flush=True)
    args.o.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
