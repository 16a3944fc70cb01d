"""Griffin-Lim vocoder: no weights, mel (B, 80, T) -> wave (B, T * 256).

The mel is mapped back to a linear magnitude with the pseudo-inverse of the mel
filterbank (clamped at zero), then the phase is found by the fast Griffin-Lim iteration
(Perraudin et al. 2013: Griffin-Lim with momentum 0.99). The STFT uses BigVGAN's framing
(reflect padding of (n_fft - hop) / 2, no centring), so frame t of the mel describes the
same samples as frame t of the STFT here. Deterministic: the initial phase comes from a
seeded generator.
"""

from __future__ import annotations

import torch
from torch import nn

from avgen.audio.mel import MelSpectrogram, mel_filters
from avgen.audio.vocos import ISTFT
from avgen.constants import HOP_LENGTH, N_FFT


class GriffinLim(nn.Module):
    def __init__(self, iterations: int = 32, momentum: float = 0.99, seed: int = 0) -> None:
        super().__init__()
        self.iterations, self.momentum, self.seed = iterations, momentum, seed
        self.analysis = MelSpectrogram()
        self.istft = ISTFT(N_FFT, HOP_LENGTH)
        self.register_buffer("inverse_filters", torch.linalg.pinv(
            torch.from_numpy(mel_filters()).double()).float(), persistent=False)
        self.hop_length = HOP_LENGTH

    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear magnitude (B, n_fft // 2 + 1, T) whose mel is close to exp(`mel`)."""
        return torch.matmul(self.inverse_filters, mel.exp()).clamp(min=0.0)

    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        pad = (N_FFT - HOP_LENGTH) // 2
        wave = nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        return torch.stft(wave, N_FFT, HOP_LENGTH, N_FFT, self.analysis.window, center=False,
                          return_complex=True)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(mel)
        generator = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
        previous = torch.zeros_like(angles)
        for _ in range(self.iterations):
            rebuilt = self._stft(self.istft(magnitude * angles))
            accelerated = rebuilt - (self.momentum / (1 + self.momentum)) * previous
            previous = rebuilt
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
        return self.istft(magnitude * angles).clamp(-1.0, 1.0)
