"""Training the text-to-tokens model (`avgen train tokens`).

Data comes in two kinds:
  - a teacher corpus (`avgen train corpus`): exact per-entry durations, used directly;
  - a folder of recordings, `NAME.wav` (22050 Hz) + `NAME.txt` (its words): text and
    audio but no durations. Their durations come from Monotonic Alignment Search of the
    model's own mel prior against the recording's log-mel (Glow-TTS / Matcha-TTS), redone
    every step as the prior improves. `align=True` forces this path on a corpus too.

Training is resumable: `out/state.pt` (model, optimiser, step, RNG) is rewritten
atomically every `checkpoint_every` steps together with `out/text_to_tokens.safetensors`
(the model alone, loadable by `avgen tokens --checkpoint`); rerunning the same command
continues from there. `out/train.log` gets one JSON line per log interval. The same
seed gives the same batches and the same model.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from avgen import formats
from avgen.align import gaussian_log_likelihood, monotonic_alignment_search
from avgen.errors import AvgenError, InputError
from avgen.model.text_to_tokens import (Entries, TextToTokens, TextToTokensConfig,
                                        collate_entries, length_regulate, phrases_to_entries,
                                        save_checkpoint)
from avgen.text.symbols import SILENCE_ID
from avgen.train.schedule import cosine_schedule

STATE = "state.pt"
CHECKPOINT = "text_to_tokens.safetensors"
LOG = "train.log"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup: int = 200
    seed: int = 0
    align: bool = False  # MAS durations even where exact ones exist
    prior_weight: float = 0.1
    length_weight: float = 1.0
    flow_weight: float = 1.0
    # Frames per utterance the frame-level losses see (a random window): the decoder is
    # local (conv), and whole utterances padded to the longest cost 3x the compute.
    crop: int = 128
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 400
    max_eval: int = 128
    threads: int = 1


@dataclass(frozen=True)
class Item:
    """One training utterance: entries (N,), durations (N,) frames or None (then MAS),
    log-mel (T, 80) or None (only needed for MAS and the prior loss)."""

    key: str
    entries: Entries
    durations: np.ndarray | None
    mel: np.ndarray | None
    heldout: bool


# ---------------------------------------------------------------------- data

def _pack_entries(items: list[tuple[str, Entries]]) -> bytes:
    keys = [k for k, _ in items]
    fields = ("symbols", "places", "punctuation", "last", "phone_of", "phrase_of")
    arrays = {f: np.concatenate([getattr(e, f) for _, e in items]) for f in fields}
    arrays["counts"] = np.array([len(e) for _, e in items], np.int64)
    arrays["keys"] = formats.string_array(keys)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _unpack_entries(path: Path) -> dict[str, Entries]:
    with np.load(path, allow_pickle=False) as data:
        bounds = np.concatenate([[0], np.cumsum(data["counts"])])
        fields = ("symbols", "places", "punctuation", "last", "phone_of", "phrase_of")
        columns = {f: data[f] for f in fields}
        return {str(key): Entries(*(columns[f][bounds[k]:bounds[k + 1]] for f in fields))
                for k, key in enumerate(data["keys"])}


def corpus_items(root: str | Path, cache: Path | None = None, with_mel: bool = True,
                 progress: Callable[[int], None] | None = None) -> tuple[list[Item], int]:
    """Teacher-corpus utterances as items (edge silences cut off) and the number skipped
    because the frontend no longer reproduces their symbols (a changed phonemizer)."""
    from avgen.text.phrases import to_phrases
    from avgen.train.corpus import CorpusConfig, is_heldout, load_features, load_utterances

    root = Path(root)
    if not (root / "utterances").is_dir():
        raise InputError("not a teacher corpus (no utterances/ folder)", str(root))
    config_path = root / "config.json"
    corpus_config = CorpusConfig()
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        # only the fields this avgen knows: newer corpora may record more settings
        known = {f.name for f in dataclasses.fields(CorpusConfig)}
        corpus_config = CorpusConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in saved.items() if k in known})
    utterances = load_utterances(root)
    entries: dict[str, Entries] = {}
    if cache is not None and cache.exists():
        entries = _unpack_entries(cache)
    missing = [u for u in utterances if str(u.index) not in entries]
    for u in missing:
        entries[str(u.index)] = phrases_to_entries(to_phrases(u.text))
        if progress:
            progress(1)
    if missing and cache is not None:
        formats.atomic_write_bytes(cache, _pack_entries(sorted(entries.items())))
    mel = offsets = None
    if with_mel and (root / "features").is_dir():
        mel, _, offsets = load_features(root)
    items, skipped = [], 0
    for k, u in enumerate(utterances):
        e = entries[str(u.index)]
        ids, durations = u.symbol_ids, u.durations
        lead = int(ids[0] == SILENCE_ID)
        tail = int(ids[-1] == SILENCE_ID)
        inner = slice(lead, len(ids) - tail)
        if len(ids[inner]) != len(e) or (ids[inner] != e.symbols).any():
            skipped += 1
            continue
        item_mel = None
        if mel is not None:
            start = offsets[k] + (durations[0] if lead else 0)
            item_mel = mel[start:start + durations[inner].sum()]
        items.append(Item(str(u.index), e, durations[inner].astype(np.int64), item_mel,
                          is_heldout(u.index, corpus_config)))
    return items, skipped


def recording_items(folder: str | Path, progress=None) -> list[Item]:
    """`NAME.wav` + `NAME.txt` pairs -> items without durations (trimmed log-mel)."""
    import soundfile

    from avgen.audio.mel import log_mel
    from avgen.constants import SAMPLE_RATE
    from avgen.text.phrases import to_phrases

    folder = Path(folder)
    wavs = sorted(folder.glob("*.wav"))
    if not wavs:
        raise InputError("no NAME.wav + NAME.txt recordings found", str(folder))
    items = []
    for k, wav in enumerate(wavs):
        text_path = wav.with_suffix(".txt")
        if not text_path.exists():
            raise InputError(f"recording has no transcript {text_path.name}", str(wav))
        try:
            audio, rate = soundfile.read(wav, dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise InputError(f"not a readable audio file ({exc})", str(wav)) from None
        if rate != SAMPLE_RATE:
            raise InputError(f"sample rate is {rate} Hz; resample to {SAMPLE_RATE} Hz", str(wav))
        mel = log_mel(audio.mean(1)).T  # (T, 80)
        # Leading and trailing silence are the timeline's business, not the model's.
        loud = mel.mean(1) > mel.mean(1).max() - 5.0
        first, last = int(np.argmax(loud)), len(loud) - int(np.argmax(loud[::-1]))
        text = text_path.read_text(encoding="utf-8").strip()
        entries = phrases_to_entries(to_phrases(text, str(text_path), 1), str(text_path), 1)
        if last - first < len(entries):
            raise InputError(f"{last - first} frames of speech cannot hold {len(entries)} "
                             "phonemes; is this the right transcript?", str(wav))
        items.append(Item(wav.stem, entries, None, mel[first:last].astype(np.float16),
                          k % 50 == 0))
        if progress:
            progress(1)
    return items


# ---------------------------------------------------------------------- batches

def make_batch(items: list[Item]) -> dict[str, torch.Tensor]:
    batch = collate_entries([i.entries for i in items])
    if all(i.durations is not None for i in items):
        d = torch.zeros(batch["mask"].shape, dtype=torch.long)
        for b, i in enumerate(items):
            d[b, :len(i.durations)] = torch.from_numpy(i.durations)
        batch["durations"] = d
    if all(i.mel is not None for i in items):
        t = max(len(i.mel) for i in items)
        mel = torch.zeros(len(items), t, items[0].mel.shape[1])
        frames = torch.zeros(len(items), dtype=torch.long)
        for b, i in enumerate(items):
            mel[b, :len(i.mel)] = torch.from_numpy(i.mel.astype(np.float32))
            frames[b] = len(i.mel)
        batch["mel"], batch["mel_frames"] = mel, frames
    return batch


def align_batch(model: TextToTokens, h: torch.Tensor, batch: dict) -> torch.Tensor:
    """MAS durations (B, N) of the batch's mels against the model's mel prior."""
    with torch.no_grad():
        mu = model.mel_prior(h).double().numpy()
    log_p = gaussian_log_likelihood(mu, batch["mel"].double().numpy())
    d = monotonic_alignment_search(log_p, batch["mask"].sum(1).numpy(),
                                   batch["mel_frames"].numpy())
    return torch.from_numpy(d)


def losses(model: TextToTokens, batch: dict, config: TrainConfig,
           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    mask = batch["mask"]
    h, log_d = model.encode(batch)
    if config.align or "durations" not in batch:
        if "mel" not in batch:
            raise AvgenError("data without durations needs audio features for alignment")
        durations = align_batch(model, h, batch)
    else:
        durations = batch["durations"]
    fmask = mask.float()
    target = torch.log(durations.clamp(min=1).float())
    out = {"duration": (((log_d - target) ** 2) * fmask).sum() / fmask.sum()}
    # The utterance length is what a listener notices; per-entry log errors alone let it drift.
    pred_len = (torch.exp(log_d) * fmask).sum(1)
    true_len = (durations * mask).sum(1).float()
    out["length"] = ((torch.log(pred_len) - torch.log(true_len)) ** 2).mean()
    index, progress, frame_mask = length_regulate(durations, mask)
    frame_count = frame_mask.sum(1)
    window = min(config.crop, index.shape[1])
    starts = (torch.rand(len(index), generator=generator)
              * (frame_count - window + 1).clamp(min=1)).long()
    cols = starts[:, None] + torch.arange(window)[None]
    cols = cols.clamp(max=index.shape[1] - 1)
    index, progress = index.gather(1, cols), progress.gather(1, cols)
    frame_mask = frame_mask.gather(1, cols) & (cols < frame_count[:, None])
    feats = model.features_at(h, index, progress, frame_mask)
    ids = batch["symbols"].gather(1, index)
    logits = model.direct_logits(feats, frame_mask)
    ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
    ffm = frame_mask.float()
    out["tokens"] = (ce * ffm).sum() / ffm.sum()
    out["flow"] = model.flow_loss(feats.detach(), ids, frame_mask, generator)
    if "mel" in batch:
        mu = model.mel_prior(h).gather(1, index[..., None].expand(-1, -1, model.config.n_mels))
        # a MAS- or teacher-timed frame always exists in the mel (durations sum to its length)
        mel = batch["mel"].gather(1, cols.clamp(max=batch["mel"].shape[1] - 1)[..., None]
                                  .expand(-1, -1, mu.shape[-1]))
        err = ((mu - mel) ** 2).mean(-1) * ffm
        out["prior"] = 0.5 * err.sum() / ffm.sum()
    out["total"] = (out["duration"] + config.length_weight * out["length"] + out["tokens"]
                    + config.flow_weight * out["flow"]
                    + config.prior_weight * out.get("prior", torch.zeros(())))
    return out


# ---------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: TextToTokens, items: list[Item], batch_size: int = 32,
             flow: bool = False) -> dict[str, float]:
    """Held-out figures against exact durations: duration MAE per phone and per break
    (frames), mean absolute utterance length error (%), frame accuracy of the argmax of
    the direct head (and the flow head when `flow`) laid out on the teacher durations."""
    model.eval()
    phone_err, break_err, len_err = [], [], []
    correct = {"direct": 0, "flow": 0}
    frames = 0
    generator = torch.Generator().manual_seed(0)
    for k in range(0, len(items), batch_size):
        group = items[k:k + batch_size]
        batch = make_batch(group)
        h, log_d = model.encode(batch)
        pred = torch.exp(log_d).numpy()
        for b, item in enumerate(group):
            n = len(item.entries)
            err = np.abs(pred[b, :n] - item.durations)
            is_break = item.entries.symbols == SILENCE_ID
            phone_err.append(err[~is_break])
            break_err.append(err[is_break])
            len_err.append(abs(pred[b, :n].sum() / item.durations.sum() - 1.0))
        feats, index, frame_mask = model.frame_features(h, batch["durations"], batch["mask"])
        ids = batch["symbols"].gather(1, index)
        heads = {"direct": model.direct_logits(feats, frame_mask)}
        if flow:
            heads["flow"] = model.flow_sample(feats, frame_mask, model.config.flow_steps,
                                              generator)
        for name, logits in heads.items():
            correct[name] += int(((logits.argmax(-1) == ids) & frame_mask).sum())
        frames += int(frame_mask.sum())
    model.train()
    out = {"phone_mae": float(np.concatenate(phone_err).mean()),
           "break_mae": float(np.concatenate(break_err).mean()) if break_err else 0.0,
           "length_error": float(np.mean(len_err)),
           "frame_acc_direct": correct["direct"] / max(frames, 1)}
    if flow:
        out["frame_acc_flow"] = correct["flow"] / max(frames, 1)
    return out


# ---------------------------------------------------------------------- loop

def _lr(step: int, config: TrainConfig) -> float:
    return cosine_schedule(step, config.learning_rate, config.steps, config.warmup,
                           floor=0.1 * config.learning_rate)


def _atomic_torch_save(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    formats.atomic_write_bytes(path, buffer.getvalue())


def train(items: list[Item], out_dir: str | Path, config: TrainConfig = TrainConfig(),
          model_config: TextToTokensConfig = TextToTokensConfig(), progress=None,
          log: Callable[[str], None] | None = None, data_note: str = "",
          init: str | Path | None = None) -> Path:
    """Train (or resume) on `items`; never on held-out ones. Returns the checkpoint path.
    `init`: a checkpoint whose weights (and model config) a fresh run starts from, e.g.
    the shipped model fine-tuned on recordings through MAS."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    train_items = [i for i in items if not i.heldout]
    heldout = [i for i in items if i.heldout and i.durations is not None][:config.max_eval]
    if not train_items:
        raise InputError("no training utterances (all held out?)", str(out))
    if any(i.durations is None for i in train_items) or config.align:
        if any(i.mel is None for i in train_items):
            raise InputError("some utterances have neither durations nor audio features; "
                             "build the corpus features first", str(out))
    torch.manual_seed(config.seed)
    start_weights = None
    if init is not None:
        from avgen.model.text_to_tokens import load_checkpoint

        start = load_checkpoint(init)
        model_config, start_weights = start.config, start.state_dict()
    model = TextToTokens(model_config)
    if start_weights is not None:
        model.load_state_dict(start_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=0.01)
    step = 0
    state_path = out / STATE
    meta_path = out / "train_config.json"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        saved = state["configs"]
        if saved["model"] != asdict(model_config):
            raise InputError("holds a run with another model config; use another folder",
                             str(out))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
    else:
        rng = np.random.default_rng(config.seed)
    formats.atomic_write_bytes(meta_path, (json.dumps(
        {"train": asdict(config), "model": asdict(model_config), "data": data_note},
        indent=2) + "\n").encode())
    model.train()
    started = time.time()
    running: dict[str, float] = {}
    if progress:
        progress(step)
    while step < config.steps:
        chosen = rng.choice(len(train_items), size=min(config.batch_size, len(train_items)),
                            replace=False)
        batch = make_batch([train_items[k] for k in chosen])
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        parts = losses(model, batch, config)
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        for key, value in parts.items():
            running[key] = running.get(key, 0.0) + float(value.detach())
        if progress:
            progress(1)
        record = None
        if step % config.log_every == 0 or step == config.steps:
            count = config.log_every if step % config.log_every == 0 else step % config.log_every
            record = {"step": step, "seconds": round(time.time() - started, 1),
                      "lr": _lr(step - 1, config),
                      **{k: round(v / count, 4) for k, v in running.items()}}
            running = {}
        if heldout and (step % config.eval_every == 0 or step == config.steps):
            record = record or {"step": step}
            record.update({f"eval_{k}": round(v, 4) for k, v in evaluate(
                model, heldout, flow=step == config.steps).items()})
        if record is not None:
            line = json.dumps(record)
            with open(out / LOG, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
            if log:
                log(line)
        if step % config.checkpoint_every == 0 or step == config.steps:
            _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "step": step, "numpy_rng": rng.bit_generator.state,
                                "torch_rng": torch.get_rng_state(),
                                "configs": {"train": asdict(config),
                                            "model": asdict(model_config)}}, state_path)
            save_checkpoint(model.eval(), out / CHECKPOINT,
                            {"step": step, "seed": config.seed, "data": data_note})
            model.train()
    return out / CHECKPOINT
