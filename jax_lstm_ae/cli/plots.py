"""PNG plots for a run directory: the loss curve and inputs beside their
reconstructions. matplotlib (the ``cli`` extra) is imported lazily, with the
non-interactive Agg backend, so the library itself does not need it."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_losses(history: Sequence[dict], path) -> Path:
    """Training (and validation) loss per epoch, log scale when it spans > 10x."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["loss"] for h in history], "o-", label="train (teacher forcing if any)")
    val = [h.get("val_loss") for h in history]
    if any(v is not None for v in val):
        ax.plot(epochs, [np.nan if v is None else v for v in val], "s-", label="validation (free-running)")
    vals = [h["loss"] for h in history] + [v for v in val if v is not None]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean per-step error)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reconstructions(x: np.ndarray, recon: np.ndarray, lengths: np.ndarray, path, *, binary: bool = False) -> Path:
    """x, recon [N, T, F] (data units), lengths [N]: one row per example.

    Real data: each feature a line, input solid, reconstruction dashed.
    Binary data: input and reconstruction side by side as images (time down).
    """
    plt = _pyplot()
    n = x.shape[0]
    if binary:
        fig, axes = plt.subplots(n, 2, figsize=(5, 1.6 * n + 0.4), squeeze=False)
        for i in range(n):
            ln = int(lengths[i])
            for j, (arr, title) in enumerate(((x, "input"), (recon, "reconstruction"))):
                ax = axes[i, j]
                ax.imshow(arr[i, :ln].T, aspect="auto", vmin=0, vmax=1, cmap="Greys", interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(title)
    else:
        fig, axes = plt.subplots(n, 1, figsize=(7, 1.8 * n + 0.4), squeeze=False)
        for i in range(n):
            ln = int(lengths[i])
            ax = axes[i, 0]
            for f in range(x.shape[2]):
                line = ax.plot(x[i, :ln, f], "-", lw=1.2)[0]
                ax.plot(recon[i, :ln, f], "--", lw=1.2, color=line.get_color())
            ax.set_ylabel(f"#{i}")
            ax.grid(alpha=0.3)
        axes[0, 0].set_title("input (solid) and reconstruction (dashed)")
        axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
