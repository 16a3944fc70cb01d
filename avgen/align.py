"""Monotonic Alignment Search (Glow-TTS / Matcha-TTS) for data without durations.

Given a score `log_p[i, t]` of token i emitting frame t, MAS finds the monotonic,
surjective path (every frame belongs to exactly one token, tokens in order, each token at
least one frame) with the highest total score, by dynamic programming:

    Q[i, t] = log_p[i, t] + max(Q[i, t-1], Q[i-1, t-1])

The loop runs over frames; each step is vectorised over tokens and over the batch, so a
batch of 32 utterances x 400 frames aligns in well under a second in numpy.
"""

from __future__ import annotations

import numpy as np

_NEG = -1e30


def monotonic_alignment_search(log_p: np.ndarray, token_lengths: np.ndarray | None = None,
                               frame_lengths: np.ndarray | None = None) -> np.ndarray:
    """Durations of the best monotonic alignment.

    log_p: (B, N, T) scores (or (N, T) for one utterance); token_lengths (B,) and
    frame_lengths (B,) give each item's valid N_b <= N and T_b <= T (default: all).
    Returns durations (B, N) int64 (or (N,)), each item's first N_b entries >= 1 and
    summing to T_b, zeros after. ValueError if some T_b < N_b (no such path exists).
    """
    single = log_p.ndim == 2
    if single:
        log_p = log_p[None]
    log_p = np.asarray(log_p, dtype=np.float64)
    batch, n, t_max = log_p.shape
    nl = np.full(batch, n, np.int64) if token_lengths is None else np.asarray(token_lengths)
    tl = np.full(batch, t_max, np.int64) if frame_lengths is None else np.asarray(frame_lengths)
    if (tl < nl).any():
        k = int(np.argmax(tl < nl))
        raise ValueError(f"item {k}: {tl[k]} frames cannot hold {nl[k]} tokens")
    token = np.arange(n)
    valid_token = token[None, :] < nl[:, None]  # (B, N)
    q = np.full((batch, n), _NEG)
    q[:, 0] = log_p[:, 0, 0]
    # came_from_previous[b, t, i]: at frame t, token i was entered from token i-1
    came_from_previous = np.zeros((batch, t_max, n), dtype=bool)
    for t in range(1, t_max):
        stay = q
        advance = np.concatenate([np.full((batch, 1), _NEG), q[:, :-1]], axis=1)
        take = advance > stay
        q_new = np.where(take, advance, stay) + log_p[:, :, t]
        # A token can only be reached by frame t if i <= t; frames past an item's end freeze.
        reachable = (token[None, :] <= t) & valid_token
        q_new = np.where(reachable, q_new, _NEG)
        active = (t < tl)[:, None]
        q = np.where(active, q_new, q)
        came_from_previous[:, t] = take & active
    durations = np.zeros((batch, n), np.int64)
    for b in range(batch):
        i = nl[b] - 1
        for t in range(tl[b] - 1, -1, -1):
            durations[b, i] += 1
            if t > 0 and came_from_previous[b, t, i]:
                i -= 1
        if i != 0:  # cannot happen when T_b >= N_b; guard against a silent wrong answer
            raise RuntimeError("monotonic alignment search did not end on the first token")
    return durations[0] if single else durations


def gaussian_log_likelihood(mu: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """log N(frames[t]; mu[i], I) up to a constant: (B, N, C) x (B, T, C) -> (B, N, T)."""
    sq_mu = (mu ** 2).sum(-1)[:, :, None]
    sq_x = (frames ** 2).sum(-1)[:, None, :]
    return -0.5 * (sq_mu + sq_x - 2.0 * mu @ frames.transpose(0, 2, 1))
