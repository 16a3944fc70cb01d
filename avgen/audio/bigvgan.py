"""BigVGAN generator (Lee et al. 2023; NVIDIA/BigVGAN) that loads NVIDIA's published
checkpoints: a folder with `config.json` and `bigvgan_generator.pt` ({"generator":
state_dict}, weight-normed convs stored as weight_g / weight_v).

The module tree and parameter names follow the published layout exactly, so a state dict
loads key for key; weight norm is folded into plain weights at load time because
inference never needs the reparametrisation. Written from the paper and the published
layout; the anti-aliasing filters are the Kaiser-windowed sinc low-pass filters of
alias-free-torch (StyleGAN3's recipe), which the checkpoints also store as buffers.

Shapes: mel (B, num_mels, T) -> wave (B, T * prod(upsample_rates)).
Only checkpoints whose mel recipe equals avgen's (22050 Hz, 80 bands, n_fft 1024, hop
256, win 1024, fmin 0, fmax 8000) are accepted as avgen vocoders, e.g.
nvidia/bigvgan_v2_22khz_80band_fmax8k_256x; note that nvidia/bigvgan_v2_22khz_80band_256x
uses fmax = 11025 and would hear our mels wrongly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from avgen.constants import FMAX, FMIN, HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, WIN_LENGTH
from avgen.errors import WeightsError

GENERATOR_FILE = "bigvgan_generator.pt"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class BigVGANConfig:
    """The generator fields of BigVGAN's config.json (training fields are ignored)."""

    resblock: str = "1"
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_tanh_at_final: bool = False
    use_bias_at_final: bool = False
    num_mels: int = N_MELS
    sampling_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_size: int = HOP_LENGTH
    win_size: int = WIN_LENGTH
    fmin: float = FMIN
    fmax: float | None = FMAX

    @classmethod
    def from_dict(cls, data: dict) -> "BigVGANConfig":
        values = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            values[f.name] = value
        values["resblock"] = str(values.get("resblock", "1"))
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: (json.loads(json.dumps(getattr(self, f.name))))
                for f in fields(self)}

    def mel_mismatch(self) -> list[str]:
        """How this checkpoint's mel recipe differs from avgen's (empty when it matches)."""
        ours = {"sampling_rate": SAMPLE_RATE, "num_mels": N_MELS, "n_fft": N_FFT,
                "hop_size": HOP_LENGTH, "win_size": WIN_LENGTH, "fmin": FMIN, "fmax": FMAX}
        return [f"{key} {getattr(self, key)} (avgen: {want})" for key, want in ours.items()
                if getattr(self, key) is None or float(getattr(self, key)) != float(want)]


class Snake(nn.Module):
    """x + sin^2(a x) / a, one learned frequency a per channel (stored as log a when
    `logscale`): a periodic inductive bias for waveforms."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        alpha = alpha.exp() if self.logscale else alpha
        return x + torch.sin(x * alpha).pow(2) / (alpha + 1e-9)


class SnakeBeta(Snake):
    """x + sin^2(a x) / b: frequency a and magnitude b learned separately."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__(channels, logscale)
        self.beta = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha[None, :, None], self.beta[None, :, None]
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR (1, 1, kernel_size): sinc at `cutoff` (fraction of the sample rate)
    under a Kaiser window whose beta follows Kaiser's formula for the transition band."""
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = (torch.arange(-half, half) + 0.5) if even else (torch.arange(kernel_size) - half)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)  # unit DC gain


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride,
                        groups=channels)


class UpSample1d(nn.Module):
    """Zero-stuffing upsampler followed by the low-pass filter (a transposed conv)."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = kernel_size or int(6 * ratio // 2) * 2
        self.pad = self.kernel_size // ratio - 1
        self.pad_left = self.pad * ratio + (self.kernel_size - ratio) // 2
        self.pad_right = self.pad * ratio + (self.kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio,
                                                          self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1),
                                            stride=self.ratio, groups=channels)
        return x[..., self.pad_left:-self.pad_right]


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        kernel_size = kernel_size or int(6 * ratio // 2) * 2
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Anti-aliased activation: the nonlinearity runs at twice the rate, so the harmonics it
    creates above the original Nyquist are filtered out instead of folding back."""

    def __init__(self, activation: nn.Module, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(ratio, kernel_size)
        self.downsample = DownSample1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


def _activation(config: BigVGANConfig, channels: int) -> Activation1d:
    kinds = {"snake": Snake, "snakebeta": SnakeBeta}
    if config.activation not in kinds:
        raise ValueError(f"unknown activation {config.activation!r} (snake or snakebeta)")
    return Activation1d(kinds[config.activation](channels, config.snake_logscale))


def _padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: pairs of (act, dilated conv, act, conv) with
    residuals, at dilations `dilations`."""

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int,
                 dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_padding(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size, 1))
            for _ in dilations)
        self.activations = nn.ModuleList(
            _activation(config, channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts1, acts2 = self.activations[::2], self.activations[1::2]
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, acts1, acts2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class AMPBlock2(nn.Module):
    """Lighter AMP block: (act, dilated conv) with residual, per dilation."""

    def __init__(self, config: BigVGANConfig, channels: int, kernel_size: int,
                 dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d,
                      padding=_padding(kernel_size, d)) for d in dilations)
        self.activations = nn.ModuleList(_activation(config, channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.activations):
            x = x + conv(act(x))
        return x


class BigVGAN(nn.Module):
    """mel (B, num_mels, T) -> wave (B, T * hop). Plain convolutions (weight norm folded)."""

    def __init__(self, config: BigVGANConfig = BigVGANConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.resblock not in ("1", "2"):
            raise ValueError(f"unknown resblock type {c.resblock!r}")
        self.num_kernels = len(c.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(c.num_mels, c.upsample_initial_channel, 7, 1, padding=3)
        # each upsampler sits in its own ModuleList: that is where the published keys
        # ("ups.{i}.0.weight_v") put it
        self.ups = nn.ModuleList(
            nn.ModuleList([nn.ConvTranspose1d(c.upsample_initial_channel // 2 ** i,
                                              c.upsample_initial_channel // 2 ** (i + 1),
                                              k, u, padding=(k - u) // 2)])
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes)))
        block = AMPBlock1 if c.resblock == "1" else AMPBlock2
        self.resblocks = nn.ModuleList()
        channels = c.upsample_initial_channel
        for i in range(len(self.ups)):
            channels = c.upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes):
                self.resblocks.append(block(c, channels, k, tuple(d)))
        self.activation_post = _activation(c, channels)
        self.conv_post = nn.Conv1d(channels, 1, 7, 1, padding=3, bias=c.use_bias_at_final)

    @property
    def hop_length(self) -> int:
        return math.prod(self.config.upsample_rates)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up[0](x)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        x = torch.tanh(x) if self.config.use_tanh_at_final else x.clamp(-1.0, 1.0)
        return x.squeeze(1)


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs (g, v) by w = g * v / ||v|| (norm over all but dim 0),
    for both the old (`weight_g`/`weight_v`) and the parametrize
    (`parametrizations.weight.original0/1`) spellings."""
    out = {}
    pairs = {".weight_g": ".weight_v", ".parametrizations.weight.original0":
             ".parametrizations.weight.original1"}
    for key, value in state.items():
        for g_suffix, v_suffix in pairs.items():
            if key.endswith(g_suffix):
                prefix = key[: -len(g_suffix)]
                v = state[prefix + v_suffix]
                norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
                out[prefix + ".weight"] = value * v / norm
                break
            if key.endswith(v_suffix):
                break
        else:
            out[key] = value
    return out


def load_bigvgan(folder: str | Path, device: str | torch.device = "cpu",
                 check_mel: bool = True) -> BigVGAN:
    """Load a published checkpoint folder (config.json + bigvgan_generator.pt).

    `check_mel` refuses checkpoints trained on another mel recipe than avgen's: such a
    model loads fine but turns our mels into wrong audio."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / GENERATOR_FILE
    try:
        config = BigVGANConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise WeightsError(f"{config_path}: BigVGAN config.json not found") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: not a BigVGAN config ({exc})") from None
    if check_mel and (mismatch := config.mel_mismatch()):
        raise WeightsError(f"{config_path}: this BigVGAN was trained on another mel recipe: "
                           + ", ".join(mismatch))
    try:
        # weights_only: a checkpoint is data; never run code from a downloaded pickle
        checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{weights_path}: BigVGAN generator weights not found") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{weights_path}: not a readable BigVGAN checkpoint ({exc})") \
            from None
    state = checkpoint.get("generator", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{weights_path}: expected {{'generator': state_dict}}")
    from avgen.checkpoint import check_finite

    check_finite(state, weights_path)
    try:
        model = BigVGAN(config)
        model.load_state_dict(fold_weight_norm(state))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise WeightsError(f"{weights_path}: weights do not fit {config_path.name} "
                           f"({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()
