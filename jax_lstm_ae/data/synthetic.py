"""Built-in synthetic data sets: ``synthetic("moving_one")``, ``"moving_one_keras"``, ``"sines"``."""

from __future__ import annotations

import math

import numpy as np

from jax_lstm_ae.data.core import Dataset, DataError, _as_dataset


def _moving_one(n: int, seed: int, width: int = 10, max_len: int = 10) -> Dataset:
    """One-hot rows [T, F=width] whose 1 moves one position per step (start and
    direction random), lengths 1..max_len, post-padded. Binary data: use the
    sigmoid head (binary cross-entropy). Lengths start at 1 here; the Keras
    question's own generator, empty sequences included, is ``moving_one_keras``."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, n).astype(np.int32)
    start = rng.integers(0, width, n)
    direction = rng.choice([-1, 1], n)
    t = np.arange(max_len)
    pos = (start[:, None] + direction[:, None] * t[None, :]) % width  # [N, T]
    x = (pos[..., None] == np.arange(width)[None, None, :]).astype(np.float32)
    return _as_dataset(x, lengths, labels=(direction > 0).astype(np.int64))


def _moving_one_keras(n: int, seed: int) -> Dataset:
    """The moving-ones generator of the Keras LSTM-autoencoder question, as
    written: sequence i has ``round(uniform(0, 10))`` steps (so about 5 % are
    empty), step t is one-hot at position t for t < 8 and all zeros for t = 8,
    9; F = 8, post-padded to T = 10. Binary data: the sigmoid head, or the
    identity head with ``loss="bce"`` as in that question's Keras model."""
    rng = np.random.default_rng(seed)
    lengths = np.round(rng.uniform(0, 10, n)).astype(np.int32)  # half to even, as Python's round
    t = np.arange(10)
    rows = (t[:, None] == np.arange(8)[None, :]).astype(np.float32)  # [T, F]: row 8 and 9 are zeros
    x = np.broadcast_to(rows, (n, 10, 8))
    return _as_dataset(x, lengths)


def _sines(n: int, seed: int, steps: int = 32, channels: int = 3, anomaly_rate: float = 0.1) -> Dataset:
    """Noisy multi-channel sines: one random frequency and phase per sequence,
    channel c shifted by c * pi / 3 and scaled by 1 - 0.2 c, noise sd 0.05.
    ``labels`` mark the ~10 % with an injected anomaly on one channel: a
    spike, a level shift or a burst of a faster oscillation."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None]
    c = np.arange(channels)[None, None, :]
    freq = rng.uniform(0.04, 0.1, (n, 1, 1))
    phase = rng.uniform(0, 2 * math.pi, (n, 1, 1))
    x = (1 - 0.2 * c) * np.sin(2 * math.pi * freq * t + phase + c * math.pi / 3)
    x = x + 0.05 * rng.standard_normal((n, steps, channels))
    labels = (rng.random(n) < anomaly_rate).astype(np.int64)
    for i in np.flatnonzero(labels):
        ch, at = rng.integers(channels), rng.integers(4, steps - 10)
        kind = rng.integers(3)
        if kind == 0:
            x[i, at, ch] += rng.choice([-1, 1]) * 3.0
        elif kind == 1:
            x[i, at:, ch] += rng.choice([-1, 1]) * 1.5
        else:
            x[i, at : at + 8, ch] = np.sin(np.arange(8) * 2.5)
    return _as_dataset(x.astype(np.float32), np.full((n,), steps, np.int32), labels)


SYNTHETIC = {"moving_one": _moving_one, "moving_one_keras": _moving_one_keras, "sines": _sines}


def synthetic(name: str, *, n: int | None = None, seed: int = 0) -> Dataset:
    """Built-in data sets: ``moving_one`` (binary, variable length, T=10, F=10),
    ``moving_one_keras`` (the Keras question's generator: binary, lengths 0-10,
    T=10, F=8, default n=5000) and ``sines`` (real, T=32, F=3, labels mark
    injected anomalies)."""
    key = name.replace("-", "_")
    if key not in SYNTHETIC:
        raise DataError(f"unknown synthetic data set {name!r}; choose one of {', '.join(SYNTHETIC)}")
    default_n = {"moving_one": 512, "moving_one_keras": 5000, "sines": 512}[key]
    return SYNTHETIC[key](default_n if n is None else int(n), int(seed))
