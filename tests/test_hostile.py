"""Hostile and careless input to every command: a one-line error with exit code 2 (3 for
weights), no traceback, nothing written or lost, no code run from files, bounded time.

Each case builds its input in a fresh folder and checks that the output folder is left
exactly as it was."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avgen import formats
from avgen.cli import app
from avgen.constants import EXPRESSION_NAMES, N_MELS

REPO = Path(__file__).resolve().parents[1]
EILEEN = REPO / "examples" / "eileen.png"
GRACE = REPO / "examples" / "grace.png"
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], prog_name="avgen", input=input)


def assert_clean_error(result, code: int = 2, *fragments: str) -> str:
    """One `error:` line naming what is wrong, the expected exit code, no traceback and
    no usage box."""
    output = result.output
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in output and "╭" not in output and "│" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def out(tmp_path):
    """An output folder that must hold exactly what it held before the command."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- building valid and hostile files -----------------------------------------------------

def write_npz(path: Path, arrays: dict) -> Path:
    """An .npz written without avgen's checks (the way a hostile file is made)."""
    np.savez_compressed(path, **arrays)
    return path


def av_arrays(frames: int = 40, people: int = 2) -> dict:
    pose = np.zeros((frames, 7), np.float32)
    pose[:, 0] = 1.0
    arrays = {**formats.header(formats.AV, people), "num_frames": np.array(frames),
              "names": formats.string_array(["A", "B"][:people]),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    for i in range(people):
        arrays[f"p{i}/mel"] = np.full((frames, N_MELS), -11.5, np.float32)
        arrays[f"p{i}/head_pose"] = pose
        arrays[f"p{i}/expression"] = np.zeros((frames, len(EXPRESSION_NAMES)), np.float32)
    return arrays


def motion_arrays(frames: int = 40) -> dict:
    arrays = av_arrays(frames, 1)
    return {**formats.header(formats.MOTION, 1), "num_frames": np.array(frames),
            "expression_names": arrays["expression_names"],
            "p0/head_pose": arrays["p0/head_pose"], "p0/expression": arrays["p0/expression"]}


@pytest.fixture(scope="module")
def tokens_arrays():
    from avgen.text.script import parse_script
    from avgen.text.timeline import EspeakDurations, build_timeline

    timeline = build_timeline(parse_script("A: Hello there.\nB: Hi!\n"), EspeakDurations())
    return {**formats.header(formats.TOKENS, 2), **timeline.to_arrays()}


def tiny_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (the pixel data is a token)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


# -- scripts (avgen tokens) -----------------------------------------------------------------

SCRIPT_CASES = {
    "markup-in-text": ("A: Hi.\n[/] hello\n", "expected 'NAME: words'"),
    "markup-bold": ("A: Hi.\n[bold red]x[/bold red] hi\n", "expected 'NAME: words'"),
    "long-line": ("A: " + "word " * 2000 + "\n", "characters long"),
    "many-lines": ("".join(f"{'AB'[k % 2]}: Line {k}.\n" for k in range(5000)),
                   "more than 1000 turns"),
    # within every per-line and per-file limit, but hours long: stopped at the turn that
    # passes 30 minutes, before the whole timeline is laid out (that once took 11 GB)
    "hours-long": ("".join(f"{'AB'[k % 2]}: " + "word " * 390 + "\n" for k in range(60)),
                   "the limit is 30 minutes"),
    "nul-bytes": ("A: hi\0there\n", "NUL"),
    "third-speaker": ("A: hi\nB: yo\nC: hey\n", "third speaker"),
    "nan-pause": ("A: hi (pause nan)\n", "pause length"),
    "inf-pause": ("A: hi (pause inf)\n", "pause length"),
    "huge-pause": ("A: hi (pause 1e308)\n", "pause length"),
    "only-comments": ("# nothing\n\n", "script is empty"),
}


@pytest.mark.parametrize("name", sorted(SCRIPT_CASES))
def test_hostile_scripts(name, tmp_path, out):
    text, fragment = SCRIPT_CASES[name]
    script = tmp_path / "s.txt"
    script.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    result = run("tokens", script, "-o", out / "s.tokens.npz", "--durations", "espeak")
    assert_clean_error(result, 2, fragment)
    assert time.perf_counter() - started < 10
    assert snapshot(out) == {}


def test_dev_zero_as_script(out):
    result = run("tokens", "/dev/zero", "-o", out / "z.tokens.npz", "--durations", "espeak")
    assert_clean_error(result, 2, "/dev/zero")
    assert snapshot(out) == {}


def test_markup_in_output_name_is_printed_as_text(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("A: Hi.\n")
    result = run("tokens", script, "-o", tmp_path / "[/]" / "x.tokens.npz", "--durations",
                 "espeak")
    assert_clean_error(result, 2, "[/]", "output folder does not exist")


# -- output paths, checked before any work --------------------------------------------------

def test_output_is_a_folder(tmp_path, out):
    script = tmp_path / "s.txt"
    script.write_text("A: Hi.\n")
    (out / "dir.npz").mkdir()
    assert_clean_error(run("tokens", script, "-o", out / "dir.npz"), 2, "is a folder")


def test_output_is_the_script(tmp_path):
    script = tmp_path / "s.npz"
    script.write_text("A: Hi.\n")
    assert_clean_error(run("tokens", script, "-o", script, "--durations", "espeak"), 2,
                       "is also an input")
    assert script.read_text() == "A: Hi.\n"


def test_output_folder_not_writable(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("A: Hi.\n")
    target = Path("/proc/avgen-test.tokens.npz")  # /proc takes no new files, even from root
    assert_clean_error(run("tokens", script, "-o", target), 2, "cannot write")


def test_render_output_is_a_ref_photo(tmp_path):
    photo = tmp_path / "a.png"
    photo.write_bytes(EILEEN.read_bytes())
    motion = write_npz(tmp_path / "m.npz", motion_arrays())
    result = run("render", motion, "--ref", photo, "-o", photo)
    assert_clean_error(result, 2, "is also an input")
    assert photo.read_bytes() == EILEEN.read_bytes()


@pytest.mark.parametrize("name", ["x.avi", "x.mp4.txt", "x"])
def test_render_output_extension(name, tmp_path, out):
    motion = write_npz(tmp_path / "m.npz", motion_arrays())
    assert_clean_error(run("render", motion, "--ref", EILEEN, "-o", out / name), 2, ".mp4")
    assert snapshot(out) == {}


# -- options: one line, exit 2, before any model runs ---------------------------------------

OPTION_CASES = {
    "render-size-huge": (["render", "{motion}", "--ref", EILEEN, "--size", "100000"],
                         "--size"),
    "render-size-odd": (["render", "{motion}", "--ref", EILEEN, "--size", "255"], "--size"),
    "render-fps-zero": (["render", "{motion}", "--ref", EILEEN, "--fps", "0"], "--fps"),
    "render-fps-nan": (["render", "{motion}", "--ref", EILEEN, "--fps", "nan"], "--fps"),
    "synth-fps-zero": (["synth", "{script}", "--ref", EILEEN, GRACE, "--fps", "0"], "--fps"),
    "synth-size-huge": (["synth", "{script}", "--ref", EILEEN, GRACE, "--size", "100000"],
                        "--size"),
    "synth-seed-negative": (["synth", "{script}", "--ref", EILEEN, GRACE, "--seed", "-5"],
                            "--seed"),
    "synth-steps-zero": (["synth", "{script}", "--ref", EILEEN, GRACE, "--steps", "0"],
                         "--steps"),
    "synth-temperature": (["synth", "{script}", "--ref", EILEEN, GRACE, "--temperature",
                           "9"], "--temperature"),
    "synth-layout": (["synth", "{script}", "--ref", EILEEN, GRACE, "--layout", "diagonal"],
                     "--layout"),
    "synth-vocoder": (["synth", "{script}", "--ref", EILEEN, GRACE, "--vocoder", "nope"],
                      "--vocoder"),
    "generate-seed-negative": (["generate", "{tokens}", "--seed", "-5"], "--seed"),
    "generate-steps-huge": (["generate", "{tokens}", "--steps", "100000"], "--steps"),
    "tokens-rate-zero": (["tokens", "{script}", "--rate", "0"], "--rate"),
    "tokens-gap-negative": (["tokens", "{script}", "--gap", "-1"], "--gap"),
}


@pytest.mark.parametrize("name", sorted(OPTION_CASES))
def test_out_of_range_options(name, tmp_path, out, tokens_arrays):
    args, option = OPTION_CASES[name]
    script = tmp_path / "s.txt"
    script.write_text("A: Hi.\nB: Hello.\n")
    files = {"motion": write_npz(tmp_path / "m.npz", motion_arrays()), "script": script,
             "tokens": write_npz(tmp_path / "t.npz", tokens_arrays)}
    args = [str(a).format(**files) for a in args]
    suffix = {"render": ".mp4", "synth": ".mp4", "generate": ".av.npz",
              "tokens": ".tokens.npz"}[args[0]]
    started = time.perf_counter()
    assert_clean_error(run(*args, "-o", out / f"x{suffix}"), 2, option)
    assert time.perf_counter() - started < 10  # before any model ran
    assert snapshot(out) == {}


def test_batch_seed_range_is_the_command_line_range(tmp_path):
    from avgen.batch import BadJob, read_jobs
    from avgen.limits import SEED

    jobs = tmp_path / "jobs.jsonl"
    lines = [{"text": "A: Hi", "refs": ["a.png", "b.png"], "seed": s}
             for s in (-1, SEED[1] + 1, 0, SEED[1])]
    jobs.write_text("".join(json.dumps(j) + "\n" for j in lines))
    parsed = read_jobs(jobs)
    assert [isinstance(j, BadJob) for j in parsed] == [True, True, False, False]
    assert all("'seed' must be an integer from 0" in j.error for j in parsed[:2])


def test_batch_unknown_voice_names_the_line(tmp_path):
    from avgen.batch import run_batch
    from avgen.errors import InputError

    from avgen.pipeline import SynthConfig

    class Synthesizer:  # raises what the pipeline raises for a voice the model lacks
        config = SynthConfig()

        def load(self):
            return self

        def synth(self, *args, **kwargs):
            raise InputError("voices must be two of heart, heart-low; got nobody, heart")

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"text": "A: Hi", "refs": [str(EILEEN), str(GRACE)],
                                "voices": ["nobody", "heart"]}) + "\n")
    summary = run_batch(jobs, tmp_path / "out", Synthesizer(), progress=False)
    record = json.loads(summary.results.read_text())
    assert record["status"] == "error"
    assert record["error"].startswith(f"{jobs}:1: voices must be")


# -- numbers in files: finite and in range, at the reader, naming the file ------------------

def _poison(arrays: dict, key: str, value: float) -> dict:
    arrays = dict(arrays)
    poisoned = np.array(arrays[key], dtype=np.float32)
    poisoned.flat[poisoned.size // 2] = value
    arrays[key] = poisoned
    return arrays


def _reader_cases():
    # (name, kind of file, array, command line with {file} and {out})
    return [
        ("generate-tokens", "tokens", "p0/token_logits", ["generate", "{file}", "-o",
                                                          "{out}/x.av.npz"]),
        ("vocode-av", "av", "p1/mel", ["vocode", "{file}", "-o", "{out}/x.wav"]),
        ("vocode-npy", "npy", "mel", ["vocode", "{file}", "-o", "{out}/x.wav"]),
        ("render-av-pose", "av", "p0/head_pose", ["render", "{file}", "--ref", EILEEN,
                                                  GRACE, "-o", "{out}/x.mp4"]),
        ("render-av-expression", "av", "p1/expression",
         ["render", "{file}", "--ref", EILEEN, GRACE, "-o", "{out}/x.mp4"]),
        ("render-motion", "motion", "p0/expression", ["render", "{file}", "--ref", EILEEN,
                                                      "-o", "{out}/x.mp4"]),
        ("eval-generated", "av", "p0/mel", ["eval", "{file}", "--json", "{out}/r.json"]),
        ("eval-tokens", "tokens", "p1/token_logits",
         ["eval", "{clean_av}", "--tokens", "{file}", "--json", "{out}/r.json"]),
    ]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e30])
@pytest.mark.parametrize("case", _reader_cases(), ids=lambda c: c[0])
def test_every_reader_rejects_non_finite_numbers(case, value, tmp_path, out, tokens_arrays):
    name, kind, key, args = case
    clean_av = write_npz(tmp_path / "clean.av.npz", av_arrays())
    if kind == "npy":
        mel = np.full((40, N_MELS), -11.5, np.float32)
        mel[20, 3] = value
        path = tmp_path / "bad.npy"
        np.save(path, mel)
    else:
        arrays = {"tokens": tokens_arrays, "av": av_arrays(), "motion": motion_arrays()}[kind]
        path = write_npz(tmp_path / f"bad.{kind}.npz", _poison(arrays, key, value))
    args = [str(a).format(file=path, out=out, clean_av=clean_av) for a in args]
    line = assert_clean_error(run(*args), 2, str(path), key.split("/")[-1])
    assert ("NaN" in line or "infinite" in line) if not value == 1e30 else "outside" in line
    assert snapshot(out) == {}


@pytest.mark.parametrize("kind,key,value", [
    ("tokens", "num_frames", 0), ("av", "num_frames", 0),
    ("tokens", "p0/token_ids", 10_000), ("tokens", "turns/end_frame", -4),
])
def test_bad_counts_and_ids(kind, key, value, tmp_path, tokens_arrays):
    arrays = dict(tokens_arrays if kind == "tokens" else av_arrays())
    if key == "num_frames":  # a zero-frame file: every per-frame array empty
        arrays = {k: (v[:0] if k.startswith("p") else v) for k, v in arrays.items()}
        arrays["num_frames"] = np.array(0)
    else:
        arrays[key] = np.array(arrays[key]).copy()
        arrays[key].flat[0] = value
    path = write_npz(tmp_path / "bad.npz", arrays)
    from avgen.errors import FormatError

    with pytest.raises(FormatError, match=str(path)):
        formats.load(path, kind and {"tokens": formats.TOKENS, "av": formats.AV}[kind])


def test_generate_zero_frame_tokens(tmp_path, out, tokens_arrays):
    arrays = {k: (v[:0] if k.startswith("p") else v) for k, v in tokens_arrays.items()}
    arrays["num_frames"] = np.array(0)
    path = write_npz(tmp_path / "zero.npz", arrays)
    assert_clean_error(run("generate", path, "-o", out / "x.av.npz"), 2, "no frames")


def test_symbol_table_mismatch_names_what_differs(tmp_path, tokens_arrays):
    from avgen.errors import FormatError
    from avgen.text.timeline import load_timeline

    arrays = dict(tokens_arrays)
    symbols = [str(s) for s in arrays["symbols"]]
    symbols[5] = "q"
    arrays["symbols"] = formats.string_array(symbols)
    path = write_npz(tmp_path / "t.npz", arrays)
    with pytest.raises(FormatError) as error:
        load_timeline(path)
    message = str(error.value)
    assert "differ" in message and message.count("avgen.symbols/1") == 1


# -- .npz bombs and foreign entries ----------------------------------------------------------

def _zip_bomb_entry(path: Path, key: str, nbytes: int, base: dict) -> Path:
    """`base` plus an entry `key` that is a few KB compressed and `nbytes` decompressed."""
    import zipfile

    write_npz(path, base)
    header = {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(key + ".npy", "w", force_zip64=True) as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            zeros = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                handle.write(zeros)
    return path


def test_npz_unknown_entries_are_never_decompressed(tmp_path, monkeypatch):
    import zipfile

    path = _zip_bomb_entry(tmp_path / "bomb.av.npz", "junk", 64 << 20, av_arrays())
    assert path.stat().st_size < 1 << 20
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: (
        opened.append(getattr(name, "filename", name)), original(self, name, *a, **k))[1])
    arrays = formats.load(path, formats.AV)
    assert "junk" not in arrays and "junk.npy" not in opened and "p0/mel.npy" in opened


def test_npz_oversized_declared_entry_is_refused_before_decompressing(tmp_path, monkeypatch):
    from avgen import limits
    from avgen.errors import FormatError

    monkeypatch.setattr(limits, "MAX_NPZ_ENTRY_BYTES", 4 << 20)  # a smaller bomb, same rule
    base = av_arrays()
    del base["p1/mel"]
    path = _zip_bomb_entry(tmp_path / "bomb.av.npz", "p1/mel", 16 << 20, base)
    with pytest.raises(FormatError, match=r"'p1/mel' is 16 MiB decompressed"):
        formats.load(path, formats.AV)


def test_npz_header_claiming_more_than_the_entry_holds(tmp_path):
    import zipfile

    from avgen.errors import FormatError

    base = av_arrays()
    del base["p1/mel"]
    path = write_npz(tmp_path / "lie.av.npz", base)
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, N_MELS)}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("p1/mel.npy", "w") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            handle.write(bytes(1000))
    with pytest.raises(FormatError, match="more data than the entry holds"):
        formats.load(path, formats.AV)


def test_npy_holding_a_pickle_is_refused(tmp_path, out):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_clean_error(run("vocode", path, "-o", out / "x.wav"), 2, str(path))
    assert snapshot(out) == {}


def test_npz_entry_holding_a_pickle_is_refused(tmp_path):
    from avgen.errors import FormatError

    arrays = av_arrays()
    arrays["names"] = np.array(["A", "B"], dtype=object)
    path = tmp_path / "evil.av.npz"
    np.savez(path, **arrays, allow_pickle=True)
    with pytest.raises(FormatError, match="evil.av.npz"):
        formats.load(path, formats.AV)


# -- images ------------------------------------------------------------------------------------

def test_huge_image_is_refused_from_its_header(tmp_path, out):
    photo = tiny_png(tmp_path / "big.png", 20000, 20000)
    motion = write_npz(tmp_path / "m.npz", motion_arrays())
    started = time.perf_counter()
    assert_clean_error(run("render", motion, "--ref", photo, "-o", out / "x.mp4"), 2,
                       "20000x20000", str(photo))
    assert time.perf_counter() - started < 5 and snapshot(out) == {}


# -- checkpoints -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from avgen.weights import Weights

    source = Weights().path("avgen-vocos-22k")
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 10)
    tensors[name].view(-1)[3] = float("nan")
    path = tmp_path_factory.mktemp("ckpt") / "vocos-nan.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_nan_checkpoint_is_refused_at_load(nan_checkpoint, tmp_path, out):
    mel = tmp_path / "m.npy"
    np.save(mel, np.full((20, N_MELS), -11.5, np.float32))
    result = run("vocode", mel, "-o", out / "x.wav", "--checkpoint", nan_checkpoint)
    assert_clean_error(result, 3, "NaN", str(nan_checkpoint))
    assert snapshot(out) == {}


def test_weights_verify_file(nan_checkpoint, tmp_path):
    import hashlib

    from avgen.weights import Weights

    good = tmp_path / "vocos.safetensors"
    good.write_bytes(Weights().path("avgen-vocos-22k").read_bytes())
    record = tmp_path / "vocos.safetensors.sha256"
    record.write_text(hashlib.sha256(good.read_bytes()).hexdigest() + "  vocos.safetensors\n")
    assert run("weights", "verify", good).exit_code == 0
    data = bytearray(good.read_bytes())
    data[-100] ^= 1  # one flipped byte in the tensor data
    good.write_bytes(bytes(data))
    result = run("weights", "verify", good)
    assert result.exit_code == 3 and "sha256" in result.output
    result = run("weights", "verify", nan_checkpoint)
    assert result.exit_code == 3 and "NaN" in result.output


def test_unpinned_weights_are_never_reported_ok(tmp_path):
    """A planted file with its own .sha256 beside it must not pass as a verified one."""
    from avgen.weights import Weights

    registry = tmp_path / "weights.toml"
    registry.write_text('[weights.thing]\ncomponent = "vocoder"\nfile = "thing.pt"\n'
                        'sha256 = "unpinned"\nsize = 0\nlicence = "MIT"\n'
                        'source = "https://example.invalid/thing.pt"\n')
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "thing.pt").write_bytes(b"planted")
    import hashlib

    (cache / "thing.pt.sha256").write_text(hashlib.sha256(b"planted").hexdigest())
    weights = Weights(registry, cache=cache)
    assert weights.status("thing") == "unpinned"
    assert run("weights", "list").exit_code == 0
    # and never loaded by name: the planted file and its record are refused together
    from avgen.errors import WeightsError

    with pytest.raises(WeightsError, match="no sha256 pinned"):
        weights.path("thing")


def test_unpinned_bigvgan_is_not_loaded_by_name(tmp_path, monkeypatch):
    """The registered BigVGAN entries carry no digest: a generator planted in the cache
    with its own records is refused (exit 3, one line) instead of being loaded."""
    import hashlib

    from avgen.weights import Weights

    monkeypatch.setenv("AVGEN_CACHE_DIR", str(tmp_path / "cache"))
    registry = Weights()
    for name in ("bigvgan-v2-22khz-80band-fmax8k", "bigvgan-v2-22khz-80band-fmax8k-config"):
        path = registry.location(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"planted " + name.encode())
        path.with_name(path.name + ".sha256").write_text(
            hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    mel = write_npz(tmp_path / "m.npz", av_arrays())
    result = run("vocode", mel, "-o", tmp_path / "m.wav", "--vocoder", "bigvgan")
    assert_clean_error(result, 3, "no sha256 pinned")
    assert not (tmp_path / "m.wav").exists()




# -- no code from run folders ------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_train_tokens_never_unpickles_code(tmp_path):
    import soundfile

    recordings = tmp_path / "rec"
    recordings.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        soundfile.write(recordings / f"r{k}.wav", 0.1 * rng.standard_normal(22050), 22050)
        (recordings / f"r{k}.txt").write_text("Hello there.")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "PWNED"
    (run_dir / "state.pt").write_bytes(pickle.dumps({"configs": _Payload(str(marker))}))
    result = run("train", "tokens", recordings, "-o", run_dir, "--steps", "1")
    assert not marker.exists(), "a pickled command ran"
    assert_clean_error(result, 3, "state.pt")


# -- prepare -----------------------------------------------------------------------------------

def test_failed_prepare_leaves_no_empty_folders(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "talk.toml").write_text('[[person]]\nname = "a"\nvideo = "talk.mp4"\n')
    (inputs / "talk.mp4").write_bytes(b"not a video")
    result = run("prepare", inputs, "-o", tmp_path / "shards")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "shards").exists()


# -- fuzzing: seeded, bounded in time ------------------------------------------------------------

_PIECES = ["A: ", "B: ", "C: ", "[S1] ", "[S2] ", "hello", "world", " (pause 0.3)", "(laughs)",
           "(", ")", "[/]", "[bold]", "#", "\\#", ":", "\n", "\n\n", "  ", "3.5", "$12",
           "1984", "é", "привет", "🙂", "\t", "\ufeff", "(pause -1)", "(pause 1e9)", "Dr.",
           "'", '"', "...", "?!", "x" * 300]


def _random_script(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 40)))


def test_fuzz_scripts(tmp_path):
    rng = random.Random(1234)
    deadline = time.perf_counter() + 5.0
    runs = 0
    while time.perf_counter() < deadline and runs < 300:
        out = tmp_path / f"o{runs}"
        out.mkdir()
        script = tmp_path / f"s{runs}.txt"
        script.write_text(_random_script(rng), encoding="utf-8")
        result = run("tokens", script, "-o", out / "x.tokens.npz", "--durations", "espeak")
        assert result.exit_code in (0, 2), (script.read_text(), result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            (script.read_text(), repr(result.exception))
        assert "Traceback" not in result.output
        left = sorted(p.name for p in out.iterdir())
        assert left == (["x.tokens.npz"] if result.exit_code == 0 else []), left
        runs += 1
    assert runs >= 5


def _mutate(arrays: dict, rng: random.Random) -> dict:
    arrays = dict(arrays)
    key = rng.choice(sorted(arrays))
    action = rng.choice(["nan", "huge", "drop", "shape", "dtype", "string", "extra", "neg"])
    value = np.array(arrays[key])
    if action == "drop":
        del arrays[key]
    elif action == "extra":
        arrays["junk/" + key] = value
    elif action == "string":
        arrays[key] = np.array("x" * rng.randint(0, 5))
    elif action == "shape":
        arrays[key] = value.reshape(-1)[: max(0, value.size - rng.randint(0, 3))]
    elif action == "dtype" and value.dtype.kind in "iufb":
        arrays[key] = value.astype(rng.choice([np.int8, np.float16, np.uint64, np.bool_]))
    elif value.dtype.kind in "iuf" and value.size:
        value = value.astype(np.float64).copy()
        value.flat[rng.randrange(value.size)] = {"nan": np.nan, "huge": 1e300,
                                                 "neg": -7.0}[action]
        arrays[key] = value
    return arrays


def test_fuzz_npz_files(tmp_path):
    rng = random.Random(99)
    deadline = time.perf_counter() + 6.0
    runs = 0
    base = av_arrays(24)
    while time.perf_counter() < deadline and runs < 200:
        out = tmp_path / f"o{runs}"
        out.mkdir()
        arrays = base
        for _ in range(rng.randint(1, 3)):
            arrays = _mutate(arrays, rng)
        path = write_npz(tmp_path / f"f{runs}.npz", arrays)
        if rng.random() < 0.3:  # also flip bytes of the archive itself
            data = bytearray(path.read_bytes())
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
        result = run("vocode", path, "-o", out / "x.wav", "--vocoder", "griffinlim",
                     "--iterations", "1")
        assert result.exit_code in (0, 2), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)
        assert "Traceback" not in result.output
        left = sorted(p.name for p in out.iterdir())
        assert left == (["x.wav"] if result.exit_code == 0 else []), left
        runs += 1
    assert runs >= 5


# -- signals: nothing left behind, ffmpeg dies with avgen ---------------------------------------

_WRITER = r"""
import sys, time
import numpy as np
from avgen import outputs
from avgen.video import AVWriter, Mp4Writer

outputs.install_signal_handlers()
folder = sys.argv[1]
with outputs.temp_dir("synth") as work:
    open(f"{work}/dialogue.wav", "wb").close()
    try:
        if sys.argv[2:] == ["av"]:  # synth's writer: frames and audio together
            writer = AVWriter(f"{folder}/video.mp4", 64, 64, 25, 22050)
            frames = np.zeros((1, 64, 64, 3), np.uint8), np.zeros(882, np.float32)
        else:
            writer = Mp4Writer(f"{folder}/video.mp4", 64, 64, 25)
            frames = (np.zeros((64, 64, 3), np.uint8),)
        with writer:
            print(writer._process.pid, work, flush=True)
            while True:
                writer.write(*frames)
                time.sleep(0.01)
    except KeyboardInterrupt as exc:
        sys.exit(getattr(exc, "exit_code", 130))
"""


def _start_writer(folder: Path, writer: str = "mp4"):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), writer], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ffmpeg, scratch = process.stdout.readline().split()
    deadline = time.time() + 20
    while not any(p.name.endswith(".tmp") for p in folder.iterdir()):
        assert time.time() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)  # frames are flowing into ffmpeg's temp file
    return process, int(ffmpeg), Path(scratch)


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_signal_mid_video_leaves_nothing(signum, out):
    import signal

    (out / "video.mp4").write_bytes(b"previous video")
    process, ffmpeg, scratch = _start_writer(out)
    process.send_signal(getattr(signal, signum))
    assert process.wait(20) == 128 + getattr(signal, signum)
    assert snapshot(out) == {"video.mp4": b"previous video"}
    assert not scratch.exists() and _gone(ffmpeg)


@pytest.mark.parametrize("writer", ["mp4", "av"])
def test_sigkill_kills_ffmpeg_and_the_next_run_sweeps_its_temp_file(out, monkeypatch, writer):
    import signal
    import tempfile

    from avgen import outputs
    from avgen.outputs import check_output, sweep_stale

    process, ffmpeg, scratch = _start_writer(out, writer)
    process.send_signal(signal.SIGKILL)
    process.wait(20)
    assert _gone(ffmpeg), "ffmpeg outlived avgen"
    assert any(p.name.endswith(".tmp") for p in out.iterdir())  # SIGKILL cannot clean up
    monkeypatch.setattr(outputs, "_STALE_SECONDS", 0.0)  # no need to wait for it to age
    check_output(out / "other.mp4", (".mp4",))
    assert snapshot(out) == {}
    assert scratch.exists()
    sweep_stale(tempfile.gettempdir(), folders=True)  # what every avgen command does first
    assert not scratch.exists()


def test_sigterm_removes_the_espeak_library_copy():
    import subprocess
    import sys

    code = r"""
import os, signal, time
from avgen import outputs
from avgen.text.espeak import espeak_timer

outputs.install_signal_handlers()
timer = espeak_timer()
timer.timings("Hello there.")
print(os.path.dirname(timer._library), flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(10)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    folder = Path(done.stdout.strip())
    assert done.returncode != 0 and "Terminated" in done.stderr  # unwound, not killed
    assert folder.name.startswith("avgen-espeak-") and not folder.exists()
