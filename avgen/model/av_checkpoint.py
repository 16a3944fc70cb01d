"""The joint model's checkpoint: one safetensors file holding the weights, the normaliser,
and in its metadata the architecture, model config, training config and step. Loading
reads every version this project has written (older configs are upgraded here)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from avgen.errors import WeightsError
from avgen.model.av_flow import AVFlow, AVFlowConfig
from avgen.model.features import Normalizer

ARCHITECTURE = "avgen.av-flow/1"


def save_checkpoint(path: str | Path, model: AVFlow, normalizer: Normalizer, step: int,
                    train) -> None:
    """Weights, normaliser, model config, step and the training config (`train`, a
    dataclass) in one safetensors file."""
    from safetensors.torch import save

    from avgen.formats import atomic_write_bytes

    state = model.state_dict()
    if model.config.fusion == "shared":  # tied blocks: safetensors stores each tensor once
        state = {k: v for k, v in state.items() if not k.startswith("visual_blocks.")}
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    tensors.update(normalizer.to_tensors())
    metadata = {"architecture": ARCHITECTURE, "config": json.dumps(model.config.to_dict()),
                "train": json.dumps(asdict(train)), "step": str(step)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def checkpoint_voices(path: str | Path) -> tuple[str, ...]:
    """The voice names of a joint-model checkpoint, from its metadata alone (no tensor is
    read), so a wrong --voice is refused before any model loads."""
    from avgen import checkpoint

    metadata = checkpoint.read_metadata(path, ARCHITECTURE, "joint audio-visual")
    try:
        return tuple(json.loads(metadata["config"])["voices"])
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: joint audio-visual checkpoint has no voice list "
                           f"({exc})") from None


def load_checkpoint(path: str | Path, device: str = "cpu"
                    ) -> tuple[AVFlow, Normalizer, int, dict]:
    """(model, normaliser, step, train config dict) from a checkpoint; clear errors."""
    from avgen import checkpoint

    tensors, metadata = checkpoint.read(path, ARCHITECTURE, "joint audio-visual", device)
    try:
        config = json.loads(metadata["config"])
        config["voices"] = tuple(config["voices"])
        config["voice_info"] = tuple(tuple(v) for v in config.get("voice_info", ()))
        config["voice_similarity"] = tuple(tuple(float(x) for x in row)
                                           for row in config.get("voice_similarity", ()))
        config["voice_f0_spoken"] = tuple(float(x) for x in config.get("voice_f0_spoken", ()))
        if "highway" in config:  # saved before the fusion variants existed
            config["fusion"] = "highway" if config.pop("highway") else "separate"
        legacy = "ff_kernel" not in config  # saved before the conv feed-forward existed
        config.setdefault("ff_kernel", 1)
        model_config = AVFlowConfig(**config)
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        if "voice.weight" in state:  # saved when the voice table was a bare nn.Embedding
            state["voice.table.weight"] = state.pop("voice.weight")
        if legacy:  # blocks' MLPs were nn.Sequential (mlp.0 / mlp.2) then
            state = {k.replace(".mlp.0.", ".mlp.inner.").replace(".mlp.2.", ".mlp.outer.")
                     if "_blocks." in k else k: v for k, v in state.items()}
        if model_config.fusion == "shared":
            state.update({"visual_" + k[len("audio_"):]: v for k, v in state.items()
                          if k.startswith("audio_blocks.")})
        model = checkpoint.build(lambda: AVFlow(model_config), state).to(device)
        return model, Normalizer.from_tensors({k: v.cpu() for k, v in tensors.items()}), int(metadata["step"]), json.loads(
            metadata["train"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path}: joint audio-visual checkpoint does not match its config "
                           f"({exc})") from None


def export_half(checkpoint: str | Path, output: str | Path) -> Path:
    """Write a shippable copy of a checkpoint: model weights in float16 (half the size;
    they are cast back to float32 on load), normaliser and metadata unchanged."""
    load_checkpoint(checkpoint)  # a clear error now for anything that is not one
    tensors, metadata = _read_raw(checkpoint)
    tensors = {k: v.half() if k.startswith("model.") and v.is_floating_point() else v
               for k, v in tensors.items()}
    return _write_raw(output, tensors, metadata)


def with_voice_similarity(checkpoint: str | Path, similarity, output: str | Path,
                          f0_spoken=None) -> Path:
    """A copy of a checkpoint carrying `similarity` (V, V): the speaker similarity of its
    voices as the model speaks them (see `AVFlowConfig.voice_similarity`), and where given
    `f0_spoken` (V,): the F0 median of its speech per voice (`voice_f0_spoken`); tensors
    and everything else unchanged."""
    from dataclasses import replace

    model, _, _, _ = load_checkpoint(checkpoint)  # a clear error for anything else
    rows = tuple(tuple(round(float(x), 4) for x in row) for row in similarity)
    f0 = () if f0_spoken is None else tuple(round(float(x), 1) for x in f0_spoken)
    replace(model.config, voice_similarity=rows, voice_f0_spoken=f0)  # checks the shapes
    tensors, metadata = _read_raw(checkpoint)
    saved = json.loads(metadata["config"])
    saved["voice_similarity"] = [list(row) for row in rows]
    saved["voice_f0_spoken"] = list(f0)
    return _write_raw(output, tensors, {**metadata, "config": json.dumps(saved)})


def _read_raw(checkpoint: str | Path) -> tuple[dict, dict[str, str]]:
    """(tensors as stored, metadata) of a checkpoint already known to load."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())


def _write_raw(output: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save

    from avgen.formats import atomic_write_bytes

    atomic_write_bytes(output, save(tensors, metadata=metadata))
    return Path(output)
