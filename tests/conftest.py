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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 24-sentence teacher corpus (speech, features, dialogues); ~10 s to build."""
    pytest.importorskip("hibari", reason="the teachers extra is not installed")
    from avgen.train import corpus
    from avgen.train.dialogues import DialogueConfig, build_dialogues

    root = tmp_path_factory.mktemp("corpus")
    config = corpus.CorpusConfig(num_sentences=24, shard_size=8, heldout_every=12, coverage=False)
    corpus.build_utterances(root, config)
    corpus.build_features(root)
    build_dialogues(root, DialogueConfig(dialogues_per_shard=2))
    return root, config


@pytest.fixture(scope="session")
def whisper():
    """Whisper tiny.en of the eval extra (README's test command installs it), loaded once."""
    from avgen.metrics.asr import WhisperTinyEn

    return WhisperTinyEn()
