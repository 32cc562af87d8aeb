"""How the `train` defaults were chosen: candidates through the product's own path, TRAIN data only.

    python bench/defaults.py --set GunPoint --json defaults.jsonl          # one set per process
    python bench/defaults.py --render defaults.jsonl                        # the tables

Protocol. Every candidate is the CLI's defaults (``preset("cli", F)``, what
`jax-lstm-ae train` gives before its time pooling, which depends on T) with a
few fields changed (CANDIDATES). Per set and
seed it trains through ``train.runner.run_training`` on the TRAIN cases only
(the runner holds out its validation split, ``val_fraction``), and the
parameters are snapshotted at SNAPSHOTS steps and at the best validation
epoch. Each snapshot's latents of all TRAIN cases are scored by:

* the target: an RBF SVM's 5-fold stratified CV accuracy on the TRAIN
  latents (``apps.probe.fit_svm``, C by the same CV), i.e. TRAIN labels only;
* label-free criteria, which a user without labels could compute: the
  validation reconstruction loss, the latents' effective rank (exp of the
  entropy of the normalised eigenvalues of their covariance, after the
  per-column z-score the classifiers apply), and the best k-means silhouette
  over k = 2..8 on the standardised latents.

No TEST file is read. Choose on GunPoint, BasicMotions and ECG5000 (its
TRAIN file's 60 % part, ``bench/representation.py``'s split); confirm on
ArrowHead, ItalyPowerDemand and JapaneseVowels. The rule: the candidate
with the highest CV accuracy at the best validation epoch (what `train`
keeps), averaged over the three choose sets, becomes the default if it
beats the old one (``last``) there; a confirm set where it does not is
reported, not re-chosen. The budget is read off the snapshots (does 2,000
steps beat 1,000?). A label-free selection inside `train` is worth adding
only where its keeper beats the chosen default (the last table). ``--render`` prints, per set,
each candidate's mean CV accuracy over seeds (the choice) and, per set and
seed, the Spearman correlation across candidates between each label-free
criterion and the CV accuracy (does the criterion track it?).

Time pooling (`train`'s default d = round(T / 64)) was chosen by
``bench/representation.py --configs no_pool defaults`` on the same choose
sets, through the command line itself; ``--candidates mean_pool1
mean_pool_auto`` compares the two here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from representation import SETS, load_named  # noqa: E402

from jax_lstm_ae.apps.probe import encode_all, fit_svm  # noqa: E402
from jax_lstm_ae.train.fit import evaluate  # noqa: E402
from jax_lstm_ae.train.step import make_eval_step  # noqa: E402
from jax_lstm_ae.train.runner import run_training, split_data  # noqa: E402
from jax_lstm_ae.train.spec import OptimizerSpec, auto_pool, preset  # noqa: E402

CHOOSE = ("GunPoint", "BasicMotions", "ECG5000")
CONFIRM = ("ArrowHead", "ItalyPowerDemand", "JapaneseVowels")

# name -> (encoder fields, train fields, model fields) changed from preset("cli").
CANDIDATES = {
    "last": ({"pooling": "last"}, {}, {}),
    "mean": ({"pooling": "mean"}, {}, {}),
    "last_mean": ({"pooling": "last_mean"}, {}, {}),
    "bi_mean": ({"pooling": "mean", "bidirectional": True}, {}, {}),
    "mean_noise": ({"pooling": "mean"}, {"input_noise": 0.3}, {}),
    "mean_e64": ({"pooling": "mean"}, {}, {"embedding_dim": 64}),
    "mean_cosine": ({"pooling": "mean"}, {"optimizer": OptimizerSpec(learning_rate=1e-2, schedule="cosine")}, {}),
    "mean_lr3e-3": ({"pooling": "mean"}, {"optimizer": OptimizerSpec(learning_rate=3e-3)}, {}),
    "mean_pool1": ({"pooling": "mean"}, {}, {"pool": 1}),  # no time pooling
    "mean_pool_auto": ({"pooling": "mean"}, {}, {"pool": "auto"}),  # --pool auto: round(T / 64), at least 1
}
SNAPSHOTS = (500, 1000, 2000, 4000)


def specs(name: str, features: int, seed: int, steps: int, t: int):
    enc, tr, mod = CANDIDATES[name]
    if mod.get("pool") == "auto":
        mod = {**mod, "pool": auto_pool(t)}
    model_spec, train_spec = preset("cli", features)
    model_spec = model_spec.replace(encoder=model_spec.encoder.replace(**enc), **mod)
    train_spec = train_spec.replace(seed=seed, epochs=1, min_steps=steps, patience=None, **tr)
    return model_spec, train_spec


def effective_rank(z: np.ndarray) -> float:
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    ev = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False)), 0, None)
    p = ev / max(ev.sum(), 1e-12)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def silhouette(z: np.ndarray, seed: int) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    z = (z - z.mean(0)) / (z.std(0) + 1e-8)
    best = -1.0
    for k in range(2, min(8, len(z) - 1) + 1):
        lab = KMeans(k, n_init=4, random_state=seed).fit_predict(z)
        if len(np.unique(lab)) > 1:
            best = max(best, float(silhouette_score(z, lab)))
    return best


def run_candidate(name: str, data, seed: int, steps: int) -> dict:
    model_spec, train_spec = specs(name, data.features, seed, steps, data.steps)
    snaps: dict = {}
    want = [s for s in SNAPSHOTS if s <= steps]

    def keep(state, prog):
        step = int(state.step)
        for s in want:
            if s not in snaps and step >= s:
                snaps[s] = (step, jax.tree.map(np.array, state.params))  # a host copy: fit donates state

    t0 = time.perf_counter()
    res = run_training(model_spec, train_spec, data, callback=keep)
    train_s = time.perf_counter() - t0
    norm = res.normalizer
    x = norm.apply(data)
    _, _, val = split_data(data, train_spec, model_spec, normalizer=norm)
    eval_step = make_eval_step(res.model)
    best_epoch = min(range(len(res.history)), key=lambda i: res.history[i]["val_loss"])
    points = {f"step{s}": v for s, v in snaps.items()}
    points["best_val"] = (res.history[best_epoch]["step"], res.params)
    out = {"candidate": name, "seed": seed, "train_s": train_s, "points": {}}
    for key, (st, params) in points.items():
        z = encode_all(res.model, params, x.x, x.lengths)
        svm = fit_svm(z, data.labels, seed=seed)
        out["points"][key] = {
            "step": int(st), "svm_cv": svm.cv_accuracy,
            "val_loss": float(evaluate(eval_step, params, val, 64)),
            "eff_rank": effective_rank(z), "silhouette": silhouette(z, seed),
        }
    log(f"{name} seed {seed} ({train_s:.0f} s): " + "; ".join(
        f"{k} @{v['step']}: cv {v['svm_cv']:.3f} val {v['val_loss']:.4f} rank {v['eff_rank']:.1f} "
        f"sil {v['silhouette']:.3f}" for k, v in out["points"].items()))
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def render(rows: list[dict]) -> str:
    out = []
    cands = [c for c in CANDIDATES if any(c in r["results"] for r in rows)]
    keys = sorted({k for r in rows for c in r["results"].values() for s in c for k in s["points"]},
                  key=lambda k: (k != "best_val", int(k[4:]) if k.startswith("step") else 0))
    for key in keys:
        out.append(f"\nSVM 5-fold CV accuracy on TRAIN latents, mean over seeds, snapshot {key}:\n")
        out.append("| set | " + " | ".join(cands) + " |")
        out.append("| --- " * (len(cands) + 1) + "|")
        for r in rows:
            cells = []
            for c in cands:
                v = [s["points"][key]["svm_cv"] for s in r["results"].get(c, []) if key in s["points"]]
                cells.append(f"{np.mean(v):.3f}" if v else "-")
            out.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    crit = ("val_loss", "eff_rank", "silhouette")
    for title, only in (("candidates x snapshots", None), ("candidates at their best validation epoch (what a "
                                                             "selection inside `train` compares)", "best_val")):
        out.append(f"\nSpearman correlation across {title} of each label-free criterion with the SVM CV accuracy "
                   "(per set and seed, then the mean; validation loss negated, so + means it tracks):\n")
        out.append("| set | " + " | ".join(crit) + " |")
        out.append("| --- " * (len(crit) + 1) + "|")
        for r in rows:
            seeds = sorted({s["seed"] for c in r["results"].values() for s in c})
            cells = []
            for k in crit:
                rs = []
                for seed in seeds:
                    pts = [p for c in r["results"].values() for s in c if s["seed"] == seed
                           for key, p in s["points"].items() if only is None or key == only]
                    sign = -1 if k == "val_loss" else 1
                    rs.append(spearman([sign * p[k] for p in pts], [p["svm_cv"] for p in pts]))
                cells.append(f"{np.nanmean(rs):+.2f} ({', '.join(f'{x:+.2f}' for x in rs)})")
            out.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    out.append("\nSelecting per seed among the candidates by a label-free criterion at the best validation epoch "
               "(lowest validation loss, highest effective rank, highest silhouette): the SVM CV accuracy of what "
               "it keeps, mean over seeds, beside the best and the worst fixed candidate:\n")
    out.append("| set | by val_loss | by eff_rank | by silhouette | best fixed | worst fixed |")
    out.append("| --- " * 6 + "|")
    for r in rows:
        seeds = sorted({s["seed"] for c in r["results"].values() for s in c})
        cells = []
        for k, sign in (("val_loss", -1), ("eff_rank", 1), ("silhouette", 1)):
            kept = []
            for seed in seeds:
                pts = [s["points"]["best_val"] for c in r["results"].values() for s in c if s["seed"] == seed]
                kept.append(max(pts, key=lambda p: sign * p[k])["svm_cv"])
            cells.append(f"{np.mean(kept):.3f}")
        fixed = {c: np.mean([s["points"]["best_val"]["svm_cv"] for s in v]) for c, v in r["results"].items()}
        hi, lo = max(fixed, key=fixed.get), min(fixed, key=fixed.get)
        cells += [f"{fixed[hi]:.3f} ({hi})", f"{fixed[lo]:.3f} ({lo})"]
        out.append(f"| {r['set']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--set", choices=SETS)
    g.add_argument("--render", nargs="+", metavar="JSONL")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    p.add_argument("--steps", type=int, default=max(SNAPSHOTS), help="train this many steps (snapshots on the way)")
    p.add_argument("--json", help="append one JSON object per set here")
    args = p.parse_args(argv)
    if args.render:
        rows = [json.loads(ln) for f in args.render for ln in Path(f).read_text().splitlines() if ln.strip()]
        print(render(rows))
        return 0
    name, train, _ = load_named(args.set)  # the TEST part is not used
    row = {"set": name, "n": train.n, "steps": args.steps, "results": {}}
    for c in args.candidates:
        row["results"][c] = [run_candidate(c, train, seed, args.steps) for seed in args.seeds]
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(render([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
