"""Transcript -> per-frame token ids, aligned to a recording by Monotonic Alignment Search.

The text frontend (`avgen.text`) phonemises each transcript line and the text-to-tokens
model's encoder turns it into entries (phones, plus a silence entry at each punctuation
break, exactly as in training); its mel prior (B, N, 80) gives every entry a mean log-mel,
the quantity it was trained to let MAS score frames against (Glow-TTS / Matcha-TTS). A
silence entry opens and closes the transcript and separates its lines. The score of entry
i at frame t is the Gaussian log-likelihood of the frame under the entry's mean, plus the
voice-activity detector's say: a phone on a frame the detector calls silent, or a silence
entry on a speech frame, costs `vad_penalty`. MAS then finds the best monotonic path.

Real voices are not the teacher's: before scoring, each mel band of the recording's
speech frames is shifted so its mean matches the prior's mean over the phone entries
(cepstral mean normalisation against the model), which undoes level and microphone
colouring. Frames off speech get the silence token whatever the path says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, LOG_SILENCE
from avgen.errors import InputError
from avgen.text.symbols import SILENCE_ID


@dataclass(frozen=True)
class AlignConfig:
    vad_penalty: float = 30.0     # log-likelihood units; measured on teacher speech (frame
                                  # agreement with exact durations 0.74; 0.71 at 1000, 0.57
                                  # with no detector)
    max_cells: float = 6e8        # entries x frames MAS may hold in memory (bytes)


def transcript_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty, non-comment lines of a transcript file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the transcript ({exc})", str(path)) from None
    lines = [(k + 1, ln.strip()) for k, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise InputError("the transcript is empty", str(path))
    return lines


def entry_priors(model, lines: list[tuple[int, str]], source: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Symbol ids (N,) and prior mean log-mels (N, 80) of the transcript's entries, with
    a silence entry before, between and after the lines."""
    import torch

    from avgen.model.text_to_tokens import collate_entries, phrases_to_entries
    from avgen.text.phrases import to_phrases

    silence = np.full((1, model.config.n_mels), LOG_SILENCE)
    ids, means = [np.array([SILENCE_ID])], [silence]
    for number, line in lines:
        entries = phrases_to_entries(to_phrases(line, source, number), source, number)
        with torch.no_grad():
            h, _ = model.encode(collate_entries([entries]))
            mu = model.mel_prior(h)[0].double().numpy()
        ids += [entries.symbols, np.array([SILENCE_ID])]
        means += [mu, silence]
    return np.concatenate(ids).astype(np.int64), np.concatenate(means)


def align_transcript(model, lines: list[tuple[int, str]], mel: np.ndarray,
                     speech: np.ndarray, source: str,
                     config: AlignConfig = AlignConfig()) -> np.ndarray:
    """Token ids (T,) for a person's log-mel (T, 80) and speech frames (T,) bool."""
    from avgen.align import gaussian_log_likelihood, monotonic_alignment_search

    ids, mu = entry_priors(model, lines, source)
    T, N = len(mel), len(ids)
    if T < N:
        raise InputError(f"{T / FRAMES_PER_SECOND:.1f} s of audio cannot hold the {N} "
                         "phonemes of the transcript; is it the right file?", source)
    if float(T) * N > config.max_cells:
        raise InputError(f"too long to align in one piece ({T} frames x {N} phonemes); split "
                         "the item into shorter recordings (a few minutes each)", source)
    frames = np.array(mel, dtype=np.float64)
    is_phone = ids != SILENCE_ID
    if speech.any() and is_phone.any():
        frames[speech] += mu[is_phone].mean(0) - frames[speech].mean(0)
    frames[~speech] = LOG_SILENCE
    log_p = gaussian_log_likelihood(mu[None], frames[None])[0]  # (N, T)
    log_p -= config.vad_penalty * (is_phone[:, None] != speech[None, :])
    durations = monotonic_alignment_search(log_p)
    out = np.repeat(ids, durations)
    out[~speech] = SILENCE_ID
    return out


def load_aligner(checkpoint: str | Path | None = None):
    """The text-to-tokens model whose mel prior scores frames (default: shipped)."""
    from avgen.model.text_to_tokens import load_checkpoint
    from avgen.text.timeline import DEFAULT_WEIGHTS
    from avgen.weights import Weights

    path = Path(checkpoint) if checkpoint is not None else Weights().path(DEFAULT_WEIGHTS)
    return load_checkpoint(path)
