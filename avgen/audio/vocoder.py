"""One interface over the vocoders: mel (B, 80, T) -> wave (B, T * 256).

- "vocos" (default): our small Vocos-style model, weights `avgen-vocos-22k` shipped in the
  package; fast on a CPU.
- "griffinlim": no weights; a baseline and a fallback.
- "bigvgan": NVIDIA's BigVGAN v2 (22 kHz, 80 bands, fmax 8 kHz), fetched by
  `avgen weights fetch bigvgan-v2-22khz-80band-fmax8k` and
  `avgen weights fetch bigvgan-v2-22khz-80band-fmax8k-config`; 112 M parameters, slow
  on a CPU.
A `checkpoint` path overrides the registry: a .safetensors file for vocos, a folder with
config.json + bigvgan_generator.pt for bigvgan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avgen.audio import DEFAULT_VOCODER, VOCODERS  # noqa: F401 - part of this module's API
from avgen.constants import HOP_LENGTH, N_MELS
from avgen.errors import InputError

VOCOS_WEIGHTS = "avgen-vocos-22k"
BIGVGAN_WEIGHTS = "bigvgan-v2-22khz-80band-fmax8k"
BIGVGAN_CONFIG = "bigvgan-v2-22khz-80band-fmax8k-config"
# Longer mels are vocoded in cross-faded chunks of this many frames (95 s), so memory
# stays bounded however long the dialogue; shorter ones in one pass.
CHUNK_FRAMES = 8192


def load_vocoder(name: str = DEFAULT_VOCODER, checkpoint: str | Path | None = None,
                 device: str | torch.device = "cpu", iterations: int = 32,
                 seed: int = 0) -> torch.nn.Module:
    """A module mapping log-mel (B, 80, T) to waveform (B, T * 256), in eval mode."""
    if name == "griffinlim":
        from avgen.audio.griffinlim import GriffinLim

        return GriffinLim(iterations=iterations, seed=seed).to(device).eval()
    if name == "vocos":
        from avgen.audio.vocos import load_checkpoint

        if checkpoint is None:
            from avgen.weights import Weights

            checkpoint = Weights().path(VOCOS_WEIGHTS)
        return load_checkpoint(checkpoint, device)
    if name == "bigvgan":
        from avgen.audio.bigvgan import CONFIG_FILE, GENERATOR_FILE, load_bigvgan
        from avgen.errors import WeightsError

        if checkpoint is None:
            from avgen.weights import Weights

            registry = Weights()
            generator, config = registry.path(BIGVGAN_WEIGHTS), registry.path(BIGVGAN_CONFIG)
            if (generator.parent != config.parent or generator.name != GENERATOR_FILE
                    or config.name != CONFIG_FILE):
                raise WeightsError(f"{registry.registry_path}: {BIGVGAN_WEIGHTS} and "
                                   f"{BIGVGAN_CONFIG} must be {GENERATOR_FILE} and "
                                   f"{CONFIG_FILE} in one folder")
            checkpoint = generator.parent
        return load_bigvgan(checkpoint, device)
    raise InputError(f"unknown vocoder {name!r}; choose one of {', '.join(VOCODERS)}")


@torch.no_grad()
def vocode(model: torch.nn.Module, mel: np.ndarray, chunk_frames: int = CHUNK_FRAMES
           ) -> np.ndarray:
    """Time-first log-mel (T, 80) -> float32 waveform (T * 256,).

    `chunk_frames` > 0 vocodes in overlapping chunks (cross-faded) to bound memory on
    very long inputs; 0 does it in one pass."""
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[1] != N_MELS:
        raise ValueError(f"mel must be (T, {N_MELS}), got {mel.shape}")
    frames = mel.shape[0]
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    device = next(iter(model.buffers()), torch.zeros(0)).device
    tensor = torch.from_numpy(mel.T.copy())[None].to(device)
    if chunk_frames <= 0 or frames <= chunk_frames:
        return model(tensor)[0].float().cpu().numpy()
    overlap = min(32, chunk_frames // 4)
    out = np.zeros(frames * HOP_LENGTH, dtype=np.float32)
    weight = np.zeros_like(out)
    start = 0
    while start < frames:
        stop = min(frames, start + chunk_frames)
        lo = max(0, start - overlap)
        piece = model(tensor[..., lo:stop])[0].float().cpu().numpy()
        ramp = np.ones(len(piece), dtype=np.float32)
        fade = overlap * HOP_LENGTH
        if lo > 0:
            ramp[:fade] = np.linspace(0, 1, fade, dtype=np.float32)
        out[lo * HOP_LENGTH:stop * HOP_LENGTH] += piece * ramp
        weight[lo * HOP_LENGTH:stop * HOP_LENGTH] += ramp
        start = stop
    return out / np.maximum(weight, 1e-8)


def read_mels(path: str) -> list[np.ndarray]:
    """Mels to vocode from an avgen.av/1 .npz (one per person) or a bare .npy log-mel
    ((T, 80) time-first as in avgen files; (80, T) and (1, 80, T) are accepted when
    unambiguous). '-' reads stdin and tells the two apart by their magic bytes."""
    import io
    import sys

    from avgen import formats
    from avgen.errors import FormatError

    from avgen.limits import MAX_FRAMES, MAX_NPZ_BYTES, check_values

    source = "<stdin>" if path == "-" else path
    if path == "-":
        data = sys.stdin.buffer.read(MAX_NPZ_BYTES + 1)
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_NPZ_BYTES + 1)
        except FileNotFoundError:
            raise InputError("no such file", source) from None
        except IsADirectoryError:
            raise InputError("is a folder, expected an .npz or .npy file", source) from None
    if len(data) > MAX_NPZ_BYTES:
        raise FormatError(f"over {MAX_NPZ_BYTES >> 20} MiB: too large for a mel file", source)
    if data[:2] == b"PK":
        if path == "-":
            # formats.load reads stdin itself; hand it the bytes already taken from it
            original, sys.stdin = sys.stdin, _BufferedStdin(data)
            try:
                arrays = formats.load("-", formats.AV)
            finally:
                sys.stdin = original
        else:
            arrays = formats.load(path, formats.AV)
        return [arrays[f"p{i}/mel"].astype(np.float32) for i in range(int(arrays["num_people"]))]
    if data[:6] != b"\x93NUMPY":
        raise FormatError("not an .npz (avgen.av/1) or .npy file", source)
    try:
        mel = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise FormatError(f"not a readable .npy array ({exc})", source) from None
    if mel.ndim == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.ndim != 2 or N_MELS not in mel.shape:
        raise FormatError(f"mel array has shape {mel.shape}; expected (T, {N_MELS})", source)
    if mel.shape[1] != N_MELS:
        mel = mel.T
    if not np.issubdtype(mel.dtype, np.floating):
        raise FormatError("mel must hold floating-point values", source)
    if mel.shape[0] > MAX_FRAMES:
        raise FormatError(f"mel has {mel.shape[0]} frames; the limit is {MAX_FRAMES}", source)
    check_values(mel, "mel", source, formats.VALUE_RANGES[formats.AV]["p{i}/mel"])
    return [mel.astype(np.float32)]


class _BufferedStdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)
