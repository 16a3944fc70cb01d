"""Batch generation: jobs file schema, shards, resume, results, models loaded once."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avgen.batch import BadJob, Job, ResultsFile, Shard, mp4_is_complete, read_jobs, run_batch
from avgen.cli import app
from avgen.constants import N_MELS
from avgen.errors import InputError
from avgen.model.av_flow import MOTION_DIM, AVFlow, AVFlowConfig
from avgen.model.av_checkpoint import save_checkpoint
from avgen.train.av import TrainConfig
from avgen.model.features import Normalizer
from conftest import EXAMPLES

TINY = AVFlowConfig(d_model=32, n_blocks=2, n_heads=2, ff_mult=2)
FAST = ["--steps", "2", "--size", "64", "--fps", "8", "--vocoder", "griffinlim"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    normalizer = Normalizer(np.full(N_MELS, -6.0, np.float32), np.full(N_MELS, 2.0, np.float32),
                            np.zeros(MOTION_DIM, np.float32), np.full(MOTION_DIM, 0.1, np.float32))
    path = tmp_path_factory.mktemp("ckpt") / "av.safetensors"
    save_checkpoint(path, AVFlow(TINY).eval(), normalizer, 0, TrainConfig())
    return path


def write_jobs(folder, lines):
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def read_results(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


REFS = [str(EXAMPLES / "eileen.png"), str(EXAMPLES / "grace.png")]


@pytest.mark.parametrize("spec", ["3/2", "2/2", "a/b", "0/0", "1", "-1/2", "1/2/3", ""])
def test_bad_shard_specs_are_one_line_errors(spec):
    with pytest.raises(InputError) as info:
        Shard.parse(spec)
    assert str(info.value).startswith("--shard: ") and "\n" not in str(info.value)


def test_bad_shard_on_the_command_line(tmp_path):
    jobs = write_jobs(tmp_path, [{"text": "A: Hi", "refs": REFS}])
    result = CliRunner().invoke(app, ["synth", "--batch", str(jobs), "-o", str(tmp_path / "o"),
                                      "--shard", "3/2"])
    assert result.exit_code == 2 and "--shard: '3/2': need N >= 1 and 0 <= K < N" in result.output
    assert not (tmp_path / "o").exists()


def test_shards_cover_every_job_exactly_once(tmp_path):
    lines = [{"text": f"A: Line {k}.", "refs": REFS} for k in range(7)]
    lines.insert(3, "")  # a blank line is not a job
    lines.insert(5, "{broken")  # a bad line is still some shard's job (its error result)
    jobs = read_jobs(write_jobs(tmp_path, lines))
    assert len(jobs) == 8 and isinstance(jobs[4], BadJob)
    for count in (1, 2, 3, 5):
        owned = [[j.line for j in jobs if Shard(k, count).owns(j.line)] for k in range(count)]
        flat = sorted(x for part in owned for x in part)
        assert flat == [j.line for j in jobs]  # each exactly once
        assert max(map(len, owned)) - min(map(len, owned)) <= 2
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"


def test_jobs_schema(tmp_path):
    (tmp_path / "s.txt").write_text("A: Hi.\nB: Hello.\n")
    lines = [
        {"script": "s.txt", "refs": ["a.png", "/abs/b.png"], "seed": 3, "steps": 4,
         "voices": ["heart", "heart-low"], "output": "one.mp4"},
        {"turns": [["Alice", "Hi there."], ["Bob", "Hello."]], "refs": ["a.png", "b.png"]},
        {"text": "A: Hi", "ref": ["a.png", "b.png"]},
        {"text": "A: Hi", "script": "s.txt", "refs": ["a.png", "b.png"]},
        {"text": "A: Hi", "refs": ["a.png"]},
        {"text": "A: Hi", "refs": ["a.png", "b.png"], "output": "../x.mp4"},
        {"text": "A: Hi", "refs": ["a.png", "b.png"], "steps": 0},
        {"text": "A: Hi", "refs": ["a.png", "b.png"], "seed": True},
        {"text": "A: (sings)", "refs": ["a.png", "b.png"]},
        {"turns": [["A", "Hi\nB: sneaky"]], "refs": ["a.png", "b.png"]},
        {"text": "A: Hi", "refs": ["a.png", "b.png"], "output": "one.mp4"},
        "[1, 2]",
    ]
    path = write_jobs(tmp_path, lines)
    jobs = read_jobs(path)
    first, second = jobs[0], jobs[1]
    assert isinstance(first, Job) and first.script == str(tmp_path / "s.txt")
    assert first.refs == (str(tmp_path / "a.png"), "/abs/b.png")
    assert (first.seed, first.steps, first.voices, first.output) == (3, 4, ("heart", "heart-low"),
                                                                      "one.mp4")
    assert second.output == "job-00002.mp4" and second.seed is None
    assert second.script.names == ("Alice", "Bob") and len(second.script.turns) == 2
    errors = [j.error for j in jobs[2:]]
    assert all(isinstance(j, BadJob) for j in jobs[2:])
    assert all(e.startswith(f"{path}:{k}") for k, e in enumerate(errors, start=3))
    for error, expected in zip(errors, [
            "unknown key 'ref'", "exactly one of 'script'", "'refs' must list two photo",
            "'output' must be a plain file name", "'steps' must be an integer from 1 to 256",
            "'seed' must be an integer from 0 to", "text:1: unknown cue",
            "'turns' must be a list of [name, words] pairs",
            "output 'one.mp4' is already written by line 1", "a job must be a JSON object"]):
        assert expected in error, (error, expected)
    with pytest.raises(InputError, match="no such jobs file"):
        read_jobs(tmp_path / "missing.jsonl")


def test_jobs_framing_keys(tmp_path):
    path = write_jobs(tmp_path, [
        {"text": "A: Hi", "refs": REFS, "crop": "face", "layout": "single"},
        {"text": "A: Hi", "refs": REFS, "output": "b.mp4"},
        {"text": "A: Hi", "refs": REFS, "output": "c.mp4", "layout": "diagonal"},
        {"text": "A: Hi", "refs": REFS, "output": "d.mp4", "crop": "chin"}])
    first, second, bad_layout, bad_crop = read_jobs(path)
    assert (first.crop, first.layout) == ("face", "single")
    assert (second.crop, second.layout) == (None, None)  # the command's options
    assert f"{path}:3: 'layout' must be one of side, stacked, single" in bad_layout.error
    assert f"{path}:4: 'crop' must be one of photo, face" in bad_crop.error


def test_single_layout_job_is_done_when_both_files_are(tmp_path):
    """A layout 'single' job writes NAME-1.mp4 and NAME-2.mp4: resuming skips it only when
    both are complete, and its layout and crop reach the synthesizer."""
    from avgen.video import Mp4Writer

    jobs = write_jobs(tmp_path, [{"text": "A: Hi", "refs": REFS, "layout": "single",
                                  "crop": "face", "output": "talk.mp4"}])
    out = tmp_path / "out"
    out.mkdir()
    wav = tmp_path / "a.wav"
    import soundfile

    soundfile.write(wav, np.zeros(4410, np.float32), 22050)
    with Mp4Writer(out / "talk-1.mp4", 64, 64, 25, audio=wav) as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
    synthesizer = FakeSynthesizer()
    run_batch(jobs, out, synthesizer, progress=False)
    assert synthesizer.calls == [str(out / "talk.mp4")]  # one of two files: not done
    assert synthesizer.settings == [{"rate": None, "gap": None, "layout": "single",
                                     "crop": "face"}]


def test_results_file_closes_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"line": 1, "status": "ok"}\n{"line": 2, "sta')  # crash mid-record
    with ResultsFile(path) as results:
        results.write({"line": 3, "status": "ok"})
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"line": 3, "status": "ok"} and len(lines) == 3


class FakeSynthesizer:
    """Writes a placeholder instead of synthesising: the batch logic without the models."""

    def __init__(self, fail_on=()):
        from avgen.pipeline import SynthConfig

        self.loads, self.calls, self.fail_on, self.settings = 0, [], fail_on, []
        self.config = SynthConfig()

    def load(self):
        self.loads += 1
        return self

    def synth(self, script, refs, output, seed=None, steps=None, voices=None, rate=None,
              gap=None, layout=None, crop=None, progress=True):
        from types import SimpleNamespace

        self.calls.append(output)
        self.settings.append({"rate": rate, "gap": gap, "layout": layout, "crop": crop})
        if len(self.calls) in self.fail_on:
            raise RuntimeError("boom")
        with open(output, "wb") as f:
            f.write(b"not really an mp4")
        return SimpleNamespace(frames=1)


def test_sharded_runs_cover_the_batch_and_a_crash_is_one_error(tmp_path):
    jobs = write_jobs(tmp_path, [{"text": f"A: Line {k}.", "refs": REFS} for k in range(5)])
    synthesizers = [FakeSynthesizer(fail_on=(1,) if k == 1 else ()) for k in range(3)]
    summaries = [run_batch(jobs, tmp_path / "out", s, Shard(k, 3), progress=False)
                 for k, s in enumerate(synthesizers)]
    assert [s.loads for s in synthesizers] == [1, 1, 1]
    records = [r for s in summaries for r in read_results(s.results)]
    assert sorted(r["line"] for r in records) == [1, 2, 3, 4, 5]
    assert [r["status"] for r in records].count("error") == 1
    failed = next(r for r in records if r["status"] == "error")
    assert failed["line"] == 2 and failed["error"] == f"{jobs}:2: RuntimeError: boom"
    assert sorted(s.results.name for s in summaries) == [
        f"results.shard-{k}-of-3.jsonl" for k in range(3)]


def test_mp4_is_complete(tmp_path):
    from avgen.video import Mp4Writer

    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    assert not mp4_is_complete(tmp_path / "junk.mp4")
    assert not mp4_is_complete(tmp_path / "missing.mp4")
    with Mp4Writer(tmp_path / "silent.mp4", 64, 64, 8) as writer:
        for _ in range(4):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    assert not mp4_is_complete(tmp_path / "silent.mp4")  # synth always writes audio too


def test_an_mp4_whose_writing_fails_leaves_nothing_behind(tmp_path):
    """An error while frames are written (a renderer failing, ctrl-C) removes the
    temp file; no output appears."""
    from avgen.video import Mp4Writer

    with pytest.raises(RuntimeError, match="renderer failed"):
        with Mp4Writer(tmp_path / "out.mp4", 64, 64, 8) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            assert len(list(tmp_path.iterdir())) == 1  # the temp file, while writing
            raise RuntimeError("renderer failed")
    assert list(tmp_path.iterdir()) == []


def test_batch_end_to_end_resumes_and_loads_models_once(checkpoint, tmp_path, monkeypatch):
    """Two good jobs, a missing photo, a bad script and a malformed line: the good ones are
    written, the rest are error results, the exit code says so; a re-run skips the done
    jobs; models load once per process and each photo's landmarks are found once (here
    or by the render worker)."""
    import avgen.audio.vocoder
    import avgen.face.landmarks
    import avgen.model.text_to_tokens
    import avgen.pipeline

    counts = {}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(avgen.pipeline, "load_av_model")
    counting(avgen.audio.vocoder, "load_vocoder")
    counting(avgen.model.text_to_tokens, "load_checkpoint")
    counting(avgen.face.landmarks, "detect_image")
    import avgen.face.worker

    ask = avgen.face.worker.RenderProcess.request_landmarks

    def request_landmarks(self, paths):  # found in the worker: counted as asked
        counts["detect_image"] = counts.get("detect_image", 0) + len(paths)
        return ask(self, paths)

    monkeypatch.setattr(avgen.face.worker.RenderProcess, "request_landmarks",
                        request_landmarks)
    (tmp_path / "s.txt").write_text("A: Hi there.\nB: Hello!\n")
    jobs = write_jobs(tmp_path, [
        {"script": "s.txt", "refs": REFS, "output": "first.mp4"},
        {"turns": [["A", "Bye."], ["B", "See you."]], "refs": REFS, "seed": 2},
        {"text": "A: Hi", "refs": [REFS[0], "nobody.png"]},
        {"text": "A: (sings)", "refs": REFS},
        '{"text": "A: Hi", "refs": [',
    ])
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["synth", "--batch", str(jobs), "-o", str(out), "--checkpoint", str(checkpoint), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "5 jobs (shard 0/1): 2 ok, 0 skipped, 3 failed" in result.output
    assert counts == {"load_av_model": 1, "load_vocoder": 1, "load_checkpoint": 1,
                      "detect_image": 2}
    records = read_results(out / "results.jsonl")
    assert [(r["line"], r["status"]) for r in records] == [
        (1, "ok"), (2, "ok"), (3, "error"), (4, "error"), (5, "error")]
    assert "nobody.png: no such file" in records[2]["error"]
    assert "4 text:1: unknown cue" in records[3]["error"]
    assert f"{jobs}:5: not valid JSON" in records[4]["error"]
    assert all(r["seconds"] >= 0 for r in records) and records[0]["frames"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["first.mp4", "job-00002.mp4",
                                                     "results.jsonl"]
    assert all(mp4_is_complete(out / n) for n in ("first.mp4", "job-00002.mp4"))
    # resume: finished jobs are skipped, not redone; results are appended
    before = (out / "first.mp4").stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "0 ok, 2 skipped, 3 failed" in again.output
    assert (out / "first.mp4").stat().st_mtime_ns == before
    records = read_results(out / "results.jsonl")
    assert len(records) == 10 and [r["status"] for r in records[5:7]] == ["skipped"] * 2


def test_batch_argument_errors(tmp_path):
    runner = CliRunner()
    jobs = write_jobs(tmp_path, [{"text": "A: Hi", "refs": REFS}])
    mixed = runner.invoke(app, ["synth", "s.txt", "--batch", str(jobs), "-o", str(tmp_path)])
    assert mixed.exit_code == 2 and "give no script or --ref" in mixed.output
    missing = runner.invoke(app, ["synth", "--batch", str(tmp_path / "nope.jsonl"), "-o",
                                  str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no such jobs file" in missing.output
    stray = runner.invoke(app, ["synth", "s.txt", "--ref", "a.png", "b.png", "-o", "x.mp4",
                                "--shard", "0/2"])
    assert stray.exit_code == 2 and "--shard and --results go with --batch" in stray.output


def test_renderer_cache_reuses_until_the_photo_changes(tmp_path):
    import os
    import shutil

    from avgen.face.render import RenderConfig, RendererCache

    photo = tmp_path / "face.png"
    shutil.copy(EXAMPLES / "eileen.png", photo)
    cache = RendererCache(RenderConfig(size=64), capacity=1)
    first = cache.get([str(photo)])[0]
    assert cache.get([str(tmp_path / "." / "face.png")])[0] is first  # same file, same key
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited photo
    assert cache.get([str(photo)])[0] is not first
    cache.get([str(EXAMPLES / "grace.png")])
    assert len(cache._cache) == 1  # bounded
    with pytest.raises(InputError, match="missing.png: no such file"):
        cache.get([str(tmp_path / "missing.png")])


def test_learned_durations_reseeded_share_the_model():
    from avgen.text.timeline import LearnedDurations

    base = LearnedDurations(seed=1)
    other = base.with_seed(7)
    assert other.model is base.model and (base.seed, other.seed) == (1, 7)


def test_rate_and_gap_job_keys_reach_the_synthesizer(tmp_path, capsys):
    lines = [{"text": "A: Hi", "refs": REFS, "rate": 1.25, "gap": 0},
             {"text": "A: Hi", "refs": REFS, "rate": 9},
             {"text": "A: Hi", "refs": REFS, "gap": "long"},
             {"text": "A: Hi", "refs": REFS, "gap": -1}]
    path = write_jobs(tmp_path, lines)
    jobs = read_jobs(path)
    assert (jobs[0].rate, jobs[0].gap) == (1.25, 0.0)
    assert "rate must be from 0.25 to 4, got 9" in jobs[1].error
    assert "'gap' must be a number" in jobs[2].error
    assert "turn gap must be from 0 to 10 s" in jobs[3].error
    fake = FakeSynthesizer()
    run_batch(path, tmp_path / "out", fake, Shard())
    assert [(job["rate"], job["gap"]) for job in fake.settings] == [(1.25, 0.0)]
    log = capsys.readouterr().err  # not a terminal: plain lines, no bar
    assert "line 1: ok job-00001.mp4" in log and "line 2: error:" in log and "\r" not in log
