import math
from pathlib import Path

import numpy as np
import pytest

from avgen.audio.io import read_audio
from avgen.metrics.asr import edit_distance, normalize_text, word_error_rate
from avgen.metrics.audio import (MCD_SCALE, dct_matrix, dtw_path, mcd_waves,
                                 mel_cepstral_distortion, mfcc_from_log_mel)

DATA = Path(__file__).parent / "data"


def test_normalize_text():
    assert normalize_text("It's 3 o'clock—Dr. Smith's café, well-known!") == [
        "it's", "3", "o'clock", "dr", "smith's", "cafe", "well", "known"]


@pytest.mark.parametrize("ref, hyp, distance", [
    ("a b c d", "a b c d", 0), ("a b c d", "a x c d", 1), ("a b c d", "a c d", 1),
    ("a b c d", "a b b c d", 1), ("a b", "", 2), ("", "a b", 2), ("a b c", "c b a", 2),
])
def test_edit_distance(ref, hyp, distance):
    assert edit_distance(ref.split(), hyp.split()) == distance


def test_word_error_rate_is_corpus_level():
    assert word_error_rate(["The cat sat.", "a b c d e"], ["the cat sat", "a b x d"]) == \
        pytest.approx(2 / 8)
    assert word_error_rate(["Hello, world!"], ["hello world"]) == 0.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])


def test_dct_matrix_is_orthonormal_and_matches_definition():
    basis = dct_matrix(80, 80)
    assert np.allclose(basis @ basis.T, np.eye(80), atol=1e-10)
    x = np.random.default_rng(0).normal(size=80)
    k, n = 3, np.arange(80)
    expected = math.sqrt(2 / 80) * np.sum(x * np.cos(np.pi * k * (2 * n + 1) / 160))
    assert (basis @ x)[k] == pytest.approx(expected)


def test_dtw_path_follows_the_cheap_cells():
    cost = np.ones((3, 4))
    for i, j in [(0, 0), (1, 1), (1, 2), (2, 3)]:
        cost[i, j] = 0
    assert dtw_path(cost) == [(0, 0), (1, 1), (1, 2), (2, 3)]


def test_mcd_of_identical_and_time_stretched_copies_is_zero():
    mel = np.random.default_rng(1).normal(size=(40, 80))
    assert mel_cepstral_distortion(mel, mel) == pytest.approx(0.0, abs=1e-9)
    stretched = np.repeat(mel, 2, axis=0)  # every frame twice: DTW absorbs the timing
    assert mel_cepstral_distortion(mel, stretched) == pytest.approx(0.0, abs=1e-9)


def test_mcd_of_a_known_cepstral_offset():
    rng = np.random.default_rng(2)
    mel = rng.normal(size=(30, 80))
    basis = dct_matrix(80, 80)
    delta = np.zeros(80)
    delta[2], delta[5] = 0.3, -0.4  # change c2 and c5 only: |d| = 0.5
    shifted = mel + basis.T @ delta  # add in the cepstral domain
    assert np.allclose(mfcc_from_log_mel(shifted) - mfcc_from_log_mel(mel),
                       delta[1:14][None], atol=1e-9)
    assert mel_cepstral_distortion(mel, shifted) == pytest.approx(MCD_SCALE * 0.5, rel=1e-6)
    # a gain change moves only c0, which MCD leaves out
    assert mel_cepstral_distortion(mel, mel + 1.0) == pytest.approx(0.0, abs=1e-9)


def test_mcd_grows_with_distortion():
    wave = read_audio(DATA / "speech.flac")
    noise = np.random.default_rng(0).standard_normal(len(wave)).astype(np.float32)
    small = mcd_waves(wave, wave + 0.003 * noise)
    large = mcd_waves(wave, wave + 0.03 * noise)
    assert 0 < small < large


def test_whisper_tiny_en_transcribes_the_fixture_and_the_shipped_vocoder_output(whisper):
    """The teacher sentence is heard word for word, and still after the shipped vocoder
    (today: 0 of 9 words wrong both ways). Whisper also hears an untrained vocoder's
    whisper-like output (its magnitude prior keeps the envelope), so the spectral test in
    test_vocoders is what tells a trained vocoder from an untrained one."""
    from avgen.audio.mel import log_mel
    from avgen.audio.vocoder import load_vocoder, vocode

    text = (DATA / "speech.txt").read_text()
    wave = read_audio(DATA / "speech.flac")
    asr = whisper
    assert word_error_rate([text], [asr.transcribe(wave)]) == 0.0
    vocoded = vocode(load_vocoder("vocos"), log_mel(wave).T)
    assert word_error_rate([text], [asr.transcribe(vocoded)]) <= 1 / 9


def test_frame_rate_buzz_is_near_zero_for_speech_and_high_for_a_frame_clock_click():
    from avgen.metrics.audio import frame_rate_buzz
    from test_audio_mel import speechlike

    wave = speechlike(3.0, seed=1)  # harmonics of a pitch that wanders 110-170 Hz
    t = np.arange(len(wave)) / 22050
    # a faint steady buzz (its peaks a tenth of the speech's) on every 86.13 Hz harmonic
    buzz = 0.003 * sum(np.sin(2 * np.pi * k * 22050 / 256 * t + k) for k in range(1, 47))
    assert abs(frame_rate_buzz(wave)) < 2.0
    assert frame_rate_buzz(wave + buzz) > 6.0
    with pytest.raises(ValueError):
        frame_rate_buzz(wave[:1000])
