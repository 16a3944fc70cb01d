"""Train the small Vocos-style vocoder (avgen.audio.vocos) on a folder of speech.

Losses: L1 between BigVGAN log-mels of output and target, plus a multi-resolution STFT
loss (spectral convergence + log-magnitude L1 at five window sizes). There is no
discriminator: on two CPU cores the budget goes further on the reconstruction losses,
and the small windows of the multi-resolution loss are what constrain phase.

Training is resumable: `out_dir/vocoder.safetensors` holds the model (+ its config and
training summary in the metadata), `out_dir/state.safetensors` the optimizer, step and data
order. Running the same command again continues from the last checkpoint. A folder with
only vocoder.safetensors (such as a copy of the shipped avgen-vocos-22k) continues from
those weights and their step with a fresh optimizer. Crops are
drawn from a generator seeded by (seed, step), so a resumed run draws the same batches
an uninterrupted one would.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from avgen.audio.io import find_audio, read_audio
from avgen.audio.mel import MelSpectrogram
from avgen.audio.vocos import Vocos, VocosConfig, load_checkpoint, save_checkpoint
from avgen.constants import HOP_LENGTH
from avgen.errors import InputError
from avgen.train.schedule import cosine_schedule

CHECKPOINT = "vocoder.safetensors"
STATE = "state.safetensors"  # optimizer state: tensors + JSON, no pickle
LEGACY_STATE = "state.pt"    # older runs: pickled, read with weights_only=True
LOG = "train.log"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000               # total steps of the schedule (resuming may raise it)
    batch_size: int = 16
    segment_frames: int = 32         # crop length in mel frames (32 * 256 samples)
    lr: float = 1e-3
    lr_min: float = 5e-5
    warmup: int = 300
    weight_decay: float = 0.01
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    # weight of the frame-rate comb loss (FrameRateCombLoss); 0 leaves it out
    comb_weight: float = 0.0
    checkpoint_every: int = 250
    validate_every: int = 500
    log_every: int = 25
    seed: int = 0
    max_validation: int = 8          # held-out utterances scored at each validation

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


STFT_RESOLUTIONS = ((2048, 512), (1024, 256), (512, 128), (256, 64), (128, 32))


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes."""

    def __init__(self, resolutions=STFT_RESOLUTIONS) -> None:
        super().__init__()
        self.resolutions = resolutions
        for n_fft, _ in resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros(())
        for n_fft, hop in self.resolutions:
            window = getattr(self, f"window_{n_fft}")
            mags = [torch.stft(x, n_fft, hop, n_fft, window, return_complex=True).abs()
                    .clamp(min=1e-5) for x in (output, target)]
            convergence = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1])
            log_l1 = (mags[0].log() - mags[1].log()).abs().mean()
            total = total + convergence + log_l1
        return total / len(self.resolutions)


class FrameRateCombLoss(torch.nn.Module):
    """L1 of log magnitudes at the harmonics of the frame rate (22050 / 256 = 86.13 Hz).

    A vocoder that predicts each STFT frame on its own, trained on reconstruction losses
    alone, overlap-adds frames whose phases do not quite agree; the seams repeat every
    hop and leave a faint buzz of frame-rate harmonics (13.6 dB above their neighbours
    in the first shipped vocoder's output, 0.2 dB in real speech;
    `benchmarks/results/vocoder_voices.md`).
    The multi-resolution STFT loss barely sees it: its windows are too short to resolve
    86 Hz apart, and the comb's bins are a few in hundreds. Over a crop of exactly N
    frames, one Hann-windowed FFT puts every frame-rate harmonic on bin k N, so the loss
    compares just those bins (and their neighbours, where the window spreads a tone)
    with the target's."""

    def __init__(self, hop_length: int = HOP_LENGTH) -> None:
        super().__init__()
        self.hop_length = hop_length

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        samples = output.shape[-1]
        frames = samples // self.hop_length
        window = torch.hann_window(samples, device=output.device, dtype=output.dtype)
        bins = torch.arange(1, samples // 2 // frames + 1, device=output.device) * frames
        bins = torch.cat([bins - 1, bins, (bins + 1).clamp(max=samples // 2)])
        mags = [torch.fft.rfft(x * window).abs()[..., bins].clamp(min=1e-5)
                for x in (output, target)]
        return (mags[0].log() - mags[1].log()).abs().mean()


class Corpus:
    """All training audio in memory as int16 (half the memory of float32), with the
    utterance boundaries; crops never straddle two utterances."""

    def __init__(self, files: list[Path], progress: bool = True) -> None:
        from tqdm import tqdm

        self.files = files
        self.waves: list[np.ndarray] = []
        for path in tqdm(files, desc="reading audio", unit="file", disable=not progress,
                         file=sys.stderr):
            wave = read_audio(path)
            self.waves.append(np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16))
        self.seconds = sum(len(w) for w in self.waves) / 22050

    def batch(self, rng: np.random.Generator, batch_size: int, samples: int) -> torch.Tensor:
        """(B, samples) float32 crops; utterances shorter than a crop are zero-padded."""
        out = np.zeros((batch_size, samples), dtype=np.float32)
        lengths = np.array([len(w) for w in self.waves], dtype=np.float64)
        # sample utterances by length so every second of audio is equally likely
        picks = rng.choice(len(self.waves), size=batch_size, p=lengths / lengths.sum())
        for row, index in enumerate(picks):
            wave = self.waves[index]
            start = int(rng.integers(0, max(1, len(wave) - samples + 1)))
            chunk = wave[start:start + samples]
            out[row, :len(chunk)] = chunk / 32767.0
        return torch.from_numpy(out)


def split_files(folders: list[Path], heldout: Path | None) -> tuple[list[Path], list[Path]]:
    """Training and held-out files. `heldout` lists paths (relative to one of `folders` or
    to the held-out file's own folder, one a line) that training must never see."""
    files = []
    for folder in folders:
        found = find_audio(folder)
        if not found:
            raise InputError("no .wav or .flac files found (searched recursively)", str(folder))
        files += found
    if heldout is None:
        return files, []
    try:
        lines = [l.strip() for l in heldout.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise InputError("no such file", str(heldout)) from None
    held = set()
    for line in filter(None, lines):
        for base in (*folders, heldout.parent):
            candidate = (base / line).resolve()
            if candidate.is_file():
                held.add(candidate)
                break
    if not held:
        raise InputError(f"none of its {len(lines)} paths exist under "
                         f"{', '.join(map(str, folders))}", str(heldout))
    train = [p for p in files if p.resolve() not in held]
    valid = [p for p in files if p.resolve() in held]
    return train, valid


def learning_rate(config: TrainConfig, step: int) -> float:
    return cosine_schedule(step, config.lr, config.steps, config.warmup, floor=config.lr_min)


def _log(out_dir: Path, record: dict) -> None:
    with open(out_dir / LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@torch.no_grad()
def validate(model: Vocos, mel_fn: MelSpectrogram, waves: list[np.ndarray]) -> float:
    """Mean L1 between log-mels of the vocoded and the real held-out utterances."""
    model.eval()
    errors = []
    for wave in waves:
        target = torch.from_numpy(wave[: len(wave) // HOP_LENGTH * HOP_LENGTH])[None]
        mel = mel_fn(target)
        errors.append((mel_fn(model(mel)) - mel).abs().mean().item())
    model.train()
    return float(np.mean(errors)) if errors else float("nan")


def train(folders: str | Path | list, out_dir: str | Path, config: TrainConfig = TrainConfig(),
          model_config: VocosConfig = VocosConfig(), heldout: str | Path | None = None,
          threads: int | None = None, progress: bool = True,
          init: str | Path | None = None) -> Path:
    """Train (or resume) a vocoder on the audio under `folders`; returns the checkpoint path.

    A run resumes from `out_dir` when it holds a state file; the stored model config wins
    over `model_config` then (the weights only fit their own architecture). `init`: a new
    run starts from that checkpoint's weights (and architecture) at step 0 (fine-tuning);
    ignored when the run folder already holds a run to resume."""
    from tqdm import tqdm

    folders = [Path(f) for f in (folders if isinstance(folders, (list, tuple)) else [folders])]
    out_dir = Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    # bad data or a bad --init fail before the run folder exists
    train_files, valid_files = split_files(folders, Path(heldout) if heldout else None)
    initial = load_checkpoint(init) if init is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / STATE
    step = 0
    state = None
    if state_path.is_file() or (out_dir / LEGACY_STATE).is_file():
        from avgen import checkpoint as checkpoint_io

        state = (checkpoint_io.load_state(state_path) if state_path.is_file()
                 else checkpoint_io.load_legacy_state(out_dir / LEGACY_STATE))
        model = load_checkpoint(out_dir / CHECKPOINT).train()
        step = int(state["step"])
    elif (out_dir / CHECKPOINT).is_file():
        # weights without optimizer state (e.g. the shipped checkpoint copied into a run
        # folder): continue from its step with fresh Adam moments
        from avgen.audio.vocos import checkpoint_metadata

        model = load_checkpoint(out_dir / CHECKPOINT).train()
        step = int(checkpoint_metadata(out_dir / CHECKPOINT).get("step", 0))
        _log(out_dir, {"event": "resume-without-optimizer-state", "step": step})
    elif initial is not None:
        model = initial.train()
        _log(out_dir, {"event": "init", "from": str(init)})
    else:
        torch.manual_seed(config.seed)
        model = Vocos(model_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.8, 0.9),
                                  weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    corpus = Corpus(train_files, progress=progress)
    valid_waves = [read_audio(p) for p in valid_files[: config.max_validation]]
    mel_fn = MelSpectrogram()
    stft_loss = MultiResolutionSTFTLoss()
    comb_loss = FrameRateCombLoss()
    samples = config.segment_frames * HOP_LENGTH
    summary = {"data": [str(f) for f in folders], "train_files": len(train_files),
               "train_seconds": round(corpus.seconds, 1), "heldout_files": len(valid_files)}
    _log(out_dir, {"event": "start", "step": step, "time": time.time(), **summary,
                   "config": asdict(config), "model": asdict(model.config),
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "threads": torch.get_num_threads()})

    def checkpoint() -> None:
        save_checkpoint(model, out_dir / CHECKPOINT,
                        extra={"step": step, "train_config": asdict(config), **summary})
        from avgen import checkpoint as checkpoint_io

        checkpoint_io.save_state(state_path, {"step": step, "optimizer": optimizer.state_dict(),
                                              "train_config": asdict(config)})

    # SIGTERM (a scheduler stopping us) saves like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    running = {}
    started = time.time()
    bar = tqdm(total=config.steps, initial=step, desc="vocoder", unit="step",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        while step < config.steps:
            rng = np.random.default_rng([config.seed, step])
            wave = corpus.batch(rng, config.batch_size, samples)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            output = model(mel_fn(wave))
            mel_loss = (mel_fn(output) - mel_fn(wave)).abs().mean()
            spec_loss = stft_loss(output, wave)
            loss = config.mel_weight * mel_loss + config.stft_weight * spec_loss
            losses = {"loss": loss, "mel": mel_loss, "stft": spec_loss}
            if config.comb_weight:
                losses["comb"] = comb_loss(output, wave)
                loss = losses["loss"] = loss + config.comb_weight * losses["comb"]
            if not torch.isfinite(loss):
                raise RuntimeError(f"loss became {loss.item()} at step {step}; "
                                   "lower --lr and resume from the last checkpoint")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            step += 1
            for key, value in losses.items():
                running[key] = running.get(key, 0.0) + value.item()
            bar.update(1)
            if step % config.log_every == 0:
                record = {k: round(v / config.log_every, 4) for k, v in running.items()}
                running = {}
                elapsed = time.time() - started
                _log(out_dir, {"event": "train", "step": step, "lr": learning_rate(config, step),
                               "elapsed_s": round(elapsed, 1), **record})
                bar.set_postfix(mel=record["mel"], stft=record["stft"])
            if step % config.validate_every == 0 and valid_waves:
                score = validate(model, mel_fn, valid_waves)
                _log(out_dir, {"event": "validate", "step": step, "heldout_mel_l1": score})
                bar.write(f"step {step}: held-out mel L1 {score:.4f}")
            if step % config.checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        _log(out_dir, {"event": "interrupted", "step": step})
        raise
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
    checkpoint()
    _log(out_dir, {"event": "done", "step": step})
    return out_dir / CHECKPOINT
