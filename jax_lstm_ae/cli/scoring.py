"""What both kinds of `detect` share (a run of sequences, ``detect``, and one
of the series pipeline, ``series``): labels, thresholds, the output plan, the
CSV table and the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.metrics import (
    as_binary_labels,
    best_fbeta_threshold,
    contamination_threshold,
    mean_std_threshold,
)
from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.args import is_number
from jax_lstm_ae.cli.outputs import FileOut, FilesPlan, inputs_of, plan_files, replacing
from jax_lstm_ae.cli.shell import fail


def read_labels(path, n: int, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such labels file; check the path")
    if p.suffix == ".npy":
        raw = np.load(p, allow_pickle=False)
    else:
        rows = [line.strip().split(",")[-1].strip() for line in p.read_text().splitlines() if line.strip()]
        if rows and not is_number(rows[0]):
            rows = rows[1:]  # a header line
        bad = next((i for i, r in enumerate(rows) if not is_number(r)), None)
        if bad is not None:
            raise ValueError(f"{p}: labels must be 0 or 1, one per line; line {bad + 1} is {rows[bad]!r}: fix it")
        raw = np.array([float(r) for r in rows])
    try:
        return as_binary_labels(raw, n, name=f"{p} labels")
    except ValueError as e:
        raise ValueError(f"{e} ({what})") from None



def threshold(args, labels, scores, fit_scores, fitted_on_normal: bool):
    kind = args.threshold
    if kind == "auto":
        kind = "contamination" if fitted_on_normal else "meanstd"  # never the labels the scores are judged on
    if kind == "fbeta":
        if labels is None:
            fail("--threshold fbeta needs labels; pass --labels FILE (or --normal-class C), or use --threshold auto")
        return (best_fbeta_threshold(labels, scores, args.beta).value,
                f"oracle: max F{args.beta:g} on the scored labels themselves")
    if kind == "contamination":
        # the quantile of the scores being cut, so --contamination c flags about c of them
        return contamination_threshold(scores, args.contamination), f"contamination {args.contamination:g}"
    if kind == "meanstd":
        return mean_std_threshold(fit_scores, args.k), f"mean + {args.k:g} std"
    try:
        return float(kind), "given"
    except ValueError:
        raise ValueError(
            f"--threshold must be fbeta, contamination, meanstd, auto or a number, got {kind!r}; give one of them, "
            "e.g. --threshold auto"
        ) from None


def check_threshold_args(args) -> None:
    """Fail before any model work when the threshold options cannot work."""
    kind = args.threshold
    if kind not in ("auto", "fbeta", "contamination", "meanstd") and not checks.is_finite_number(kind):
        raise ValueError(
            f"--threshold must be fbeta, contamination, meanstd, auto or a finite number, got {kind!r}; give one of those"
        )
    if kind == "fbeta" and args.labels is None and args.normal_class is None:
        raise ValueError("--threshold fbeta needs labels; pass --labels FILE (or --normal-class C)")
    if args.beta <= 0:
        raise ValueError(f"--beta must be > 0, got {args.beta}; give e.g. --beta 1")
    if not 0.0 <= args.contamination < 1.0:
        raise ValueError(f"--contamination must lie in [0, 1), got {args.contamination}; give e.g. --contamination 0.05")


def plan_outputs(args) -> FilesPlan:
    """--out (a CSV), the plot (--plot, default --out with .png) and --explain,
    checked against the rule of ``outputs`` before any model work."""
    out = Path(args.out)
    plot = (
        FileOut("--plot", Path(args.plot), (".png",), "the plot is a PNG")
        if args.plot is not None
        else FileOut("--out", out.with_suffix(".png"), (".png",), "the plot is a PNG")
    )
    explain = None
    if args.explain is not None:
        explain = FileOut("--explain", Path(args.explain), (".csv",), "the explanation is a CSV table")
    outs = [FileOut("--out", out, (".csv",), "detect writes a CSV table"), plot, explain]
    return plan_files(outs, inputs_of(args), force=args.force, create_parents=True)


def plot_path(args) -> Path:
    return Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")


def write_table(out: Path, scores, flags, labels) -> None:
    """index,score,anomaly[,label]: one row per item, written whole or not at all; scores to
    the last bit (17 significant digits), so they read back as the floats that were scored."""
    n = scores.shape[0]
    cols = [np.arange(n), scores, flags.astype(int)] + ([labels.astype(int)] if labels is not None else [])
    header = "index,score,anomaly" + (",label" if labels is not None else "")
    with replacing(out) as tmp:
        np.savetxt(tmp, np.column_stack(cols), fmt=["%d", "%.17g", "%d"] + (["%d"] if labels is not None else []),
                   delimiter=",", header=header, comments="")


def write_outputs(args, plan, scores, thr, flags, labels, series) -> str:
    """The scores table (``--out``) and its plot (``--plot``), or neither: a failure discards what ``plan`` made.
    Returns the line that says what was written."""
    out, png = Path(args.out), plot_path(args)
    plan.make_parents()
    try:
        write_table(out, scores, flags, labels)
        plot(png, scores, thr, flags, labels, series)
    except BaseException:
        plan.discard()
        raise
    return f"wrote {out}" + (f" and {png}" if png.exists() else "")


def print_stretches(spans) -> None:
    print("top anomalous stretches (start end score, rows end-exclusive):")
    for a, b, v in spans:
        print(f"  {a} {b} {v:.6g}")


def plot(path: Path, scores, thr, flags, labels, series) -> None:
    try:
        import matplotlib
    except ImportError:
        print(f"no plot: matplotlib is not installed (pip install 'jax_lstm_ae[cli]'); skipped {path}")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.arange(scores.shape[0])
    if series is not None:
        fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
        f = series.shape[1]
        for k in range(f):
            ax0.plot(idx, series[:, k], lw=0.6, label=f"feature {k}" if k < 10 else None)
        ax0.set_ylabel("series (normalised)")
        _shade(ax0, labels)
        ax0.legend(loc="upper left", fontsize=8, ncol=min(f, 5))
        ax1.plot(idx, scores, lw=0.8, color="k", label="score")
        _shade(ax1, labels, legend=True)
        ax1.set_xlabel("time step")
        ax = ax1
    else:
        fig, ax = plt.subplots(figsize=(10, 4))
        if labels is not None:
            ax.scatter(idx[~labels], scores[~labels], s=8, c="tab:blue", label="labelled normal")
            ax.scatter(idx[labels], scores[labels], s=8, c="tab:red", label="labelled anomaly")
        else:
            ax.scatter(idx, scores, s=8, c="tab:blue", label="sequence")
        ax.set_xlabel("sequence")
    ax.axhline(thr, color="tab:orange", ls="--", label=f"threshold {thr:.3g}")
    ax.scatter(idx[flags], scores[flags], s=10, marker="x", color="tab:red", label="flagged")
    ax.set_ylabel("anomaly score")
    ax.legend(loc="best", fontsize=8)
    if np.nanmin(scores) > 0 and np.nanmax(scores) / max(np.nanmin(scores), 1e-12) > 100:
        ax.set_yscale("log")
    fig.tight_layout()
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def _shade(ax, labels, legend: bool = False) -> None:
    if labels is None:
        return
    edges = np.flatnonzero(np.diff(np.r_[0, labels.astype(int), 0]))
    for k, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
        ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.15, label="labelled anomaly" if legend and k == 0 else None)


