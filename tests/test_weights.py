import hashlib

import pytest

from avgen.errors import InputError, WeightsError
from avgen.weights import REGISTRY_PATH, Weights, cache_dir, load_registry


def make_registry(tmp_path, payload=b"tensor bytes", source="builtin", sha=None, size=None):
    assets = tmp_path / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "tiny.safetensors").write_bytes(payload)
    sha = sha or hashlib.sha256(payload).hexdigest()
    registry = tmp_path / "weights.toml"
    registry.write_text(f"""
[weights.tiny]
component = "vocoder"
file = "tiny.safetensors"
sha256 = "{sha}"
size = {size if size is not None else len(payload)}
licence = "Apache-2.0"
source = "{source}"
description = "a test entry"
""")
    return Weights(registry, assets, cache=tmp_path / "cache")


def test_shipped_registry_holds_every_default_and_they_verify():
    from avgen.audio.vocoder import VOCOS_WEIGHTS
    from avgen.pipeline import AV_WEIGHTS
    from avgen.text.timeline import DEFAULT_WEIGHTS as TOKENS_WEIGHTS

    entries = load_registry(REGISTRY_PATH)  # every entry complete, every sha256 well formed
    weights = Weights()
    builtin = [name for name, entry in entries.items() if entry.source == "builtin"]
    defaults = {VOCOS_WEIGHTS, AV_WEIGHTS, TOKENS_WEIGHTS}
    assert defaults <= set(builtin)
    for name in builtin:  # shipped in the package, byte for byte
        assert weights.status(name) == "ok", name


def test_builtin_entry_verifies_and_resolves(tmp_path):
    weights = make_registry(tmp_path)
    assert weights.status("tiny") == "ok"
    assert weights.path("tiny") == tmp_path / "assets" / "tiny.safetensors"


def test_corrupt_and_missing_files_are_clear_errors(tmp_path):
    weights = make_registry(tmp_path)
    (tmp_path / "assets" / "tiny.safetensors").write_bytes(b"tensor bytez")  # same size
    assert weights.status("tiny") == "corrupt"
    with pytest.raises(WeightsError, match="tiny.safetensors: weights 'tiny' fail their sha256"):
        weights.path("tiny")
    (tmp_path / "assets" / "tiny.safetensors").unlink()
    with pytest.raises(WeightsError, match="not found; the avgen installation is incomplete"):
        weights.path("tiny")
    with pytest.raises(InputError, match="unknown weights 'other'; registered: tiny"):
        weights.path("other")


def test_registry_errors_name_the_entry(tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_text('[weights.x]\ncomponent = "a"\n')
    with pytest.raises(WeightsError, match=r"entry \[weights.x\] lacks file, sha256"):
        load_registry(bad)
    bad.write_text("[weights\n")
    with pytest.raises(WeightsError, match="not valid TOML"):
        load_registry(bad)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AVGEN_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_fetch_verifies_and_is_atomic(tmp_path):
    payload = b"remote checkpoint"
    remote = tmp_path / "remote.bin"
    remote.write_bytes(payload)
    weights = make_registry(tmp_path, payload=payload, source=remote.as_uri())
    assert weights.status("tiny") == "missing"
    with pytest.raises(WeightsError, match="weights fetch tiny"):
        weights.path("tiny")
    path = weights.fetch("tiny")
    assert path == tmp_path / "cache" / "tiny.safetensors" and path.read_bytes() == payload
    assert weights.path("tiny") == path

    (tmp_path / "w").mkdir()
    wrong = make_registry(tmp_path / "w", payload=payload, source=remote.as_uri(), sha="0" * 64)
    with pytest.raises(WeightsError, match="has sha256"):
        wrong.fetch("tiny")
    assert not list((tmp_path / "w" / "cache").iterdir())  # no partial file left behind


def test_unpinned_url_entry_records_its_digest_on_first_fetch(tmp_path, monkeypatch):
    import io
    import urllib.request

    registry = make_registry(tmp_path, source="https://example.org/tiny.bin", sha="unpinned",
                             size=0)
    assert not registry.entry("tiny").pinned
    assert registry.status("tiny") == "missing"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url: io.BytesIO(b"remote bytes"))
    path = registry.fetch("tiny")
    assert path.read_bytes() == b"remote bytes"
    record = path.with_name(path.name + ".sha256").read_text().strip()
    assert record == hashlib.sha256(b"remote bytes").hexdigest()
    assert registry.status("tiny") == "unpinned"
    with pytest.raises(WeightsError, match="no sha256 pinned"):
        registry.path("tiny")  # fetched, but not trusted by name: its record is no pin
    path.write_bytes(b"remote bytez")  # later corruption is caught against the record
    assert registry.status("tiny") == "corrupt"


def test_builtin_entries_must_be_pinned(tmp_path):
    with pytest.raises(WeightsError, match="sha256 is not 64 hex digits"):
        make_registry(tmp_path, sha="unpinned")
