"""Training snapshots: a training folder from a chosen part of a teacher corpus's finished
utterance shards (hard links, its own features, voice table and dialogues), so a model
can train on a corpus that is still being built, or on a part of it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from avgen.errors import InputError
from avgen.train.corpus import audio_file, build_features, build_voice_table
from avgen.train.dialogues import DialogueConfig, build_dialogues


MAX_SHARD = 99999


def parse_shard_ranges(spec: str) -> list[int]:
    """`"0-17,121-200"` -> shard numbers [0, ..., 17, 121, ..., 200] (ranges inclusive)."""
    shards: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise InputError(f"--shards: {part!r} is not a shard number or range A-B "
                             "(e.g. 0-17,121-200)")
        lo, hi = int(first), int(last or first)
        if hi < lo:
            raise InputError(f"--shards: the range {part!r} runs backwards")
        if hi > MAX_SHARD:  # shard files are numbered in five digits
            raise InputError(f"--shards: {part!r} goes past the last possible shard, "
                             f"{MAX_SHARD}")
        shards.extend(range(lo, hi + 1))
    return sorted(set(shards))


def plan(source: str | Path, target: str | Path, shards: list[int] | None = None
         ) -> dict[int, Path]:
    """The utterance shard files a snapshot of `source` into `target` takes, by shard
    number (all finished ones, or `shards`), after checking that it can be made."""
    source, target = Path(source), Path(target)
    if not (source / "config.json").is_file():
        raise InputError("not a teacher corpus (no config.json)", str(source))
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError("already exists and is not an empty folder; a snapshot needs a "
                         "new one", str(target))
    present = {int(p.stem[len("shard-"):]): p
               for p in (source / "utterances").glob("shard-*.npz")
               if p.stem[len("shard-"):].isdigit()}
    wanted = sorted(present) if shards is None else shards
    missing = [k for k in wanted if k not in present]
    if missing:
        raise InputError(f"shard {missing[0]} is not built yet (built: "
                         f"{_ranges(sorted(present)) or 'none'})", str(source))
    if not wanted:
        raise InputError("no finished shards to take", str(source))
    return {k: present[k] for k in wanted}


def snapshot(source: str | Path, target: str | Path, shards: list[int] | None = None,
             progress=None) -> int:
    """A training folder from `source`'s finished utterance shards (all, or the shard
    numbers `shards`): the shards and their audio are hard-linked into `target` (copied
    where the file system cannot link), with the source's config and held-out list; then
    stages 2-3 (features, voice table, dialogues) are built there. So a model can train
    on a corpus still being built, or on a part of it. Returns the utterances taken.
    `target` must not hold anything yet (its dialogues depend on the utterances present);
    on any error it is left as it was."""
    taken = plan(source, target, shards)
    source, target = Path(source), Path(target)

    def place(src: Path, dst: Path) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: a copy will do
            shutil.copyfile(src, dst)

    created = not target.exists()
    try:
        (target / "utterances").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "config.json", target / "config.json")
        shutil.copyfile(source / "heldout.txt", target / "heldout.txt")
        count = 0
        for k, shard in taken.items():
            with np.load(shard, allow_pickle=False) as data:
                for voice, index in zip(data["voice"], data["index"]):
                    relative = audio_file(voice, index)
                    if not (source / relative).is_file():
                        raise InputError(f"shard {k} lists {relative}, which is missing",
                                         str(source))
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    place(source / relative, target / relative)
                    count += 1
            place(shard, target / "utterances" / shard.name)
        build_voice_table(target)  # first: it needs the teachers' voice files, and fails fast
        build_features(target, progress=progress)
        seed = json.loads((source / "config.json").read_text())["seed"]
        build_dialogues(target, DialogueConfig(seed=seed))
    except BaseException:
        # half a snapshot would train on whatever got built: leave nothing behind
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in list(target.iterdir()):  # it was empty: empty it again
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
        raise
    return count


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(f"{start}-{n}" if n != start else f"{n}")
            start = None
    return ",".join(parts)
