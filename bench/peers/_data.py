"""The benchmark's input: one fixed batch of standard-normal sequences."""

from __future__ import annotations

import numpy as np


def batch(cfg, seed: int = 0) -> np.ndarray:
    """[B, T, F] float32, the same for every implementation."""
    return np.random.default_rng(seed).standard_normal((cfg.batch, cfg.steps, cfg.features), dtype=np.float32)
