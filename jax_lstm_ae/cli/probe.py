"""`jax-lstm-ae probe`: classifier accuracy on a run's latents next to PCA
and raw baselines.

    jax-lstm-ae probe --run RUN --data labelled.txt [--test-fraction 0.4]
    jax-lstm-ae probe --run RUN --data X_TRAIN.ts --test-data X_TEST.ts --classifier svm
    jax-lstm-ae probe --run RUN --data X_TRAIN.ts --classifier svm --choose   # RUN: train --seeds K
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.args import (add_common_args, add_data_args, add_model_arg, load_for_run, load_run_for_use,
                                  load_runs_for_use, normalise_for_run, setup_common)
from jax_lstm_ae.cli.checks import number, positive
from jax_lstm_ae.cli.outputs import FileOut, inputs_of, plan_files, write_bytes
from jax_lstm_ae.cli.shell import fail


def register(sub) -> None:
    """Add `probe` to an argparse subparsers object."""
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
    add_model_arg(p, allow_all=False)
    p.add_argument("--choose", action="store_true",
                   help="for a run of many models (train --seeds / --lr-grid): score every model's latents by the "
                        "classifier's 5-fold CV accuracy on the training rows only, make the best the run's chosen "
                        "model (encode, reconstruct, detect and probe use it from then on; ties: lower validation "
                        "loss) and report its test accuracy; rewrites RUN/config.json's choice, nothing else")
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here too")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--batch-size", type=positive, default=512, help="sequences per jitted call (split over --devices)")
    add_common_args(p)
    p.set_defaults(func=run_probe)



def run_probe(args) -> int:
    from jax_lstm_ae.apps.probe import _sklearn, compare_representations, encode_all

    if args.classifier == "svm":
        try:
            _sklearn()
        except ImportError as e:
            fail(str(e))
    if args.choose and args.model is not None:
        fail("--choose picks the model itself; drop --model (or drop --choose to probe model --model)")
    out = None if args.out is None else FileOut("--out", Path(args.out), (".json",), "the results are JSON")
    plan_files([out], inputs_of(args), force=args.force)  # checked before any work
    setup_common(args)
    mesh = getattr(args, "mesh", None)
    runs = _runs_to_choose_from(args) if args.choose else [load_run_for_use(args.run, args.model)]
    raw = _labelled(runs[0], args)  # read once; each model normalises it
    parts = [_split(run, args, *raw) for run in runs]
    encode = lambda run, x, lengths: encode_all(run.model, run.params, x, lengths, batch_size=args.batch_size,  # noqa: E731
                                                 mesh=mesh)
    z_trs = [encode(run, p["x_tr"], p["l_tr"]) for run, p in zip(runs, parts)]
    choice = _choose(args, runs, z_trs, parts[0]["y_tr"]) if args.choose else None
    k = 0 if choice is None else choice["model"]
    run, p, z_tr = runs[k], parts[k], z_trs[k]
    z_te = encode(run, p["x_te"], p["l_te"])
    res = compare_representations(z_tr, z_te, p["x_tr"], p["x_te"], p["y_tr"], p["y_te"], classifier=args.classifier,
                                  seed=args.seed, lengths_train=p["l_tr"], lengths_test=p["l_te"])
    x_tr, x_te, l_tr, l_te, y_tr, y_te = (p[n] for n in ("x_tr", "x_te", "l_tr", "l_te", "y_tr", "y_te"))
    ragged = x_te.shape[1] != x_tr.shape[1] or np.any(l_tr != x_tr.shape[1]) or np.any(l_te != x_te.shape[1])
    what = ("linear probe (logistic regression, l2 by 5-fold CV on the training rows)" if args.classifier == "linear"
            else "RBF SVM (C by 5-fold CV on the training rows)")
    param = "l2" if args.classifier == "linear" else "C"
    print(f"{what}: {len(y_tr)} train / {len(y_te)} test sequences, {len(np.unique(y_tr))} classes ({p['where']})")
    print(f"  {'representation':14s} {'dim':>5s} {param:>7s} {'CV acc (train)':>15s} {'test acc':>9s}")
    for name, r in res.items():
        print(f"  {name:14s} {r['dim']:5d} {r[param]:7g} {r['cv_accuracy']:15.4f} {r['accuracy']:9.4f}")
    if ragged:
        print(f"  raw and pca: each sequence resampled to T={x_tr.shape[1]} steps (the lengths differ)")
    if args.out:
        write_bytes(Path(args.out), json.dumps(dict(res, **({} if choice is None else {"choice": choice})),
                                               indent=2) + "\n")
    return 0


def _runs_to_choose_from(args) -> list:
    """Every model of a many-models run, refused for a run of one model or one still training."""
    from jax_lstm_ae.cli.rundir import holder
    from jax_lstm_ae.train.checkpoint import read_config
    from jax_lstm_ae.train.many_run import is_many

    pid = holder(Path(args.run))
    if pid is not None:
        fail(f"{args.run} is being trained by pid {pid}; wait for that training to end, then run probe --choose again")
    if not is_many(read_config(args.run)):
        fail(f"--choose: {args.run} is a run of one model, nothing to choose from; train several with --seeds K "
             "(or --lr-grid), or drop --choose")
    return load_runs_for_use(args.run, "all")


def _labelled(run, args) -> tuple:
    """--data and --test-data (or None) in raw units, with their labels checked."""
    data = load_for_run(run, args, args.data, "labelled data")
    if data.labels is None:
        fail(f"{args.data} has no labels; give labelled sequences to probe with (a UCR file, or --label-column)")
    if args.test_data is None:
        return data, None
    test = load_for_run(run, args, args.test_data, "--test-data")
    if test.labels is None:
        fail(f"{args.test_data} has no labels; give labelled --test-data (a UCR file, or --label-column)")
    if test.features != data.features:
        fail(f"--test-data sequences have F={test.features} features but --data sequences have F={data.features}; "
             "give test data with the same features as --data")
    unseen = sorted(set(np.asarray(test.labels).tolist()) - set(np.asarray(data.labels).tolist()), key=str)
    if unseen:
        fail(f"--test-data holds classes {unseen} that --data does not, so a classifier cannot "
             "predict them; give --data with every class, or drop those sequences from --test-data")
    return data, test


def _split(run, args, raw, raw_test) -> dict:
    """The training and test rows, normalised for ``run``, with their labels, and where they came from."""
    from jax_lstm_ae.apps.probe import _split_stratified

    data, _ = normalise_for_run(run, raw)
    x, lengths, y = data.x, data.lengths, data.labels
    if raw_test is None:
        tr, te = _split_stratified(y, args.test_fraction, args.seed)
        where = f"{args.data}, stratified split {1 - args.test_fraction:.0%} / {args.test_fraction:.0%} (seed {args.seed})"
        return {"x_tr": x[tr], "l_tr": lengths[tr], "y_tr": y[tr], "x_te": x[te], "l_te": lengths[te],
                "y_te": y[te], "where": where}
    test, _ = normalise_for_run(run, raw_test)
    return {"x_tr": x, "l_tr": lengths, "y_tr": y, "x_te": test.x, "l_te": test.lengths, "y_te": test.labels,
            "where": f"train {args.data} / test {args.test_data}"}


def _choose(args, runs, z_trs, y_tr) -> dict:
    """Score each model's training latents by CV, record the best as the run's chosen model, print the scores."""
    from jax_lstm_ae.apps.probe import choose_by_cv
    from jax_lstm_ae.train.many_run import record_choice

    config = runs[0].config
    losses = [np.inf if b is None else b for b in (config.get("best_losses") or [None] * len(runs))]
    order = sorted(range(len(runs)), key=lambda k: losses[k])
    k, acc = choose_by_cv(z_trs, y_tr, classifier=args.classifier, seed=args.seed, order=order)
    choice = {"by": "probe --choose", "model": k, "classifier": args.classifier, "cv_accuracy": acc,
              "data": str(args.data), "rows": int(len(y_tr)), "seed": args.seed,
              "validation_choice": int(config.get("chosen") or 0) if config.get("chosen_by") is None
              else config["chosen_by"].get("validation_choice")}
    record_choice(args.run, k, choice)
    print(f"{len(runs)} models, {args.classifier} CV accuracy on the {len(y_tr)} training rows (5 folds):")
    for i in range(len(runs)):
        mark = "  <- chosen" if i == k else ""
        print(f"  model {i:3d}  CV {acc[i]:.4f}  best validation loss {losses[i]:.5f}{mark}")
    print(f"model {k} is now the chosen model of {args.run} (by validation loss it was model "
          f"{choice['validation_choice']}); its latents:")
    return choice
