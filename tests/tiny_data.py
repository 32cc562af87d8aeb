"""Small data files the CLI tests train on."""

from pathlib import Path

import numpy as np


def write_sines_npz(path: Path) -> Path:
    """40 two-channel sines of random phase, T = 12, lengths 6-12, labels 0/1 alternating, as an .npz file."""
    rng = np.random.default_rng(0)
    t = np.arange(12)
    x = np.sin(0.5 * t[None, :, None] + rng.uniform(0, 6, (40, 1, 2))).astype(np.float32)
    np.savez(path, x=x, lengths=rng.integers(6, 13, 40), labels=np.arange(40) % 2)
    return path
