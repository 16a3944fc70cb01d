"""`avgen eval` on constructed .av.npz files with known answers."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from avgen import formats
from avgen.cli import app
from avgen.constants import EXPRESSION_NAMES
from avgen.metrics import motion as m
from avgen.metrics.evaluate import evaluate
from avgen.face.rotations import euler_to_quaternion
from avgen.text.symbols import symbol_id
from avgen.text.timeline import Timeline, TimedTurn, save_timeline

runner = CliRunner()
E = {name: k for k, name in enumerate(EXPRESSION_NAMES)}
T = 600
# person 0 speaks frames 50-250, person 1 frames 320-520; closures inside each turn
SPEECH = {0: (50, 250), 1: (320, 520)}
CLOSURES = {0: [(80, 86), (130, 136), (200, 205)], 1: [(350, 356), (420, 426)]}


def run(*args):
    return runner.invoke(app, [str(a) for a in args], prog_name="avgen")


def av_arrays(seed=0, closures=CLOSURES, noise=0.0):
    rng = np.random.default_rng(seed)
    arrays = {"num_people": np.array(2), "num_frames": np.array(T),
              "names": formats.string_array(["A", "B"]),
              "expression_names": formats.string_array(EXPRESSION_NAMES)}
    t = np.arange(T)
    for p in range(2):
        mel = np.full((T, 80), m.LOG_SILENCE, np.float32)
        a, b = SPEECH[p]
        for onset in range(a, b, 20):  # a syllable every 20 frames
            mel[onset:onset + 12] = -4.0
        expr = np.zeros((T, len(EXPRESSION_NAMES)), np.float32)
        expr[:, E["lips_close"]] = 0.6
        expr[a:b, E["lips_close"]] = 0.1
        expr[a:b, E["jaw_open"]] = 0.3 + 0.2 * np.sin(t[a:b] / 3)
        for c0, c1 in closures[p]:
            expr[c0:c1, E["lips_close"]] = 1.0
        # the listener smiles and nods while the partner talks
        c, d = SPEECH[1 - p]
        expr[c + 40:c + 100, E["smile_left"]] = 0.6
        pitch = np.zeros(T)
        length = 33
        shape = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
        for s in (c + 20, c + 120):
            pitch[s:s + length] += np.radians(4.0) * shape
        yaw = 0.05 * np.sin(t / 15.0)
        expr += noise * rng.standard_normal(expr.shape).astype(np.float32)
        pose = np.zeros((T, 7), np.float32)
        pose[:, :4] = euler_to_quaternion(yaw + noise * rng.standard_normal(T), pitch,
                                          np.zeros(T))
        arrays[f"p{p}/mel"] = mel
        arrays[f"p{p}/head_pose"] = pose
        arrays[f"p{p}/expression"] = np.clip(expr, -1, 1)
    return arrays


def write_av(path, **kwargs):
    formats.save(path, formats.AV, av_arrays(**kwargs))
    return path


def write_tokens(path, num_frames=T):
    ids, starts, durations, turns = [], [], [], []
    for p in range(2):
        a, b = SPEECH[p]
        first = len(ids)
        position = a
        for c0, c1 in CLOSURES[p]:
            for sid, end in ((symbol_id("ə"), c0), (symbol_id("m"), c1)):
                ids.append(sid)
                starts.append(position)
                durations.append(end - position)
                position = end
        ids.append(symbol_id("ə"))
        starts.append(position)
        durations.append(b - position)
        turns.append(TimedTurn(p, p + 1, "text", a, b, first, len(ids) - first))
    timeline = Timeline(("A", "B"), num_frames, tuple(turns), np.array(ids), np.array(starts),
                        np.array(durations), (), "test")
    save_timeline(path, timeline)
    return path


def test_eval_self_is_perfect(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    report = evaluate([str(ref)], str(ref))
    metrics = report["metrics"]
    for column in ("p0", "p1", "overall"):
        assert metrics["lip_f1"][column] == 1.0
        assert metrics["fde"][column] == pytest.approx(0.0, abs=1e-9)
    assert metrics["lip_recall"]["overall"] == 1.0
    # both listeners nod twice and smile once while the partner talks; nothing leaks
    assert metrics["listener_nods"]["overall"] == 4
    assert metrics["listener_smiles"]["overall"] == 2
    # a rate per minute of listening, as the nods: the same minutes, so the same ratio
    assert metrics["listener_smiles_per_minute"]["overall"] == pytest.approx(
        metrics["listener_nods_per_minute"]["overall"] / 2)
    assert metrics["listener_smiles_per_minute"]["p0"] > 0
    assert metrics["listener_energy"]["overall"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["bc_h"]["reference"] == metrics["bc_h"]["overall"]
    assert metrics["div_h"]["overall"] is None
    assert "needs >= 2" in metrics["div_h"]["note"]


def test_eval_missed_and_extra_closures(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    # person 0 misses its second closure and adds one in the middle of its turn
    closures = {0: [(80, 86), (160, 166), (200, 205)], 1: CLOSURES[1]}
    gen = write_av(tmp_path / "gen.av.npz", closures=closures)
    metrics = evaluate([str(gen)], str(ref))["metrics"]
    assert metrics["lip_precision"]["p0"] == pytest.approx(2 / 3)
    assert metrics["lip_recall"]["p0"] == pytest.approx(2 / 3)
    assert metrics["lip_f1"]["p1"] == 1.0
    assert metrics["lip_recall"]["overall"] == pytest.approx(4 / 5)  # pooled intervals
    assert metrics["fde"]["p1"] == pytest.approx(0.0, abs=1e-9)


def test_eval_speech_leaking_into_the_listener(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    arrays = av_arrays()
    arrays["p1/mel"][:] = m.LOG_SILENCE + 3.0  # person 1 hums all the time
    formats.save(tmp_path / "leak.av.npz", formats.AV, arrays)
    metrics = evaluate([str(tmp_path / "leak.av.npz")], str(ref))["metrics"]
    assert metrics["listener_energy"]["p1"] == pytest.approx(3.0, abs=1e-5)
    assert metrics["listener_energy"]["p0"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["listener_energy"]["reference"] == pytest.approx(0.0, abs=1e-5)


def test_eval_with_tokens_uses_bilabial_phonemes(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    tokens = write_tokens(tmp_path / "x.tokens.npz")
    gen = write_av(tmp_path / "gen.av.npz",
                   closures={0: CLOSURES[0][:1], 1: CLOSURES[1]})  # drops two closures
    report = evaluate([str(gen)], str(ref), str(tokens))
    assert report["regions"].startswith("tokens")
    metrics = report["metrics"]
    assert metrics["lip_recall"]["p0"] == pytest.approx(1 / 3)
    assert metrics["lip_precision"]["p0"] == 1.0
    assert metrics["lip_f1"]["p1"] == 1.0


def test_eval_diversity_over_samples(tmp_path):
    files = [str(write_av(tmp_path / f"s{k}.av.npz", seed=k, noise=0.01)) for k in range(3)]
    same = [str(write_av(tmp_path / f"same{k}.av.npz")) for k in range(2)]
    metrics = evaluate(files)["metrics"]
    assert 0 < metrics["div_e"]["overall"] < 0.02
    assert 0 < metrics["div_h"]["overall"] < 0.02
    assert evaluate(same)["metrics"]["div_e"]["overall"] == 0.0
    # no reference: no F1 or FDe, but beats and listener checks still run
    assert "lip_f1" not in metrics and "fde" not in metrics
    assert metrics["bc_h"]["overall"] is not None


def test_cli_table_and_json(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    a = write_av(tmp_path / "a.av.npz", seed=1, noise=0.02)
    b = write_av(tmp_path / "b.av.npz", seed=2, noise=0.02)
    out = tmp_path / "report.json"
    result = run("eval", a, b, "--reference", ref, "--json", out)
    assert result.exit_code == 0, result.output
    assert "lip-closure F1" in result.output and "Div_e" in result.output
    report = json.loads(out.read_text())
    assert report["format"] == "avgen.eval/1"
    assert report["generated"] == [str(a), str(b)]
    assert len(report["samples"]) == 2
    assert report["metrics"]["div_e"]["overall"] > 0
    f1s = [s["metrics"]["lip_f1"]["overall"] for s in report["samples"]]
    assert report["metrics"]["lip_f1"]["overall"] == pytest.approx(np.mean(f1s))


def test_cli_json_to_stdout(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    result = runner.invoke(app, ["eval", str(ref), "-r", str(ref), "--json", "-"],
                           prog_name="avgen")
    assert result.exit_code == 0
    start = result.stdout.index("{")
    assert json.loads(result.stdout[start:])["metrics"]["lip_f1"]["overall"] == 1.0


def test_cli_bad_inputs_exit_2_and_write_nothing(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    out = tmp_path / "report.json"
    result = run("eval", tmp_path / "missing.av.npz", "-r", ref, "--json", out)
    assert result.exit_code == 2 and "missing.av.npz" in result.output
    short = av_arrays()
    for key in list(short):
        if key.startswith("p"):
            short[key] = short[key][:500]
    short["num_frames"] = np.array(500)
    formats.save(tmp_path / "short.av.npz", formats.AV, short)
    result = run("eval", tmp_path / "short.av.npz", "-r", ref, "--json", out)
    assert result.exit_code == 2 and "short.av.npz" in result.output
    assert "500 frames" in result.output
    tokens = write_tokens(tmp_path / "x.tokens.npz", num_frames=T + 10)
    result = run("eval", ref, "-r", ref, "--tokens", tokens, "--json", out)
    assert result.exit_code == 2 and "x.tokens.npz" in result.output
    result = run("eval", tokens, "--json", out)  # a tokens file is not an av file
    assert result.exit_code == 2 and "avgen.tokens/1" in result.output
    bad = av_arrays()
    bad["p0/expression"][3, 0] = np.nan
    # formats.save refuses NaN, so the file is written the way a foreign tool would
    np.savez_compressed(tmp_path / "nan.av.npz", **{**formats.header(formats.AV, 2), **bad})
    result = run("eval", tmp_path / "nan.av.npz", "--json", out)
    assert result.exit_code == 2 and "NaN" in result.output
    assert not out.exists()
    result = run("eval", ref, "--json", tmp_path / "nowhere" / "r.json")
    assert result.exit_code == 2 and "nowhere" in result.output and "p0" not in result.output


def test_cli_help():
    result = run("eval", "--help")
    assert result.exit_code == 0 and "--reference" in result.output


def test_expression_columns_are_matched_by_name(tmp_path):
    ref = write_av(tmp_path / "ref.av.npz")
    arrays = av_arrays()
    order = np.arange(len(EXPRESSION_NAMES))[::-1]
    arrays["expression_names"] = formats.string_array(np.array(EXPRESSION_NAMES)[order])
    for p in range(2):
        arrays[f"p{p}/expression"] = arrays[f"p{p}/expression"][:, order]
    formats.save(tmp_path / "rev.av.npz", formats.AV, arrays)
    metrics = evaluate([str(tmp_path / "rev.av.npz")], str(ref))["metrics"]
    assert metrics["fde"]["overall"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["lip_f1"]["overall"] == 1.0
    assert not math.isnan(metrics["bc_e"]["overall"])
