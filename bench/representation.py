"""Latents as features for classifiers: the UCR/UEA protocol on any .ts TRAIN/TEST pair, through the CLI.

    python bench/representation.py --set GunPoint --json rep.jsonl            # a set in ../shared/data/ucr_uea
    python bench/representation.py --set ECG5000 --json rep.jsonl             # ECG5000_TRAIN.txt, split as below
    python bench/representation.py --train A_TRAIN.ts --test A_TEST.ts        # any pair
    python bench/representation.py --render rep.jsonl                         # the tables of earlier runs
    python bench/representation.py --set ArrowHead --configs defaults last mean bi_mean   # research: variants
    python bench/representation.py --sets ArrowHead GunPoint --configs seeds4 choose4     # four models, two choices

Protocol (the one T-Loss and TS2Vec report), run as a user without labels
meets it: per seed, `jax-lstm-ae train --data NAME_TRAIN.ts --seed S` with
the CLI's defaults and no other flag (the labels in the file are not read by
`train`), then `jax-lstm-ae encode` on the TRAIN and the TEST file; each is
its own process, so the numbers are the CLI's, devices and all. A classifier
fitted on the TRAIN latents is scored on TEST: an RBF SVM with C from
{1e-4 .. 1e4} by 5-fold stratified CV on TRAIN (apps.probe.fit_svm,
scikit-learn) and the library's linear probe (apps.probe.fit_probe, l2 by
5-fold CV on TRAIN). The headline row is "defaults": nothing but --seed.

Research option: ``--configs`` names variants (CONFIGS: extra `train` flags);
with more than one, each seed keeps the variant with the best SVM CV accuracy
on TRAIN (the TEST labels never choose anything) and the TEST accuracy of
every variant is printed too (marked "not used to choose"). ``seeds4`` and
``choose4`` are the product's own selections: `train --seeds 4` (seeds
4S..4S+3 in one run); ``seeds4`` encodes with the run's chosen model, the
lowest validation loss (no labels); ``choose4`` first runs `jax-lstm-ae probe
--choose --classifier svm` on the TRAIN file (its labels only), which makes
the model with the best SVM CV accuracy the chosen one, then encodes.
Given together, the four models are trained once. ``noise2``,
``noise2_nb`` and ``noise2_choose`` are `train --noise-grid 0,0.3` (the
defaults' model, seed S, and its denoising twin in one run), chosen by
validation loss, by the DTW neighbours the latents keep (`--choose-by
neighbours`), or by `probe --choose` on TRAIN (noise2 and noise2_choose
share one training).

Baselines with the same classifiers: the raw series (flattened, after the
TRAIN-fitted per-feature z-score; unequal-length sets are resampled to the
TRAIN length by linear interpolation) and PCA of it to the latent's size E;
and 1-NN DTW (apps.dtw: full window, squared-Euclidean local cost over the
features, i.e. DTW_D) on the values as the file holds them, as the archives
report it (for F > 1 also after the per-feature z-score). Published anchors
(PUBLISHED below, each with its source) are printed beside each row.

ECG5000: only the archive's 500-beat TRAIN file is here; it is split 60 / 40
per class exactly as bench/quality.py's probe row (seed 0: 299 / 201), and
the two parts are written to .npz files for the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jax_lstm_ae.apps.dtw import dtw_distances, nn1_predict  # noqa: E402
from jax_lstm_ae.apps.probe import classify, fit_pca, pca_transform, resample  # noqa: E402
from jax_lstm_ae.data import Dataset, Normalizer, load_sequences  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ARCHIVE = DATA / "ucr_uea"
ECG = DATA / "ecg5000" / "ECG5000_TRAIN.txt"
SETS = ("ArrowHead", "GunPoint", "ItalyPowerDemand", "JapaneseVowels", "BasicMotions", "ECG5000")

# Autoencoder variants: name -> the `train` flags added to the defaults. "defaults" is the headline row; the others
# are research options (a readout wider than E, last_mean or bidirectional, is projected to E).
CONFIGS = {
    "defaults": [],
    "last": ["--pooling", "last"],
    "mean": ["--pooling", "mean"],
    "last_mean": ["--pooling", "last_mean"],
    "bi_mean": ["--pooling", "mean", "--bidirectional"],
    "mean_noise": ["--pooling", "mean", "--input-noise", "0.3"],
    "mean_clean": ["--pooling", "mean", "--input-noise", "0"],
    "no_pool": ["--pool", "1"],  # no time pooling (the defaults pool d = round(T / 64) steps: ArrowHead 4, GunPoint 2)
    "cosine": ["--schedule", "cosine"],  # the learning rate decays (cosine) over the budget instead of staying at its peak
    "cosine_pool_auto": ["--schedule", "cosine", "--pool", "auto"],
    "e16": ["--embedding-dim", "16"],  # a smaller latent
    "one_device": ["--devices", "1"],  # the defaults trained on one CPU device (the CLI splits each batch over the cores)
    "seeds4": ["--seeds", "4"],  # four models (seeds 4S..4S+3); encode uses the lowest validation loss (no labels)
    "choose4": ["--seeds", "4"],  # the same four, then `probe --choose` on TRAIN picks the one encode uses
    # the defaults' model and its denoising twin (input noise 0.3), seed S, in one run; encode uses the lowest
    # validation loss (no labels), the most DTW neighbours kept (no labels), or `probe --choose` on TRAIN
    "noise2": ["--noise-grid", "0,0.3"],
    "noise2_nb": ["--noise-grid", "0,0.3", "--choose-by", "neighbours"],
    "noise2_choose": ["--noise-grid", "0,0.3"],
}
# Variants trained as K models in one run: name -> (the run they share, K seeds per protocol seed S: seeds
# K*S .. K*S+K-1, disjoint across S).
SELECT = {"seeds4": ("seeds4", 4), "choose4": ("seeds4", 4), "noise2": ("noise2", 1), "noise2_choose": ("noise2", 1)}
PROBE_CHOOSES = ("choose4", "noise2_choose")  # `probe --choose --classifier svm` on the TRAIN file (its labels only)

# Published TEST accuracies on the same TRAIN/TEST splits (ECG5000: the archive's 500/4500 split, not the
# 299/201 split of its TRAIN file used here). None: no figure found; left empty rather than guessed.
# T-Loss: the "Ours (10)" column (one encoder, K = 10 negatives) of results_ucr.csv / results_uea.csv in
#   github.com/White-Link/UnsupervisedScalableRepresentationLearningTimeSeries (Franceschi et al., NeurIPS 2019).
# TimeNet and 1-NN DTW: the "TimeNet" and "DTW" columns of the same files (DTW: full-window 1-NN DTW from the
#   UCR archive; the UEA file's DTW is the multivariate DTW_D of the UEA archive). TimeNet has no figure there
#   for ArrowHead, GunPoint, ItalyPowerDemand or the UEA sets.
# TS2Vec: its paper's per-set tables were not reachable from here; the cells stay empty.
PUBLISHED = {
    "ArrowHead": {"T-Loss": 0.766, "1-NN DTW": 0.703},
    "GunPoint": {"T-Loss": 0.980, "1-NN DTW": 0.907},
    "ItalyPowerDemand": {"T-Loss": 0.954, "1-NN DTW": 0.950},
    "JapaneseVowels": {"T-Loss": 0.986, "1-NN DTW": 0.949},
    "BasicMotions": {"T-Loss": 1.000, "1-NN DTW": 0.975},
    "ECG5000": {"T-Loss": 0.933, "TimeNet": 0.934, "1-NN DTW": 0.924},
}


# ----------------------------------------------------------------- data
def _split(idx, fractions, rng):
    """bench/quality.py's split: the same permutation and cuts."""
    idx = rng.permutation(idx)
    cuts = np.cumsum([int(round(f * len(idx))) for f in fractions[:-1]])
    return np.split(idx, cuts)


def load_pair(args) -> tuple[str, Dataset, Dataset]:
    """(name, TRAIN, TEST) from --train/--test or --set."""
    if args.train:
        return Path(args.train).stem.removesuffix("_TRAIN"), load_sequences(args.train), load_sequences(args.test)
    return load_named(args.set)


def files_of(name: str, train: Dataset, test: Dataset, args, tmp: Path) -> tuple[str, str]:
    """The TRAIN and TEST files the CLI reads: the archive's own, or the in-memory split as .npz."""
    if args.train:
        return args.train, args.test
    folder = ARCHIVE / name
    if name != "ECG5000":
        return str(folder / f"{name}_TRAIN.ts"), str(folder / f"{name}_TEST.ts")
    out = []
    for part, d in (("TRAIN", train), ("TEST", test)):
        path = tmp / f"{name}_{part}.npz"
        np.savez(path, x=d.x, lengths=d.lengths, labels=d.labels)
        out.append(str(path))
    return out[0], out[1]


def load_named(name: str) -> tuple[str, Dataset, Dataset]:
    if name == "ECG5000":
        ds = load_sequences(ECG)
        y = ds.labels.astype(int)
        rng = np.random.default_rng(1)  # quality.py's probe split at its --seed 0
        tr, te = [], []
        for c in np.unique(y):
            a, b = _split(np.flatnonzero(y == c), (0.6, 0.4), rng)
            tr.append(a)
            te.append(b)
        return name, ds.take(np.sort(np.concatenate(tr))), ds.take(np.sort(np.concatenate(te)))
    folder = ARCHIVE / name
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found; the archive sets live in ../shared/data/ucr_uea")
    return name, load_sequences(folder / f"{name}_TRAIN.ts"), load_sequences(folder / f"{name}_TEST.ts")


def common_steps(train: Dataset, test: Dataset) -> tuple[Dataset, Dataset]:
    """Pad both to one T (post-padding; the encoder reads each case up to its length)."""
    t = max(train.steps, test.steps)
    pad = lambda d: d._replace(x=np.pad(d.x, ((0, 0), (0, t - d.steps), (0, 0))))  # noqa: E731
    return pad(train), pad(test)


def raw_features(train: Dataset, test: Dataset) -> tuple[np.ndarray, np.ndarray, str]:
    """Flattened series; unequal lengths: each resampled to the longest TRAIN case."""
    equal = np.all(train.lengths == train.lengths[0]) and np.all(test.lengths == train.lengths[0])
    if equal:
        t = int(train.lengths[0])
        return train.x[:, :t].reshape(train.n, -1), test.x[:, :t].reshape(test.n, -1), "as is"
    t = int(train.lengths.max())
    return (resample(train.x, train.lengths, t).reshape(train.n, -1),
            resample(test.x, test.lengths, t).reshape(test.n, -1), f"resampled to T={t}")


# ----------------------------------------------------------------- autoencoder
def cli(*argv: str) -> None:
    """One `jax-lstm-ae` command in its own process, as a user runs it (this checkout's package)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    r = subprocess.run([sys.executable, "-m", "jax_lstm_ae", *argv, "--quiet"], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"jax-lstm-ae {' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")


def train_autoencoder(train_file: str, test_file: str, config: str, seed: int, tmp: Path):
    """`train` on the TRAIN file (the defaults plus CONFIGS[config] and --seed), `encode` both files.
    Returns (z_train [N, E], z_test [M, E], info)."""
    shared, k = SELECT.get(config, (None, 1))
    run = tmp / f"run_{shared or config}_{seed}"  # seeds4 and choose4 share one training, noise2 and noise2_choose
    t0 = time.perf_counter()
    if not (shared and (run / "config.json").exists()):
        cli("train", "--data", train_file, "--out", str(run), "--force", "--seed", str(seed * k), *CONFIGS[config])
    if config in PROBE_CHOOSES:
        cli("probe", "--run", str(run), "--data", train_file, "--classifier", "svm", "--choose")
    train_s = time.perf_counter() - t0
    zs = []
    for part, f in (("train", train_file), ("test", test_file)):
        cli("encode", "--run", str(run), "--data", f, "--out", str(tmp / f"z_{part}.npz"), "--force")
        zs.append(np.load(tmp / f"z_{part}.npz")["z"])
    cfg = json.loads((run / "config.json").read_text())
    hist = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    hist = [h for h in hist if h.get("model", cfg.get("chosen")) == cfg.get("chosen")]  # a many-models run: the chosen
    val = [h["val_loss"] for h in hist if h.get("val_loss") is not None]
    info = {"steps": int(hist[-1]["step"]), "epochs": len(hist), "first_loss": hist[0]["loss"],
            "final_loss": hist[-1]["loss"], "best_val_loss": min(val) if val else None, "train_s": train_s,
            "pooling": cfg["model"]["encoder"]["pooling"], "E": cfg["model"]["embedding_dim"],
            "pool": int(cfg["model"].get("pool") or 1)}
    return zs[0], zs[1], info


def dtw_row(train: Dataset, test: Dataset) -> dict:
    """1-NN DTW on the values as the file holds them (the archives' convention; their univariate series
    come z-normalised per series) and, for F > 1, after the TRAIN-fitted per-feature z-score too."""
    t0 = time.perf_counter()
    out = {"dtw_1nn": accuracy(nn1_predict(dtw_distances(test.x, test.lengths, train.x, train.lengths),
                                           train.labels), test.labels)}
    if train.features > 1:
        norm = Normalizer.fit(train)
        a, b = norm.apply(train), norm.apply(test)
        out["dtw_1nn_std"] = accuracy(nn1_predict(dtw_distances(b.x, b.lengths, a.x, a.lengths), a.labels), b.labels)
    out["dtw_s"] = time.perf_counter() - t0
    log(f"1-NN DTW {out['dtw_1nn']:.4f}" + (f", on standardised features {out['dtw_1nn_std']:.4f}" if "dtw_1nn_std" in out
                                           else "") + f" ({out['dtw_s']:.0f} s)")
    return out


def accuracy(pred, y) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y)))


def run_set(name: str, train: Dataset, test: Dataset, args) -> dict:
    t_set = time.perf_counter()
    tmp_dir = tempfile.TemporaryDirectory(prefix="representation_")
    tmp = Path(tmp_dir.name)
    train_file, test_file = files_of(name, train, test, args, tmp)
    train, test = common_steps(train, test)
    dtw = dtw_row(train, test) if not args.no_dtw else {}
    if args.dtw_only:
        return {"set": name, **dtw}
    norm = Normalizer.fit(train)
    train, test = norm.apply(train), norm.apply(test)
    y_tr, y_te = train.labels, test.labels
    row = {"set": name, "n_train": train.n, "n_test": test.n, "T": f"{int(train.lengths.min())}-{int(train.lengths.max())}"
           if train.lengths.min() != train.lengths.max() else int(train.lengths[0]), "F": train.features,
           "classes": int(len(np.unique(y_tr))), "seeds": list(args.seeds), "configs": list(args.configs),
           "train_flags": {c: CONFIGS[c] for c in args.configs}}
    raw_tr, raw_te, how = raw_features(train, test)
    row["raw"] = how
    row.update(dtw)
    per_seed = []
    near = {}  # pool d -> the TRAIN rows' DTW neighbours (--criteria)
    for seed in args.seeds:
        rec = {"seed": seed, "variants": {}}
        for config in args.configs:
            z_tr, z_te, info = train_autoencoder(train_file, test_file, config, seed, tmp)
            v = dict(info)
            for clf in ("svm", "linear"):
                r = classify(clf, z_tr, y_tr, z_te, seed=seed)
                v[f"{clf}_cv"], v[f"{clf}_test"], v[f"{clf}_param"] = r["cv_accuracy"], accuracy(r["predictions"], y_te), r["param"]
            if args.criteria:
                v["dtw_neighbours"] = neighbours_kept(z_tr, train, info["pool"], near)
            rec["variants"][config] = v
            log(f"{name} seed {seed} {config}: {info['steps']} steps, loss {info['first_loss']:.3f} -> "
                f"{info['final_loss']:.3f} ({info['train_s']:.0f} s); SVM CV {v['svm_cv']:.3f} test {v['svm_test']:.3f}; "
                f"linear CV {v['linear_cv']:.3f} test {v['linear_test']:.3f}")
        # PCA of the raw series to the latent's size E (the first variant's)
        # (at most N - 1 components: the centred TRAIN rows span no more, and the classifiers would standardise
        # a null component into unit-variance noise)
        pca = fit_pca(raw_tr, min(rec["variants"][args.configs[0]]["E"], raw_tr.shape[0] - 1, raw_tr.shape[1]))
        pca_tr, pca_te = pca_transform(pca, raw_tr), pca_transform(pca, raw_te)
        for clf in ("svm", "linear"):
            for rep, (tr, te) in (("raw", (raw_tr, raw_te)), ("pca", (pca_tr, pca_te))):
                r = classify(clf, tr, y_tr, te, seed=seed)
                rec[f"{rep}_{clf}"] = accuracy(r["predictions"], y_te)
        # The variant with the best SVM CV accuracy on TRAIN (ties: the earlier, simpler one in --configs).
        chosen = max(args.configs, key=lambda c: (rec["variants"][c]["svm_cv"], -args.configs.index(c)))
        rec["chosen"] = chosen
        rec["latent_svm"] = rec["variants"][chosen]["svm_test"]
        rec["latent_linear"] = rec["variants"][chosen]["linear_test"]
        per_seed.append(rec)
        log(f"{name} seed {seed}: chose {chosen}: latent SVM {rec['latent_svm']:.4f}, linear {rec['latent_linear']:.4f}; "
            f"raw SVM {rec['raw_svm']:.4f}, PCA SVM {rec['pca_svm']:.4f}")
    row["per_seed"] = per_seed
    for key in ("latent_svm", "latent_linear", "raw_svm", "raw_linear", "pca_svm", "pca_linear"):
        vals = np.array([r[key] for r in per_seed])
        row[key] = {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                    "min": float(vals.min()), "max": float(vals.max())}
    for config in args.configs:
        for clf in ("svm", "linear"):
            vals = np.array([r["variants"][config][f"{clf}_test"] for r in per_seed])
            cvs = np.array([r["variants"][config][f"{clf}_cv"] for r in per_seed])
            row.setdefault("by_variant", {}).setdefault(config, {})[clf] = {
                "test_mean": float(vals.mean()), "test_sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "cv_mean": float(cvs.mean())}
    if args.criteria:
        row["criteria"] = criteria_correlations(per_seed, args.configs)
    row["published"] = PUBLISHED.get(name, {})
    row["wall_s"] = time.perf_counter() - t_set
    tmp_dir.cleanup()
    return row


# ----------------------------------------------------------------- label-free criteria
# Each scores one run's TRAIN latents without labels; higher is meant to be better.
CRITERIA = {
    "validation loss": lambda v: -v["best_val_loss"],  # what `train` chooses by (--choose-by val)
    "DTW neighbours kept": lambda v: v["dtw_neighbours"],  # `train --choose-by neighbours`
}


def neighbours_kept(z_tr, train: Dataset, pool: int, near: dict) -> float:
    """The share of the TRAIN rows' DTW neighbours the TRAIN latents keep, as `train --choose-by
    neighbours` computes it (apps.neighbours: the same rows, z-scoring, pooling by the run's d)."""
    from jax_lstm_ae.apps.neighbours import agreement_rows, latent_agreement, reference_neighbours

    if pool not in near:
        near[pool] = reference_neighbours(train, pool)[1]
    return latent_agreement(z_tr[agreement_rows(train.n)], near[pool])


def criteria_correlations(per_seed: list[dict], configs) -> dict:
    """Spearman's rank correlation, over every (seed, variant) run of a set, of each criterion with the
    SVM's CV accuracy on TRAIN (the labels' verdict the criterion should follow)."""
    from scipy.stats import spearmanr

    runs = [r["variants"][c] for r in per_seed for c in configs]
    cv = [v["svm_cv"] for v in runs]
    out = {}
    for name, f in CRITERIA.items():
        vals = [f(v) for v in runs]
        rho = spearmanr(vals, cv).statistic if len(set(vals)) > 1 and len(set(cv)) > 1 else float("nan")
        out[name] = float(rho)
    return out


def markdown_criteria(rows: list[dict]) -> str:
    names = list(CRITERIA)
    out = ["| set | runs | " + " | ".join(names) + " |", "| --- " * (len(names) + 2) + "|"]
    for r in rows:
        n = len(r["per_seed"]) * len(r["configs"])
        out.append(f"| {r['set']} | {n} | " + " | ".join(f"{r['criteria'][c]:+.2f}" for c in names) + " |")
    means = [float(np.nanmean([r["criteria"][c] for r in rows])) for c in names]
    out.append("| mean | | " + " | ".join(f"{m:+.2f}" for m in means) + " |")
    return "\n".join(out)


# ----------------------------------------------------------------- output
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ms(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['sd']:.3f}"


def markdown(rows: list[dict]) -> str:
    anchors = ("T-Loss", "TS2Vec", "TimeNet", "1-NN DTW")
    out = ["| set (train / test, T, F, classes) | latent + SVM | latent + linear | raw + SVM | PCA-E + SVM | "
           "raw + linear | 1-NN DTW (here) | " + " | ".join(f"{a} (published)" for a in anchors) + " | chosen variants | wall |",
           "| --- " * (9 + len(anchors)) + "|"]
    for r in rows:
        pub = r.get("published", {})
        cells = [f"{r['set']} ({r['n_train']} / {r['n_test']}, {r['T']}, {r['F']}, {r['classes']})",
                 _ms(r["latent_svm"]), _ms(r["latent_linear"]), _ms(r["raw_svm"]), _ms(r["pca_svm"]),
                 _ms(r["raw_linear"]), (f"{r['dtw_1nn']:.3f}" + (f" ({r['dtw_1nn_std']:.3f} standardised)" if "dtw_1nn_std" in r
                                                else "")) if "dtw_1nn" in r else "",
                 *[f"{pub[a]:.3f}" if pub.get(a) is not None else "" for a in anchors],
                 ", ".join(p["chosen"] for p in r["per_seed"]), f"{r['wall_s'] / 60:.0f} min"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def markdown_variants(rows: list[dict]) -> str:
    configs = [c for c in CONFIGS if any(c in r["by_variant"] for r in rows)]
    out = ["| set | " + " | ".join(configs) + " |", "| --- " * (len(configs) + 1) + "|"]
    for r in rows:
        v = r["by_variant"]
        cells = [f"{v[c]['svm']['cv_mean']:.3f} / {v[c]['svm']['test_mean']:.3f} ± {v[c]['svm']['test_sd']:.3f}"
                 if c in v else "-" for c in configs]
        out.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--set", choices=SETS, help="a set in ../shared/data (ECG5000: its TRAIN file, split 60/40)")
    g.add_argument("--train", help="a TRAIN file (.ts or any format load_sequences reads); needs --test")
    g.add_argument("--all", action="store_true", help="every set in SETS")
    g.add_argument("--sets", nargs="+", choices=SETS, help="these sets of SETS, in SETS order")
    g.add_argument("--render", nargs="+", metavar="JSONL", help="print the tables of earlier --json files (SETS order)")
    p.add_argument("--test", help="the TEST file that goes with --train")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["defaults"],
                   help="research: autoencoder variants (extra `train` flags); with several, each seed keeps the one "
                        "with the best SVM CV accuracy on TRAIN. Default: the CLI's defaults only")
    p.add_argument("--criteria", action="store_true",
                   help="research: how well each label-free criterion (CRITERIA) ranks the runs (seeds x --configs) "
                        "as the SVM's CV accuracy on TRAIN does: Spearman's rho per set")
    p.add_argument("--no-dtw", action="store_true", help="skip 1-NN DTW")
    p.add_argument("--dtw-only", action="store_true", help="only 1-NN DTW (printed as one JSON line per set)")
    p.add_argument("--json", help="append one JSON object per set here")
    p.add_argument("--markdown", help="write the tables here")
    args = p.parse_args(argv)
    if args.train and not args.test:
        p.error("--train needs --test")
    rows = []
    if args.render:
        rows = [json.loads(ln) for f in args.render for ln in Path(f).read_text().splitlines() if ln.strip()]
        rows.sort(key=lambda r: SETS.index(r["set"]) if r["set"] in SETS else len(SETS))
        for r in rows:
            r["published"] = PUBLISHED.get(r["set"], {})
    names = SETS if args.all else [n for n in SETS if n in args.sets] if args.sets else None
    pairs = [] if args.render else [load_named(n) for n in names] if names else [load_pair(args)]
    for name, train, test in pairs:
        if train.labels is None or test.labels is None:
            raise SystemExit(f"{name}: the protocol needs class labels in both files")
        row = run_set(name, train, test, args)
        if args.dtw_only:
            print(json.dumps(row))
            continue
        rows.append(row)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row, default=float) + "\n")
        log(f"{name}: latent SVM {_ms(row['latent_svm'])}, linear {_ms(row['latent_linear'])}; raw SVM "
            f"{_ms(row['raw_svm'])}; PCA SVM {_ms(row['pca_svm'])}; wall {row['wall_s']:.0f} s")
    if args.dtw_only:
        return 0
    text = markdown(rows) + "\n\nSVM CV accuracy on TRAIN / TEST accuracy (mean ± sd over seeds) of each variant; " \
        "the TEST column was not used to choose:\n\n" + markdown_variants(rows)
    if all("criteria" in r for r in rows):
        text += ("\n\nSpearman's rank correlation of each label-free criterion with the SVM's CV accuracy on TRAIN, "
                 "over every run (seed x variant) of a set:\n\n" + markdown_criteria(rows))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
