"""`jax-lstm-ae detect` and `jax-lstm-ae probe`: anomaly scores and a linear
probe from a trained run directory.

    jax-lstm-ae detect --run RUN --data beats.txt --out scores.csv [--labels y.txt]
    jax-lstm-ae detect --run RUN --data series.txt --window 64 --stride 4 --out points.csv
    jax-lstm-ae probe  --run RUN --data labelled.txt [--test-fraction 0.4]

``register(subparsers)`` adds both commands to the main CLI (listed in
``_cli.SUBCOMMAND_MODULES``); data options (--format, --columns, --window,
--stride, ...) and error handling (one line, exit code 2) are the shared ones
of ``_cli``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.anomaly import error_vectors, fit_scorer, points_from_windows, score_errors
from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.checks import number, positive
from jax_lstm_ae.cli.main import (
    PROG,
    CliParser,
    add_common_args,
    add_data_args,
    check_fits_model,
    data_spec,
    fail,
    load_data,
    run_guarded,
    setup_common,
)
from jax_lstm_ae.apps.metrics import (
    as_binary_labels,
    best_fbeta_threshold,
    contamination_threshold,
    detection_report,
    mean_std_threshold,
)


# ----------------------------------------------------------------- parsers
def _add_detect(sub) -> None:
    p = sub.add_parser(
        "detect",
        help="score sequences (or points of a long series) for anomalies",
        description=(
            "Reconstruction-error anomaly scores (EncDec-AD). Writes one row per sequence, or per time point "
            "when --window cuts a long series, with the score and the 0/1 decision, plus a PNG."
        ),
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory written by `jax-lstm-ae train`")
    add_data_args(p, default_help=" (sequences to score; a long series with --window)")
    p.add_argument("--out", required=True, help="CSV to write: index,score,anomaly[,label]")
    p.add_argument("--labels", default=None,
                   help="0/1 per sequence (or per time point), one per line or .npy; enables metrics and --threshold fbeta")
    p.add_argument("--normal-class", default=None,
                   help="derive 0/1 labels from the data file's own labels: this class is normal, others anomalous")
    p.add_argument("--fit-data", default=None,
                   help="NORMAL data to fit the scorer and the unlabelled threshold on (default: the scored data)")
    p.add_argument("--method", choices=("mahalanobis", "mae", "mse"), default="mahalanobis")
    p.add_argument("--level", choices=("window", "step"), default=None,
                   help="Gaussian per window ([T*F] vector) or per step ([F]); default window for equal-length "
                        "sequences, step otherwise")
    p.add_argument("--threshold", default="auto",
                   help="fbeta (needs labels), contamination, meanstd, auto, or a number "
                        "(auto: fbeta with labels, else contamination with --fit-data, else meanstd)")
    p.add_argument("--beta", type=number(">0"), default=0.1, help="F-beta for --threshold fbeta (EncDec-AD uses 0.1)")
    p.add_argument("--contamination", type=number("[0,1)"), default=0.01,
                   help="share of normal items flagged (contamination)")
    p.add_argument("--k", type=number("any"), default=3.0, help="mean + k * std (meanstd)")
    p.add_argument("--plot", default=None, help="PNG to write (default: --out with .png)")
    p.add_argument("--batch-size", type=positive, default=512, help="sequences per jitted call (split over --devices)")
    add_common_args(p)
    p.set_defaults(func=run_detect)


def _add_probe(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="linear-probe accuracy of the latents vs PCA and raw baselines",
        description=(
            "Encode labelled sequences, fit a multinomial logistic regression on a stratified training part and "
            "report its test accuracy next to PCA of the raw sequence (same dimension) and the raw sequence."
        ),
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    add_data_args(p, default_help=" (labelled sequences, e.g. a UCR file: label in column 0)")
    p.add_argument("--test-data", default=None, help="labelled test file (default: split --data)")
    p.add_argument("--test-fraction", type=number("(0,1)"), default=0.4, help="share held out for testing, in (0, 1)")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here too")
    p.add_argument("--batch-size", type=positive, default=512, help="sequences per jitted call (split over --devices)")
    add_common_args(p)
    p.set_defaults(func=run_probe)


def register(subparsers) -> None:
    """Add `detect` and `probe` to an argparse subparsers object."""
    _add_detect(subparsers)
    _add_probe(subparsers)


# ----------------------------------------------------------------- helpers
def _read_labels(path, n: int, what: str) -> np.ndarray:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such labels file; check the path")
    if p.suffix == ".npy":
        raw = np.load(p, allow_pickle=False)
    else:
        rows = [line.strip().split(",")[-1].strip() for line in p.read_text().splitlines() if line.strip()]
        if rows and not _is_number(rows[0]):
            rows = rows[1:]  # a header line
        bad = next((i for i, r in enumerate(rows) if not _is_number(r)), None)
        if bad is not None:
            raise ValueError(f"{p}: labels must be 0 or 1, one per line; line {bad + 1} is {rows[bad]!r}")
        raw = np.array([float(r) for r in rows])
    try:
        return as_binary_labels(raw, n, name=f"{p} labels")
    except ValueError as e:
        raise ValueError(f"{e} ({what})") from None


def _is_finite_number(s: str) -> bool:
    return checks.is_finite_number(s)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _load_run(path):
    from jax_lstm_ae.train.checkpoint import load_run

    return load_run(path)


def _prepare(run, args, source, what: str):
    """Load ``source`` with the data options of ``args`` (the run's window,
    stride and columns by default), check it fits the model, normalise it as
    in training. Returns (normalised Dataset, normalised series [N_t, F] or
    None). A windowed series comes back as its windows plus ``starts``."""
    spec = data_spec(args, run.config.get("data"))
    if source is not None:
        spec["source"] = source
    if spec.get("source") is None:
        fail(f"no {what} given and {args.run} does not record its training data; pass --data PATH")
    data = load_data(spec)
    check_fits_model(data, run.model, run.config, str(source))
    if run.normalizer is not None:
        data = run.normalizer.apply(data)
    series = None
    if data.starts is not None:
        n_points = int(data.starts.max()) + data.steps
        series = np.zeros((n_points, data.features), np.float32)
        idx = data.starts[:, None] + np.arange(data.steps)[None, :]
        series[idx] = data.x  # overlapping windows hold the same values
    return data, series


def _threshold(args, labels, scores, fit_scores, fitted_on_normal: bool):
    kind = args.threshold
    if kind == "auto":
        kind = "fbeta" if labels is not None else ("contamination" if fitted_on_normal else "meanstd")
    if kind == "fbeta":
        if labels is None:
            fail("--threshold fbeta needs labels: pass --labels FILE (or --normal-class C)")
        return best_fbeta_threshold(labels, scores, args.beta).value, f"max F{args.beta:g} on the given labels"
    if kind == "contamination":
        return contamination_threshold(fit_scores, args.contamination), f"contamination {args.contamination:g}"
    if kind == "meanstd":
        return mean_std_threshold(fit_scores, args.k), f"mean + {args.k:g} std"
    try:
        return float(kind), "given"
    except ValueError:
        raise ValueError(
            f"--threshold must be fbeta, contamination, meanstd, auto or a number, got {kind!r}"
        ) from None


# ----------------------------------------------------------------- detect
def _check_threshold_args(args) -> None:
    """Fail before any model work when the threshold options cannot work."""
    kind = args.threshold
    if kind not in ("auto", "fbeta", "contamination", "meanstd") and not _is_finite_number(kind):
        raise ValueError(
            f"--threshold must be fbeta, contamination, meanstd, auto or a finite number, got {kind!r}; give one of those"
        )
    if kind == "fbeta" and args.labels is None and args.normal_class is None:
        raise ValueError("--threshold fbeta needs labels; pass --labels FILE (or --normal-class C)")
    if args.beta <= 0:
        raise ValueError(f"--beta must be > 0, got {args.beta}")
    if not 0.0 <= args.contamination < 1.0:
        raise ValueError(f"--contamination must lie in [0, 1), got {args.contamination}")


def _check_outputs(args) -> None:
    """--out a .csv file and --plot a .png, in folders that exist or can be
    made, checked before any work so a bad one leaves nothing behind."""
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out {out}: detect writes a CSV table; give a file name ending in .csv")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name ending in .csv")
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise ValueError(f"--plot {args.plot}: the plot is a PNG; give a file name ending in .png")
    for flag, path in (("--out", out), ("--plot", Path(args.plot) if args.plot else None)):
        if path is None:
            continue
        for parent in path.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
                break


def run_detect(args) -> int:
    _check_threshold_args(args)
    _check_outputs(args)
    setup_common(args)  # --devices / several processes: args.mesh
    mesh = getattr(args, "mesh", None)
    run = _load_run(args.run)
    data, series = _prepare(run, args, args.data, "data to score")
    x, lengths, file_labels = data.x, data.lengths, data.labels
    n_items = series.shape[0] if series is not None else x.shape[0]
    what = "one per time point of the series" if series is not None else "one per sequence"
    labels = None
    if args.labels is not None:
        labels = _read_labels(args.labels, n_items, what)
    elif args.normal_class is not None:
        if file_labels is None:
            fail(f"--normal-class needs labels in {args.data or 'the run’s training data'}; give --labels FILE instead")
        fl_arr = np.asarray(file_labels)
        if np.issubdtype(fl_arr.dtype, np.number) and _is_number(args.normal_class):
            labels = fl_arr.astype(np.float64) != float(args.normal_class)
        else:
            labels = fl_arr.astype(str) != str(args.normal_class)
        if labels.all():
            fail(f"--normal-class {args.normal_class} matches no label in {args.data or 'the run’s training data'}; "
                 f"give one of its labels: {', '.join(map(str, np.unique(fl_arr)[:10]))}")
    level = args.level or ("window" if np.all(lengths == x.shape[1]) else "step")

    err = error_vectors(run.model, run.params, x, lengths, batch_size=args.batch_size, mesh=mesh)
    if args.fit_data is not None:
        fit_data, _ = _prepare(run, args, args.fit_data, "--fit-data")
        fl = fit_data.lengths
        fit_err = error_vectors(run.model, run.params, fit_data.x, fl, batch_size=args.batch_size, mesh=mesh)
    else:
        fit_err, fl = err, lengths
    scorer = fit_scorer(fit_err, fl, method=args.method, level=level)
    scores = _item_scores(scorer, err, data)
    # Unlabelled thresholds come from the normal data's scores, on the same
    # scale as the scores they cut (points for a series, sequences otherwise).
    fit_scores = _item_scores(scorer, fit_err, fit_data) if args.fit_data is not None else scores
    thr, how = _threshold(args, labels, scores, fit_scores, args.fit_data is not None)
    flags = scores > thr

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    plot.parent.mkdir(parents=True, exist_ok=True)
    cols = [np.arange(n_items), scores, flags.astype(int)] + ([labels.astype(int)] if labels is not None else [])
    header = "index,score,anomaly" + (",label" if labels is not None else "")
    np.savetxt(out, np.column_stack(cols), fmt=["%d", "%.6g", "%d"] + (["%d"] if labels is not None else []),
               delimiter=",", header=header, comments="")
    _plot(plot, scores, thr, flags, labels, series)

    unit = "points" if series is not None else "sequences"
    print(f"scored {n_items} {unit} with {args.method}/{level}; threshold {thr:.6g} ({how}); "
          f"flagged {int(flags.sum())}")
    if labels is not None and labels.any() and not labels.all():
        rep = detection_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    print(f"wrote {out}" + (f" and {plot}" if plot.exists() else ""))
    return 0


def _item_scores(scorer, errors, data) -> np.ndarray:
    """One score per sequence, or per point when ``data`` holds windows of a series."""
    win, steps = score_errors(scorer, errors, data.lengths)
    if data.starts is None:
        return win
    n_points = int(data.starts.max()) + data.steps
    return points_from_windows(steps if steps is not None else win, data.starts, n_points, window=data.steps)


def _plot(path: Path, scores, thr, flags, labels, series) -> None:
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _shade(ax, labels, legend: bool = False) -> None:
    if labels is None:
        return
    edges = np.flatnonzero(np.diff(np.r_[0, labels.astype(int), 0]))
    for k, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
        ax.axvspan(a - 0.5, b - 0.5, color="tab:red", alpha=0.15, label="labelled anomaly" if legend and k == 0 else None)


# ----------------------------------------------------------------- probe
def run_probe(args) -> int:
    from jax_lstm_ae.apps.probe import _split_stratified, compare_representations, encode_all

    if args.out and not Path(args.out).absolute().parent.is_dir():
        fail(f"--out {args.out}: folder {Path(args.out).parent} does not exist; create it or choose another path")
    setup_common(args)
    mesh = getattr(args, "mesh", None)
    run = _load_run(args.run)
    data, _ = _prepare(run, args, args.data, "labelled data")
    x, lengths, y = data.x, data.lengths, data.labels
    if y is None:
        fail(f"{args.data} has no labels; probe needs labelled sequences (e.g. a UCR file, or --label-column)")
    if args.test_data is not None:
        test, _ = _prepare(run, args, args.test_data, "--test-data")
        if test.labels is None:
            fail(f"{args.test_data} has no labels")
        if test.x.shape[1:] != x.shape[1:]:
            fail(f"--test-data sequences are (T, F)={test.x.shape[1:]} but --data sequences are {x.shape[1:]}")
        x_tr, l_tr, y_tr, x_te, l_te, y_te = x, lengths, y, test.x, test.lengths, test.labels
    else:
        tr, te = _split_stratified(y, args.test_fraction, args.seed)
        x_tr, l_tr, y_tr, x_te, l_te, y_te = x[tr], lengths[tr], y[tr], x[te], lengths[te], y[te]
    z_tr = encode_all(run.model, run.params, x_tr, l_tr, batch_size=args.batch_size, mesh=mesh)
    z_te = encode_all(run.model, run.params, x_te, l_te, batch_size=args.batch_size, mesh=mesh)
    res = compare_representations(z_tr, z_te, x_tr, x_te, y_tr, y_te, seed=args.seed)
    print(f"linear probe: {len(y_tr)} train / {len(y_te)} test sequences, {len(np.unique(y_tr))} classes")
    for name, r in res.items():
        print(f"  {name:7s} dim {r['dim']:5d}  accuracy {r['accuracy']:.4f}  (l2 {r['l2']:g})")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


# ----------------------------------------------------------------- standalone
def main(argv=None) -> int:
    """Only these two commands (the full CLI is ``jax_lstm_ae.cli.main.main``)."""
    parser = CliParser(prog=PROG, description="anomaly detection and linear probe")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
