"""The series pipeline on the command line: `train --train-rows A:B` fits a
``SeriesAnomalyDetector`` on rows A..B-1 of one long series and saves it as a
run directory; `detect` on such a run scores every row with its own plan,
columns and scorer (and --explain names the step and feature behind each
top stretch).

    jax-lstm-ae train  --data series.csv --columns 1,2 --train-rows 0:2800 --out RUN
    jax-lstm-ae detect --run RUN --out points.csv [--data other.csv] [--top 5] [--explain why.csv]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from jax_lstm_ae.apps.range_metrics import series_report
from jax_lstm_ae.apps.series import plan_series, points_to_rows, top_stretches
from jax_lstm_ae.cli.args import parse_rows, setup_common
from jax_lstm_ae.cli.outputs import FilesPlan, inputs_of, plan_run_dir, write_bytes
from jax_lstm_ae.cli.scoring import print_stretches, read_labels, threshold, write_outputs
from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.cli.specs import apply_flags


def _load_series(path, columns):
    from jax_lstm_ae.data import load_series

    if path is None or str(path).startswith("synthetic:"):
        fail("the series pipeline needs one long series to train on; pass --data PATH (one row per time step)")
    return load_series(path, columns)


def train_series(args) -> int:
    """`train --train-rows A:B`: fit the series pipeline on rows A..B-1 and save it as a run directory."""
    from jax_lstm_ae.apps.detectors import SERIES_MODELS, SeriesAnomalyDetector
    from jax_lstm_ae.cli.rundir import commit, make_parents, new_partial, run_lock
    from jax_lstm_ae.train.spec import preset

    if args.resume:
        fail("--resume does not apply to --train-rows; train again with --force")
    out = Path(args.out)
    plan_run_dir(out, force=args.force, inputs=inputs_of(args, ("data",)))  # as a plain run: checked first,
    setup_common(args)  # built aside, swapped in when it ends, under the lock
    for dest, why in (("normal_class", "the series pipeline trains on rows, not on labelled sequences"),
                      ("id_column", "a long series has one row per step, not sequence ids"),
                      ("label_column", "the series pipeline reads no labels")):
        if getattr(args, dest, None) is not None:
            fail(f"--{dest.replace('_', '-')} does not apply to one long series (the series pipeline: "
                 f"--train-rows, --window): {why}; drop it")
    if args.format not in (None, "series"):
        fail(f"--format {args.format} does not apply to --train-rows: it reads one long series; drop --format")
    if getattr(args, "pool", None) is not None:
        fail("--pool does not apply to one long series: the series pipeline pools by the period it finds (--window "
             "sets the window in rows); drop --pool")
    if args.head == "sigmoid":
        fail("--head sigmoid does not apply to one long series: the series pipeline reconstructs normalised real "
             "values; drop --head")
    series = _load_series(args.data, args.columns)
    a, b = parse_rows(args.train_rows, series.shape[0])
    if getattr(args, "every_row", False) and not args.quiet:
        print("one long series (--window or --format series): the series pipeline, trained on every row of it "
              "(--train-rows A:B trains it on a normal stretch)", file=sys.stderr)
    # Every model and training flag is a field of the series preset's specs: none is ignored.
    specs = apply_flags(args, *preset("series", series.shape[1]), fields={"head.kind": "linear"})
    # --window / --stride count input rows, as everywhere on the command line; the plan turns them into steps
    plan = plan_series(series[a:b], window_rows=args.window, stride_rows=args.stride)
    det = SeriesAnomalyDetector(window=plan.window, stride=plan.stride, progress=not args.quiet, specs=specs,
                                models=args.seeds or SERIES_MODELS)
    with run_lock(out, make_parents(out.parent)):
        work = new_partial(out)
        try:
            det.fit(series[a:b], plan=plan, workdir=work)  # checkpoints and metrics.jsonl as any run's
            det.save(work, data={"source": str(Path(args.data).resolve()), "format": "series",
                                 "columns": args.columns, "train_rows": [a, b]})
            _plot_losses(work)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        commit(work, out)
    info = det.config_.get("result", {})
    print(f"series pipeline on rows {a}:{b} of {args.data}: {det.plan_.describe()}")
    models = f"{det.models} models (seeds {specs[1].seed}..{specs[1].seed + det.models - 1}), " if det.models > 1 else ""
    print(f"trained {models}{info.get('steps', 0)} steps; threshold {det.threshold_:.6g} (contamination "
          f"{det.contamination:g} of the training rows)")
    made = " ".join(f for f in ("metrics.jsonl", "loss.png") if (out / f).exists())
    print(f"run saved in {out}/: config.json checkpoint.msgpack detector.json detector.npz {made}".rstrip())
    return 0


def _plot_losses(work: Path) -> None:
    from jax_lstm_ae.cli.plots import have_matplotlib, plot_losses
    from jax_lstm_ae.train.checkpoint import read_metrics

    history = read_metrics(work / "metrics.jsonl")
    if history and have_matplotlib():
        plot_losses(history, work / "loss.png")


def series_for_run(det, args):
    """The series a run of the series pipeline works on: --data (default: the run's file) with --columns (default:
    the run's); --window / --stride (rows) are refused unless they are the run's. Returns (series [N_t, F],
    columns, the run's recorded data options)."""
    dcfg = det.config_.get("data", {}) or json.loads((Path(args.run) / "detector.json").read_text()).get("data", {})
    source = args.data or dcfg.get("source")
    columns = args.columns if args.columns is not None else dcfg.get("columns")
    p = det.plan_
    for flag, rows, steps in (("--window", args.window, p.window), ("--stride", args.stride, p.stride)):
        if rows is not None and max(1, int(round(rows / p.pool))) != steps:  # what train made of the same rows
            fail(f"{flag} {rows} differs from this run's, chosen at train time: {p.describe()}; drop {flag}")
    return _load_series(source, columns), columns, dcfg


def detect_series(args, plan: FilesPlan) -> int:
    """`detect` on a run of the series pipeline: its plan, columns and scorer."""
    from jax_lstm_ae.apps.detectors import load_detector

    det = load_detector(args.run)
    if args.fit_data is not None or args.normal_class is not None:
        fail("a run of the series pipeline scores with its own fitted scorer; drop --fit-data / --normal-class "
             "(give --labels for metrics)")
    series, columns, dcfg = series_for_run(det, args)
    n = series.shape[0]
    w, starts, err = det.score_windows(series)
    scores = points_to_rows(w, starts, det.plan_, n)
    rows = dcfg.get("train_rows")
    print(f"using the run's {det.plan_.describe()}, chosen from its training rows "
          f"{'%d:%d' % tuple(rows) if rows else '(not recorded)'}")
    labels = read_labels(args.labels, n, "one per time point of the series") if args.labels else None
    kind = "contamination" if args.threshold == "auto" and labels is None else args.threshold
    thr, how = threshold(argparse.Namespace(**{**vars(args), "threshold": kind}), labels, scores, scores, True)
    flags = scores > thr
    written = write_outputs(args, plan, scores, thr, flags, labels, det.normalizer_.apply(series))
    print(f"scored {n} points; threshold {thr:.6g} ({how}); flagged {int(flags.sum())} ({flags.mean():.2%})")
    spans = top_stretches(scores, thr, args.top)
    print_stretches(spans)
    if labels is not None and labels.any() and not labels.all():
        rep = series_report(labels, scores, thr)
        print("  ".join(f"{k} {v:.4f}" for k, v in rep.items()))
    if args.explain:
        rows = explain_stretches(det, spans, w, starts, err, columns)
        write_bytes(Path(args.explain), "start,end,score,window_start,window_end,peak_row_start,peak_row_end,"
                                      "feature,step_share,feature_share\n" + "".join(rows))
        print(f"wrote {args.explain}")
    print(written)
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


