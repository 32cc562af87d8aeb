"""`jax-lstm-ae detect` and `jax-lstm-ae probe`: anomaly scores and a linear
probe from a trained run directory.

    jax-lstm-ae detect --run RUN --data beats.txt --out scores.csv [--labels y.txt]
    jax-lstm-ae detect --run RUN --data series.txt --window 64 --stride 4 --out points.csv
    jax-lstm-ae train  --data series.csv --columns 1,2 --train-rows 0:2800 --out RUN   # the series pipeline
    jax-lstm-ae detect --run RUN --out points.csv [--data other.csv] [--top 5] [--explain why.csv]
    jax-lstm-ae probe  --run RUN --data labelled.txt [--test-fraction 0.4]
    jax-lstm-ae probe  --run RUN --data X_TRAIN.ts --test-data X_TEST.ts --classifier svm

``register(subparsers)`` adds both commands to the main CLI (listed in
``_cli.SUBCOMMAND_MODULES``); data options (--format, --columns, --window,
--stride, ...) and error handling (one line, exit code 2) are the shared ones
of ``_cli``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.anomaly import error_vectors, fit_scorer, points_from_windows, score_errors
from jax_lstm_ae.apps.series import points_to_rows, top_stretches
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
                   help="fbeta (needs labels), contamination, meanstd, auto, or a number (auto: fbeta with labels, "
                        "else contamination for a run of the series pipeline or with --fit-data, else meanstd)")
    p.add_argument("--beta", type=number(">0"), default=0.1, help="F-beta for --threshold fbeta (EncDec-AD uses 0.1)")
    p.add_argument("--contamination", type=number("[0,1)"), default=0.01,
                   help="share of the scored items (points of a series) to flag: the threshold is that quantile "
                        "of their scores (default 0.01)")
    p.add_argument("--top", type=positive, default=5, help="print the K highest anomalous stretches (or sequences)")
    p.add_argument("--explain", default=None, metavar="CSV",
                   help="series pipeline: write, per top stretch, the step and feature that contributed most")
    p.add_argument("--k", type=number("any"), default=3.0, help="mean + k * std (meanstd)")
    p.add_argument("--plot", default=None, help="PNG to write (default: --out with .png)")
    p.add_argument("--batch-size", type=positive, default=512, help="sequences per jitted call (split over --devices)")
    add_common_args(p)
    p.set_defaults(func=run_detect)


def _add_probe(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="classifier accuracy on the latents vs PCA and raw baselines",
        description=(
            "Encode labelled sequences, fit a classifier on the training ones (--data; with --test-data the "
            "test ones come from that file, as the UCR/UEA archives' TRAIN/TEST pairs, else a stratified split "
            "of --data) and report its test accuracy on the latent next to PCA of the raw sequence (same "
            "dimension) and the raw sequence (resampled to the training T when lengths differ). Classifiers: "
            "linear (multinomial logistic regression, l2 by 5-fold CV on the training rows) or svm (RBF kernel, "
            "C by 5-fold CV on the training rows; needs scikit-learn)."
        ),
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    add_data_args(p, default_help=" (labelled sequences, e.g. a UCR file: label in column 0, or X_TRAIN.ts)")
    p.add_argument("--test-data", default=None, metavar="PATH",
                   help="labelled test file, read with the same options, e.g. X_TEST.ts (default: split --data)")
    p.add_argument("--test-fraction", type=number("(0,1)"), default=0.4,
                   help="without --test-data: share of --data held out, in (0, 1)")
    p.add_argument("--classifier", choices=("linear", "svm"), default="linear",
                   help="linear: logistic-regression probe; svm: RBF SVM as in the archives' protocol (scikit-learn)")
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
        # the quantile of the scores being cut, so --contamination c flags about c of them
        return contamination_threshold(scores, args.contamination), f"contamination {args.contamination:g}"
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
    from jax_lstm_ae.apps.detectors import is_detector_run

    if is_detector_run(args.run):
        return _detect_series(args)
    run = _load_run(args.run)
    data, series = _prepare(run, args, args.data, "data to score")
    x, lengths, file_labels = data.x, data.lengths, data.labels
    if series is not None:
        stride = int(data.starts[1] - data.starts[0]) if data.n > 1 else 1
        whose = "given" if args.window is not None else "the run's"
        print(f"windows of {data.steps} rows, stride {stride} ({whose})")
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
    elif run.config.get("data", {}).get("normal_class") is not None:
        # trained with --normal-class: fit the scorer on the run's own held-out normal sequences
        fit_data = _run_validation(run)
        fl = fit_data.lengths
        fit_err = error_vectors(run.model, run.params, fit_data.x, fl, batch_size=args.batch_size, mesh=mesh)
        print(f"scorer fitted on the run's {fit_data.n} held-out sequences of class {run.config['data']['normal_class']}")
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
    if series is not None:
        _print_stretches(top_stretches(scores, thr, args.top))
    else:
        top = np.argsort(-scores, kind="stable")[: args.top]
        print("top sequences (index score): " + ", ".join(f"{i} {scores[i]:.4g}" for i in top))
    if labels is not None and labels.any() and not labels.all():
        rep = detection_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    print(f"wrote {out}" + (f" and {plot}" if plot.exists() else ""))
    return 0


def _run_validation(run):
    """The held-out normal sequences of a run trained with --normal-class (the same split as train's)."""
    from jax_lstm_ae.cli.main import _normal_only
    from jax_lstm_ae.data import train_val_split

    spec = run.config["data"]
    data = _normal_only(load_data(spec), spec)
    _, val = train_val_split(data, run.config["train"]["val_fraction"], seed=run.config["train"]["seed"])
    if val is None:
        fail(f"the run kept no validation sequences of {spec.get('source')} to fit the scorer on; "
             "pass --fit-data NORMAL_FILE")
    return run.normalizer.apply(val) if run.normalizer is not None else val


def _print_stretches(spans) -> None:
    print("top anomalous stretches (start end score, rows end-exclusive):")
    for a, b, v in spans:
        print(f"  {a} {b} {v:.6g}")


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


# ----------------------------------------------------------------- the series pipeline
def keep_class(data, normal_class, where):
    """The sequences of ``data`` labelled ``normal_class`` (a number or a name)."""
    if data.labels is None:
        fail(f"--normal-class needs labels in {where} (a UCR file, or --label-column)")
    lab = np.asarray(data.labels)
    if np.issubdtype(lab.dtype, np.number) and _is_number(str(normal_class)):
        keep = lab.astype(np.float64) == float(normal_class)
    else:
        keep = lab.astype(str) == str(normal_class)
    if not keep.any():
        fail(f"--normal-class {normal_class} matches no label in {where}; its labels are {sorted(set(lab.tolist()))}")
    return data.take(np.flatnonzero(keep))


def parse_rows(text: str, n: int, what: str = "--train-rows") -> tuple[int, int]:
    """'A:B' (either side may be empty) -> (A, B) within a series of n rows."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() or not p.strip() for p in parts):
        raise ValueError(f"{what} must look like A:B (rows A..B-1; ':' for all rows), got {text!r}")
    a = int(parts[0]) if parts[0].strip() else 0
    b = int(parts[1]) if parts[1].strip() else n
    if not 0 <= a < b <= n:
        raise ValueError(f"{what} {text} does not lie inside the series' {n} rows; give 0 <= A < B <= {n}")
    return a, b


def _load_series(path, columns):
    from jax_lstm_ae.data import load_series

    if path is None or str(path).startswith("synthetic:"):
        fail("the series pipeline needs --data PATH: one long series, one row per time step")
    return load_series(path, columns)


def train_series(args) -> int:
    """`train --train-rows A:B`: fit the series pipeline on rows A..B-1 and save it as a run directory."""
    from jax_lstm_ae.apps.detectors import SeriesAnomalyDetector
    from jax_lstm_ae.cli.main import _check_fresh_out, run_lock
    from jax_lstm_ae.cli.rundir import commit, make_parents, new_partial

    if args.resume:
        fail("--resume does not apply to --train-rows; train again with --force")
    setup_common(args)
    series = _load_series(args.data, args.columns)
    a, b = parse_rows(args.train_rows, series.shape[0])
    det = SeriesAnomalyDetector(window=args.window or 64, stride=args.stride or 1, decoder=args.decoder or "repeat",
                                seed=args.seed or 0, progress=not args.quiet, epochs=args.epochs)
    out = Path(args.out)
    _check_fresh_out(out, args.force)  # as a plain run: built aside, swapped in when it ends, under the lock
    with run_lock(out, make_parents(out.parent)):
        work = new_partial(out)
        try:
            det.fit(series[a:b])
            det.save(work, data={"source": str(Path(args.data).resolve()), "format": "series",
                                 "columns": args.columns, "train_rows": [a, b]})
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        commit(work, out)
    info = det.config_.get("train", {})
    print(f"series pipeline on rows {a}:{b} of {args.data}: {det.plan_.describe()}")
    print(f"trained {info.get('steps', 0)} steps; threshold {det.threshold_:.6g} (contamination "
          f"{det.contamination:g} of the training rows)")
    print(f"run saved in {out}/: config.json checkpoint.msgpack detector.json detector.npz")
    return 0


def _detect_series(args) -> int:
    """`detect` on a run of the series pipeline: its plan, columns and scorer."""
    from jax_lstm_ae.apps.detectors import load_detector

    det = load_detector(args.run)
    dcfg = det.config_.get("data", {}) or json.loads((Path(args.run) / "detector.json").read_text()).get("data", {})
    source = args.data or dcfg.get("source")
    columns = args.columns if args.columns is not None else dcfg.get("columns")
    if args.fit_data is not None or args.normal_class is not None:
        fail("a run of the series pipeline scores with its own fitted scorer; drop --fit-data / --normal-class "
             "(give --labels for metrics)")
    if args.window is not None and args.window != det.plan_.window:
        fail(f"this run's windows are {det.plan_.window} steps (chosen at train time); drop --window")
    series = _load_series(source, columns)
    n = series.shape[0]
    w, starts, err = det.score_windows(series)
    scores = points_to_rows(w, starts, det.plan_, n)
    rows = dcfg.get("train_rows")
    print(f"using the run's {det.plan_.describe()}, chosen from its training rows "
          f"{'%d:%d' % tuple(rows) if rows else '(not recorded)'}")
    labels = _read_labels(args.labels, n, "one per time point of the series") if args.labels else None
    kind = "contamination" if args.threshold == "auto" and labels is None else args.threshold
    thr, how = _threshold(argparse.Namespace(**{**vars(args), "threshold": kind}), labels, scores, scores, True)
    flags = scores > thr
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [np.arange(n), scores, flags.astype(int)] + ([labels.astype(int)] if labels is not None else [])
    header = "index,score,anomaly" + (",label" if labels is not None else "")
    np.savetxt(out, np.column_stack(cols), fmt=["%d", "%.6g", "%d"] + (["%d"] if labels is not None else []),
               delimiter=",", header=header, comments="")
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    _plot(plot, scores, thr, flags, labels, det.normalizer_.apply(series))
    print(f"scored {n} points; threshold {thr:.6g} ({how}); flagged {int(flags.sum())} ({flags.mean():.2%})")
    spans = top_stretches(scores, thr, args.top)
    _print_stretches(spans)
    if labels is not None and labels.any() and not labels.all():
        rep = detection_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    if args.explain:
        rows = explain_stretches(det, spans, w, starts, err, columns)
        Path(args.explain).write_text("start,end,score,window_start,window_end,peak_row_start,peak_row_end,"
                                      "feature,step_share,feature_share\n" + "".join(rows))
        print(f"wrote {args.explain}")
    print(f"wrote {out}" + (f" and {plot}" if plot.exists() else ""))
    return 0


def explain_stretches(det, spans, window_scores, starts, errors, columns=None) -> list[str]:
    """One CSV line per stretch: its highest-scoring window, the pooled step and
    feature of that window with the largest standardised squared error
    (``det.contributions``), and their shares of the window's total."""
    d, wl = det.plan_.pool, det.plan_.window
    contrib = det.contributions(errors)
    names = list(columns) if columns is not None else list(range(errors.shape[2]))
    lines = []
    for a, b, v in spans:
        cover = (starts * d < b) & ((starts + wl) * d > a)
        k = int(np.flatnonzero(cover)[np.argmax(window_scores[cover])]) if cover.any() else int(np.argmax(window_scores))
        c = contrib[k]
        t, f = np.unravel_index(int(np.argmax(c)), c.shape)
        tot = float(c.sum()) or 1.0
        row0 = (int(starts[k]) + int(t)) * d
        lines.append(f"{a},{b},{v:.6g},{int(starts[k]) * d},{(int(starts[k]) + wl) * d},{row0},{row0 + d},"
                     f"{names[f] if f < len(names) else f},{c[t, f] / tot:.4f},{c[:, f].sum() / tot:.4f}\n")
    return lines


# ----------------------------------------------------------------- probe
def run_probe(args) -> int:
    from jax_lstm_ae.apps.probe import _sklearn, _split_stratified, compare_representations, encode_all

    if args.classifier == "svm":
        try:
            _sklearn()
        except ImportError as e:
            fail(str(e))
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
        if test.features != data.features:
            fail(f"--test-data sequences have F={test.features} features but --data sequences have F={data.features}")
        unseen = sorted(set(np.asarray(test.labels).tolist()) - set(np.asarray(y).tolist()), key=str)
        if unseen:
            fail(f"--test-data holds classes {unseen} that --data does not; a classifier cannot predict them")
        x_tr, l_tr, y_tr, x_te, l_te, y_te = x, lengths, y, test.x, test.lengths, test.labels
        where = f"train {args.data} / test {args.test_data}"
    else:
        tr, te = _split_stratified(y, args.test_fraction, args.seed)
        x_tr, l_tr, y_tr, x_te, l_te, y_te = x[tr], lengths[tr], y[tr], x[te], lengths[te], y[te]
        where = f"{args.data}, stratified split {1 - args.test_fraction:.0%} / {args.test_fraction:.0%} (seed {args.seed})"
    z_tr = encode_all(run.model, run.params, x_tr, l_tr, batch_size=args.batch_size, mesh=mesh)
    z_te = encode_all(run.model, run.params, x_te, l_te, batch_size=args.batch_size, mesh=mesh)
    res = compare_representations(z_tr, z_te, x_tr, x_te, y_tr, y_te, classifier=args.classifier, seed=args.seed,
                                  lengths_train=l_tr, lengths_test=l_te)
    ragged = x_te.shape[1] != x_tr.shape[1] or np.any(l_tr != x_tr.shape[1]) or np.any(l_te != x_te.shape[1])
    what = ("linear probe (logistic regression, l2 by 5-fold CV on the training rows)" if args.classifier == "linear"
            else "RBF SVM (C by 5-fold CV on the training rows)")
    param = "l2" if args.classifier == "linear" else "C"
    print(f"{what}: {len(y_tr)} train / {len(y_te)} test sequences, {len(np.unique(y_tr))} classes ({where})")
    print(f"  {'representation':14s} {'dim':>5s} {param:>7s} {'CV acc (train)':>15s} {'test acc':>9s}")
    for name, r in res.items():
        print(f"  {name:14s} {r['dim']:5d} {r[param]:7g} {r['cv_accuracy']:15.4f} {r['accuracy']:9.4f}")
    if ragged:
        print(f"  raw and pca: each sequence resampled to T={x_tr.shape[1]} steps (the lengths differ)")
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
