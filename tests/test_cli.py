import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from avgen.cli import app

runner = CliRunner()


def run(*args, **kwargs):
    return runner.invoke(app, list(args), prog_name="avgen", **kwargs)


@pytest.mark.parametrize("command", [
    [], ["tokens"], ["phonemize"], ["weights"], ["weights", "list"], ["weights", "verify"],
    ["weights", "path"], ["weights", "fetch"],
])
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: avgen" in result.output


def test_tokens_on_the_example(example_script, tmp_path):
    out = tmp_path / "dialogue.tokens.npz"
    result = run("tokens", str(example_script), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = np.load(out)
    assert str(data["format"]) == "avgen.tokens/1"
    assert list(data["names"]) == ["EILEEN", "GRACE"]
    assert data["turns/person"].tolist() == [0, 1] * 4
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp files left


def test_bad_script_exits_2_and_writes_nothing(write_script, tmp_path):
    script = write_script("A: hello\nB: (sings) hi\n")
    out = tmp_path / "out.tokens.npz"
    result = run("tokens", str(script), "-o", str(out))
    assert result.exit_code == 2
    assert f"{script}:2: unknown cue '(sings)'" in result.output
    assert not out.exists()
    out.write_bytes(b"previous result")
    assert run("tokens", str(script), "-o", str(out)).exit_code == 2
    assert out.read_bytes() == b"previous result"  # nothing lost


def test_missing_script_and_folder(tmp_path):
    result = run("tokens", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "x.npz"))
    assert result.exit_code == 2 and "nope.txt: no such file" in result.output
    script = tmp_path / "s.txt"
    script.write_text("A: hi\n")
    result = run("tokens", str(script), "-o", str(tmp_path / "no" / "x.npz"))
    assert result.exit_code == 2 and "output folder does not exist" in result.output


def test_unspeakable_text_names_the_line(write_script, tmp_path):
    script = write_script("A: hello\nB: привет\n")
    result = run("tokens", str(script), "-o", str(tmp_path / "x.npz"))
    assert result.exit_code == 2 and f"{script}:2: cannot phonemize" in result.output


def test_bad_option_value_exits_2(example_script, tmp_path):
    result = run("tokens", str(example_script), "--rate", "0", "-o", str(tmp_path / "x.npz"))
    assert result.exit_code == 2


def test_phonemize_command():
    result = run("phonemize", "Hi there, 2 cats.")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Hi there, two cats."
    assert "(pause 0.15 s)" in result.output


def test_weights_commands():
    assert run("weights", "list").exit_code == 0
    assert run("weights", "verify").exit_code == 0
    result = run("weights", "path", "no-such-weights")
    assert result.exit_code == 2 and "unknown weights 'no-such-weights'" in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("avgen ")


def test_console_script_pipes_stdin_to_stdout(tmp_path):
    """`avgen tokens - -o -` in a real shell pipeline: script in, npz bytes out."""
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run([sys.executable, "-m", "avgen", "tokens", "-", "-o", "-"],
                          input=b"A: Hello there.\nB: Hi!\n", capture_output=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    path = tmp_path / "piped.npz"
    path.write_bytes(done.stdout)
    data = np.load(path)
    assert list(data["names"]) == ["A", "B"]
    bad = subprocess.run([sys.executable, "-m", "avgen", "tokens", "-", "-o", "-"],
                         input=b"A: hi\nA: (pause x)\n", capture_output=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == b""
    assert "<stdin>:2: pause length 'x' is not a number" in bad.stderr.decode()
