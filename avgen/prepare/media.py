"""Audio of recorded items: reading any file (or a video's audio track) at 22050 Hz, and
an energy-based voice-activity detector on the model clock.

Files libsndfile reads at 22050 Hz are read directly; anything else (another rate, MP3,
M4A, the audio track of an MP4) is decoded and resampled by the ffmpeg binary that ships
in `imageio-ffmpeg`, keeping the channels, into a temporary float WAV.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE
from avgen.errors import InputError


def _read_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    import soundfile

    try:
        wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    return wave, int(rate)


def _read_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    """(L, C) float32 at `sample_rate` through ffmpeg; InputError naming the file."""
    import soundfile

    from avgen.video import ffmpeg_exe

    fd, tmp = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn",
             "-map", "0:a:0", "-c:a", "pcm_f32le", "-ar", str(sample_rate), tmp],
            capture_output=True, text=True)
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
            reason = lines[-1] if lines else "ffmpeg failed"
            if "matches no streams" in result.stderr:
                reason = "it has no audio track"
            raise InputError(f"cannot read audio ({reason})", str(path))
        wave, _ = soundfile.read(tmp, dtype="float32", always_2d=True)
        return wave
    finally:
        os.unlink(tmp)


def read_audio_any(path: str | Path, sample_rate: int = SAMPLE_RATE
                   ) -> tuple[np.ndarray, int]:
    """(waveform (L, C) float32 at `sample_rate`, the file's own rate or 0 if unknown).
    Resamples what is at another rate; InputError naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", str(path))
    read = _read_soundfile(path)
    if read is not None and read[1] == sample_rate:
        return read[0], sample_rate
    return _read_ffmpeg(path, sample_rate), (read[1] if read is not None else 0)


def pick_channel(wave: np.ndarray, channel: int | None, source: str) -> np.ndarray:
    """(L, C) -> (L,): one channel, or the mix of all for None."""
    if channel is None:
        return wave.mean(axis=1)
    if channel >= wave.shape[1]:
        raise InputError(f"channel {channel} was asked for but the audio has "
                         f"{wave.shape[1]} channel{'s' if wave.shape[1] != 1 else ''}", source)
    return np.ascontiguousarray(wave[:, channel])


def frame_energy_db(wave: np.ndarray) -> np.ndarray:
    """RMS level (T,) in dB of each 256-sample frame (the mel frames), floored at -100."""
    frames = len(wave) // HOP_LENGTH
    rms = np.sqrt((wave[:frames * HOP_LENGTH].reshape(frames, HOP_LENGTH) ** 2).mean(1))
    return 20 * np.log10(np.maximum(rms, 1e-5))


@dataclass(frozen=True)
class VadConfig:
    """Energy voice-activity detection per person's own channel (all levels in dB)."""

    margin: float = 12.0     # speech is this far above the channel's noise floor (5th pct)
    range: float = 40.0      # ... and no more than this below its loud frames (99th pct)
    crosstalk: float = 6.0   # a frame is not yours when your partner's channel is louder
                             # by more than this (their voice leaking into your microphone)
    min_speech: float = 0.10  # seconds: shorter bursts are dropped (clicks)
    min_gap: float = 0.15    # seconds: shorter pauses inside speech are filled
    pad: float = 0.04        # seconds of margin added on both sides of speech


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def voice_activity(energy: list[np.ndarray], config: VadConfig = VadConfig()
                   ) -> list[np.ndarray]:
    """Per person, speech frames (T,) bool from the frame energies (T,) of their own
    channel (one or two people, same length)."""
    fps = FRAMES_PER_SECOND
    out = []
    for k, e in enumerate(energy):
        floor, loud = np.percentile(e, 5), np.percentile(e, 99)
        speech = e > max(floor + config.margin, loud - config.range)
        if len(energy) == 2:
            speech &= e > energy[1 - k] - config.crosstalk
        for a, b in _runs(~speech):  # fill short pauses between speech
            if a > 0 and b < len(speech) and b - a < config.min_gap * fps:
                speech[a:b] = True
        for a, b in _runs(speech):  # drop clicks
            if b - a < config.min_speech * fps:
                speech[a:b] = False
        pad = int(round(config.pad * fps))
        if pad and speech.any():
            padded = np.convolve(speech.astype(np.int32), np.ones(2 * pad + 1, np.int32),
                                 mode="same") > 0
            speech = padded
        out.append(speech)
    return out


def resample_fft(wave: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a waveform (L,) by one FFT (for model inputs; the FFT
    treats the signal as periodic, so the first and last few ms may ring)."""
    if rate == new_rate:
        return np.asarray(wave, np.float32)
    count = int(round(len(wave) * new_rate / rate))
    spectrum = np.fft.rfft(np.asarray(wave, np.float64))
    keep = min(len(spectrum), count // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], count) * (count / max(len(wave), 1))
    return out.astype(np.float32)
