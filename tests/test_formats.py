import os

import numpy as np
import pytest

from avgen import formats
from avgen.constants import EXPRESSION_NAMES, N_MELS
from avgen.errors import FormatError, InputError


def av_arrays(frames=12, people=2):
    e = len(EXPRESSION_NAMES)
    arrays = {"num_frames": np.array(frames), "names": formats.string_array(["A", "B"][:people]),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for i in range(people):
        arrays[f"p{i}/mel"] = np.zeros((frames, N_MELS), np.float32)
        arrays[f"p{i}/head_pose"] = np.tile([1, 0, 0, 0, 0, 0, 0], (frames, 1)).astype(np.float32)
        arrays[f"p{i}/expression"] = np.zeros((frames, e), np.float32)
    return arrays


def test_av_and_motion_round_trip(tmp_path):
    path = tmp_path / "x.av.npz"
    formats.save(path, formats.AV, av_arrays())
    loaded = formats.load(path, formats.AV)
    assert str(loaded["format"]) == "avgen.av/1"
    assert int(loaded["num_people"]) == 2
    assert loaded["p1/mel"].shape == (12, N_MELS)
    motion = {k: v for k, v in av_arrays(people=1).items() if "mel" not in k and k != "names"}
    formats.save(tmp_path / "m.npz", formats.MOTION, motion)
    assert int(formats.load(tmp_path / "m.npz", formats.MOTION)["num_people"]) == 1


def test_writer_refuses_inconsistent_arrays(tmp_path):
    arrays = av_arrays()
    arrays["p1/mel"] = np.zeros((11, N_MELS))
    with pytest.raises(FormatError, match="p1/mel has shape"):
        formats.save(tmp_path / "x.npz", formats.AV, arrays)
    arrays = av_arrays()
    del arrays["p0/head_pose"]
    with pytest.raises(FormatError, match="missing array 'p0/head_pose'"):
        formats.save(tmp_path / "x.npz", formats.AV, arrays)
    assert not list(tmp_path.iterdir())  # nothing written


def test_reader_rejects_wrong_kind_version_and_garbage(tmp_path):
    path = tmp_path / "x.av.npz"
    formats.save(path, formats.AV, av_arrays())
    with pytest.raises(FormatError, match="is a avgen.av/1 file, expected avgen.tokens/1"):
        formats.load(path, formats.TOKENS)
    full = dict(np.load(path))
    full["format"] = np.array("avgen.av/9")
    np.savez(tmp_path / "v9.npz", **full)
    with pytest.raises(FormatError, match=r"avgen.av/9 is not supported"):
        formats.load(tmp_path / "v9.npz", formats.AV)
    full["format"] = np.array("avgen.av/1")
    full["sample_rate"] = np.array(16000)
    np.savez(tmp_path / "sr.npz", **full)
    with pytest.raises(FormatError, match="sample_rate is 16000"):
        formats.load(tmp_path / "sr.npz", formats.AV)
    np.savez(tmp_path / "plain.npz", mel=np.zeros(3))
    with pytest.raises(FormatError, match="no 'format' entry"):
        formats.load(tmp_path / "plain.npz", formats.AV)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match="junk.npz: not a readable .npz"):
        formats.load(tmp_path / "junk.npz", formats.AV)
    with pytest.raises(InputError, match="nope.npz: no such file"):
        formats.load(tmp_path / "nope.npz", formats.AV)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    formats.atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        formats.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # temp file cleaned up


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    mask = os.umask(0o022)
    try:
        formats.atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_atomic_write_needs_existing_folder(tmp_path):
    with pytest.raises(InputError, match="output folder does not exist"):
        formats.atomic_write_bytes(tmp_path / "missing" / "x.npz", b"data")


def test_file_cache_computes_once_per_file_version_and_keeps_the_latest(tmp_path):
    """Per-file caches (renderers, face attributes) compute once per file, afresh when
    the file changes, hold at most `capacity` files (the least recently used go first)
    and never cache a file they cannot read."""
    import os

    from avgen.formats import FileCache

    calls = []
    cache = FileCache(capacity=2)
    paths = [tmp_path / f"{k}.png" for k in range(3)]
    for k, path in enumerate(paths):
        path.write_bytes(b"x" * (k + 1))

    def compute(path):
        calls.append(path.name)
        return path.read_bytes()

    assert cache.get(paths[0], lambda: compute(paths[0])) == b"x"
    assert cache.get(paths[0], lambda: compute(paths[0])) == b"x" and calls == ["0.png"]
    paths[0].write_bytes(b"yy")
    os.utime(paths[0], ns=(1, 1))  # a new size and mtime: another version of the file
    assert cache.get(paths[0], lambda: compute(paths[0])) == b"yy" and len(calls) == 2
    cache.get(paths[1], lambda: compute(paths[1]))
    cache.get(paths[0], lambda: compute(paths[0]))  # 0 is now the most recent
    cache.get(paths[2], lambda: compute(paths[2]))  # evicts 1 (the old version of 0 went before)
    assert len(cache) == 2
    cache.get(paths[1], lambda: compute(paths[1]))
    assert calls == ["0.png", "0.png", "1.png", "2.png", "1.png"]
    missing = tmp_path / "gone.png"
    assert cache.get(missing, lambda: "computed") == "computed"
    cache.put(missing, "kept")
    assert cache.get(missing, lambda: "computed") == "computed" and len(cache) == 2
