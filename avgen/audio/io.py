"""Reading and writing audio files (soundfile), with errors that name the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from avgen.constants import SAMPLE_RATE
from avgen.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac")


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform (L,) of a .wav/.flac file; channels are averaged. A file at
    another rate is an InputError: resampling silently would hide a data mistake."""
    import soundfile

    try:
        wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise InputError("no such file", str(path)) from None
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"not a readable audio file ({exc})", str(path)) from None
    if rate != sample_rate:
        raise InputError(f"sample rate is {rate} Hz; avgen works at {sample_rate} Hz "
                         "(resample it first, e.g. with sox or soxr)", str(path))
    return wave.mean(axis=1)


def find_audio(folder: str | Path) -> list[Path]:
    """All .wav/.flac files under `folder` (recursive), sorted for a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", str(folder))
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                  and p.is_file())


def wav_bytes(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV of a float waveform (L,), clipped to [-1, 1]."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0),
                    sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
