"""wav2vec2-style CTC posteriors -> avgen `token_logits (T, V)` on the 86.13 fps clock.

For people without a transcript, `avgen prepare --ctc-model DIR` runs a CTC acoustic model
(`transformers`' AutoModelForCTC: wav2vec2, HuBERT, ...) from a local folder
(`save_pretrained` layout: config.json, model.safetensors or pytorch_model.bin, vocab.json;
preprocessor_config.json optional). Nothing is downloaded (`local_files_only=True`).

The CTC vocabulary is mapped onto avgen's symbol table, so prepared tokens feed the same
model input as text-derived ones (and a checkpoint trained on teacher data can be
fine-tuned on them):
  - the blank (pad) token, `<s>`, `</s>`, `<unk>`, the word delimiter `|` and
    punctuation -> silence (`_`);
  - an IPA phone the table has (phoneme CTC models, e.g. espeak-phoneme wav2vec2) -> that
    symbol, unstressed; a glued phone the table can split -> its first piece;
  - a single Latin letter (character CTC models, e.g. English wav2vec2-base-960h) -> a
    rough phone for it (`LETTER_PHONES`: a -> æ, c -> k, ...); letters are not phones, so
    this is a coarse stand-in;
  - anything else is left out: its probability is dropped and the rest renormalised; the
    names of such tokens are returned so `prepare` records them.
CTC posteriors are peaky (one frame per phone, blank in between), while avgen tokens hold
a phone over its whole duration; so each frame's non-blank distribution is held through
the blank frames that follow it (a frame mixes its own non-blank part, weight 1 - p(blank),
with the held one). Frames are mapped to the model clock by nearest CTC frame, frames the
voice-activity detector calls silent are silence, and the result is label-smoothed like
`avgen.text.timeline.one_hot_log_probs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from avgen.errors import InputError
from avgen.text.symbols import NUM_SYMBOLS, SILENCE_ID, SYMBOLS, split_phone, symbol_id
from avgen.text.timeline import TOKEN_SMOOTHING

LETTER_PHONES = {
    "a": "æ", "b": "b", "c": "k", "d": "d", "e": "ɛ", "f": "f", "g": "ɡ", "h": "h", "i": "ɪ",
    "j": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "o": "ɑ", "p": "p", "q": "k", "r": "ɹ",
    "s": "s", "t": "t", "u": "ʌ", "v": "v", "w": "w", "x": "k", "y": "j", "z": "z",
}
SILENT_TOKENS = {"<pad>", "<s>", "</s>", "<unk>", "|", " ", "'", "-", ".", ",", "?", "!",
                 "[pad]", "[unk]", "<blank>"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class CtcConfig:
    chunk_seconds: float = 20.0    # audio is run in chunks (attention is quadratic) ...
    context_seconds: float = 1.0   # ... each seeing this much more on both sides
    smoothing: float = TOKEN_SMOOTHING  # label smoothing, as one_hot_log_probs


def check_model_dir(path: str | Path) -> Path:
    """The folder if it holds a CTC model avgen can load; InputError saying what is
    missing otherwise."""
    path = Path(path)
    source = str(path)
    if not path.is_dir():
        raise InputError("the --ctc-model folder does not exist", source)
    if not (path / "config.json").is_file():
        raise InputError("no config.json: not a transformers model folder (save one with "
                         "model.save_pretrained(DIR))", source)
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise InputError(f"no weights ({' or '.join(WEIGHT_FILES[:2])})", source)
    if not (path / "vocab.json").is_file():
        raise InputError("no vocab.json: the CTC vocabulary is needed to map its outputs "
                         "to phonemes (save it with processor.save_pretrained(DIR))", source)
    return path


def _symbol_for(token: str) -> int | None:
    """avgen symbol id for one CTC token, or None if it has no counterpart."""
    if token.lower() in SILENT_TOKENS or not token.strip():
        return SILENCE_ID
    bare = token.strip().lstrip("ˈˌ")
    for candidate in (bare, bare.replace("ː", "")):
        if candidate in SYMBOLS:
            return symbol_id(candidate)
        pieces = split_phone(candidate) if candidate else None
        if pieces:
            return symbol_id(pieces[0])
    if len(bare) == 1 and bare.lower() in LETTER_PHONES:
        return symbol_id(LETTER_PHONES[bare.lower()])
    return None


def vocabulary_map(vocab: dict[str, int], size: int) -> tuple[np.ndarray, list[str]]:
    """(mapping (size, V) 0/1 from CTC ids to avgen symbols, tokens left out)."""
    mapping = np.zeros((size, NUM_SYMBOLS), np.float32)
    left_out = []
    for token, index in vocab.items():
        if not 0 <= index < size:
            continue
        sid = _symbol_for(token)
        if sid is None:
            left_out.append(token)
        else:
            mapping[index, sid] = 1.0
    return mapping, sorted(left_out)


class CtcTokens:
    """A loaded CTC model: `token_logits(wave, speech)` -> (T, V) log-probs."""

    def __init__(self, model_dir: str | Path, config: CtcConfig = CtcConfig()) -> None:
        path = check_model_dir(model_dir)
        try:
            from transformers import AutoModelForCTC
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise InputError(f"the wav2vec2 path needs transformers ({exc}); install it with "
                             "pip install 'avgen[prepare]'", "--ctc-model") from None
        hf_logging.disable_progress_bar()  # prepare has its own bar
        try:
            self.model = AutoModelForCTC.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"cannot load the CTC model ({reason})", str(path)) from None
        self.model.eval()
        self.config = config
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        if not all(isinstance(v, int) for v in vocab.values()):
            raise InputError("vocab.json must map tokens to ids (one flat table)", str(path))
        c = self.model.config
        self.blank = c.pad_token_id if c.pad_token_id is not None else vocab.get("<pad>", 0)
        self.mapping, self.left_out = vocabulary_map(vocab, c.vocab_size)
        pre = path / "preprocessor_config.json"
        settings = json.loads(pre.read_text()) if pre.is_file() else {}
        self.sample_rate = int(settings.get("sampling_rate", 16000))
        self.normalize = bool(settings.get("do_normalize", True))
        self.frame_rate = self.sample_rate / float(np.prod(getattr(c, "conv_stride", (320,))))
        self.path = path

    def posteriors(self, wave: np.ndarray) -> np.ndarray:
        """CTC probabilities (Tc, Vc) of a 22050 Hz waveform (L,), at `frame_rate`."""
        import torch

        from avgen.prepare.media import resample_fft

        audio = resample_fft(wave, SAMPLE_RATE, self.sample_rate)
        chunk = int(self.config.chunk_seconds * self.sample_rate)
        context = int(self.config.context_seconds * self.sample_rate)
        total = int(np.ceil(len(audio) / self.sample_rate * self.frame_rate))
        out = np.zeros((total, self.mapping.shape[0]), np.float32)
        for start in range(0, len(audio), chunk):
            a, b = max(start - context, 0), min(start + chunk + context, len(audio))
            piece = audio[a:b]
            if self.normalize:
                piece = (piece - piece.mean()) / np.sqrt(piece.var() + 1e-7)
            with torch.no_grad():
                logits = self.model(torch.from_numpy(piece.astype(np.float32))[None]).logits[0]
            probs = torch.softmax(logits.float(), -1).numpy()
            # keep the frames of [start, start + chunk) from this run
            f0 = int(round(start / self.sample_rate * self.frame_rate))
            f1 = min(int(round(min(start + chunk, len(audio)) / self.sample_rate
                               * self.frame_rate)), total)
            offset = int(round(a / self.sample_rate * self.frame_rate))
            rows = np.arange(f0, f1) - offset
            out[f0:f1] = probs[np.clip(rows, 0, len(probs) - 1)]
        return out

    def token_logits(self, wave: np.ndarray, speech: np.ndarray) -> np.ndarray:
        """Log-probs (T, V) float32 on the model clock for a 22050 Hz waveform and the
        person's speech frames (T,)."""
        probs = self.posteriors(wave)
        blank = probs[:, self.blank].copy()
        own = probs.copy()
        own[:, self.blank] = 0.0
        mapped = own @ self.mapping  # (Tc, V): non-blank mass on avgen symbols
        held = np.zeros(NUM_SYMBOLS, np.float32)
        held[SILENCE_ID] = 1.0
        tokens = np.empty_like(mapped)
        for t in range(len(mapped)):  # hold each emission through the blanks after it
            mass = mapped[t].sum()
            current = mapped[t] / mass if mass > 1e-6 else held
            weight = min(max(1.0 - float(blank[t]), 0.0), 1.0)
            tokens[t] = weight * current + (1 - weight) * held
            if weight >= 0.5:
                held = current
        T = len(speech)
        index = np.minimum((np.arange(T) / FRAMES_PER_SECOND * self.frame_rate).astype(int),
                           len(tokens) - 1)
        frames = tokens[index]
        frames[~speech] = 0.0
        frames[~speech, SILENCE_ID] = 1.0
        s = self.config.smoothing
        frames = frames / np.maximum(frames.sum(1, keepdims=True), 1e-12)
        return np.log((1 - s) * frames + s / NUM_SYMBOLS).astype(np.float32)
