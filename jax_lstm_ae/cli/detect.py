"""`jax-lstm-ae detect`: reconstruction-error anomaly scores (EncDec-AD) of
sequences. A run of one long series is always a run of the series pipeline
(`train` gives a long series that pipeline, with --train-rows or --window) and
is scored by ``series`` with its own plan and scorer. A run of sequences may
also score the points of a long series cut into windows (--window, the scorer
fitted on --fit-data), with the same window Mahalanobis and the same mean over
covering windows.

    jax-lstm-ae detect --run RUN --data beats.txt --out scores.csv [--labels y.txt]
    jax-lstm-ae detect --run RUN --data series.txt --window 64 --stride 4 --out points.csv
"""

from __future__ import annotations

import numpy as np

from jax_lstm_ae.apps.anomaly import check_scorer_size, error_vectors, fit_scorer, points_from_windows, score_errors
from jax_lstm_ae.apps.metrics import detection_report
from jax_lstm_ae.apps.range_metrics import series_report
from jax_lstm_ae.apps.series import top_stretches
from jax_lstm_ae.cli.args import (
    add_common_args, add_data_args, add_model_arg, data_for_run, is_number, load_data, load_for_run, load_runs_for_use,
    normal_only, normalise_for_run, setup_common,
)  # fmt: skip
from jax_lstm_ae.cli.checks import number, positive
from jax_lstm_ae.cli.scoring import (
    check_threshold_args, plan_outputs, print_stretches, read_labels, threshold, write_outputs,
)  # fmt: skip
from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.data import is_lazy


def register(sub) -> None:
    """Add `detect` to an argparse subparsers object."""
    p = sub.add_parser(
        "detect",
        help="score sequences (or points of a long series) for anomalies",
        description=(
            "Reconstruction-error anomaly scores (EncDec-AD). Writes one row per sequence, or per time point "
            "when --window cuts a long series, with the score and the 0/1 decision, plus a PNG. With --mmap a "
            ".npy file is read and scored in chunks (never whole): the scorer is fitted on at most 16,384 evenly "
            "spaced windows of the normal data (--fit-data, else the scored data) and a point's score is the mean "
            "over the windows covering it; the table still has one line per point (or window)."
        ),
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory written by `jax-lstm-ae train`")
    add_data_args(p, default_help=" (sequences to score; a long series with --window)")
    p.add_argument("--out", required=True, help="CSV to write: index,score,anomaly[,label]")
    p.add_argument("--force", action="store_true", help="replace --out, --plot and --explain if they exist")
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
                   help="contamination, meanstd, auto, a number, or fbeta (an oracle figure: the threshold that "
                        "maximises F-beta on the very labels it is scored on; needs labels); auto never reads labels: "
                        "contamination for a run of the series pipeline or with --fit-data, else meanstd")
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
    add_model_arg(p, allow_all=True, all_means="an ensemble: every model scores the data, each model's scores are "
                                              "standardised by its scores of the normal data, and averaged")
    add_common_args(p)
    p.set_defaults(func=run_detect)

def run_detect(args) -> int:
    check_threshold_args(args)
    plan = plan_outputs(args)  # every output checked before any work
    setup_common(args)  # --devices / several processes: args.mesh
    mesh = getattr(args, "mesh", None)
    from jax_lstm_ae.apps.detectors import is_detector_run

    if is_detector_run(args.run):
        from jax_lstm_ae.cli.rundir import check_not_training
        from jax_lstm_ae.cli.series import detect_series

        check_not_training(args.run)
        if args.model not in (None, "chosen"):
            fail(f"--model {args.model}: {args.run} is a run of the series pipeline, which scores with all its models "
                 "as one ensemble; drop --model")
        return detect_series(args, plan)
    runs = load_runs_for_use(args.run, args.model)  # one model, or each of a many-models run's for --model all
    run = runs[0]
    raw = load_for_run(run, args, args.data, "data to score")  # read once; each model normalises it
    data, series = normalise_for_run(run, raw)
    if is_lazy(data):
        if len(runs) > 1:
            fail("--model all scores with every model, which --mmap does not do; give --model chosen or --model k")
        return _detect_lazy(args, plan, run, data, mesh)
    x, lengths, file_labels = data.x, data.lengths, data.labels
    if series is not None:
        stride = int(data.starts[1] - data.starts[0]) if data.n > 1 else 1
        whose = "given" if args.window is not None else "the run's"
        print(f"windows of {data.steps} rows, stride {stride} ({whose})")
    n_items = series.shape[0] if series is not None else x.shape[0]
    what = "one per time point of the series" if series is not None else "one per sequence"
    labels = None
    if args.labels is not None:
        labels = read_labels(args.labels, n_items, what)
    elif args.normal_class is not None:
        if file_labels is None:
            fail(f"--normal-class needs labels in {args.data or 'the run’s training data'}; give --labels FILE instead")
        fl_arr = np.asarray(file_labels)
        if np.issubdtype(fl_arr.dtype, np.number) and is_number(args.normal_class):
            labels = fl_arr.astype(np.float64) != float(args.normal_class)
        else:
            labels = fl_arr.astype(str) != str(args.normal_class)
        if labels.all():
            fail(f"--normal-class {args.normal_class} matches no label in {args.data or 'the run’s training data'}; "
                 f"give one of its labels: {', '.join(map(str, np.unique(fl_arr)[:10]))}")
    level = args.level or ("window" if np.all(lengths == x.shape[1]) else "step")
    check_scorer_size(x.shape[1], run.model.output_dim, method=args.method, level=level)  # before any work

    fit_raw = None if args.fit_data is None else load_for_run(run, args, args.fit_data, "--fit-data")
    per_model = [_model_scores(args, r, data if k == 0 else normalise_for_run(r, raw)[0], fit_raw, level, mesh)
                 for k, r in enumerate(runs)]
    if len(runs) == 1:
        scores, fit_scores = per_model[0]
    else:
        scores, fit_scores = ensemble_scores(per_model)
        print(f"ensemble of {len(runs)} models: each model's scores standardised by the mean and sd of its scores "
              "of the normal data, then averaged")
    thr, how = threshold(args, labels, scores, fit_scores, args.fit_data is not None)
    flags = scores > thr

    written = write_outputs(args, plan, scores, thr, flags, labels, series)

    unit = "points" if series is not None else "sequences"
    print(f"scored {n_items} {unit} with {args.method}/{level}; threshold {thr:.6g} ({how}); "
          f"flagged {int(flags.sum())}")
    if series is not None:
        print_stretches(top_stretches(scores, thr, args.top))
    else:
        top = np.argsort(-scores, kind="stable")[: args.top]
        print("top sequences (index score): " + ", ".join(f"{i} {scores[i]:.4g}" for i in top))
    if labels is not None and labels.any() and not labels.all():
        rep = series_report(labels, scores, thr) if series is not None else detection_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    print(written)
    return 0


def _model_scores(args, run, data, fit_raw, level, mesh) -> tuple[np.ndarray, np.ndarray]:
    """(scores of --data, scores of the normal data the scorer and the unlabelled threshold come from) for one
    model; ``data``: --data as this model's normaliser gives it, ``fit_raw``: --fit-data in raw units or None."""
    err = error_vectors(run.model, run.params, data.x, data.lengths, batch_size=args.batch_size, mesh=mesh)
    fit_data = None
    if fit_raw is not None:
        fit_data, _ = normalise_for_run(run, fit_raw)
    elif run.config.get("data", {}).get("normal_class") is not None:
        # trained with --normal-class: fit the scorer on the run's own held-out normal sequences
        fit_data = _run_validation(run)
        print(f"scorer fitted on the run's {fit_data.n} held-out sequences of class {run.config['data']['normal_class']}")
    if fit_data is None:
        fit_err, fl = err, data.lengths
    else:
        fl = fit_data.lengths
        fit_err = error_vectors(run.model, run.params, fit_data.x, fl, batch_size=args.batch_size, mesh=mesh)
    scorer = fit_scorer(fit_err, fl, method=args.method, level=level)
    scores = _item_scores(scorer, err, data)
    # Unlabelled thresholds come from the normal data's scores, on the same
    # scale as the scores they cut (points for a series, sequences otherwise).
    fit_scores = _item_scores(scorer, fit_err, fit_data) if args.fit_data is not None else scores
    return scores, fit_scores


def ensemble_scores(per_model) -> tuple[np.ndarray, np.ndarray]:
    """K models' (scores, normal scores) -> one pair: each model's scores put on
    one scale, (s - mean) / sd of its normal scores, then the mean over the K."""
    def scale(s, f):
        f = f[np.isfinite(f)]
        sd = float(np.std(f)) if f.size else 0.0
        return (s - (float(np.mean(f)) if f.size else 0.0)) / (sd if sd > 0 else 1.0)

    z = [(scale(s, f), scale(f, f)) for s, f in per_model]
    return np.mean([a for a, _ in z], axis=0), np.mean([b for _, b in z], axis=0)


def _run_validation(run):
    """The held-out normal sequences of a run trained with --normal-class (the same split as train's)."""
    from jax_lstm_ae.data import train_val_split

    spec = run.config["data"]
    data = normal_only(load_data(spec), spec)
    _, val = train_val_split(data, run.config["train"]["val_fraction"], seed=run.config["train"]["seed"])
    if val is None:
        fail(f"the run kept no validation sequences of {spec.get('source')} to fit the scorer on; "
             "pass --fit-data NORMAL_FILE")
    return run.normalizer.apply(val) if run.normalizer is not None else val


def _item_scores(scorer, errors, data) -> np.ndarray:
    """One score per sequence, or per point when ``data`` holds windows of a series."""
    win, steps = score_errors(scorer, errors, data.lengths)
    if data.starts is None:
        return win
    n_points = int(data.starts.max()) + data.steps
    return points_from_windows(steps if steps is not None else win, data.starts, n_points, window=data.steps)




def _lazy_scores(args, run, x, scorer, mesh) -> np.ndarray:
    """One score per row of the series (windows cut on read) or per window, read and scored in chunks."""
    from jax_lstm_ae.apps.streaming import point_scores, window_scores

    if getattr(x, "series", False):
        return point_scores(run.model, run.params, x, scorer, batch_size=args.batch_size, mesh=mesh)
    return np.concatenate([w for _, w, _ in window_scores(run.model, run.params, x, scorer,
                                                            batch_size=args.batch_size, mesh=mesh)])


def _detect_lazy(args, plan, run, data, mesh) -> int:
    """``detect --mmap``: the file read and scored in chunks (``apps.streaming``)."""
    from jax_lstm_ae.apps.streaming import FIT_WINDOWS, fit_scorer_sampled

    x = data.x
    series = bool(x.series)
    n_items = x.file.shape[0] if series else data.n
    if args.normal_class is not None:
        fail("--normal-class needs labels in the data file; a .npy read with --mmap holds none: give --labels FILE")
    labels = read_labels(args.labels, n_items, "one per row of the series" if series else "one per window") \
        if args.labels is not None else None
    level = args.level or "window"
    check_scorer_size(data.steps, run.model.output_dim, method=args.method, level=level)
    fit_x = x if args.fit_data is None else data_for_run(run, args, args.fit_data, "--fit-data")[0].x
    if not is_lazy(fit_x):  # before any scoring: its thresholds come from its scores, read in chunks too
        fail("--fit-data with --mmap must be read with --mmap too (a .npy file); give a .npy file")
    scorer = fit_scorer_sampled(run.model, run.params, fit_x, method=args.method, level=level,
                                batch_size=args.batch_size, mesh=mesh)
    print(f"windows of {data.steps} rows" + (f", stride {x.stride}" if series else "") +
          f"; scorer fitted on {min(len(fit_x), FIT_WINDOWS)} windows")
    scores = _lazy_scores(args, run, x, scorer, mesh)
    fit_scores = scores if args.fit_data is None else _lazy_scores(args, run, fit_x, scorer, mesh)
    thr, how = threshold(args, labels, scores, fit_scores[np.isfinite(fit_scores)], args.fit_data is not None)
    flags = scores > thr
    written = write_outputs(args, plan, scores, thr, flags, labels, None)
    unit = "points" if series else "windows"
    print(f"scored {n_items} {unit} with {args.method}/{level}; threshold {thr:.6g} ({how}); "
          f"flagged {int(flags.sum())}")
    if series:
        print_stretches(top_stretches(np.nan_to_num(scores, nan=-np.inf), thr, args.top))
    if labels is not None and labels.any() and not labels.all():
        rep = series_report(labels, scores, thr) if series else detection_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    print(written)
    return 0
