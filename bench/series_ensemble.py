"""How many models the series pipeline's ensemble needs, chosen without labels.

    python bench/series_ensemble.py                    # 16 seeds per series, K in 1 2 3 4 5 6 8
    python bench/series_ensemble.py --seeds 8 --k 1 2 4

One model's top-scoring row moves from seed to seed; the mean of K models'
standardised scores (``SeriesAnomalyDetector(models=K)``) moves less. Per
series of bench/quality.py (the training rows it uses; Daphnet, which labels
no anomaly, is left out), one model per seed 0 .. N-1 is fitted with the
pipeline's defaults; for each K the seeds are cut into disjoint groups of K
(0..K-1, K..2K-1, ...) and each group's ensemble scores every row, as the
detector does: model k's window scores standardised by their mean and sd on
the training stretch's windows, averaged over the group, spread to rows.

The criterion reads no label: the share of pairs of disjoint ensembles whose
top rows lie within one window (W pooled steps x d rows) of each other, per
series. The default K is the smallest whose pairs agree on every series.
For orientation only (nothing is chosen by it), the share of ensembles whose
top row lies in the labelled stretch is printed beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import DATA, SERIES  # noqa: E402

from jax_lstm_ae.apps.anomaly import score_errors  # noqa: E402
from jax_lstm_ae.apps.detectors import SeriesAnomalyDetector  # noqa: E402
from jax_lstm_ae.apps.series import labels_from_stretches, plan_series, points_to_rows, prepare, stretches  # noqa: E402
from jax_lstm_ae.data import load_series, sliding_windows  # noqa: E402


def member_scores(series, a: int, b: int, plan, seed: int) -> np.ndarray:
    """One model's window scores on every window of the series, standardised on the training stretch's."""
    det = SeriesAnomalyDetector(window=plan.window, stride=plan.stride, seed=seed, models=1).fit(series[a:b], plan=plan)
    w = det.score_windows(series)[0]
    ref = score_errors(det.scorer_, det._errors(det.windows(series[a:b])[0]))[0]
    return (w - ref.mean()) / (ref.std() or 1.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=16, help="models per series: seeds 0 .. N-1")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8])
    p.add_argument("--json", help="append the result as one JSON line here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    per_series = {}
    for name, (path, cols, spans, train_rows) in SERIES.items():
        series = load_series(DATA / path, cols)
        n = series.shape[0]
        if isinstance(spans, str):
            spans = stretches(load_series(DATA / path, [spans])[:, 0] > 0.5)
        labels = labels_from_stretches(spans, n)
        if not labels.any():
            continue
        a, b = train_rows or (0, spans[0][0])
        plan = plan_series(series[a:b])
        t = time.perf_counter()
        windows = [member_scores(series, a, b, plan, s) for s in range(args.seeds)]
        _, starts = sliding_windows(prepare(series, plan), plan.window, plan.stride)
        per_series[name] = (windows, starts, plan, labels)
        print(f"{name}: {args.seeds} models ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    rows = []
    for k in args.k:
        groups = [range(i * k, (i + 1) * k) for i in range(args.seeds // k)]
        row = {"k": k, "ensembles": len(groups), "series": {}}
        for name, (windows, starts, plan, labels) in per_series.items():
            tops = []
            for g in groups:
                points = points_to_rows(np.mean([windows[s] for s in g], axis=0), starts, plan, labels.shape[0])
                tops.append(int(np.argmax(points)))
            span = plan.window * plan.pool
            pairs = list(itertools.combinations(tops, 2))
            row["series"][name] = {"agree": float(np.mean([abs(x - y) <= span for x, y in pairs])) if pairs else None,
                                   "top_in_stretch": float(np.mean([labels[t] for t in tops])), "tops": tops}
        agree = [v["agree"] for v in row["series"].values() if v["agree"] is not None]
        row["min_agree"] = min(agree) if agree else None
        rows.append(row)
    chosen = next((r["k"] for r in rows if r["min_agree"] == 1.0), None)
    names = list(per_series)
    print("| K | ensembles | " + " | ".join(names) + " | every series agrees |")
    print("| ---: | ---: |" + " --- |" * (len(names) + 1))
    for r in rows:
        cells = [f"{r['series'][n]['agree']:.2f} ({r['series'][n]['top_in_stretch']:.2f})"
                 if r["series"][n]["agree"] is not None else "-" for n in names]
        print(f"| {r['k']} | {r['ensembles']} | " + " | ".join(cells) + f" | {'yes' if r['min_agree'] == 1.0 else 'no'} |")
    print(f"\nsmallest K whose disjoint ensembles agree on every series: {chosen}")
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps({"rows": rows, "chosen": chosen, "seeds": args.seeds,
                                 "wall_s": time.perf_counter() - t0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
