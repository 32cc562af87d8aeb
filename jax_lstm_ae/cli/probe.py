"""`jax-lstm-ae probe`: classifier accuracy on a run's latents next to PCA
and raw baselines.

    jax-lstm-ae probe --run RUN --data labelled.txt [--test-fraction 0.4]
    jax-lstm-ae probe --run RUN --data X_TRAIN.ts --test-data X_TEST.ts --classifier svm
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.args import add_common_args, add_data_args, data_for_run, load_run_for_use, setup_common
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
    p.add_argument("--seed", type=checks.seed, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here too")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--batch-size", type=positive, default=512, help="sequences per jitted call (split over --devices)")
    add_common_args(p)
    p.set_defaults(func=run_probe)



def run_probe(args) -> int:
    from jax_lstm_ae.apps.probe import _sklearn, _split_stratified, compare_representations, encode_all

    if args.classifier == "svm":
        try:
            _sklearn()
        except ImportError as e:
            fail(str(e))
    out = None if args.out is None else FileOut("--out", Path(args.out), (".json",), "the results are JSON")
    plan_files([out], inputs_of(args), force=args.force)  # checked before any work
    setup_common(args)
    mesh = getattr(args, "mesh", None)
    run = load_run_for_use(args.run)
    data, _ = data_for_run(run, args, args.data, "labelled data")
    x, lengths, y = data.x, data.lengths, data.labels
    if y is None:
        fail(f"{args.data} has no labels; give labelled sequences to probe with (a UCR file, or --label-column)")
    if args.test_data is not None:
        test, _ = data_for_run(run, args, args.test_data, "--test-data")
        if test.labels is None:
            fail(f"{args.test_data} has no labels; give labelled --test-data (a UCR file, or --label-column)")
        if test.features != data.features:
            fail(f"--test-data sequences have F={test.features} features but --data sequences have F={data.features}; "
                 "give test data with the same features as --data")
        unseen = sorted(set(np.asarray(test.labels).tolist()) - set(np.asarray(y).tolist()), key=str)
        if unseen:
            fail(f"--test-data holds classes {unseen} that --data does not, so a classifier cannot "
                 "predict them; give --data with every class, or drop those sequences from --test-data")
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
        write_bytes(Path(args.out), json.dumps(res, indent=2) + "\n")
    return 0

