import numpy as np
import pytest
import torch

from avgen.audio.mel import LOG_SILENCE, MelSpectrogram, hz_to_mel, log_mel, mel_filters, mel_to_hz
from avgen.constants import FMAX, HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE


def speechlike(seconds=1.0, seed=0):
    """Harmonic tone with a vibrato and some noise: energy across the mel bands."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 30))
    return (0.3 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32)


def test_slaney_scale_round_trips_and_is_linear_below_1khz():
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    assert hz_to_mel(600.0) == pytest.approx(9.0)  # 600 / (200 / 3)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)


def test_filters_match_librosa_slaney_filters():
    librosa = pytest.importorskip("librosa")
    reference = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0,
                                    fmax=FMAX)
    ours = mel_filters()
    assert ours.shape == (N_MELS, N_FFT // 2 + 1)
    assert np.abs(ours - reference).max() < 1e-6 * np.abs(reference).max()


def test_log_mel_matches_an_independent_librosa_computation():
    """BigVGAN's recipe rebuilt from librosa/numpy pieces: reflect pad 384, uncentred
    Hann STFT, sqrt(|X|^2 + 1e-9), Slaney mel, log(clamp(., 1e-5))."""
    librosa = pytest.importorskip("librosa")
    wave = speechlike(1.3)
    pad = (N_FFT - HOP_LENGTH) // 2
    padded = np.pad(wave.astype(np.float64), (pad, pad), mode="reflect")
    spec = np.abs(librosa.stft(padded, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT,
                               window="hann", center=False))
    basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0,
                                fmax=FMAX, dtype=np.float64)
    reference = np.log(np.maximum(basis @ np.sqrt(spec ** 2 + 1e-9), 1e-5))
    ours = log_mel(wave)
    assert ours.shape == reference.shape == (N_MELS, len(wave) // HOP_LENGTH)
    assert np.abs(ours - reference).max() < 2e-3


def test_frames_and_batch_shapes():
    module = MelSpectrogram()
    wave = torch.from_numpy(speechlike(0.5))
    assert module(wave).shape == (N_MELS, len(wave) // HOP_LENGTH)
    batch = torch.stack([wave, wave * 0.5])
    out = module(batch)
    assert out.shape == (2, N_MELS, len(wave) // HOP_LENGTH)
    # halving the amplitude lowers every non-floor band by log 2
    loud = out[0] > LOG_SILENCE + 3
    assert torch.allclose((out[0] - out[1])[loud], torch.tensor(float(np.log(2.0))), atol=1e-3)


def test_a_pure_tone_lands_in_its_mel_band():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    mel = log_mel(0.5 * np.sin(2 * np.pi * 2000.0 * t))
    band = int(np.argmax(mel[:, 40]))
    edges = mel_to_hz(np.linspace(0, hz_to_mel(FMAX), N_MELS + 2))
    assert edges[band] < 2000.0 < edges[band + 2]


def test_silence_is_the_floor_and_short_input_is_refused():
    assert np.allclose(log_mel(np.zeros(2048, dtype=np.float32)), LOG_SILENCE, atol=1e-3)
    with pytest.raises(ValueError, match="too short"):
        log_mel(np.zeros(100, dtype=np.float32))
