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


def _save(fig, path) -> Path:
    """Write the figure under a temporary name beside ``path``, then rename it:
    a failure leaves the old PNG or none, never a torn one."""
    from jax_lstm_ae.cli.outputs import replacing

    plt = _pyplot()
    try:
        with replacing(Path(path)) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


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
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("loss (mean per-step error)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstructions(x: np.ndarray, recon: np.ndarray, lengths: np.ndarray, path, *, binary: bool = False) -> Path:
    """x, recon [N, T, F] (data units), lengths [N]: one row per example.

    Real data: each feature a colour, input solid, reconstruction dashed, a
    legend for both. Binary data: input and reconstruction side by side as
    images, time across and features down, with a colour bar. Each row names
    the sequence and its length L (only its L valid steps are drawn).
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    n, f = x.shape[0], x.shape[2]
    if binary:
        fig, axes = plt.subplots(n, 2, figsize=(8, 1.9 * n + 0.9), squeeze=False, layout="constrained")
        for i in range(n):
            ln = int(lengths[i])
            for j, (arr, title) in enumerate(((x, "input"), (recon, "reconstruction (probability)"))):
                ax = axes[i, j]
                im = ax.imshow(arr[i, :ln].T, aspect="auto", vmin=0, vmax=1, cmap="Greys", interpolation="nearest",
                               extent=(-0.5, ln - 0.5, f - 0.5, -0.5))  # fmt: skip
                ax.set_xticks(range(0, ln, max(1, ln // 8)))
                ax.set_yticks(range(0, f, max(1, f // 5)))
                ax.set_title(f"{title}: sequence {i}, length {ln}", fontsize=9)
                ax.set_ylabel("feature")
                if i == n - 1:
                    ax.set_xlabel("time step")
        fig.colorbar(im, ax=axes, shrink=0.6, label="value (0 white, 1 black)")
    else:
        fig, axes = plt.subplots(n, 1, figsize=(8, 1.9 * n + 1.0), squeeze=False)
        colors = []
        for i in range(n):
            ln = int(lengths[i])
            ax = axes[i, 0]
            for k in range(f):
                line = ax.plot(np.arange(ln), x[i, :ln, k], "-", lw=1.2)[0]
                ax.plot(np.arange(ln), recon[i, :ln, k], "--", lw=1.2, color=line.get_color())
                if i == 0:
                    colors.append(line.get_color())
            ax.set_ylabel(f"seq {i}\nlength {ln}", fontsize=9)
            ax.set_xlim(-0.5, x.shape[1] - 0.5)
            ax.grid(alpha=0.3)
        axes[0, 0].set_title("input (solid) and reconstruction (dashed), data units")
        axes[-1, 0].set_xlabel("time step")
        shown = min(f, 10)
        handles = [Line2D([], [], color=colors[k], lw=2, label=f"feature {k}") for k in range(shown)]
        if f > shown:
            handles.append(Line2D([], [], color="none", label=f"... {f - shown} more"))
        handles += [Line2D([], [], color="k", ls="-", label="input"),
                    Line2D([], [], color="k", ls="--", label="reconstruction")]  # fmt: skip
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.84, 1))
        return _save(fig, path)
    return _save(fig, path)
