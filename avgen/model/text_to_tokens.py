"""Text-to-tokens model (docs/design.md, "Text to tokens"; AV-Flow supp. B, Matcha-TTS style).

    entries (B, N) -> embeddings 192 -> encoder (3 conv + small transformer) (B, N, 192)
      -> duration predictor: log frames per entry (B, N)
      -> length regulation to frames (B, T, 192)
      -> token decoder: per-frame token logits (B, T, V) on the 86.13 fps clock
      -> mel prior (B, N, 80): the per-entry mel mean Monotonic Alignment Search scores
         frames against when data has audio but no durations (Glow-TTS / Matcha-TTS).

Entries. A stretch of speech (the phrases of one `Speech` segment) becomes one entry per
phone symbol plus one silence entry (symbol 0) for each punctuation break between
phrases: exactly the teacher corpus's symbol sequence without its lead-in and tail
silence (the dialogue timeline sets those). Each entry also carries
  - its place in the word (initial / medial / final / whole word / break): the teacher
    splits word spaces between neighbouring phones, and words lengthen at their ends;
  - the punctuation that ends its phrase (none , ; : . ! ? … —): on a break entry this
    sets the pause length (a comma is short, a full stop long), on phones it carries
    phrase-final lengthening and question prosody;
  - whether its phrase is the last of the segment.
Breaks are silence on output, so the punctuation lives only in these extra embeddings.
There is no voice input: the teacher voices share one duration model (heart-low is a
DSP transform of heart), so durations suit either voice.

Two decoders share the regulated encoder features: a direct head (cross-entropy to the
frame's symbol) and a flow-matching head (OT-CFM on scaled one-hot vectors, Euler
sampling, as in AV-Flow/Matcha). The flow head sees the features detached, so both are
judged on the same encoder; `config.decoder` names the one `token_logits` uses. Measured
on held-out teacher sentences (benchmarks/results/tokens.md), laid out on the teacher's
durations, the direct head's argmax is the teacher's symbol on 100.00 % of frames and the
flow head's (8 Euler steps, same 1800 training steps) on 20.6 %, so the shipped default
is the direct head; the flow head stays in the checkpoint for comparison
(`load_checkpoint(path, decoder="flow")`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avgen.errors import WeightsError
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID, SYMBOLS_VERSION, phones_to_ids

ARCHITECTURE = "avgen.text_to_tokens/1"

# Place of an entry in its word.
WORD_INITIAL, WORD_MEDIAL, WORD_FINAL, WORD_WHOLE, BREAK = range(5)
NUM_PLACES = 5
# Punctuation that ends a phrase ("" = none: the end of a segment without a mark).
PUNCTUATION = ("", ",", ";", ":", ".", "!", "?", "…", "—")


def punctuation_class(marks: str) -> int:
    """The first mark of `marks` that we know (as the teacher reads it), else 0."""
    for mark in marks:
        if mark in PUNCTUATION[1:]:
            return PUNCTUATION.index(mark)
    return 0


@dataclass(frozen=True)
class Entries:
    """Model input for one stretch of speech; all arrays (N,) int64.

    `phone_of[k]` is the index (over all phones of all phrases, before the symbol table
    splits glued phones) of the phone entry k belongs to, or -1 for a break;
    `phrase_of[k]` is the phrase index.
    """

    symbols: np.ndarray
    places: np.ndarray
    punctuation: np.ndarray
    last: np.ndarray
    phone_of: np.ndarray
    phrase_of: np.ndarray

    def __len__(self) -> int:
        return len(self.symbols)


def phrases_to_entries(phrases: Sequence, source: str | None = None,
                       line: int | None = None) -> Entries:
    """`avgen.text.phrases.Phrase`s -> model entries (see the module docstring)."""
    cols: dict[str, list[int]] = {k: [] for k in ("s", "p", "u", "l", "o", "r")}

    def add(symbol, place, punct, last, phone, phrase):
        for key, value in zip("spulor", (symbol, place, punct, last, phone, phrase)):
            cols[key].append(value)

    phone_index = 0
    for k, phrase in enumerate(phrases):
        last = int(k == len(phrases) - 1)
        punct = punctuation_class(phrase.punctuation)
        for word in phrase.words():
            for j, phone in enumerate(word):
                if len(word) == 1:
                    place = WORD_WHOLE
                else:
                    place = WORD_INITIAL if j == 0 else WORD_FINAL if j == len(word) - 1 \
                        else WORD_MEDIAL
                for sid in phones_to_ids([phone], source, line):
                    add(sid, place, punct, last, phone_index, k)
                phone_index += 1
        if not last:
            add(SILENCE_ID, BREAK, punct, last, -1, k)
    arrays = {k: np.asarray(v, np.int64) for k, v in cols.items()}
    return Entries(arrays["s"], arrays["p"], arrays["u"], arrays["l"], arrays["o"], arrays["r"])


@dataclass(frozen=True)
class TextToTokensConfig:
    num_symbols: int = NUM_SYMBOLS
    symbols_version: str = SYMBOLS_VERSION
    embed_dim: int = 192
    conv_layers: int = 3
    conv_kernel: int = 5
    attn_layers: int = 2
    attn_heads: int = 2
    ff_dim: int = 384
    dropout: float = 0.1
    duration_layers: int = 2
    duration_kernel: int = 3
    decoder_dim: int = 96
    decoder_layers: int = 3
    decoder_kernel: int = 5
    n_mels: int = 80
    decoder: str = "direct"  # which head gives token_logits: "direct" | "flow"
    flow_steps: int = 8
    # Flow head target: one-hot mapped to {-1, +1}; sample x -> log_softmax(scale * x).
    # 4.8 turns an exact one-hot sample into p = 0.99 on the symbol (the label smoothing
    # of the hard-timeline baseline).
    flow_logit_scale: float = 4.8

    @classmethod
    def from_dict(cls, data: dict) -> TextToTokensConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**data)


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) transformer position code."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(position * freq)
    out[:, 1::2] = torch.cos(position * freq)
    return out


class ConvBlock(nn.Module):
    """Residual conv -> ReLU -> LayerNorm -> dropout over (B, L, C), padding kept at 0."""

    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        return (x + self.dropout(self.norm(F.relu(h)))) * mask


class Encoder(nn.Module):
    def __init__(self, c: TextToTokensConfig) -> None:
        super().__init__()
        d = c.embed_dim
        self.symbol = nn.Embedding(c.num_symbols, d)
        self.place = nn.Embedding(NUM_PLACES, d)
        self.punctuation = nn.Embedding(len(PUNCTUATION), d)
        self.last = nn.Embedding(2, d)
        self.convs = nn.ModuleList(ConvBlock(d, c.conv_kernel, c.dropout)
                                   for _ in range(c.conv_layers))
        layer = nn.TransformerEncoderLayer(d, c.attn_heads, c.ff_dim, c.dropout,
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.attn_layers,
                                                 enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: symbols, places, punctuation, last (B, N) and mask (B, N) -> (B, N, D)."""
        mask = batch["mask"][..., None].float()
        x = (self.symbol(batch["symbols"]) + self.place(batch["places"])
             + self.punctuation(batch["punctuation"]) + self.last(batch["last"]))
        for conv in self.convs:
            x = conv(x, mask)
        x = x + sinusoids(x.shape[1], x.shape[2], x.device)
        x = self.transformer(x, src_key_padding_mask=~batch["mask"])
        return self.norm(x) * mask


class DurationPredictor(nn.Module):
    def __init__(self, c: TextToTokensConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(c.embed_dim, c.duration_kernel, c.dropout)
                                    for _ in range(c.duration_layers))
        self.out = nn.Linear(c.embed_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> log frames (B, N)."""
        m = mask[..., None].float()
        for block in self.blocks:
            x = block(x, m)
        return self.out(x).squeeze(-1) * mask


class FrameStack(nn.Module):
    """Conv blocks over frames (B, T, C) -> (B, T, V)."""

    def __init__(self, c: TextToTokensConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ConvBlock(c.decoder_dim, c.decoder_kernel, c.dropout)
                                    for _ in range(c.decoder_layers))
        self.out = nn.Linear(c.decoder_dim, c.num_symbols)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].float()
        for block in self.blocks:
            x = block(x, m)
        return self.out(x)


def length_regulate(durations: torch.Tensor, mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer durations (B, N) -> for every frame the entry it shows (B, T), how far
    through that entry it is in [0, 1) (B, T), and the frame mask (B, T)."""
    durations = (durations * mask).long()
    lengths = durations.sum(1)
    t_max = max(int(lengths.max()), 1)
    ends = durations.cumsum(1)  # (B, N)
    frames = torch.arange(t_max, device=durations.device)
    index = torch.searchsorted(ends, frames.expand(len(ends), -1).contiguous(), right=True)
    index = index.clamp(max=durations.shape[1] - 1)
    starts = ends - durations
    start = starts.gather(1, index)
    length = durations.gather(1, index).clamp(min=1)
    progress = (frames[None] - start).float() / length.float()
    frame_mask = frames[None] < lengths[:, None]
    return index, progress, frame_mask


class TextToTokens(nn.Module):
    def __init__(self, config: TextToTokensConfig = TextToTokensConfig()) -> None:
        super().__init__()
        if config.decoder not in ("direct", "flow"):
            raise ValueError(f"decoder must be 'direct' or 'flow', not {config.decoder!r}")
        self.config = config
        c = config
        self.encoder = Encoder(c)
        self.durations = DurationPredictor(c)
        self.prior = nn.Linear(c.embed_dim, c.n_mels)
        self.to_frames = nn.Linear(c.embed_dim + 2, c.decoder_dim)
        self.direct = FrameStack(c)
        self.flow_in = nn.Linear(c.num_symbols, c.decoder_dim)
        self.flow_cond = nn.Linear(c.embed_dim + 2, c.decoder_dim)
        self.flow_time = nn.Sequential(nn.Linear(64, c.decoder_dim), nn.SiLU(),
                                       nn.Linear(c.decoder_dim, c.decoder_dim))
        self.flow = FrameStack(c)

    # ------------------------------------------------------------------ pieces
    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> encoder features (B, N, D) and predicted log durations in frames (B, N)."""
        h = self.encoder(batch)
        return h, self.durations(h, batch["mask"])

    def mel_prior(self, h: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> per-entry mel means (B, N, n_mels) for MAS and the prior loss."""
        return self.prior(h)

    def frame_features(self, h: torch.Tensor, durations: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Length regulation: (B, N, D) + integer durations (B, N) -> per-frame features
        (B, T, D + 2), entry index (B, T), frame mask (B, T)."""
        index, progress, frame_mask = length_regulate(durations, mask)
        return self.features_at(h, index, progress, frame_mask), index, frame_mask

    def features_at(self, h: torch.Tensor, index: torch.Tensor, progress: torch.Tensor,
                    frame_mask: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, T, D + 2) for frames showing entries `index` (B, T)."""
        frames = h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))
        # where in its phone a frame sits lets the head soften boundaries
        place = torch.stack([progress, 1.0 - progress], -1)
        return torch.cat([frames, place], -1) * frame_mask[..., None]

    def direct_logits(self, feats: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.direct(self.to_frames(feats), frame_mask)

    def flow_velocity(self, x: torch.Tensor, t: torch.Tensor, feats: torch.Tensor,
                      frame_mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, V) at flow time t (B,) -> velocity (B, T, V)."""
        half = 32
        freq = torch.exp(torch.arange(half, device=x.device) * (-math.log(1000.0) / half))
        angle = t[:, None] * 1000.0 * freq[None]
        temb = self.flow_time(torch.cat([angle.sin(), angle.cos()], -1))
        h = self.flow_in(x) + self.flow_cond(feats) + temb[:, None]
        return self.flow(h, frame_mask)

    def flow_target(self, ids: torch.Tensor) -> torch.Tensor:
        return F.one_hot(ids, self.config.num_symbols).float() * 2.0 - 1.0

    def flow_loss(self, feats: torch.Tensor, ids: torch.Tensor, frame_mask: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """OT conditional flow matching (sigma_min 1e-4): L2 on the velocity."""
        x1 = self.flow_target(ids)
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device)
        t = torch.rand(x1.shape[0], generator=generator, device=x1.device)
        sigma = 1e-4
        xt = (1 - (1 - sigma) * t[:, None, None]) * x0 + t[:, None, None] * x1
        target = x1 - (1 - sigma) * x0
        v = self.flow_velocity(xt, t, feats, frame_mask)
        err = ((v - target) ** 2).mean(-1)
        return (err * frame_mask).sum() / frame_mask.sum().clamp(min=1)

    def flow_sample(self, feats: torch.Tensor, frame_mask: torch.Tensor, steps: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler from noise -> log-probabilities (B, T, V)."""
        shape = (*feats.shape[:2], self.config.num_symbols)
        x = torch.randn(shape, generator=generator, device=feats.device)
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((shape[0],), k * dt, device=feats.device)
            x = x + dt * self.flow_velocity(x, t, feats, frame_mask)
        return F.log_softmax(self.config.flow_logit_scale * x, -1)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_durations(self, entries: Entries) -> np.ndarray:
        """Frames per entry (N,) float64 (> 0), at rate 1."""
        batch = collate_entries([entries])
        _, log_d = self.encode(batch)
        return torch.exp(log_d[0]).double().numpy()

    @torch.no_grad()
    def decode(self, entries: Entries, durations: np.ndarray, seed: int = 0,
               decoder: str | None = None) -> np.ndarray:
        """Per-frame log-probabilities (sum(durations), V) float32 for integer durations
        (N,) >= 1, e.g. the ones the timeline placed (rate applied)."""
        batch = collate_entries([entries])
        h, _ = self.encode(batch)
        d = torch.as_tensor(np.asarray(durations, np.int64))[None]
        feats, _, frame_mask = self.frame_features(h, d, batch["mask"])
        if (decoder or self.config.decoder) == "flow":
            generator = torch.Generator().manual_seed(seed)
            out = self.flow_sample(feats, frame_mask, self.config.flow_steps, generator)
        else:
            out = F.log_softmax(self.direct_logits(feats, frame_mask), -1)
        return out[0].float().numpy()


def collate_entries(items: Sequence[Entries]) -> dict[str, torch.Tensor]:
    """Pad entries into a batch: symbols, places, punctuation, last (B, N) and mask."""
    n = max(max(len(e) for e in items), 1)
    out = {k: torch.zeros(len(items), n, dtype=torch.long)
           for k in ("symbols", "places", "punctuation", "last")}
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    for b, e in enumerate(items):
        m = len(e)
        out["symbols"][b, :m] = torch.from_numpy(e.symbols)
        out["places"][b, :m] = torch.from_numpy(e.places)
        out["punctuation"][b, :m] = torch.from_numpy(e.punctuation)
        out["last"][b, :m] = torch.from_numpy(e.last)
        mask[b, :m] = True
    out["mask"] = mask
    return out


# ---------------------------------------------------------------------- checkpoints

def save_checkpoint(model: TextToTokens, path: str | Path, extra: dict | None = None) -> None:
    """safetensors; architecture and config in the metadata, so the file alone rebuilds
    the model. Atomic (temp file + rename)."""
    from safetensors.torch import save

    from avgen.formats import atomic_write_bytes

    metadata = {"architecture": ARCHITECTURE, "config": json.dumps(asdict(model.config))}
    for key, value in (extra or {}).items():
        metadata[key] = json.dumps(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path: str | Path, decoder: str | None = None) -> TextToTokens:
    """Rebuild a model from `save_checkpoint`'s file; WeightsError on anything else.
    `decoder` overrides the head the checkpoint names."""
    from dataclasses import replace

    from avgen import checkpoint

    path = Path(path)
    state, metadata = checkpoint.read(path, ARCHITECTURE, "text-to-tokens")
    try:
        config = TextToTokensConfig.from_dict(json.loads(metadata["config"]))
        if decoder is not None:
            config = replace(config, decoder=decoder)
        if config.symbols_version != SYMBOLS_VERSION:
            raise ValueError(f"made for symbol table {config.symbols_version}, this avgen "
                             f"uses {SYMBOLS_VERSION}")
        model = checkpoint.build(lambda: TextToTokens(config), state)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path}: text-to-tokens checkpoint does not match its config "
                           f"({exc})") from None
    return model.eval()


def checkpoint_metadata(path: str | Path) -> dict:
    from avgen import checkpoint

    return checkpoint.metadata(path)
