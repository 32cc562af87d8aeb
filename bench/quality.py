"""Anomaly-detection and representation quality on real data (../shared/data).

    python bench/quality.py                    # every row, prints a markdown table
    python bench/quality.py --only ecg         # ECG5000 anomaly (through the CLI) + probe rows
    python bench/quality.py --only series      # the built-in labelled series (SERIES)
    python bench/quality.py --only anomaly     # ECG5000 anomaly + the series rows: bench/RESULTS.md's anomaly tables
    python bench/quality.py --series FILE --columns 1,2 --anomaly 2801:2960 [--anomaly A:B ...] [--train-rows 0:2801]
    python bench/quality.py --json out.jsonl   # also one JSON object per row
    python bench/quality.py --only probe --probe-splits 5   # the probe on 5 splits, and their means

Protocols (no choice reads a test label):

ECG5000 anomaly: the file is split 60 / 40 % (stratified by class); the
  60 % part trains `jax-lstm-ae train --normal-class 1` (class-1 beats only,
  20 % of them held out for the best epoch and the scorer) and the 40 % part
  is scored by `jax-lstm-ae detect --normal-class 1` (class 1 normal, 2-5
  anomalous): ROC AUC and PR AUC, beside the same pipeline on the raw beats
  and each beat's distance to its nearest normal training beat.
ECG5000 probe: a stratified 60 / 40 % split of all 500 beats. A second
  autoencoder (its own --probe-* settings, chosen by the latent probe's CV on
  the 60 %: --probe-cv-only reports that and never scores the 40 %) trains
  (unsupervised) on the 60 % (10 % of it for early stopping); a multinomial logistic regression on its latents (l2 by 5-fold CV
  on the 60 %) is scored on the 40 %, next to PCA of the raw beat at the same
  dimension E and the raw 140-step beat.
Series: the documented route for one long series, through the command line
  with its defaults: `jax-lstm-ae train --data FILE --train-rows A:B` (the
  series pipeline of jax_lstm_ae.apps.series: period, pooling and detrending
  from the training rows only, window Mahalanobis on held-out training
  windows) then `jax-lstm-ae detect --run RUN` (one score per row); beside it,
  on the same plan, the pipeline on raw windows (no autoencoder), a
  matrix-profile discord score (stumpy) and, with --pyod, PyOD's AutoEncoder
  (on the flattened normalised windows) and LSTMAD (next-step prediction on
  the pooled series), both at their defaults, fitted on the training rows.
  Every row of the series is scored: point ROC AUC, PR AUC, best range-based
  F1 (Tatbul et al. 2018, alpha 0, flat bias; best over score quantiles),
  VUS-PR / VUS-ROC and range-AUC-PR / -ROC (Paparrizos et al. 2022, as TSB-AD
  1.5 computes them, window 100: jax_lstm_ae.apps.range_metrics), whether the
  top row lies in a labelled stretch, and for the UCR archive series whether
  it lies within 100 rows of one (the archive's score). --seeds S1 S2 ... runs
  each series once per seed (the CLI's --seed; PyOD's random_state and torch's
  seed) and prints tables of the mean and spread; --summary prints them again
  from --json files (e.g. one process per series):

    for s in "Yahoo S5" TEK16 ...; do python bench/quality.py --only series --names "$s" --seeds 0 5 10 --pyod \
        --json rows.jsonl; done; python bench/quality.py --summary rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jax_lstm_ae.apps.anomaly import points_from_windows  # noqa: E402
from jax_lstm_ae.data import Dataset, load_sequences, load_series  # noqa: E402
from jax_lstm_ae.nn.encoder import POOLINGS  # noqa: E402
from jax_lstm_ae.nn.spec import CellSpec, DecoderSpec, EncoderSpec, ModelSpec  # noqa: E402
from jax_lstm_ae.train.runner import run_training  # noqa: E402
from jax_lstm_ae.train.spec import OptimizerSpec, TrainSpec  # noqa: E402
from jax_lstm_ae.apps.metrics import roc_auc  # noqa: E402
from jax_lstm_ae.apps.probe import compare_representations, confusion_matrix, encode_all  # noqa: E402
from jax_lstm_ae.apps.probe import fit_pca, fit_probe, pca_transform  # noqa: E402
from jax_lstm_ae.data import ecg5000_files, stratified_split  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ECG = DATA / "ecg5000" / "ECG5000_TRAIN.txt"
def train_model(args, train: Dataset, val: Dataset, features: int, steps: int, seed: int, *, ecg: bool = False,
                budget: int | None = None, pooling: str = "last", corruption: dict | None = None):
    """Train through the library's runner (``run_training``) on ``train`` (raw
    units: the runner fits the z-score on it and applies it to ``val``, the
    caller's early-stopping set): about ``budget`` (default ``args.steps``) Adam
    steps in whole epochs, cosine-decayed over them; the parameters of the epoch
    with the best validation loss come back, with the normaliser.
    ``pooling`` is the encoder's readout, read out unprojected (``last_mean``:
    2E wide, as the screens in RESULTS read it; bidirectional: projected to E);
    ``corruption`` the denoising fields of ``TrainSpec`` (``input_noise`` or
    ``step_dropout``)."""
    e, h, b, lr = ((args.ecg_embedding, args.ecg_hidden, args.ecg_batch, args.ecg_lr) if ecg
                   else (args.embedding, args.hidden, args.batch, args.lr))
    bi = bool(ecg and args.ecg_bidirectional)
    model_spec = ModelSpec(features=features, embedding_dim=e,
                           encoder=EncoderSpec(hidden=tuple(h), bidirectional=bi, pooling=pooling, project=bi),
                           decoder=DecoderSpec(kind=args.decoder), cell=CellSpec(init="uniform"))
    train_spec = TrainSpec(batch_size=b, epochs=1, min_steps=budget or args.steps, normalize="zscore", seed=seed,
                           optimizer=OptimizerSpec(learning_rate=lr, schedule="cosine"), **(corruption or {}))
    res = run_training(model_spec, train_spec, train, val=val)
    hist = res.history
    best = min((h["val_loss"] for h in hist if h["val_loss"] is not None), default=None)
    batch = res.config["budget"]["batch_size"]
    desc = f"E={e} hidden={list(h)} decoder={args.decoder} batch={batch} lr={lr:g} pooling={pooling}"
    return res.model, res.params, res.normalizer, {"epochs_run": len(hist), "steps": int(res.state.step),
                                                   "best_val_loss": best, "train_loss": hist[-1]["loss"],
                                                   "model": desc}


def _split(idx, fractions, rng):
    idx = rng.permutation(idx)
    cuts = np.cumsum([int(round(f * len(idx))) for f in fractions[:-1]])
    return np.split(idx, cuts)


# ----------------------------------------------------------------- ECG5000 probe
def probe_corruption(args):
    """The probe autoencoder's input corruption as ``TrainSpec`` fields, and
    its name (--probe-noise, --probe-step-dropout), or (None, "none")."""
    if args.probe_noise and args.probe_step_dropout:
        raise SystemExit("--probe-step-dropout replaces the default --probe-noise: give --probe-noise 0 with it")
    if args.probe_noise:
        return {"input_noise": args.probe_noise}, f"gaussian_noise({args.probe_noise:g})"
    if args.probe_step_dropout:
        return {"step_dropout": args.probe_step_dropout}, f"step_dropout({args.probe_step_dropout:g})"
    return None, "none"


def ecg_probe(args) -> dict:
    t0 = time.perf_counter()
    ds = load_sequences(ECG)
    y = ds.labels.astype(int)
    rng = np.random.default_rng(args.seed + 1)
    tr, te = [], []
    for c in np.unique(y):  # stratified 60 / 40
        a, b = _split(np.flatnonzero(y == c), (0.6, 0.4), rng)
        tr.append(a)
        te.append(b)
    tr, te = np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))
    fit_idx, stop_idx = _split(tr, (0.9, 0.1), rng)
    # The probe's autoencoder has its own sizes, decoder and readout (--probe-*), chosen by the latent probe's CV
    probe_args = argparse.Namespace(**{**vars(args), "ecg_embedding": args.probe_embedding,
                                       "ecg_hidden": args.probe_hidden, "decoder": args.probe_decoder})
    model_seed = args.seed if args.probe_model_seed is None else args.probe_model_seed  # the split keeps --seed
    corruption, corrupt_name = probe_corruption(args)
    # the runner fits the z-score on the 90 % it trains on; every beat is encoded with it
    model, params, norm, info = train_model(probe_args, ds.take(fit_idx), ds.take(stop_idx), 1, ds.steps,
                                            model_seed, ecg=True, budget=args.probe_steps,
                                            pooling=args.probe_pooling, corruption=corruption)
    data = norm.apply(ds)
    info["model_seed"] = model_seed
    info["corruption"] = corrupt_name
    z = encode_all(model, params, data.x)
    raw = data.x.reshape(ds.n, -1)
    if args.probe_cv_only:
        # Model selection: the probe's 5-fold CV accuracy on the training
        # beats, for the latent and both baselines; the test beats are never scored.
        pca = fit_pca(raw[tr], min(z.shape[1], *raw[tr].shape))
        reps = {"latent": z[tr], "pca": pca_transform(pca, raw[tr]), "raw": raw[tr]}
        cv = {k: fit_probe(v, y[tr]) for k, v in reps.items()}
        return {
            "row": "ECG5000 5-class probe (CV on training beats only)", "seed": args.seed, **info, "n_train": len(tr),
            **{f"cv_{k}": p.cv_accuracy for k, p in cv.items()}, **{f"dim_{k}": v.shape[1] for k, v in reps.items()},
            **{f"l2_{k}": p.l2 for k, p in cv.items()},
            # rows: true class, columns: predicted (held-out folds at the chosen l2), classes sorted
            **{f"cv_confusion_{k}": confusion_matrix(y[tr], p.cv_predictions).tolist() for k, p in cv.items()},
            "wall_s": time.perf_counter() - t0,
        }
    res = compare_representations(z[tr], z[te], raw[tr], raw[te], y[tr], y[te])
    return {
        "row": "ECG5000 5-class probe", "seed": args.seed, **info, "n_train": len(tr), "n_test": len(te),
        **{f"acc_{k}": v["accuracy"] for k, v in res.items()}, **{f"dim_{k}": v["dim"] for k, v in res.items()},
        **{f"l2_{k}": v["l2"] for k, v in res.items()}, **{f"cv_{k}": v["cv_accuracy"] for k, v in res.items()},
        "wall_s": time.perf_counter() - t0,
    }


def probe_summary(rows: list[dict]) -> dict:
    """Mean (and min, max) over several splits' probe rows, per representation."""
    kind = "acc" if "acc_latent" in rows[0] else "cv"  # test accuracy, or CV only (--probe-cv-only)
    out = {"row": f"ECG5000 5-class probe: mean of {len(rows)} splits", "seed": [r["seed"] for r in rows],
           "kind": kind, "wall_s": sum(r["wall_s"] for r in rows)}
    for rep in ("latent", "pca", "raw"):
        v = np.array([r[f"{kind}_{rep}"] for r in rows])
        out[f"{kind}_{rep}"], out[f"{kind}_{rep}_min"], out[f"{kind}_{rep}_max"] = v.mean(), v.min(), v.max()
        out[f"dim_{rep}"] = rows[0][f"dim_{rep}"]
    latent = np.array([r[f"{kind}_latent"] for r in rows])
    out["splits_latent_above_both"] = int(np.sum((latent > [r[f"{kind}_pca"] for r in rows])
                                                 & (latent > [r[f"{kind}_raw"] for r in rows])))
    return out


# ----------------------------------------------------------------- series
# name: (file under ../shared/data, feature columns, labelled stretches [(start, end_exclusive)] or the
# label column's name, the normal training rows (start, end_exclusive)). The discord files label an anomaly
# where lo < i < hi; their training rows are the ones before it (as a user who knows a normal stretch would
# give them); the UCR archive series trains on the archive's own anomaly-free TRAIN part (its first 1200 rows).
SERIES = {
    "chfdb_chf13_45590": ("discords/chfdb_chf13_45590.txt", [1, 2], [(2801, 2960)], (0, 2801)),
    "xmitdb_x108_0": ("discords/xmitdb_x108_0.txt", [1, 2], [(4021, 4400)], (0, 4021)),
    "TEK16": ("discords/TEK16.txt", None, [(4271, 4370)], (0, 4271)),
    "UCR 135 InternalBleeding16": ("anomaly/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv", ["value"],
                                   "is_anomaly", (0, 1200)),
    "Daphnet S06R02E0": ("anomaly/Daphnet_S06R02E0/S06R02E0.csv", [
        "ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert", "leg_horiz_lateral",
        "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral"], "is_anomaly", None),
    "MIT-BIH (mitdb)": ("anomaly/mitdb/mitdb.csv", ["data"], "label", None),
    "Yahoo S5": ("anomaly/yahoo/yahoo.csv", ["data"], "label", None),
}
UCR_SERIES = ("UCR 135 InternalBleeding16",)


def _stretches_arg(text: str) -> list[tuple[int, int]]:
    """'A:B,C:D' -> [(A, B), (C, D)] (end exclusive)."""
    out = []
    for part in text.split(","):
        lo, hi = part.split(":")
        out.append((int(lo), int(hi)))
    return out


def series_cli_commands(args, path, columns, train_rows, work: Path) -> list[list[str]]:
    """The documented route for one long series, as the bench runs it: `jax-lstm-ae train --train-rows A:B`
    (the series pipeline, the CLI's defaults unless a series option of the bench is given) and `detect --run`."""
    train = ["train", "--data", str(path), "--train-rows", f"{train_rows[0]}:{train_rows[1]}", "--seed",
             str(args.seed), "--out", str(work / "run"), "--force", "--quiet"]
    if columns is not None:
        train += ["--columns", ",".join(map(str, columns))]
    for flag, value in (("--window", args.window), ("--stride", args.stride), ("--embedding-dim", args.embedding),
                        ("--batch-size", args.batch), ("--lr", args.lr), ("--decoder", args.decoder)):
        if value is not None:
            train += [flag, str(value)]
    if args.hidden is not None:
        train += ["--hidden", ",".join(map(str, args.hidden)) or "none"]
    if args.epochs is not None:
        train += ["--epochs", str(args.epochs), "--min-steps", "0"]
    if args.devices:
        train += ["--devices", args.devices]
    detect = ["detect", "--run", str(work / "run"), "--out", str(work / "points.csv"), "--force", "--quiet",
              *(["--devices", args.devices] if args.devices else [])]
    return [train, detect]


def pyod_scores(kind: str, det, series, train_rows, seed: int) -> np.ndarray:
    """PyOD's detectors on the same label-free preprocessing (``det``: the raw-window detector, which holds the
    plan and the training stretch's normaliser), fitted on the training rows, one score per row [N_t].

    ``ae``: pyod.models.auto_encoder.AutoEncoder (its defaults) on the flattened [W * F] normalised windows,
    window scores spread back to rows as the autoencoder's are. ``lstm``: pyod.models.ts_lstm.LSTMAD (its
    defaults, lookback W) on the detrended, pooled, normalised series; the per-step scores go back to rows."""
    import torch

    from jax_lstm_ae.apps.series import points_to_rows, prepare

    a, b = train_rows
    n = series.shape[0]
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # beside JAX's threads on a small machine: more threads only contend
    if kind == "ae":
        from pyod.models.auto_encoder import AutoEncoder

        fit, _ = det.windows(series[a:b])
        full, starts = det.windows(series)
        model = AutoEncoder(random_state=seed, verbose=0).fit(fit.x.reshape(fit.n, -1))
        return points_to_rows(model.decision_function(full.x.reshape(full.n, -1)), starts, det.plan_, n)
    from pyod.models.ts_lstm import LSTMAD

    plan = det.plan_
    norm = det.normalizer_
    mu, sd = np.asarray(norm.shift, np.float64), np.asarray(norm.scale, np.float64)
    fit = (prepare(series[a:b], plan) - mu) / sd
    full = (prepare(series, plan) - mu) / sd
    model = LSTMAD(window_size=plan.window).fit(fit)
    steps = np.asarray(model.decision_function(full), np.float64)
    return points_to_rows(steps, np.arange(steps.shape[0]), plan._replace(window=1), n)


_MP_CACHE: dict = {}
METHODS = {"lstm": "LSTM (CLI)", "raw": "raw windows", "mp": "matrix profile", "pyod_ae": "PyOD AutoEncoder",
           "pyod_lstm": "PyOD LSTMAD"}


def series_row(args, name: str, path, columns, spans, train_rows, *, ucr: bool = False) -> dict:
    """One long series with labelled stretches, at seed ``args.seed``: the documented route (`jax-lstm-ae train
    --train-rows` then `detect --run`, through the CLI with its defaults: the series pipeline), the same
    pipeline on raw windows (``SeriesAnomalyDetector(raw=True)``), the matrix-profile discord score, and (with
    --pyod, when PyOD is installed) PyOD's AutoEncoder and LSTMAD on the same preprocessing.

    ``spans``: [(start, end_exclusive)] or the name of a 0/1 label column of the file. ``train_rows``:
    (start, end_exclusive) of the normal training stretch, or None for the rows before the first labelled one.
    Metrics are on every row of the series."""
    import tempfile

    from jax_lstm_ae.apps.baselines import matrix_profile_scores
    from jax_lstm_ae.apps.detectors import SeriesAnomalyDetector, load_detector
    from jax_lstm_ae.apps.metrics import best_range_f1, pr_auc, top_in_stretch
    from jax_lstm_ae.apps.range_metrics import vus_metrics
    from jax_lstm_ae.apps.series import labels_from_stretches, stretches
    from jax_lstm_ae.cli.main import main as cli

    t0 = time.perf_counter()
    series = load_series(path, columns)
    n = series.shape[0]
    if isinstance(spans, str):
        labels = load_series(path, [spans])[:, 0] > 0.5
        spans = stretches(labels)
    labels = labels_from_stretches(spans, n)
    row = {"row": f"series {name}", "seed": args.seed, "file": str(path), "rows": n, "stretches": spans}
    if not labels.any():
        return {**row, "skipped": "the file labels no anomaly, so there is nothing to score against",
                "wall_s": time.perf_counter() - t0}
    train_rows = train_rows or (0, spans[0][0])
    a, b = train_rows
    row["train_rows"] = [a, b]
    scores, info = {}, {}
    with tempfile.TemporaryDirectory(prefix="series_") as tmp:
        cmds = series_cli_commands(args, path, columns, train_rows, Path(tmp))
        row["commands"] = ["jax-lstm-ae " + " ".join(c) for c in cmds]
        t = time.perf_counter()
        for cmd in cmds:
            if cli(cmd) != 0:
                raise SystemExit(f"jax-lstm-ae {cmd[0]} failed: {' '.join(cmd)}")
        scores["lstm"] = np.loadtxt(Path(tmp) / "points.csv", delimiter=",", skiprows=1)[:, 1]
        lstm = load_detector(Path(tmp) / "run")
        info["lstm"] = {"wall_s": time.perf_counter() - t, **lstm.config_.get("result", {})}
    plan = lstm.plan_
    row["plan"] = plan._asdict()
    t = time.perf_counter()
    raw = SeriesAnomalyDetector(window=plan.window, stride=plan.stride, seed=args.seed, raw=True)
    raw.fit(series[a:b], plan=plan)
    scores["raw"] = raw.decision_function(series)
    info["raw"] = {"wall_s": time.perf_counter() - t}
    t = time.perf_counter()
    key = (str(path), tuple(plan))  # no seed in it: computed once per series and plan
    if key not in _MP_CACHE:
        _MP_CACHE[key] = matrix_profile_scores(series, plan)
    scores["mp"] = _MP_CACHE[key]
    info["mp"] = {"wall_s": time.perf_counter() - t}
    if args.pyod:
        for kind in ("ae", "lstm"):
            t = time.perf_counter()
            scores[f"pyod_{kind}"] = pyod_scores(kind, raw, series, train_rows, args.seed)
            info[f"pyod_{kind}"] = {"wall_s": time.perf_counter() - t}
    test = np.arange(n) >= b
    for kind, s in scores.items():
        assert np.all(np.isfinite(s)) and s.shape == (n,), kind
        rf1, _ = best_range_f1(labels, s)
        row[kind] = {
            "roc_auc": roc_auc(labels, s), "pr_auc": pr_auc(labels, s), "range_f1": rf1, **vus_metrics(labels, s),
            "roc_auc_after_train": roc_auc(labels[test], s[test]) if labels[test].any() else None,
            "top_row": int(np.argmax(s)), "top_in_stretch": top_in_stretch(labels, s),
            **({"ucr_top_within_100": top_in_stretch(labels, s, 100)} if ucr else {}), **info[kind],
        }
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
        np.savez(Path(args.dump) / f"{name.replace(' ', '_')}.npz", labels=labels, **scores)
    return {**row, "wall_s": time.perf_counter() - t0}


# ----------------------------------------------------------------- ECG5000 through the command line
def ecg_cli(args) -> dict:
    """ECG5000, normal class 1, through `jax-lstm-ae train --normal-class 1` and `detect`.

    The file is split (stratified by class, seed --seed) into a training part (60 %) and a test part (40 %),
    written as two UCR files; train keeps the class-1 beats of the training part (20 % of them held out: best
    epoch and the scorer); detect scores every beat of the test part (class 1 normal, 2-5 anomalous).
    Baselines on the same beats: the same pipeline on the raw beats (SequenceAnomalyDetector(raw=True), the
    same split and normalisation), and the distance of each beat to its nearest normal training beat."""
    import tempfile

    from jax_lstm_ae.apps.baselines import nearest_neighbour_scores
    from jax_lstm_ae.apps.detectors import SequenceAnomalyDetector
    from jax_lstm_ae.apps.metrics import pr_auc
    from jax_lstm_ae.cli.main import main as cli

    t0 = time.perf_counter()
    ds = load_sequences(ECG)
    y = ds.labels.astype(int)
    # the split `jax-lstm-ae data ecg5000 --seed S` writes (the package's copy of this file)
    tr, te = stratified_split(y, (0.6, 0.4), args.seed)
    work = Path(args.ecg_dir or tempfile.mkdtemp(prefix="ecg5000_"))
    work.mkdir(parents=True, exist_ok=True)
    files = ecg5000_files(args.seed)
    for name in ("train.txt", "test.txt"):
        (work / name).write_bytes(files[name])
    train_cmd = ["train", "--data", str(work / "train.txt"), "--normal-class", "1", "--out", str(work / "run"),
                 "--force", "--hidden", "64", "--embedding-dim", "32", "--batch-size", "16", "--lr", "5e-3",
                 "--schedule", "cosine", "--epochs", str(args.ecg_epochs), "--seed", str(args.seed), "--quiet",
                 *(["--devices", args.devices] if args.devices else [])]
    detect_cmd = ["detect", "--run", str(work / "run"), "--data", str(work / "test.txt"), "--normal-class", "1",
                  "--threshold", "contamination", "--out", str(work / "scores.csv"), "--force", "--quiet",
                  *(["--devices", args.devices] if args.devices else [])]
    t = time.perf_counter()
    for cmd in (train_cmd, detect_cmd):
        print("jax-lstm-ae " + " ".join(cmd), flush=True)
        if cli(cmd) != 0:
            raise SystemExit(f"jax-lstm-ae {cmd[0]} failed")
    lstm_s = time.perf_counter() - t
    table = np.loadtxt(work / "scores.csv", delimiter=",", skiprows=1)
    labels = table[:, 3].astype(bool)
    normal = ds.take(tr[y[tr] == 1])
    raw = SequenceAnomalyDetector(raw=True, seed=args.seed).fit(normal.x)
    test = ds.take(te)
    scores = {"lstm": table[:, 1], "raw": raw.decision_function(test.x),
              "nn": nearest_neighbour_scores(normal.x, test.x)}
    out = {"row": "ECG5000 anomaly (CLI)", "seed": args.seed, "n_test": f"{int((~labels).sum())} normal + "
           f"{int(labels.sum())} anomalous", "commands": ["jax-lstm-ae " + " ".join(c) for c in (train_cmd, detect_cmd)],
           "lstm_wall_s": lstm_s}
    for kind, s in scores.items():
        out[kind] = {"roc_auc": roc_auc(labels, s), "pr_auc": pr_auc(labels, s)}
    return {**out, "wall_s": time.perf_counter() - t0}


# ----------------------------------------------------------------- scoring speed
def scoring_speed(args) -> dict:
    """Fit + score 100k windows of W=64, F=2 errors (window level: D=128; step
    level: 6.4M [F] vectors), and spread them to points. Compile time is
    reported apart; times are medians of 5 runs. SciPy's multivariate_normal
    logpdf (float64) on the same 100k vectors for comparison."""
    import jax
    from scipy.stats import multivariate_normal

    from jax_lstm_ae.apps.anomaly import fit_gaussian, mahalanobis

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n, w, f = 100_000, 64, 2
    err = np.abs(rng.normal(size=(n, w, f))).astype(np.float32)
    starts = np.arange(n) * 4

    def timed(fn, reps=5):
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        runs = []
        for _ in range(reps):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            runs.append(time.perf_counter() - t)
        return first, float(np.median(runs)), float(np.min(runs)), float(np.max(runs))

    flat = err.reshape(n, -1)
    t = time.perf_counter()
    g = fit_gaussian(flat[:10_000])
    fit_s = time.perf_counter() - t
    win = timed(lambda: mahalanobis(g, flat))
    gs = fit_gaussian(err[:10_000].reshape(-1, f))
    step = timed(lambda: mahalanobis(gs, err))
    pts = timed(lambda: points_from_windows(np.ones((n, w), np.float32), starts, int(starts[-1]) + w))
    cov = np.linalg.inv(g.whiten @ g.whiten.T)
    t = time.perf_counter()
    multivariate_normal(g.mean, cov).logpdf(flat[:10_000].astype(np.float64))
    scipy_s = (time.perf_counter() - t) * 10  # 10k measured, scaled to 100k
    return {
        "row": "scoring speed", "seed": args.seed, "n_windows": n, "window": w, "features": f,
        "fit_gaussian_10k_s": fit_s, "window_mahalanobis_100k_s": win[1], "window_first_call_s": win[0],
        "window_spread_s": [win[2], win[3]], "step_mahalanobis_100k_s": step[1], "step_first_call_s": step[0],
        "points_from_windows_100k_s": pts[1], "scipy_logpdf_100k_s_est": scipy_s,
        "wall_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------- main
def _series_line(r) -> str:
    """| series | plan | ROC AUC | PR AUC | range F1 | VUS-PR | top row in a stretch | wall | for LSTM / raw / MP."""
    if "skipped" in r:
        return f"| {r['row'][7:]} | skipped: {r['skipped']} | | | | | | |"
    k3 = ("lstm", "raw", "mp")
    p = r["plan"]
    plan = (f"rows {r['train_rows'][0]}:{r['train_rows'][1]}; period {p['period'] or '-'}, pool {p['pool']}, "
            f"W {p['window']}")

    def cell(key, fmt):
        return " / ".join(fmt(r[k][key]) for k in k3)

    top = cell("top_in_stretch", lambda v: "yes" if v else "no")
    vus = " / ".join(f"{r[k]['vus_pr']:.3f}" if "vus_pr" in r[k] else "-" for k in k3)  # rows saved before VUS: -
    if "ucr_top_within_100" in r["lstm"]:
        top += " (UCR +-100: " + cell("ucr_top_within_100", lambda v: "yes" if v else "no") + ")"
    return (f"| {r['row'][7:]} | {plan} | {cell('roc_auc', '{:.3f}'.format)} | {cell('pr_auc', '{:.3f}'.format)} "
            f"| {cell('range_f1', '{:.3f}'.format)} | {vus} | {top} | {r['wall_s']:.0f} s |")


def _table(rows):
    series = [r for r in rows if r["row"].startswith("series ")]
    rows = [r for r in rows if not r["row"].startswith("series ")]
    text = _other_table(rows) if rows else ""
    if series:
        head = ["| series | training rows; plan | point ROC AUC (LSTM / raw / MP) | PR AUC | best range F1 | VUS-PR "
                "| top row in a stretch | wall |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        text += ("\n\n" if text else "") + "\n".join(head + [_series_line(r) for r in series])
    return text


def _other_table(rows):
    out = []
    for r in rows:
        if r["row"].startswith("series "):
            out.append(_series_line(r))
            continue
        if r["row"] == "ECG5000 anomaly (CLI)":
            res = "; ".join(f"{k} ROC AUC {r[k]['roc_auc']:.4f}, PR AUC {r[k]['pr_auc']:.4f}"
                            for k in ("lstm", "raw", "nn")) + f" ({r['n_test']})"
        elif r["row"] == "scoring speed":
            res = (f"100k windows W={r['window']} F={r['features']}: window Mahalanobis (D=128) "
                   f"{r['window_mahalanobis_100k_s']:.2f} s, step Mahalanobis (6.4M steps) "
                   f"{r['step_mahalanobis_100k_s']:.2f} s, window->points {r['points_from_windows_100k_s']:.2f} s "
                   f"(medians of 5, compile excluded); Gaussian fit on 10k {r['fit_gaussian_10k_s']:.2f} s; "
                   f"SciPy logpdf about {r['scipy_logpdf_100k_s_est']:.1f} s")
        elif "mean of" in r["row"]:
            k = r["kind"]
            res = ("; ".join(f"{'test' if k == 'acc' else 'CV'} accuracy {rep} {r[f'{k}_{rep}']:.3f} "
                             f"({r[f'{k}_{rep}_min']:.3f}-{r[f'{k}_{rep}_max']:.3f}, dim {r[f'dim_{rep}']})"
                             for rep in ("latent", "pca", "raw"))
                   + f"; latent above both in {r['splits_latent_above_both']} of {len(r['seed'])} splits")
        elif r["row"].endswith("only)"):
            res = (f"5-fold CV accuracy on the training beats: latent {r['cv_latent']:.3f} (E={r['dim_latent']}), "
                   f"PCA {r['cv_pca']:.3f} (dim {r['dim_pca']}), raw {r['cv_raw']:.3f} (dim {r['dim_raw']}); "
                   f"test not scored")
        elif r["row"].endswith("probe"):
            res = (f"accuracy latent {r['acc_latent']:.3f} (E={r['dim_latent']}), PCA {r['acc_pca']:.3f} "
                   f"(dim {r['dim_pca']}), raw {r['acc_raw']:.3f} (dim {r['dim_raw']})")
        epochs = f"{r['epochs_run']} ({r['steps']} steps)" if "steps" in r else "-"
        seed = ", ".join(map(str, r["seed"])) if isinstance(r["seed"], list) else r["seed"]
        out.append(f"| {r['row']} | {res} | {seed} | {epochs} | {r['wall_s']:.0f} s |")
    return "\n".join(["| row | result | seed | epochs | wall |", "| --- | --- | --- | --- | --- |", *out])


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (the tests build its rows' arguments from it)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("ecg", "probe", "series", "anomaly", "speed", "all"), default="all",
                   help="anomaly: the ECG5000 anomaly row and the series rows (no probe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500, help="Adam steps per model (rounded up to whole epochs)")
    p.add_argument("--probe-steps", type=int, default=3000,
                   help="steps for the probe's autoencoder (chosen by the latent probe's CV accuracy on training rows)")
    p.add_argument("--probe-pooling", choices=POOLINGS, default="mean",
                   help="probe row: readout of the encoder (lstm_encoder pooling=)")
    p.add_argument("--probe-embedding", type=int, default=32, help="probe row: latent size E")
    p.add_argument("--probe-hidden", type=int, nargs="*", default=[64], help="probe row: encoder sizes before E")
    p.add_argument("--probe-decoder", default="teacher_forced", help="probe row: decoder strategy")
    p.add_argument("--probe-model-seed", type=int, default=None,
                   help="probe row: seed of the autoencoder's init and batch order only (default --seed); the split "
                        "stays that of --seed, so other values measure training noise on the same beats")
    p.add_argument("--probe-noise", type=float, default=0.3,
                   help="probe row: train a denoising autoencoder, Gaussian noise of this std on the encoder's input "
                        "(0: plain autoencoder; 0.3 chosen by the latent probe's CV on training beats)")
    p.add_argument("--probe-step-dropout", type=float, default=0.0,
                   help="probe row: denoising by zeroing each input step with this probability")
    p.add_argument("--probe-splits", type=int, default=1,
                   help="probe row: repeat it on this many stratified splits (split seeds --seed, --seed + 1, ...; "
                        "each trains its own autoencoder) and add a row of means")
    p.add_argument("--probe-cv-only", action="store_true",
                   help="probe row: report the 5-fold CV accuracy on the training beats only and never score the "
                        "test beats (for choosing settings)")
    p.add_argument("--ecg-epochs", type=int, default=167,
                   help="ECG5000 anomaly row: train --epochs (167 epochs of 9 batches: about 1,500 steps)")
    p.add_argument("--ecg-lr", type=float, default=5e-3, help="probe row: peak learning rate")
    p.add_argument("--ecg-batch", type=int, default=16, help="probe row: batch size")
    p.add_argument("--ecg-bidirectional", action="store_true", help="probe row: bidirectional encoder")
    p.add_argument("--ecg-dir", default=None, help="ECG5000 anomaly row: folder for the split files and the run")
    p.add_argument("--devices", default=None, help="ECG5000 anomaly row: the CLI's --devices (default: its auto)")
    # Series rows run `jax-lstm-ae train --train-rows` with the CLI's defaults; these pass a flag to it.
    p.add_argument("--lr", type=float, default=None, help="series rows: train --lr (default: the CLI's)")
    p.add_argument("--decoder", default=None, help="series rows: train --decoder (default: the CLI's)")
    p.add_argument("--embedding", type=int, default=None, help="series rows: train --embedding-dim")
    p.add_argument("--hidden", type=int, nargs="*", default=None, help="series rows: train --hidden (none: no flag)")
    p.add_argument("--batch", type=int, default=None, help="series rows: train --batch-size")
    p.add_argument("--window", type=int, default=None, help="series rows: train --window")
    p.add_argument("--stride", type=int, default=None, help="series rows: train --stride")
    p.add_argument("--epochs", type=int, default=None, help="series rows: train --epochs N --min-steps 0")
    p.add_argument("--seeds", type=int, nargs="*", default=None,
                   help="series rows: one row per seed (default: --seed), and tables of their mean and spread")
    p.add_argument("--pyod", action="store_true",
                   help="series rows: also PyOD's AutoEncoder and LSTMAD on the same preprocessing (needs pyod)")
    p.add_argument("--summary", nargs="*", default=None, metavar="JSONL",
                   help="print the tables of mean and spread over seeds from these --json files and exit")
    p.add_argument("--names", nargs="*", default=list(SERIES), help="series rows: which of the built-in series")
    p.add_argument("--series", default=None, help="score this series file instead of the built-in ones")
    p.add_argument("--columns", default=None, help="--series: feature columns, numbers or names: 1,2")
    p.add_argument("--anomaly", action="append", default=None, metavar="A:B[,C:D]",
                   help="--series: labelled stretch(es), rows A..B-1; repeat or comma-separate for several")
    p.add_argument("--label-column", default=None, help="--series: a 0/1 label column instead of --anomaly")
    p.add_argument("--train-rows", default=None, metavar="A:B",
                   help="--series: normal training rows (default: the rows before the first labelled stretch)")
    p.add_argument("--ucr", action="store_true", help="--series: also report the UCR archive's score")
    p.add_argument("--json", default=None)
    p.add_argument("--dump", default=None, help="series: save the three score vectors as DIR/NAME.npz")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.summary is not None:
        rows = [json.loads(line) for f in args.summary for line in Path(f).read_text().splitlines() if line.strip()]
        print(seed_tables(rows))
        return
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}: this benchmark reads ../shared/data beside the repository")
    print(f"# jax_lstm_ae quality bench; {os.cpu_count()} cpus; args {vars(args)}", flush=True)
    rows = []

    def emit(r):
        rows.append(r)
        print(json.dumps(r), flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(r) + "\n")

    if args.series is not None:
        cols = None if args.columns is None else [int(c) if c.isdigit() else c for c in args.columns.split(",")]
        if args.label_column is None and not args.anomaly:
            sys.exit("--series needs its labelled stretches: --anomaly A:B (or --label-column NAME)")
        spans = args.label_column or [s for text in args.anomaly for s in _stretches_arg(text)]
        train = None if args.train_rows is None else tuple(int(v) for v in args.train_rows.split(":"))
        for seed in args.seeds or [args.seed]:
            emit(series_row(_with_seed(args, seed), Path(args.series).name, Path(args.series), cols, spans, train,
                            ucr=args.ucr))
        print(_table(rows))
        if args.seeds:
            print("\n" + seed_tables(rows))
        return
    if args.only in ("ecg", "anomaly", "all"):
        emit(ecg_cli(args))
    if args.only in ("probe", "ecg", "all"):
        probe_rows = []
        for k in range(args.probe_splits):  # split k: --seed + k (the split and, by default, the model)
            probe_rows.append(ecg_probe(argparse.Namespace(**{**vars(args), "seed": args.seed + k})))
            emit(probe_rows[-1])
        if len(probe_rows) > 1:
            emit(probe_summary(probe_rows))
    if args.only in ("speed", "all"):
        emit(scoring_speed(args))
    if args.only in ("series", "anomaly", "all"):
        for name in args.names:
            path, cols, spans, train = SERIES[name]
            for seed in args.seeds or [args.seed]:
                emit(series_row(_with_seed(args, seed), name, DATA / path, cols, spans, train,
                                ucr=name in UCR_SERIES))
    print(_table(rows))
    if args.seeds:
        print("\n" + seed_tables(rows))


def _with_seed(args, seed: int):
    return argparse.Namespace(**{**vars(args), "seed": seed})


def seed_tables(rows) -> str:
    """Series rows of several seeds -> three markdown tables (point ROC AUC, VUS-PR: mean and min-max over the
    seeds; the top row in a labelled stretch: in how many seeds), one line per series, one column per method."""
    by_name: dict[str, list[dict]] = {}
    skipped = {r["row"][7:]: r["skipped"] for r in rows if r["row"].startswith("series ") and "skipped" in r}
    for r in rows:
        if r["row"].startswith("series ") and "skipped" not in r:
            by_name.setdefault(r["row"][7:], []).append(r)
    if not by_name:
        return "(no scored series rows)"
    methods = [m for m in METHODS if any(m in r for rs in by_name.values() for r in rs)]
    head = "| series | seeds | " + " | ".join(METHODS[m] for m in methods) + " |"
    rule = "| --- | --- | " + " | ".join("---" for _ in methods) + " |"
    out = []
    for key, title in (("roc_auc", "point ROC AUC, mean (min-max)"), ("vus_pr", "VUS-PR, mean (min-max)"),
                       ("top_in_stretch", "top row in the labelled stretch, seeds")):
        lines = [f"{title}:", "", head, rule]
        totals = {m: 0 for m in methods}
        for name, rs in by_name.items():
            cells = []
            for m in methods:
                v = [r[m][key] for r in rs if m in r]
                if not v:
                    cells.append("-")
                elif key == "top_in_stretch":
                    cells.append(f"{sum(map(bool, v))}/{len(v)}")
                    totals[m] += sum(map(bool, v)) * 2 > len(v)  # a majority of the seeds
                else:
                    cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})")
            seeds = ",".join(str(r["seed"]) for r in rs)
            lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
        if key == "top_in_stretch":
            lines.append(f"| series with the top row in the stretch in most seeds | | "
                         + " | ".join(f"{totals[m]} of {len(by_name)}" for m in methods) + " |")
            seeds = sorted({r["seed"] for rs in by_name.values() for r in rs})
            per_seed = {m: [sum(bool(r[m]["top_in_stretch"]) for rs in by_name.values() for r in rs
                                if r["seed"] == sd and m in r) for sd in seeds] for m in methods}
            lines.append(f"| the same, per seed ({', '.join(map(str, seeds))}) | | "
                         + " | ".join(f"{', '.join(map(str, per_seed[m]))} of {len(by_name)}" for m in methods) + " |")
        out.append("\n".join(lines))
    if skipped:
        out.append("not scored: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
    return "\n\n".join(out)


if __name__ == "__main__":
    main()
