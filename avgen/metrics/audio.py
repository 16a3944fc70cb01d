"""Mel-cepstral distortion (MCD) between two utterances, aligned by DTW.

MFCCs here are the DCT-II (orthonormal) of avgen's natural-log 80-band mel (the
BigVGAN recipe, avgen.audio.mel); coefficients 1..13 are kept (c0, the frame energy, is
left out as usual, so a gain change does not count). Per aligned frame pair
MCD = (10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2) dB; the utterance score is its mean
along the DTW path that minimises the summed Euclidean cepstral distance.
"""

from __future__ import annotations

import math

import numpy as np

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)
NUM_CEPSTRA = 13


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis (n_out, n_in), as scipy.fft.dct(norm='ortho') rows."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def mfcc_from_log_mel(log_mel: np.ndarray, num_cepstra: int = NUM_CEPSTRA) -> np.ndarray:
    """Log-mel (T, n_mels) -> cepstra 1..num_cepstra (T, num_cepstra)."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    return log_mel @ dct_matrix(log_mel.shape[1], num_cepstra + 1)[1:].T


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost monotonic path through `cost` (N, M) from (0, 0) to (N-1, M-1) with
    steps (1,0), (0,1), (1,1)."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    # row by row: the diagonal and vertical moves vectorise; the horizontal one is a scan
    for i in range(1, n + 1):
        above = np.minimum(total[i - 1, 1:], total[i - 1, :-1]) + cost[i - 1]
        row = total[i]
        row[1:] = above
        for j in range(2, m + 1):
            left = row[j - 1] + cost[i - 1, j - 1]
            if left < row[j]:
                row[j] = left
    path = [(n - 1, m - 1)]
    i, j = n, m
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda ij: total[ij])
        path.append((i - 1, j - 1))
    return path[::-1]


def mel_cepstral_distortion(log_mel_ref: np.ndarray, log_mel_test: np.ndarray) -> float:
    """MCD in dB between two log-mels (T1, n_mels) and (T2, n_mels), DTW-aligned."""
    ref, test = mfcc_from_log_mel(log_mel_ref), mfcc_from_log_mel(log_mel_test)
    if len(ref) == 0 or len(test) == 0:
        raise ValueError("MCD needs at least one frame on each side")
    cost = np.sqrt(((ref[:, None, :] - test[None, :, :]) ** 2).sum(-1))
    path = dtw_path(cost)
    return float(MCD_SCALE * np.mean([cost[i, j] for i, j in path]))


def mcd_waves(reference: np.ndarray, test: np.ndarray) -> float:
    """MCD between two 22050 Hz waveforms (L,), through avgen's log-mel."""
    from avgen.audio.mel import log_mel

    return mel_cepstral_distortion(log_mel(reference).T, log_mel(test).T)


def frame_rate_buzz(wave: np.ndarray, sample_rate: int = 22050, hop_length: int = 256,
                    top_hz: float = 4000.0) -> float:
    """How far the harmonics of the frame rate (sample_rate / hop_length, 86.13 Hz) stand
    above their neighbourhood in the long-term spectrum of `wave`, in dB, averaged over
    the harmonics up to `top_hz`: about 0 for real speech, whose harmonics follow its
    pitch, not the frame clock; > 0 where a frame-by-frame vocoder leaves a buzz at the
    seams of its frames. Needs a few seconds of audio (join utterances) to be steady."""
    segment = 16384  # 1.35 Hz bins: the harmonics stand apart from speech's own
    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) < segment:
        raise ValueError(f"frame_rate_buzz needs at least {segment} samples")
    window = np.hanning(segment)
    starts = range(0, len(wave) - segment + 1, segment // 2)  # Welch: half-overlapping
    power = np.mean([np.abs(np.fft.rfft(wave[s:s + segment] * window)) ** 2
                     for s in starts], axis=0)
    power = np.maximum(power, 1e-20)
    freqs = np.fft.rfftfreq(segment, 1.0 / sample_rate)
    frame_rate = sample_rate / hop_length
    prominences = []
    for k in range(1, int(top_hz // frame_rate) + 1):
        centre = k * frame_rate
        offset = np.abs(freqs - centre)
        peak = power[offset < 2.0].max()
        side = power[(offset > 6.0) & (offset < 30.0)]
        prominences.append(10.0 * np.log10(peak / np.median(side)))
    return float(np.mean(prominences))
