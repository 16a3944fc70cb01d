"""An evaluation corpus of a teacher corpus's held-out sentences, built alone
-> a small corpus folder that `voices_eval.py` reads.

    pip install -e '.[teachers,kokoro]'
    AVGEN_KOKORO_VOICES=kokoro-js-1.2.1.tgz python benchmarks/heldout_set.py CORPUS OUT \
        [--below 3712] [--per-voice 8] [--jobs 2]

The first `--per-voice` held-out utterances of each voice among the first `--below`
utterances of CORPUS's config, synthesised with the corpus builder's own texts, voices and
seeds (so the audio is the whole build's, bit for bit), into OUT with one utterance shard.
Held-out sentences are never trained on, so this is the set to compare models on when the
shards holding them are not at hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def picked_indices(config, below: int, per_voice: int) -> list[int]:
    from avgen.train import corpus

    count: dict[str, int] = {}
    picked = []
    for index in range(min(below, config.num_utterances)):
        voice = corpus.voice_of(index, config)
        if corpus.is_heldout(index, config) and count.get(voice, 0) < per_voice:
            count[voice] = count.get(voice, 0) + 1
            picked.append(index)
    return picked


_TEACHERS: dict = {}


@functools.lru_cache(maxsize=1)
def _texts(config) -> list[str]:
    from avgen.train import corpus

    return corpus.corpus_texts(config)


def synthesize(job):
    from avgen.train import corpus

    out, config, index = job
    return index, corpus.synthesize_utterance(Path(out), config, index, _TEACHERS,
                                              _texts(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--below", type=int, default=3712,
                        help="take held-out utterances of index below this")
    parser.add_argument("--per-voice", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    from avgen.train import corpus

    raw = json.loads((args.corpus / "config.json").read_text())
    config = corpus.CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in raw.items()})
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; give a new folder")
    picked = picked_indices(config, args.below, args.per_voice)
    for voice in config.voices:
        (args.out / "audio" / voice).mkdir(parents=True, exist_ok=True)
    (args.out / "utterances").mkdir()
    shutil.copyfile(args.corpus / "config.json", args.out / "config.json")
    records = []
    with ProcessPoolExecutor(args.jobs, initializer=corpus._single_thread) as pool:
        for record in pool.map(synthesize, [(str(args.out), config, i) for i in picked]):
            records.append(record)
            print(f"{len(records)}/{len(picked)} {corpus.utterance_id(record[0])}",
                  file=sys.stderr, flush=True)
    corpus._save_utterance_shard(args.out / "utterances" / "shard-00000.npz", records)


if __name__ == "__main__":
    main()
