"""Reading our safetensors checkpoints: tensors plus JSON metadata naming the architecture
and carrying the config. Every model's loader goes through `read`, so a missing, corrupt or
foreign file gives the same clear error everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from avgen.errors import WeightsError


def read(path: str | Path, architecture: str, what: str, device: str = "cpu"
         ) -> tuple[dict, dict[str, str]]:
    """(state dict, raw metadata) of a checkpoint whose metadata names `architecture`.
    `what` names the model in errors ("vocoder", "text-to-tokens", ...)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise WeightsError(f"{path}: {what} checkpoint not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("architecture") != architecture:
        raise WeightsError(f"{path}: not an {architecture} checkpoint "
                           f"(architecture {metadata.get('architecture')!r})")
    return state, metadata


def metadata(path: str | Path) -> dict:
    """A checkpoint's metadata with every value but the architecture JSON-decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return {k: (json.loads(v) if k != "architecture" else v) for k, v in raw.items()}
