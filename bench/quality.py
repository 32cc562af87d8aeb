"""Anomaly-detection and representation quality on real data (../shared/data).

    python bench/quality.py                    # every row, prints a markdown table
    python bench/quality.py --only ecg         # ECG5000 anomaly + probe rows
    python bench/quality.py --only discords
    python bench/quality.py --json out.jsonl   # also one JSON object per row
    python bench/quality.py --only probe --probe-splits 5   # the probe on 5 splits, and their means

Protocols (all choices made on training / validation data, never on test labels):

ECG5000 anomaly (EncDec-AD split): class 1 = normal, classes 2-5 = anomalous.
  Normal beats are split 50 / 15 / 10 / 25 % into train sN, vN1, vN2, test;
  anomalous beats 30 / 70 % into vA, test. The autoencoder trains on sN with
  early stopping on vN1; each scoring method (window Mahalanobis, step
  Mahalanobis, MAE, MSE) is fitted on vN1 errors; the method with the best
  ROC AUC on the labelled validation set vN2 + vA is kept, and its threshold
  maximises F-beta (beta = --beta) there. Test ROC AUC, PR AUC, F1 are then
  measured once on the held-out test beats.
ECG5000 probe: a stratified 60 / 40 % split of all 500 beats. A second
  autoencoder (its own --probe-* settings, chosen by the latent probe's CV on
  the 60 %: --probe-cv-only reports that and never scores the 40 %) trains
  (unsupervised) on the 60 % (10 % of it for early stopping); a multinomial logistic regression on its latents (l2 by 5-fold CV
  on the 60 %) is scored on the 40 %, next to PCA of the raw beat at the same
  dimension E and the raw 140-step beat.
Discords: the series is cut into windows (--window, --stride); windows that
  touch the labelled stretch are never trained on; 20 % of the others (at
  random) are held out for early stopping and to fit the scorer. The scoring
  method is the one ECG5000's validation chose (or --discord-method). Per-step
  (or per-window) scores are averaged over the windows covering each point;
  point ROC AUC against the label, and whether the top-scoring window overlaps
  the labelled stretch.
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

from jax_lstm_ae.apps.anomaly import error_vectors, fit_scorer, points_from_windows, score_errors, window_overlaps  # noqa: E402
from jax_lstm_ae.train.checkpoint import build_model, build_optimizer, model_config, optimizer_config  # noqa: E402
from jax_lstm_ae.data.datasets import Dataset, Normalizer, load_sequences, load_series, sliding_windows  # noqa: E402
from jax_lstm_ae.nn.encoder import POOLINGS, lstm_encoder  # noqa: E402
from jax_lstm_ae.train.fit import fit  # noqa: E402
from jax_lstm_ae.train.noise import gaussian_noise, step_dropout  # noqa: E402
from jax_lstm_ae.apps.metrics import best_fbeta_threshold, detection_report, roc_auc  # noqa: E402
from jax_lstm_ae.apps.probe import compare_representations, confusion_matrix, encode_all  # noqa: E402
from jax_lstm_ae.apps.probe import fit_pca, fit_probe, pca_transform  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ECG = DATA / "ecg5000" / "ECG5000_TRAIN.txt"
DISCORDS = {
    # name: (file, columns, lo, hi) -- anomaly where lo < i < hi
    "chfdb_chf13_45590": ("chfdb_chf13_45590.txt", [1, 2], 2800, 2960),
    "xmitdb_x108_0": ("xmitdb_x108_0.txt", [1, 2], 4020, 4400),
    "TEK16": ("TEK16.txt", None, 4270, 4370),
}
METHODS = (("mahalanobis", "window"), ("mahalanobis", "step"), ("mae", "window"), ("mse", "window"))


def _ds(x, lengths=None):
    x = np.asarray(x, np.float32)
    return Dataset(x, np.full((x.shape[0],), x.shape[1], np.int32) if lengths is None else lengths)


def train_model(args, train: Dataset, val: Dataset, features: int, steps: int, seed: int, *, ecg: bool = False,
                budget: int | None = None, pooling: str = "last", corrupt=None):
    """About ``budget`` (default ``args.steps``) Adam steps (whole epochs),
    cosine-decayed; the parameters of the epoch with the best validation loss
    come back. ``pooling`` is the encoder's readout (``lstm_encoder``);
    ``corrupt`` an input corruption for denoising (``make_train_step``)."""
    e, h, b, lr = ((args.ecg_embedding, args.ecg_hidden, args.ecg_batch, args.ecg_lr) if ecg
                   else (args.embedding, args.hidden, args.batch, args.lr))
    bi = bool(ecg and args.ecg_bidirectional)
    cfg = model_config(features, decoder=args.decoder, embedding_dim=e, hidden=tuple(h), bidirectional=bi)
    model = build_model(cfg)
    # The readout is swapped in here rather than through model_config(pooling=), which projects a
    # "last_mean" readout to E: the screens in RESULTS read it out 2E wide, unprojected.
    if pooling != "last":
        model = model._replace(encoder=lstm_encoder((*h, e), bidirectional=bi, latent_dim=e if bi else None,
                                                    pooling=pooling))
    batch = min(b, train.n)
    spe = max(1, train.n // batch)
    epochs = max(1, -(-(budget or args.steps) // spe))
    opt = build_optimizer(optimizer_config(lr, decay_steps=epochs * spe))
    state, hist = fit(model, opt, train, val, epochs=epochs, batch_size=batch, seed=seed, progress=False,
                      step_kwargs=None if corrupt is None else {"corrupt": corrupt})
    best = min((h["val_loss"] for h in hist if h["val_loss"] is not None), default=None)
    desc = f"E={e} hidden={list(h)} decoder={args.decoder} batch={batch} lr={lr:g} pooling={pooling}"
    return model, state.params, {"epochs_run": len(hist), "steps": int(state.step), "best_val_loss": best,
                                 "train_loss": hist[-1]["loss"], "model": desc}


def _split(idx, fractions, rng):
    idx = rng.permutation(idx)
    cuts = np.cumsum([int(round(f * len(idx))) for f in fractions[:-1]])
    return np.split(idx, cuts)


# ----------------------------------------------------------------- ECG5000
def ecg_anomaly(args) -> dict:
    t0 = time.perf_counter()
    ds = load_sequences(ECG)
    y = ds.labels.astype(int)
    rng = np.random.default_rng(args.seed)
    n_tr, n_v1, n_v2, n_te = _split(np.flatnonzero(y == 1), (0.5, 0.15, 0.10, 0.25), rng)
    a_val, a_te = _split(np.flatnonzero(y != 1), (0.3, 0.7), rng)
    norm = Normalizer.fit(ds.take(n_tr))
    data = norm.apply(ds)
    model, params, info = train_model(args, data.take(n_tr), data.take(n_v1), 1, ds.steps, args.seed, ecg=True)
    err = error_vectors(model, params, data.x)
    val_idx = np.r_[n_v2, a_val]
    val_y = np.r_[np.zeros(len(n_v2)), np.ones(len(a_val))]
    choices = {}
    for method, level in METHODS:
        scorer = fit_scorer(err[n_v1], method=method, level=level)
        s, _ = score_errors(scorer, err[val_idx])
        choices[(method, level)] = (roc_auc(val_y, s), scorer)
    (method, level), (val_auc, scorer) = max(choices.items(), key=lambda kv: kv[1][0])
    thr = best_fbeta_threshold(val_y, score_errors(scorer, err[val_idx])[0], beta=args.beta)
    te_idx = np.r_[n_te, a_te]
    te_y = np.r_[np.zeros(len(n_te)), np.ones(len(a_te))]
    te_s, _ = score_errors(scorer, err[te_idx])
    rep = detection_report(te_y, te_s, thr.value, beta=args.beta)
    return {
        "row": "ECG5000 anomaly", "seed": args.seed, **info, "method": f"{method}/{level}",
        "val_auc_by_method": {f"{m}/{lv}": round(v[0], 4) for (m, lv), v in choices.items()},
        "threshold_beta": args.beta, "n_test": f"{len(n_te)} normal + {len(a_te)} anomalous",
        "roc_auc": rep["roc_auc"], "pr_auc": rep["pr_auc"], "f1": rep["f1"], "precision": rep["precision"],
        "recall": rep["recall"], "wall_s": time.perf_counter() - t0,
    }


def probe_corruption(args):
    """The probe autoencoder's input corruption and its name (--probe-noise,
    --probe-step-dropout), or (None, "none")."""
    if args.probe_noise and args.probe_step_dropout:
        raise SystemExit("--probe-step-dropout replaces the default --probe-noise: give --probe-noise 0 with it")
    if args.probe_noise:
        return gaussian_noise(args.probe_noise), f"gaussian_noise({args.probe_noise:g})"
    if args.probe_step_dropout:
        return step_dropout(args.probe_step_dropout), f"step_dropout({args.probe_step_dropout:g})"
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
    norm = Normalizer.fit(ds.take(fit_idx))
    data = norm.apply(ds)
    # The probe's autoencoder has its own sizes, decoder and readout (--probe-*), chosen by the latent probe's CV
    probe_args = argparse.Namespace(**{**vars(args), "ecg_embedding": args.probe_embedding,
                                       "ecg_hidden": args.probe_hidden, "decoder": args.probe_decoder})
    model_seed = args.seed if args.probe_model_seed is None else args.probe_model_seed  # the split keeps --seed
    corrupt, corrupt_name = probe_corruption(args)
    model, params, info = train_model(probe_args, data.take(fit_idx), data.take(stop_idx), 1, ds.steps, model_seed,
                                      ecg=True, budget=args.probe_steps, pooling=args.probe_pooling,
                                      corrupt=corrupt)
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


# ----------------------------------------------------------------- discords
def dominant_period(x: np.ndarray, max_lag: int = 2000) -> int:
    """The first autocorrelation peak past the lag-0 lobe (summed over
    features): the length of one beat / cycle, found without labels."""
    x = x - x.mean(axis=0)
    n = x.shape[0]
    f = np.fft.rfft(x, 2 * n, axis=0)
    ac = np.fft.irfft(f * np.conj(f), axis=0)[: min(max_lag, n - 1)].sum(axis=1)
    ac = ac / ac[0]
    ac = np.r_[np.full(7, ac[0]), np.convolve(ac, np.ones(15) / 15, mode="valid")]  # noise: no lag-1 minima
    first_neg = int(np.argmax(ac[1:] > ac[:-1]))  # end of the lag-0 lobe: first local minimum
    tail = ac[first_neg:]
    # the first local maximum reaching 80 % of the highest: multiples of the
    # period can peak a little higher than the period itself
    peaks = np.flatnonzero((tail[1:-1] >= tail[:-2]) & (tail[1:-1] >= tail[2:]) & (tail[1:-1] >= 0.8 * tail.max())) + 1
    return first_neg + int(peaks[0] if peaks.size else np.argmax(tail))


def discord(args, name: str, method: str, level: str) -> dict:
    t0 = time.perf_counter()
    fname, cols, lo, hi = DISCORDS[name]
    series = load_series(DATA / "discords" / fname, cols)
    n = series.shape[0]
    # Period-matched rate: average-pool by d so that one window of W steps
    # spans about one cycle; the period comes from the stretch before the
    # anomaly (the same data the model may train on), never from the labels.
    period = dominant_period(series[:lo]) if args.period_match else args.window
    if args.detrend:
        # Baseline wander removal: subtract the centred moving average over one period.
        k = np.ones(period) / period
        pad = np.pad(series, ((period // 2, period - 1 - period // 2), (0, 0)), mode="edge")
        series = series - np.stack([np.convolve(pad[:, j], k, mode="valid") for j in range(series.shape[1])], 1)
    d = max(1, int(round(period / args.window)))
    n_ds = n // d
    pooled = series[: n_ds * d].reshape(n_ds, d, -1).mean(axis=1)
    windows, starts = sliding_windows(pooled, args.window, args.stride)
    touch = window_overlaps(starts * d, args.window * d, lo, hi)  # in original rows
    rng = np.random.default_rng(args.seed)
    fit_idx, hold_idx = _split(np.flatnonzero(~touch), (0.8, 0.2), rng)
    all_w = _ds(windows)
    norm = Normalizer.fit(all_w.take(fit_idx))
    data = norm.apply(all_w)
    model, params, info = train_model(args, data.take(fit_idx), data.take(hold_idx), series.shape[1], args.window,
                                      args.seed)
    err = error_vectors(model, params, data.x)
    scorer = fit_scorer(err[hold_idx], method=method, level=level)
    w_scores, step_scores = score_errors(scorer, err)
    values = step_scores if step_scores is not None else w_scores
    points_ds = points_from_windows(values, starts, n_ds, window=args.window)
    points = np.repeat(points_ds, d)
    points = np.r_[points, np.full(n - points.shape[0], points[-1])]  # rows past the last full pool
    labels = (np.arange(n) > lo) & (np.arange(n) < hi)
    top = int(np.argmax(w_scores))
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
        np.savez(Path(args.dump) / f"{name}.npz", errors=err, starts=starts, downsample=d, hold=hold_idx,
                 fit=fit_idx, window_scores=w_scores, points=points, labels=labels, series=series)
    return {
        "row": f"discord {name}", "seed": args.seed, **info, "method": f"{method}/{level}",
        "period": int(period), "detrend": bool(args.detrend), "downsample": d, "window": args.window, "stride": args.stride,
        "window_rows": args.window * d, "stride_rows": args.stride * d,
        "n_windows": len(starts), "n_train_windows": len(fit_idx),
        "point_roc_auc": roc_auc(labels, points), "window_roc_auc": roc_auc(touch, w_scores),
        "top_window": [int(starts[top]) * d, (int(starts[top]) + args.window) * d - 1],
        "top_window_on_anomaly": bool(touch[top]), "wall_s": time.perf_counter() - t0,
    }


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
def _table(rows):
    out = []
    for r in rows:
        if r["row"] == "ECG5000 anomaly":
            res = (f"ROC AUC {r['roc_auc']:.4f}, PR AUC {r['pr_auc']:.4f}, F1 {r['f1']:.3f} "
                   f"(P {r['precision']:.3f}, R {r['recall']:.3f}); method {r['method']} chosen on validation")
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
        else:
            res = (f"point ROC AUC {r['point_roc_auc']:.4f}; top window {r['top_window']} on anomaly: "
                   f"{'yes' if r['top_window_on_anomaly'] else 'NO'}; period {r['period']} rows, pooled by "
                   f"{r['downsample']}: W={r['window']} steps ({r['window_rows']} rows), stride {r['stride']} "
                   f"({r['stride_rows']} rows); method {r['method']}")
        epochs = f"{r['epochs_run']} ({r['steps']} steps)" if "steps" in r else "-"
        seed = ", ".join(map(str, r["seed"])) if isinstance(r["seed"], list) else r["seed"]
        out.append(f"| {r['row']} | {res} | {seed} | {epochs} | {r['wall_s']:.0f} s |")
    return "\n".join(["| row | result | seed | epochs | wall |", "| --- | --- | --- | --- | --- |", *out])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("ecg", "probe", "discords", "speed", "all"), default="all")
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
    p.add_argument("--lr", type=float, default=1e-2, help="discord rows: peak Adam learning rate (cosine decay to 1 %%)")
    p.add_argument("--ecg-lr", type=float, default=5e-3, help="ECG5000 rows: peak learning rate")
    p.add_argument("--decoder", default="repeat", help="anomaly and discord rows: decoder strategy")
    p.add_argument("--ecg-embedding", type=int, default=32, help="ECG5000 anomaly row: latent size E")
    p.add_argument("--ecg-hidden", type=int, nargs="*", default=[64],
                   help="ECG5000 anomaly row: encoder sizes before E")
    p.add_argument("--ecg-batch", type=int, default=16)
    p.add_argument("--ecg-bidirectional", action="store_true", help="ECG5000 rows: bidirectional encoder")
    p.add_argument("--embedding", type=int, default=16, help="discord rows: latent size E")
    p.add_argument("--hidden", type=int, nargs="*", default=[32], help="discord rows: encoder sizes before E")
    p.add_argument("--batch", type=int, default=32, help="discord rows: batch size")
    p.add_argument("--beta", type=float, default=1.0, help="F-beta the threshold maximises on validation")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--stride", type=int, default=1, help="discord window stride, in (downsampled) steps")
    p.add_argument("--no-period-match", dest="period_match", action="store_false",
                   help="discords: keep the original rate instead of pooling one cycle into --window steps")
    p.add_argument("--no-detrend", dest="detrend", action="store_false",
                   help="discords: keep the baseline (default: subtract a centred moving average over one period)")
    p.add_argument("--discord-method", default=None, help="e.g. mahalanobis/step; default: ECG5000's choice")
    p.add_argument("--discords", nargs="*", default=list(DISCORDS))
    p.add_argument("--json", default=None)
    p.add_argument("--dump", default=None, help="discords: save errors and scores as DIR/NAME.npz")
    args = p.parse_args(argv)
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

    chosen = args.discord_method
    if args.only in ("ecg", "all"):
        r = ecg_anomaly(args)
        emit(r)
        chosen = chosen or r["method"]
    if args.only in ("probe", "ecg", "all"):
        probe_rows = []
        for k in range(args.probe_splits):  # split k: --seed + k (the split and, by default, the model)
            probe_rows.append(ecg_probe(argparse.Namespace(**{**vars(args), "seed": args.seed + k})))
            emit(probe_rows[-1])
        if len(probe_rows) > 1:
            emit(probe_summary(probe_rows))
    if args.only in ("speed", "all"):
        emit(scoring_speed(args))
    if args.only in ("discords", "all"):
        method, level = (chosen or "mahalanobis/step").split("/")
        for name in args.discords:
            emit(discord(args, name, method, level))
    print(_table(rows))


if __name__ == "__main__":
    main()
