"""Training the joint audio-visual flow model (`avgen train av`).

Resumable: the run folder holds `av-latest.safetensors` (weights, normaliser, config
and step in its metadata, small enough to commit) and `optimizer.safetensors` (Adam moments, not
committed; a resume without it restarts the moments, which costs a few hundred steps).
Same code on CPU and GPU. Deterministic for a seed on one device.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from avgen.errors import ConfigError, InputError
from avgen.model.av_checkpoint import load_checkpoint, save_checkpoint
from avgen.model.av_flow import MOTION_LOSSES, AVFlow, AVFlowConfig
from avgen.train import distributed
from avgen.train.distributed import Ranks
from avgen.train.prepared import open_windows
from avgen.train.schedule import cosine_schedule

CHECKPOINT = "av-latest.safetensors"
OPTIMIZER_STATE = "optimizer.safetensors"  # Adam moments: tensors + JSON, no pickle


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    batch_size: int = 8
    frames: int = 300  # ~3.5 s windows
    learning_rate: float = 3e-4
    warmup_steps: int = 300
    grad_clip: float = 1.0
    partner_motion_dropout: float = 0.3  # model must also work before the partner is known
    partner_motion_noise: float = 0.5  # at sampling time the partner estimate is noisy
    speech_bias: float = 0.6  # share of windows cut around the person's own turn
    listen_weight: float = 1.0  # motion loss weight on listening frames (AVFlow.loss)
    motion_loss: str = "l1"  # "l2": squared error on motion, for rare events (AVFlow.loss)
    # < 0: flow times drawn more often near the noise, where the sampler (sway -1) takes
    # its small first steps and settles whether a listener nods or smiles (0: uniform)
    time_sway: float = 0.0
    checkpoint_every: int = 500
    log_every: int = 25
    # stop (with a checkpoint) at this step of the `steps` schedule; a later run with the
    # same `steps` goes on from there: equal-budget ablations, runs spread over sessions
    stop_at: int = 0  # 0: train to `steps`
    seed: int = 0
    threads: int = 0  # 0: torch's default
    bf16: bool = False  # bfloat16 autocast: ~2.5x faster on CPUs with AMX, and on GPUs

    def __post_init__(self) -> None:
        if self.motion_loss not in MOTION_LOSSES:
            raise ConfigError(f"motion loss must be {' or '.join(MOTION_LOSSES)}, got "
                              f"{self.motion_loss!r}", "--motion-loss")
        from avgen.limits import SWAY, check_range

        check_range(self.time_sway, SWAY, "--time-sway", name="time_sway")

    @property
    def last_step(self) -> int:
        """The step this run stops at: `stop_at` if set (within the schedule), else `steps`."""
        return min(self.stop_at, self.steps) if self.stop_at else self.steps


# the sampler's names (avgen.constants.PRECISIONS), and the short ones of older runs
PRECISION_ALIASES = {"bf16": "bfloat16", "fp32": "float32"}


def use_bf16(precision: str, device: str | None = None) -> bool:
    """Whether to train under bfloat16 autocast: `precision` 'bfloat16' or 'float32'
    says so ('bf16', 'fp32' too); 'auto' uses it where the hardware does it natively
    (`native_bfloat16`) on `device` (default: cuda if available, else cpu)."""
    from avgen.constants import PRECISIONS
    from avgen.model.av_flow import native_bfloat16

    precision = PRECISION_ALIASES.get(precision, precision)
    if precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"precision must be auto, {' or '.join(PRECISIONS)}, got "
                          f"{precision!r}", "--precision")
    if precision != "auto":
        return precision == "bfloat16"
    return native_bfloat16(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _lr(step: int, config: TrainConfig) -> float:
    return cosine_schedule(step, config.learning_rate, config.steps, config.warmup_steps,
                           floor=0.1 * config.learning_rate)


def with_motion_window(model: AVFlow, past: int, log=print) -> AVFlow:
    """The same weights with the visual stream's attention window `past` frames back."""
    log(f"visual stream's window: {model.config.motion_past} -> {past} frames back")
    config = replace(model.config, motion_window_past=past)
    longer = AVFlow(config).to(next(model.parameters()).device)
    longer.load_state_dict(model.state_dict())
    return longer


def _voice_table(corpus_root) -> dict | None:
    """A teacher corpus's voices.json (gender, accent, F0, style vectors), if any."""
    path = Path(corpus_root) / "voices.json"
    return json.loads(path.read_text()) if path.exists() else None


def train(corpus_root: str | Path, run_dir: str | Path, model_config: AVFlowConfig = AVFlowConfig(),
          config: TrainConfig = TrainConfig(), device: str | None = None, progress=None,
          log=print, init: str | Path | None = None, ranks: Ranks | None = None) -> Path:
    """Train (or resume) a model; returns the checkpoint path. `corpus_root` is a teacher
    corpus or an `avgen prepare` folder. `init`: a new run starts from this checkpoint's
    weights and normaliser (fine-tuning; `model_config` is then the checkpoint's, but for
    a `motion_window_past` it sets: the windows hold no weights).

    Under torchrun (or with `ranks`), trains data-parallel: `config.batch_size` is the
    global batch, split evenly over the ranks, with the same result as one process (see
    avgen.train.distributed); only rank 0 writes the checkpoint and log, and calls
    `progress` and `log`."""
    if not (Path(corpus_root) / "config.json").is_file():
        raise InputError("not a teacher corpus or prepared folder (no config.json)",
                         str(corpus_root))
    ranks = ranks or Ranks.from_env()
    share = ranks.share(config.batch_size)
    device = ranks.device(device)
    started_group = distributed.start(ranks, device)
    new_run = not Path(run_dir).exists()
    try:
        return _train(corpus_root, run_dir, model_config, config, device,
                      progress if ranks.main else None, log if ranks.main else (lambda m: None),
                      ranks, share, init)
    except BaseException:
        # a run that failed before its first checkpoint leaves no empty folder behind
        if new_run and Path(run_dir).is_dir() and not any(Path(run_dir).iterdir()):
            Path(run_dir).rmdir()
        raise
    finally:
        distributed.stop(started_group)


def _train(corpus_root, run_dir, model_config: AVFlowConfig, config: TrainConfig, device: str,
           progress, log, ranks: Ranks, share: slice, init) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    if checkpoint.exists():
        model, normalizer, step, _ = load_checkpoint(checkpoint, device)
        if model.config != model_config:
            log(f"resuming with the checkpoint's model config: {model.config}")
        rng = np.random.default_rng([config.seed, step])  # fresh but reproducible stream
        data = open_windows(corpus_root, model.config.voices)
    elif init is not None:
        from avgen.train.prepared import start_from

        corpus_voices = tuple(json.loads((Path(corpus_root) / "config.json").read_text())["voices"])
        model, normalizer = start_from(init, corpus_voices, device, log,
                                       _voice_table(corpus_root))
        if model_config.motion_window_past not in (None, model.config.motion_past):
            model = with_motion_window(model, model_config.motion_window_past, log)
        data = open_windows(corpus_root, model.config.voices)
        step = 0
    else:
        from avgen.train.prepared import has_style_voices, set_voice_table, style_voice_config

        corpus_voices = tuple(json.loads((Path(corpus_root) / "config.json").read_text())["voices"])
        table = _voice_table(corpus_root)
        model_config = (style_voice_config(model_config, corpus_voices, table)
                        if has_style_voices(table, corpus_voices)
                        else replace(model_config, voices=corpus_voices))  # one per voice
        data = open_windows(corpus_root, model_config.voices)
        model = AVFlow(model_config).to(device)
        if model_config.voice_dim:
            set_voice_table(model, corpus_voices, table)
        normalizer = data.normalizer(rng)
        step = 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  betas=(0.9, 0.99), weight_decay=0.01)
    moments = run_dir / OPTIMIZER_STATE
    legacy = run_dir / "optimizer.pt"  # older runs: pickled, read with weights_only=True
    if checkpoint.exists() and (moments.exists() or legacy.exists()):
        from avgen import checkpoint as checkpoint_io

        state = (checkpoint_io.load_state(moments) if moments.exists()
                 else checkpoint_io.load_legacy_state(legacy))
        if state.get("step") == step:
            optimizer.load_state_dict(state["optimizer"])
    generator = torch.Generator(device=device).manual_seed(config.seed * 7919 + step)
    if progress and step:
        progress(step, None)  # a resumed run's bar starts where the run stands
    log_file = (run_dir / "train.log").open("a") if ranks.main else None
    loss_function = distributed.loss_function(model, ranks, device)
    started = time.time()
    end = config.last_step
    while step < end:
        # the whole global batch and all its noise on every rank, then this rank's slice:
        # the same streams as one process, so the ranks together train on what it would
        batch = {k: v.to(device) for k, v in data.batch(rng, config.batch_size, config.frames,
                                                         normalizer, config.speech_bias).items()}
        partner = batch["partner_motion"]
        noise = torch.rand(partner.shape[0], 1, 1, device=device, generator=generator)
        partner = partner + noise * config.partner_motion_noise * torch.randn(
            partner.shape, device=device, generator=generator)
        keep = torch.rand(partner.shape[0], 1, 1, device=device,
                          generator=generator) >= config.partner_motion_dropout
        partner = partner * keep
        noise = model.flow_noise(config.batch_size, config.frames, device, generator,
                                 config.time_sway)
        # mean over the global batch's real frames: the ranks' gradients average to it
        frames = batch["mask"].float().sum().clamp(min=1.0) / ranks.world_size
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=config.bf16):
            loss, parts = loss_function(batch["mel"][share], batch["motion"][share],
                                        batch["tokens"][share], batch["partner_tokens"][share],
                                        partner[share], batch["voice"][share],
                                        batch["mask"][share],
                                        noise=tuple(x[share] for x in noise), frames=frames,
                                        listen_weight=config.listen_weight,
                                        motion_loss=config.motion_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        value, *values = distributed.mean_over_ranks([loss.item(), *parts.values()], ranks, device)
        parts = dict(zip(parts, values))
        if progress:
            progress(1, loss=value)
        if log_file and (step % config.log_every == 0 or step == end):
            record = {"step": step, "loss": round(value, 4),
                      **{k: round(v, 4) for k, v in parts.items()},
                      "lr": _lr(step, config), "seconds": round(time.time() - started, 1)}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        if ranks.main and (step % config.checkpoint_every == 0 or step == end):
            save_checkpoint(checkpoint, model, normalizer, step, config)
            from avgen import checkpoint as checkpoint_io

            # atomic: an interrupted save never leaves a torn file
            checkpoint_io.save_state(moments, {"step": step,
                                               "optimizer": optimizer.state_dict()})
    if log_file:
        log_file.close()
    distributed.barrier(ranks)  # every rank returns once the checkpoint is there
    return checkpoint


