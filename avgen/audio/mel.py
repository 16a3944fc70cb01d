"""BigVGAN's 22 kHz / 80-band log-mel spectrogram (docs/design.md, "Rates and shapes"),
in torch.

The recipe is BigVGAN's `meldataset.mel_spectrogram` with its 22 kHz config: reflect-pad
(n_fft - hop) / 2 on both sides, STFT without centring (Hann 1024, hop 256), magnitude
sqrt(re^2 + im^2 + 1e-9), Slaney-normalised Slaney-scale mel filters over 0..8000 Hz (as
librosa.filters.mel with its defaults builds them), then log(clamp(mel, 1e-5)). Using it
exactly is what lets NVIDIA's published checkpoints vocode our mels. A waveform of L
samples gives L // 256 frames.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from avgen.constants import (FMAX, FMIN, HOP_LENGTH, LOG_FLOOR, LOG_SILENCE, N_FFT, N_MELS,
                             SAMPLE_RATE, WIN_LENGTH)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    mel = hz / f_sp
    high = hz >= min_log_hz
    return np.where(high, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    f_sp * mel)


@functools.lru_cache(maxsize=8)
def mel_filters(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Triangular Slaney mel filterbank (n_mels, n_fft // 2 + 1), area-normalised ("slaney"
    norm), float32; the same matrix as librosa.filters.mel(sr=..., n_fft=..., n_mels=...,
    fmin=..., fmax=...)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class MelSpectrogram(torch.nn.Module):
    """Waveform (B, L) or (L,) in [-1, 1] at 22050 Hz -> log-mel (B, 80, L // 256).

    A module (buffers for filters and window) so training can move it to a device once."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                 hop_length: int = HOP_LENGTH, win_length: int = WIN_LENGTH,
                 n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("filters", torch.from_numpy(
            mel_filters(sample_rate, n_fft, n_mels, fmin, fmax)), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude (B, n_fft // 2 + 1, L // hop) with BigVGAN's padding."""
        pad = (self.n_fft - self.hop_length) // 2
        squeeze = wave.dim() == 1
        wave = wave.unsqueeze(0) if squeeze else wave
        if wave.shape[-1] <= pad:
            # reflect padding needs more samples than the pad; such a clip has no frame anyway
            raise ValueError(f"waveform of {wave.shape[-1]} samples is too short for a mel "
                             f"frame (needs at least {self.hop_length})")
        wave = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(wave, self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length, window=self.window, center=False,
                          normalized=False, onesided=True, return_complex=True)
        spec = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        return spec.squeeze(0) if squeeze else spec

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.filters, self.magnitude(wave))
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))


@functools.lru_cache(maxsize=1)
def _default_module() -> MelSpectrogram:
    return MelSpectrogram()


def log_mel(wave: np.ndarray | torch.Tensor) -> np.ndarray:
    """Convenience: waveform (L,) or (B, L) at 22050 Hz -> float32 numpy log-mel
    (80, L // 256) or (B, 80, L // 256)."""
    tensor = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    with torch.no_grad():
        return _default_module()(tensor).numpy()
