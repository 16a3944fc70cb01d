from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture
def example_script() -> Path:
    return EXAMPLES / "dialogue.txt"


@pytest.fixture
def write_script(tmp_path):
    """Write script text to a file and return its path."""

    def write(text: str, name: str = "script.txt") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
