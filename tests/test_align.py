import numpy as np
import pytest

from avgen.align import gaussian_log_likelihood, monotonic_alignment_search


def _constructed(durations, dim=8, noise=0.3, seed=0):
    """Frames drawn around one mean per token, for a known alignment."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(durations), dim)) * 2.0
    frames = np.repeat(means, durations, axis=0) + noise * rng.normal(size=(sum(durations), dim))
    return means, frames


def test_recovers_a_known_alignment():
    durations = np.array([3, 1, 7, 2, 5, 1, 4])
    means, frames = _constructed(durations)
    log_p = gaussian_log_likelihood(means[None], frames[None])[0]
    assert log_p.shape == (len(durations), durations.sum())
    assert (monotonic_alignment_search(log_p) == durations).all()


def test_batch_with_padding_matches_single_items():
    cases = [np.array([2, 4, 1, 3]), np.array([5, 1, 1, 6, 2, 2]), np.array([1, 1, 9])]
    n, t = max(len(c) for c in cases), max(c.sum() for c in cases)
    mu, x = np.zeros((3, n, 8)), np.zeros((3, t, 8))
    for b, d in enumerate(cases):
        means, frames = _constructed(d, seed=b)
        mu[b, :len(d)], x[b, :d.sum()] = means, frames
    log_p = gaussian_log_likelihood(mu, x)
    out = monotonic_alignment_search(log_p, np.array([len(c) for c in cases]),
                                     np.array([c.sum() for c in cases]))
    for b, d in enumerate(cases):
        assert (out[b, :len(d)] == d).all() and (out[b, len(d):] == 0).all()


def test_path_is_monotonic_and_covers_every_frame():
    rng = np.random.default_rng(1)
    log_p = rng.normal(size=(6, 40))  # no structure: any answer must still be a valid path
    d = monotonic_alignment_search(log_p)
    assert d.sum() == 40 and (d >= 1).all()
    # and it is the best path: brute force over a small case
    small = rng.normal(size=(3, 6))
    best = max(((a, b, 6 - a - b) for a in range(1, 5) for b in range(1, 6 - a)),
               key=lambda dd: sum(small[i, t] for i, t in zip(
                   np.repeat(np.arange(3), dd), range(6))))
    assert tuple(monotonic_alignment_search(small)) == best


def test_too_few_frames_is_an_error():
    with pytest.raises(ValueError, match="cannot hold"):
        monotonic_alignment_search(np.zeros((5, 3)))
