"""Checking a checkpoint file a user hands us, whatever its architecture: its sha256
against a record beside it, every tensor finite, the tensors fitting the architecture.
Apart from `avgen.checkpoint` because it loads every model kind, and those models read
their files through `avgen.checkpoint`."""

from __future__ import annotations

from pathlib import Path

from avgen.errors import WeightsError


def verify(path: str | Path) -> list[tuple[str, bool, str]]:
    """Check a checkpoint file a user hands us; (check, passed, detail) per check:
    its sha256 against a `FILE.sha256` record beside it (sha256sum's format, or the bare
    digest), every tensor finite, and the tensors fitting the architecture its metadata
    names (the model is built from its config and loaded strictly). A missing record is
    reported as not passed."""
    from avgen.weights import sha256_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    results = []
    record = path.with_name(path.name + ".sha256")
    digest = sha256_file(path)
    if record.is_file():
        words = record.read_text(encoding="utf-8", errors="replace").split()
        expected = words[0].lower() if words else ""
        results.append(("sha256", expected == digest,
                        f"matches {record.name}" if expected == digest else
                        f"is {digest[:12]}…, {record.name} says {expected[:12]}…"))
    else:
        results.append(("sha256", False, f"no {record.name} beside it to check against "
                        f"(sha256 {digest})"))
    try:
        load_any(path)
        results.append(("tensors", True, "finite, shapes fit the architecture"))
    except WeightsError as exc:
        results.append(("tensors", False, str(exc)))
    return results


def load_any(path: str | Path):
    """Load a safetensors checkpoint of any avgen architecture (by its metadata)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            architecture = (handle.metadata() or {}).get("architecture")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if architecture == "avgen.vocos/1":
        from avgen.audio.vocos import load_checkpoint
    elif architecture == "avgen.text_to_tokens/1":
        from avgen.model.text_to_tokens import load_checkpoint
    elif architecture == "avgen.av-flow/1":
        from avgen.model.av_checkpoint import load_checkpoint
    else:
        raise WeightsError(f"{path}: unknown architecture {architecture!r}")
    return load_checkpoint(path)
