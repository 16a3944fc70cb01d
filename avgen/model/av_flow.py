"""Joint audio-visual flow model (AV-Flow + TAVID), docs/design.md, "Joint audio-visual model".

Two parallel diffusion transformers over the 86.13 fps model clock, one producing the
log-mel (80) of a person, one their motion (head rotation as yaw/pitch/roll, translation,
expression), joined after every block by zero-initialised linear highways
(h_a += W_va h_v, h_v += W_av h_a): the audio->visual highway is TAVID's motion mapper,
the visual->audio one lets the face shape the voice. Conditioning is in-context: each
stream's input is [noisy target, own token_logits, partner token_logits, partner motion]
projected to d. Flow time and the voice embedding enter through adaLN-zero. Attention
is limited to a window (default 7 frames back, 2 ahead, 10 in all), so generation can
stream; positions use RoPE. Trained with OT conditional flow matching and L1; sampled
with an ODE solver (`sample_chunks`; 3 midpoint steps spaced by sway sampling by
default, `GenerateConfig`).

`AVFlowConfig.fusion` selects the ablations of AV-Flow's Table 1: `separate` (no
highways), `shared` (weight-tied streams with highways) and `cascaded` (the mel is
generated first on its own, then the motion conditioned on it).

Both people of a dialogue are generated together as a batch of two: each is the other's
partner, and the partner motion a person is conditioned on is the partner's current
estimate of its clean motion, refined at every Euler step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from avgen.constants import EXPRESSION_NAMES, N_MELS, PRECISIONS, SOLVERS
from avgen.errors import ConfigError
from avgen.limits import ATTENTION_WINDOW
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID

MOTION_DIM = 6 + len(EXPRESSION_NAMES)  # yaw, pitch, roll, tx, ty, tz, expressions
FUSIONS = ("highway", "separate", "shared", "cascaded")
MOTION_LOSSES = ("l1", "l2")  # AVFlow.loss on the motion streams


@dataclass(frozen=True)
class AVFlowConfig:
    d_model: int = 256
    n_blocks: int = 4
    n_heads: int = 4
    ff_mult: int = 3
    ff_kernel: int = 3  # first feed-forward layer is a conv over this many frames (1: linear)
    window_past: int = 7
    window_future: int = 2
    # the visual stream's window back (None: window_past): with 7 frames a block one
    # evaluation sees 0.37 s back, less than a listener's 1-2 s smile. A longer past
    # costs compute, not latency (streaming waits only for the future). Tried at 31, it
    # did not lengthen the smiles (benchmarks/results/av_eval.md)
    motion_window_past: int | None = None
    num_symbols: int = NUM_SYMBOLS
    mel_dim: int = N_MELS
    motion_dim: int = MOTION_DIM
    voices: tuple[str, ...] = ("heart", "heart-low")  # voice ids of the training set
    # 0: each voice is a learned vector (a table of names). > 0: each voice is a fixed
    # vector of this size (its Kokoro style vector) through a learned projection, so
    # weighted blends of voices are voices too.
    voice_dim: int = 0
    # per voice: (gender, accent, F0 median in Hz) measured on the teacher corpus; what
    # the speaker mapper and `avgen voices` read
    voice_info: tuple[tuple[str, str, float], ...] = ()
    # (V, V) speaker similarity (resemblyzer cosine) between the voices as this model
    # speaks them, measured after training between the two people of short dialogues
    # (benchmarks/voice_similarity.py: the most alike of four): the speaker mapper keeps
    # the two people of a dialogue at most `avgen.speaker.CLEARLY_APART` alike by it.
    # Empty: unmeasured
    voice_similarity: tuple[tuple[float, ...], ...] = ()
    # per voice: the F0 median (Hz) of this model's speech in those dialogues, measured
    # with the similarity; the speaker mapper gives women only voices it speaks in the
    # female range. Empty: unmeasured
    voice_f0_spoken: tuple[float, ...] = ()
    sigma_min: float = 1e-4
    lambda_mel: float = 1.0
    lambda_head: float = 1.0
    lambda_face: float = 1.0
    # how the two streams meet (the ablations of AV-Flow's Table 1):
    #   highway   linear highways after every block (ours)
    #   separate  no connection: two independent DiTs
    #   shared    highways, and both streams run the same (weight-tied) blocks
    #   cascaded  audio first, on its own; then motion, conditioned on the finished mel
    fusion: str = "highway"

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        lo, hi = ATTENTION_WINDOW
        for name in ("window_past", "window_future", "motion_window_past"):
            value = getattr(self, name)
            # a window's keys are padded and scored for every query block: bounded, so a
            # config (or a checkpoint) cannot ask for gigabytes
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not lo <= value <= hi):
                raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, "
                                  f"got {value!r}")
        if self.fusion == "shared" and self.motion_past != self.window_past:
            raise ConfigError("the shared fusion runs both streams through the same blocks: "
                              "motion_window_past must equal window_past")
        if self.voice_similarity and (len(self.voice_similarity) != len(self.voices) or any(
                len(row) != len(self.voices) for row in self.voice_similarity)):
            raise ConfigError(f"voice_similarity must be {len(self.voices)} x "
                              f"{len(self.voices)} (one row and column per voice)")
        if self.voice_f0_spoken and len(self.voice_f0_spoken) != len(self.voices):
            raise ConfigError(f"voice_f0_spoken has {len(self.voice_f0_spoken)} entries "
                              f"for {len(self.voices)} voices")
        if self.voice_info and len(self.voice_info) != len(self.voices):
            raise ConfigError(f"voice_info has {len(self.voice_info)} entries for "
                              f"{len(self.voices)} voices")

    @property
    def highways(self) -> bool:
        return self.fusion in ("highway", "shared")

    @property
    def motion_past(self) -> int:
        """The visual stream's attention window back, in frames."""
        return self.window_past if self.motion_window_past is None else self.motion_window_past

    @property
    def lookahead(self) -> int:
        """Frames of future input one output frame depends on (what streaming must wait for)."""
        return (self.window_future + self.ff_kernel // 2) * self.n_blocks

    def to_dict(self) -> dict:
        return asdict(self)


def window_mask(length: int, past: int, future: int, device=None) -> torch.Tensor:
    """(T, T) bool, True where query t may attend key k: t - past <= k <= t + future."""
    t = torch.arange(length, device=device)
    offset = t[None, :] - t[:, None]
    return (offset >= -past) & (offset <= future)


def rotation(length: int, dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's (cos, sin), each (T, dim // 2), for positions 0..T-1 and heads of `dim`:
    the same for every block and step, so a model evaluation makes them once."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / half)
    angles = torch.arange(length, device=device)[:, None].float() * freqs[None, :]
    return angles.cos(), angles.sin()


def rope(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotary position embedding on (..., T, Dh) with `rotation`'s (cos, sin) (T, Dh / 2)."""
    cos, sin = rotation
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int,
                    future: int, first_frame: int = 0, block: int = 32) -> torch.Tensor:
    """Attention of each query to keys t-past..t+future, (B, H, T, Dh) -> (B, H, T, Dh).

    Equal to scaled_dot_product_attention with `window_mask`, but in blocks of `block`
    queries, each against the `block + past + future` keys its window can reach: memory
    and time grow linearly with T (a long dialogue costs what its output costs, not the
    square of it), and the products are matrix products of a useful size. (Gathering
    each query's own 10 keys made a million tiny products: 4x slower.)

    The blocks are laid on the dialogue's frames, not the window's: with the window's
    `first_frame` given, a frame is computed in the same place of the same block shape
    whichever window it is in, so sampling in chunks (streaming) gives the whole
    dialogue's numbers to the last bit, which bfloat16 layers after it need.
    """
    batch, heads, length, dim = q.shape
    lead = first_frame % block
    blocks = -(-(lead + length) // block)
    extra = blocks * block - lead - length
    span = block + past + future
    queries = nn.functional.pad(q, (0, 0, lead, extra)).view(batch, heads, blocks, block, dim)
    pad_k = nn.functional.pad(k, (0, 0, past + lead, extra + future))
    pad_v = nn.functional.pad(v, (0, 0, past + lead, extra + future))
    k_win = pad_k.unfold(2, span, block).transpose(-1, -2)  # (B, H, blocks, span, Dh)
    v_win = pad_v.unfold(2, span, block).transpose(-1, -2)
    scores = queries @ k_win.transpose(-1, -2) / math.sqrt(dim)  # (B, H, blocks, block, span)
    row = torch.arange(block, device=q.device)[:, None]
    column = torch.arange(span, device=q.device)[None, :]
    offset = column - row - past  # key position minus query position
    key = torch.arange(blocks, device=q.device)[:, None, None] * block + column - past - lead
    valid = (offset >= -past) & (offset <= future) & (key >= 0) & (key < length)
    # the lowest finite value, not -inf: the padding rows beyond the end see no key at
    # all, and a row of -inf is NaN, which training's backward pass would spread
    scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    attended = scores.softmax(-1) @ v_win  # (B, H, blocks, block, Dh)
    return attended.reshape(batch, heads, blocks * block, dim)[:, :, lead:lead + length]


class TimestepEmbedding(nn.Module):
    """Flow time t in [0, 1] -> (B, d) via sinusoids and an MLP (as in DiT)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.d // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))


class FeedForward(nn.Module):
    """Position-wise MLP whose first layer sees `kernel` neighbouring frames (FastSpeech's
    conv feed-forward): mel frames are strongly correlated with their neighbours, and the
    windowed attention alone learns that slowly. kernel 1 is DiT's plain MLP. Each block
    adds kernel // 2 frames of lookahead to the attention's `window_future`."""

    def __init__(self, d: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        if kernel == 1:
            self.inner = nn.Linear(d, hidden)
        else:
            self.inner = nn.Conv1d(d, hidden, kernel, padding=kernel // 2)
        self.outer = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        if self.kernel == 1:
            hidden = self.inner(x)
        else:
            hidden = self.inner(x.transpose(1, 2)).transpose(1, 2)
        return self.outer(nn.functional.silu(hidden))  # SiLU: GELU's backward cost 20 %


class Block(nn.Module):
    """DiT block with adaLN-zero: windowed self-attention with RoPE, then an MLP."""

    def __init__(self, config: AVFlowConfig, past: int | None = None) -> None:
        super().__init__()
        d = config.d_model
        self.heads = config.n_heads
        self.past = config.window_past if past is None else past
        self.future = config.window_future
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(d, config.ff_mult * d, config.ff_kernel)
        self.modulation = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor,
                rotation: tuple[torch.Tensor, torch.Tensor], first_frame: int = 0
                ) -> torch.Tensor:
        """h (B, T, d), cond (B, d), RoPE's `rotation` (cos, sin) for T positions ->
        (B, T, d). `first_frame`: the dialogue frame of h[:, 0] (see `local_attention`)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(
            nn.functional.silu(cond))[:, None].chunk(6, dim=-1)
        x = self.norm1(h) * (1 + scale1) + shift1
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        (q, k), v = rope(qkv[:2], rotation), qkv[2]  # queries and keys rotated together
        # The attention itself stays float32 under bfloat16 autocast (a small part of
        # the block's work): with its scores rounded to bfloat16, a dialogue sampled in
        # chunks (streaming) drifted away from the same dialogue sampled whole.
        with torch.autocast(q.device.type, enabled=False):
            q, k, v = (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x
                       for x in (q, k, v))
            attended = local_attention(q, k, v, self.past, self.future, first_frame)
        h = h + gate1 * self.proj(attended.transpose(1, 2).reshape(b, t, d))
        x = self.norm2(h) * (1 + scale2) + shift2
        return h + gate2 * self.mlp(x)


class FinalLayer(nn.Module):
    def __init__(self, d: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Linear(d, 2 * d)
        self.linear = nn.Linear(d, out)
        for layer in (self.modulation, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(nn.functional.silu(cond))[:, None].chunk(2, dim=-1)
        return self.linear(self.norm(h) * (1 + scale) + shift)


class VoiceEmbedder(nn.Module):
    """Voice -> (B, d) conditioning. Either a learned table of the named voices
    (`voice_dim` 0) or each voice's fixed style vector (a buffer, `table`) through a
    small MLP. A blend of voices is a weighted mean of their table rows (for style
    vectors, before the MLP: a blend is a voice the MLP reads like any other)."""

    def __init__(self, config: AVFlowConfig, d: int) -> None:
        super().__init__()
        self.voice_dim = config.voice_dim
        if config.voice_dim:
            self.register_buffer("table", torch.zeros(len(config.voices), config.voice_dim))
            self.proj = nn.Sequential(nn.Linear(config.voice_dim, d), nn.SiLU(), nn.Linear(d, d))
            # a new embedder starts silent, so fine-tuning a model trained on other voices
            # starts from what that model does, not from noise in its conditioning
            nn.init.zeros_(self.proj[-1].weight)
            nn.init.zeros_(self.proj[-1].bias)
        else:
            self.table = nn.Embedding(len(config.voices), d)

    def forward(self, voice: torch.Tensor) -> torch.Tensor:
        """voice: (B,) ids, or (B, V) blend weights over the V voices."""
        table = self.table if self.voice_dim else self.table.weight
        rows = table[voice] if not voice.is_floating_point() else voice.to(table.dtype) @ table
        return self.proj(rows) if self.voice_dim else rows


class AVFlow(nn.Module):
    """Predicts the flow velocity of (mel, motion) for a batch of people.

    All tensors are normalised (see `avgen.model.features.Normalizer`):
    mel (B, T, 80), motion (B, T, M), token_logits (B, T, V) log-probabilities.
    """

    def __init__(self, config: AVFlowConfig = AVFlowConfig()) -> None:
        super().__init__()
        self.config = config
        c, d = config, config.d_model
        cond_dim = 2 * c.num_symbols + c.motion_dim  # own + partner tokens, partner motion
        self.audio_in = nn.Linear(c.mel_dim + cond_dim, d)
        # cascaded: the visual stream also reads the finished (clean) mel
        self.visual_in = nn.Linear(c.motion_dim + cond_dim
                                   + (c.mel_dim if c.fusion == "cascaded" else 0), d)
        self.time = TimestepEmbedding(d)
        self.voice = VoiceEmbedder(c, d)
        self.audio_blocks = nn.ModuleList(Block(c) for _ in range(c.n_blocks))
        if c.fusion == "shared":
            self.visual_blocks = self.audio_blocks
            self.visual_tag = nn.Parameter(torch.zeros(d))  # tells the tied blocks the stream
        else:
            self.visual_blocks = nn.ModuleList(Block(c, c.motion_past)
                                               for _ in range(c.n_blocks))
        if c.highways:
            self.highway_va = nn.ModuleList(nn.Linear(d, d, bias=False)
                                            for _ in range(c.n_blocks))
            self.highway_av = nn.ModuleList(nn.Linear(d, d, bias=False)
                                            for _ in range(c.n_blocks))
            for layer in (*self.highway_va, *self.highway_av):
                nn.init.zeros_(layer.weight)  # streams start independent
        self.audio_out = FinalLayer(d, c.mel_dim)
        self.visual_out = FinalLayer(d, c.motion_dim)

    def forward(self, mel_t: torch.Tensor, motion_t: torch.Tensor, t: torch.Tensor,
                tokens: torch.Tensor, partner_tokens: torch.Tensor,
                partner_motion: torch.Tensor, voice: torch.Tensor,
                mel_condition: torch.Tensor | None = None, only: str | None = None,
                first_frame: int = 0, voice_guidance: float = 1.0
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Velocities (B, T, 80) and (B, T, M) at flow time t (B,).

        `mel_condition` (B, T, 80) is the clean mel the cascaded model's visual stream
        reads. `only` ("audio" or "visual") computes one stream where the streams do not
        exchange (separate, cascaded); the other velocity is None. `first_frame`: the dialogue
        frame of the inputs' first frame, when they are a window of a longer dialogue (the
        result does not depend on it beyond float rounding; see `local_attention`).

        `voice_guidance` w != 1 guides the mel's velocity away from the voices' mean:
        v(mean voice) + w (v(voice) - v(mean voice)), classifier-free guidance with the
        mean of the model's voices standing for "no voice in particular". The voice enters
        the audio stream only, so the mean-voice pass is the audio stream alone, run as a
        second half of the batch beside the first and reading the same visual stream
        through the highways; the motion is the voice's own."""
        c = self.config
        if only is not None and c.highways:
            raise ValueError(f"streams of a {c.fusion!r} model cannot run alone")
        if c.fusion == "cascaded" and only != "audio" and mel_condition is None:
            raise ValueError("the cascaded model's visual stream needs mel_condition")
        # the cascaded model's stage one runs before any motion exists
        audio_partner = (torch.zeros_like(partner_motion) if c.fusion == "cascaded"
                         else partner_motion)
        time = self.time(t)
        cond_a, cond_v = time + self.voice(voice), time
        guided = voice_guidance != 1.0 and only != "visual"
        batch = mel_t.shape[0]
        if guided:  # second half of the audio batch: the mean voice
            mean_voice = voice.new_full((batch, len(c.voices)), 1.0 / len(c.voices),
                                        dtype=time.dtype)
            cond_a = torch.cat([cond_a, time + self.voice(mean_voice)])
        if c.fusion == "shared":
            cond_v = cond_v + self.visual_tag
        h_a = h_v = None
        if only != "visual":
            h_a = self.audio_in(torch.cat([mel_t, tokens, partner_tokens, audio_partner], -1))
            if guided:
                h_a = h_a.repeat(2, 1, 1)
        if only != "audio":
            extra = [mel_condition] if c.fusion == "cascaded" else []
            h_v = self.visual_in(torch.cat([motion_t, tokens, partner_tokens, partner_motion,
                                            *extra], dim=-1))
        turn = rotation(mel_t.shape[1], c.d_model // c.n_heads, mel_t.device)
        for k in range(c.n_blocks):
            if h_a is not None:
                h_a = self.audio_blocks[k](h_a, cond_a, turn, first_frame)
            if h_v is not None:
                h_v = self.visual_blocks[k](h_v, cond_v, turn, first_frame)
            if c.highways:
                to_audio = self.highway_va[k](h_v)
                h_a, h_v = (h_a + (to_audio.repeat(2, 1, 1) if guided else to_audio),
                            h_v + self.highway_av[k](h_a[:batch]))
        v_mel = None if h_a is None else self.audio_out(h_a, cond_a)
        if guided:
            v_voice, v_mean = v_mel[:batch], v_mel[batch:]
            v_mel = v_mean + voice_guidance * (v_voice - v_mean)
        return v_mel, None if h_v is None else self.visual_out(h_v, cond_v)

    def flow_noise(self, batch: int, length: int, device, generator=None, sway: float = 0.0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flow times (B,) and noise for mel (B, T, 80) and motion (B, T, M), drawn in the
        order `loss` draws them: data-parallel ranks draw the whole batch and take a slice.
        `sway` < 0 draws the flow times more often near the noise, as `step_times` spaces
        the sampler's steps (0: uniform)."""
        c = self.config
        t = sway_times(torch.rand(batch, device=device, generator=generator), sway)
        noise_mel = torch.randn((batch, length, c.mel_dim), device=device, generator=generator)
        noise_motion = torch.randn((batch, length, c.motion_dim), device=device,
                                   generator=generator)
        return t, noise_mel, noise_motion

    def loss(self, mel: torch.Tensor, motion: torch.Tensor, tokens: torch.Tensor,
             partner_tokens: torch.Tensor, partner_motion: torch.Tensor, voice: torch.Tensor,
             mask: torch.Tensor, generator: torch.Generator | None = None,
             noise: tuple[torch.Tensor, ...] | None = None, frames: torch.Tensor | None = None,
             listen_weight: float = 1.0, motion_loss: str = "l1"
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """OT conditional flow matching with L1 per stream; mask (B, T) marks real frames.
        `motion_loss` "l2" puts the motion streams on squared error instead: an L1 loss
        learns the median velocity, and where the data holds a chance event (a listener
        who smiles after 30 % of the partner's phrases) the median is "never", so the
        sampler never draws it; squared error learns the mean velocity, whose flow
        reproduces the data's distribution, rare events included.
        `listen_weight` scales the motion loss on listening frames (own tokens silent,
        the partner's not): reactions happen there, but they are a small share of frames.
        Head dims are the first 6 of motion, face dims the rest. `noise`: (t, noise_mel,
        noise_motion) from `flow_noise` instead of drawing them; `frames`: the real-frame
        count to average over (data parallel: the global count / world size, so averaged
        gradients equal the whole batch's)."""
        c = self.config
        t, noise_mel, noise_motion = noise if noise is not None else self.flow_noise(
            mel.shape[0], mel.shape[1], mel.device, generator)
        tt = t[:, None, None]
        mel_t = (1 - (1 - c.sigma_min) * tt) * noise_mel + tt * mel
        motion_t = (1 - (1 - c.sigma_min) * tt) * noise_motion + tt * motion
        target_mel = mel - (1 - c.sigma_min) * noise_mel
        target_motion = motion - (1 - c.sigma_min) * noise_motion
        # the cascaded visual stream learns on the teacher's mel (what stage one aims at)
        v_mel, v_motion = self(mel_t, motion_t, t, tokens, partner_tokens, partner_motion, voice,
                               mel_condition=mel if c.fusion == "cascaded" else None)
        weight = mask[..., None].float()
        frames = weight.sum().clamp(min=1.0) if frames is None else frames
        l_mel = ((v_mel - target_mel).abs() * weight).sum() / (frames * c.mel_dim)
        if motion_loss not in MOTION_LOSSES:
            raise ValueError(f"motion_loss must be {' or '.join(MOTION_LOSSES)}, got "
                             f"{motion_loss!r}")
        gap = v_motion - target_motion
        err_motion = (gap.abs() if motion_loss == "l1" else gap.square()) * weight
        if listen_weight != 1.0:
            listening = ((tokens.argmax(-1) == SILENCE_ID)
                         & (partner_tokens.argmax(-1) != SILENCE_ID))[..., None]
            err_motion = err_motion * (1 + (listen_weight - 1) * listening.float())
        l_head = err_motion[..., :6].sum() / (frames * 6)
        l_face = err_motion[..., 6:].sum() / (frames * (c.motion_dim - 6))
        total = c.lambda_mel * l_mel + c.lambda_head * l_head + c.lambda_face * l_face
        parts = {"mel": l_mel.item(), "head": l_head.item(), "face": l_face.item()}
        return total, parts

    def receptive_field(self, steps: int, solver: str = "euler") -> tuple[int, int]:
        """(frames back, frames ahead) that `steps` steps of `solver` reach: each model
        evaluation sees n_blocks x (window + conv) frames either way, and every
        evaluation feeds the next one."""
        c = self.config
        # the streams meet after every block, so the longer window reaches both
        back = c.n_blocks * (max(c.window_past, c.motion_past) + c.ff_kernel // 2)
        stages = 2 if c.fusion == "cascaded" else 1  # motion waits for the finished mel
        evaluations = stages * evaluations_of(steps, solver)
        return evaluations * back, evaluations * c.lookahead

    @torch.inference_mode()
    def sample_dyad(self, tokens: torch.Tensor, voices: torch.Tensor, steps: int = 8,
                    generator: torch.Generator | None = None, chunk: int | None = None,
                    progress=None, temperature: float = 1.0, solver: str = "euler",
                    on_step=None, precision: str = "float32", voice_guidance: float = 1.0,
                    sway: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate both people together: tokens (2, T, V), voices (2,) ids or (2, voices)
        blend weights ->
        normalised mel (2, T, 80) and motion (2, T, M). Person i's partner is
        1 - i; the partner motion condition is the partner's current clean-motion estimate.

        With `chunk`, the dialogue is generated `chunk` frames at a time, each with the
        context its receptive field needs (`receptive_field`), so working memory is bounded
        by the chunk, not the dialogue, and the result equals whole-dialogue sampling
        (RoPE attention depends only on relative positions). `progress(frames)` is called
        after each chunk; `on_step(frames)` after every solver step of a chunk, with the
        frames that chunk keeps, so its calls add up to `sampling_work(T, steps)` (a
        progress bar of the whole sampler). `temperature` scales the mel's starting noise (Matcha-TTS's
        sampling temperature: below 1 trades variety for cleaner speech); motion keeps
        its full noise, so its variety is untouched. `solver`: see `SOLVERS`.
        `precision`: see `PRECISIONS`. `voice_guidance`: see `forward`. `sway`: the
        spacing of the steps in flow time (`step_times`)."""
        length = tokens.shape[1]
        bounds = [0, length] if chunk is None or chunk >= length else \
            list(range(0, length, chunk)) + [length]
        mel_out = motion_out = None
        for a, b, mel, motion in self.sample_chunks(tokens, voices, bounds, steps, generator,
                                                    temperature, solver, on_step,
                                                    precision, voice_guidance, sway):
            if mel_out is None:
                mel_out = mel.new_empty((2, length, mel.shape[-1]))
                motion_out = motion.new_empty((2, length, motion.shape[-1]))
            mel_out[:, a:b], motion_out[:, a:b] = mel, motion
            if progress:
                progress(b - a)
        return mel_out, motion_out

    def starting_noise(self, length: int, generator: torch.Generator | None, device,
                       temperature: float = 1.0) -> StartingNoise:
        """The sampler's starting noise for a dialogue of `length` frames (`StartingNoise`:
        made window by window, the same whichever windows are asked for)."""
        c = self.config
        return StartingNoise(length, c.mel_dim, c.motion_dim, generator, device, temperature)

    @torch.inference_mode()
    def sample_chunks(self, tokens: torch.Tensor, voices: torch.Tensor, bounds: list[int],
                      steps: int = 8, generator: torch.Generator | None = None,
                      temperature: float = 1.0, solver: str = "euler", on_step=None,
                      precision: str = "float32", voice_guidance: float = 1.0,
                      sway: float = 0.0):
        """`sample_dyad` one chunk at a time: yields (a, b, mel (2, b - a, 80),
        motion (2, b - a, M)) for consecutive chunk bounds [0, ..., T]. Every chunk is
        exact whatever the bounds (equal to whole-dialogue sampling up to float rounding),
        and a caller can use it before the next one is made.

        The state after every solver step is kept for the frames it is exact on, so a
        chunk advances each step over its new frames plus one step's receptive field,
        not the whole sampler's: small chunks (streaming) cost little more than one
        whole-dialogue pass. The cascaded model (motion waits for the finished mel)
        recomputes each chunk with the whole sampler's receptive field instead.
        `tokens`: (2, T, V) as in `sample_dyad`, or anything with `shape`, `device` and
        `tokens[:, lo:hi]` -> (2, hi - lo, V) tensor (`avgen.pipeline.TimelineTokens`
        makes each window when asked), so with the noise (`StartingNoise`) nothing
        dialogue-sized is held. `on_step(frames)`: as in `sample_dyad`."""
        length = tokens.shape[1]
        if bounds[0] != 0 or bounds[-1] != length or any(
                b <= a for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"chunk bounds must rise from 0 to {length}, got {bounds}")
        evaluation_precision(precision, tokens.device)  # a bad name fails before any work
        noise = self.starting_noise(length, generator, tokens.device, temperature)
        evaluating = lambda: evaluation_precision(precision, tokens.device)  # noqa: E731
        if self.config.fusion == "cascaded":
            back, ahead = self.receptive_field(steps, solver)
            for a, b in zip(bounds, bounds[1:]):
                lo, hi = max(0, a - back), min(length, b + ahead)
                with evaluating():
                    mel_w, motion_w = self._integrate(
                        *noise.window(lo, hi), tokens[:, lo:hi], voices, steps,
                        solver, on_step and (lambda n=b - a: on_step(n)), first_frame=lo,
                        voice_guidance=voice_guidance, sway=sway)
                keep = slice(a - lo, b - lo)
                yield a, b, mel_w[:, keep], motion_w[:, keep]
            return
        back, ahead = self.receptive_field(1, solver)  # of one step
        # levels[k]: (first frame, mel, motion, partner estimate) after k steps, exact on
        # frames first .. done[k] - 1; level 0 is the noise, exact everywhere and made
        # window by window (so nothing dialogue-sized is held)
        levels = [None] * (steps + 1)
        done = [length] + [0] * steps
        for a, b in zip(bounds, bounds[1:]):
            for k in range(steps):
                end = length if b == length else min(length, b + ahead * (steps - 1 - k))
                start = done[k + 1]
                if end <= start:
                    if on_step:
                        on_step(b - a)
                    continue
                if k == 0:
                    lo, hi = max(0, start - back), min(length, end + ahead)
                    mel_w, motion_w = noise.window(lo, hi)
                    estimate_w = torch.zeros_like(motion_w)
                else:
                    first, mel_k, motion_k, estimate_k = levels[k]
                    lo, hi = max(first, start - back), min(done[k], end + ahead)
                    window = slice(lo - first, hi - first)
                    mel_w, motion_w = mel_k[:, window], motion_k[:, window]
                    estimate_w = estimate_k[:, window]
                with evaluating():
                    mel_n, motion_n, estimate_n = self._step(
                        mel_w, motion_w, estimate_w, tokens[:, lo:hi], voices, k, steps,
                        solver, first_frame=lo, voice_guidance=voice_guidance, sway=sway)
                keep = slice(start - lo, end - lo)
                new = (mel_n[:, keep], motion_n[:, keep], estimate_n[:, keep])
                if levels[k + 1] is None:
                    levels[k + 1] = (start, *new)
                else:
                    old_first, *old = levels[k + 1]
                    levels[k + 1] = (old_first, *(torch.cat([o, n], dim=1)
                                                  for o, n in zip(old, new)))
                done[k + 1] = end
                if k > 0:  # the next window of this step starts at most `back` before end
                    drop = max(0, end - back - first)
                    levels[k] = (first + drop, *(x[:, drop:] for x in levels[k][1:]))
                if on_step:  # the chunk's own frames, so the calls add up to sampling_work
                    on_step(b - a)
            first, mel_s, motion_s, _ = levels[steps]
            yield a, b, mel_s[:, a - first:b - first], motion_s[:, a - first:b - first]
            levels[steps] = (b, *(x[:, b - first:] for x in levels[steps][1:]))

    def sampling_work(self, length: int, steps: int) -> int:
        """What `sample_dyad`'s `on_step` calls add up to for T = `length` frames."""
        return length * steps * (2 if self.config.fusion == "cascaded" else 1)

    def _step(self, mel: torch.Tensor, motion: torch.Tensor, estimate: torch.Tensor,
              tokens: torch.Tensor, voices: torch.Tensor, k: int, steps: int, solver: str,
              first_frame: int = 0, voice_guidance: float = 1.0, sway: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step k of `steps` of the joint (non-cascaded) sampler on a window that starts
        at dialogue frame `first_frame`: (mel, motion, partner estimate) after it."""
        partner_tokens = tokens.flip(0)
        latest = [estimate]

        def velocity(x, t):
            v_mel, v_motion = self(x[0], x[1], torch.full((2,), t, device=mel.device), tokens,
                                   partner_tokens, latest[0].flip(0), voices,
                                   first_frame=first_frame, voice_guidance=voice_guidance)
            latest[0] = x[1] + (1 - t) * v_motion
            return v_mel, v_motion

        t, t_next = step_times(steps, sway)[k:k + 2]
        mel, motion = _ode_step(velocity, (mel, motion), t, t_next - t, solver)
        return mel, motion, latest[0]

    def _integrate(self, mel: torch.Tensor, motion: torch.Tensor, tokens: torch.Tensor,
                   voices: torch.Tensor, steps: int, solver: str = "euler", step_done=None,
                   first_frame: int = 0, voice_guidance: float = 1.0, sway: float = 0.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """ODE integration from noise (t=0) to data (t=1) for a dyad, (2, T, C) each,
        starting at dialogue frame `first_frame`. `step_done()` is called after each
        solver step (of the mel, then of the motion, for the cascaded model).

        The partner-motion condition is the partner's clean-motion estimate from the
        latest evaluation, x1 = x_t + (1 - t) v (exact for straight OT paths)."""
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        step_done = step_done or (lambda: None)
        partner_tokens = tokens.flip(0)
        cascaded = self.config.fusion == "cascaded"
        grid = step_times(steps, sway)

        def times(t: float) -> torch.Tensor:
            return torch.full((2,), t, device=mel.device)

        if cascaded:  # all of the audio, then all of the motion
            silent = torch.zeros_like(motion)

            def audio_velocity(x, t):
                return self(x, motion, times(t), tokens, partner_tokens, silent, voices,
                            only="audio", first_frame=first_frame,
                            voice_guidance=voice_guidance)[0]
            for k in range(steps):
                mel = _ode_step(audio_velocity, mel, grid[k], grid[k + 1] - grid[k], solver)
                step_done()
        estimate = torch.zeros_like(motion)
        for k in range(steps):
            if cascaded:
                def velocity(x, t):
                    nonlocal estimate
                    v = self(mel, x, times(t), tokens, partner_tokens, estimate.flip(0),
                             voices, mel_condition=mel, only="visual",
                             first_frame=first_frame)[1]
                    estimate = x + (1 - t) * v
                    return v
                motion = _ode_step(velocity, motion, grid[k], grid[k + 1] - grid[k], solver)
            else:
                mel, motion, estimate = self._step(mel, motion, estimate, tokens, voices, k,
                                                   steps, solver, first_frame, voice_guidance,
                                                   sway)
            step_done()
        return mel, motion


class StartingNoise:
    """The sampler's starting noise for a dialogue of `length` frames, window by window:
    `window(lo, hi)` -> mel (2, hi - lo, mel_dim) x `temperature` and motion (2, hi - lo,
    motion_dim). It is drawn in blocks of `BLOCK` frames, each from its own seed (derived
    from one draw of `generator`), so any window costs only the blocks it touches, memory
    does not grow with the dialogue, and every way of cutting the dialogue into chunks
    sees the same noise."""

    BLOCK = 1024

    def __init__(self, length: int, mel_dim: int, motion_dim: int,
                 generator: torch.Generator | None, device, temperature: float = 1.0) -> None:
        self.length, self.mel_dim, self.motion_dim = length, mel_dim, motion_dim
        self.device, self.temperature = torch.device(device), temperature
        self.seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator,
                                      device=generator.device if generator is not None
                                      else "cpu"))
        self._blocks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _block(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._blocks:
            if len(self._blocks) >= 4:  # windows move forward: the oldest is not needed
                self._blocks.pop(next(iter(self._blocks)))
            # a distinct seed per block (an odd multiplier keeps them apart mod 2^63)
            seed = (self.seed + index * 0x9E3779B97F4A7C15) % 2 ** 63
            generator = torch.Generator(device=self.device).manual_seed(seed)
            mel = self.temperature * torch.randn((2, self.BLOCK, self.mel_dim),
                                                 device=self.device, generator=generator)
            motion = torch.randn((2, self.BLOCK, self.motion_dim), device=self.device,
                                 generator=generator)
            self._blocks[index] = (mel, motion)
        return self._blocks[index]

    def window(self, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel (2, hi - lo, mel_dim), motion (2, hi - lo, motion_dim)) of frames lo..hi-1."""
        if not 0 <= lo < hi <= self.length:
            raise ValueError(f"noise window {lo}..{hi} is outside 0..{self.length}")
        pieces = []
        for index in range(lo // self.BLOCK, (hi - 1) // self.BLOCK + 1):
            first = index * self.BLOCK
            mel, motion = self._block(index)
            keep = slice(max(lo, first) - first, min(hi, first + self.BLOCK) - first)
            pieces.append((mel[:, keep], motion[:, keep]))
        if len(pieces) == 1:
            return pieces[0]
        return tuple(torch.cat(parts, dim=1) for parts in zip(*pieces))


def evaluation_precision(precision: str, device):
    """Context manager for the network's evaluations at `precision` (`PRECISIONS`) on
    `device`. The sampler's state (the noisy mel and motion, the solver's updates) stays
    float32 either way; "bfloat16" runs the matrix products in bfloat16 (autocast), as
    the model was trained."""
    import contextlib

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def cast_matrix_weights(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Cast the weights and biases of `model`'s linear and convolution layers to `dtype`
    in place (the rest, layer norms and embeddings' tables, stays float32) and return it.
    For sampling under bfloat16 autocast only: autocast casts exactly these to bfloat16
    at every call, so casting them once gives the same numbers without the copies (a
    20 s dialogue's sampling, one thread: 2.2 -> 2.0 s). Such a model no longer runs in
    float32."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            module.to(dtype)
    return model


def native_bfloat16(device="cpu") -> bool:
    """Whether `device` does bfloat16 matrix products natively (else they are emulated,
    slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def evaluations_of(steps: int, solver: str) -> int:
    """Model evaluations of `steps` steps of `solver` (the sampler's cost)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    return steps * SOLVERS[solver]


def step_times(steps: int, sway: float = 0.0) -> list[float]:
    """The sampler's `steps` + 1 flow times from 0 (noise) to 1 (data), spaced by sway
    sampling (F5-TTS): t = u + sway (cos(pi u / 2) - 1 + u) on a uniform u. 0 is uniform;
    below 0 the steps are smaller near the noise, where the sampler settles which of
    several outcomes a frame takes (whether a listener nods or smiles); a few large
    first steps land on their average instead. Monotone for sway in [-1, 1]."""
    times = sway_times(torch.arange(steps + 1, dtype=torch.float64) / steps, sway).tolist()
    times[0], times[-1] = 0.0, 1.0  # exact ends, whatever the rounding
    return times


def sway_times(u: torch.Tensor, sway: float) -> torch.Tensor:
    """Flow times u in [0, 1] respaced by sway sampling: u + sway (cos(pi u / 2) - 1 + u)."""
    if not -1.0 <= sway <= 1.0:
        raise ValueError(f"sway must be in [-1, 1], got {sway}")
    if sway == 0.0:
        return u
    return u + sway * (torch.cos(math.pi / 2 * u) - 1 + u)


def _ode_step(velocity, x, t: float, dt: float, solver: str):
    """One step from t to t + dt of dx/dt = velocity(x, t); x a tensor or a tuple of them."""
    def add(x, v, h):
        if isinstance(x, tuple):
            return tuple(xi + h * vi for xi, vi in zip(x, v))
        return x + h * v

    v = velocity(x, t)
    if solver == "euler":
        return add(x, v, dt)
    if solver == "midpoint":
        return add(x, velocity(add(x, v, dt / 2), t + dt / 2), dt)
    # heun: the trapezoid of the velocities at both ends of an Euler step
    v_end = velocity(add(x, v, dt), t + dt)
    mean = tuple((a + b) / 2 for a, b in zip(v, v_end)) if isinstance(v, tuple) \
        else (v + v_end) / 2
    return add(x, mean, dt)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
